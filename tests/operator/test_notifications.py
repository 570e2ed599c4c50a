"""Notifications from the real operator process on the real API server (the chart's RBAC), to a local
HTTP receiver: what is sent for a canary and a rollback, from the rollout's spec and from the
operator-wide ConfigMap/Secret, with a receiver that is down, one that is slow, and an operator
killed while a message is in flight (at most once)."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.operator.test_canary import rollout_spec, unique
from tests.support.cluster import Cluster, DeploymentController
from tests.support.operator_process import OperatorProcess
from tests.support.receiver import Receiver, free_port

TOKEN = "T0KEN-in-the-slack-url"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver().start()
    try:
        yield served
    finally:
        served.stop()


def quality_metric(url: str) -> dict[str, Any]:
    return {
        "interval": "1s",
        "metrics": [
            {
                "name": "quality",
                "web": {"url": url + "/quality/{{candidate}}", "jsonPath": "$.errorRate", "timeoutSeconds": 5},
                "threshold": {"max": 0.05},
            }
        ],
    }


def triggers(bodies: list[Any]) -> Counter[str]:
    return Counter(body.get("trigger") for body in bodies if isinstance(body, dict))


def secret(cluster: Cluster, name: str, data: dict[str, str]) -> None:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    cluster.core.create_namespaced_secret(cluster.namespace, {"metadata": {"name": name}, "data": encoded})


def wait_promoted(cluster: Cluster, name: str, version: str, timeout: float = 60) -> None:
    def probe() -> bool:
        status = cluster.status(name)
        return status.get("phase") == "Succeeded" and status.get("stableVersion") == version

    cluster.wait_for(f"{version} promoted", probe, timeout=timeout)


def test_a_canary_and_a_rollback_are_told_once_each_to_spec_and_cluster_destinations(
    cluster: Cluster,
    deployment_controller: DeploymentController,
    operator_with: Callable[..., OperatorProcess],
    receiver: Receiver,
) -> None:
    # The operator-wide pair: a Slack-shaped destination whose URL (with its token) is in the Secret.
    secret(cluster, "modelrollout-notifications", {"slack-url": f"{receiver.url}/slack/{TOKEN}"})
    cluster.core.create_namespaced_config_map(
        cluster.namespace,
        {
            "metadata": {"name": "modelrollout-notifications"},
            "data": {"webhooks": "- name: team-slack\n  url: $slack-url\n  template: slack\n"},
        },
    )
    operator = operator_with("--operator-namespace", cluster.namespace)
    name = unique("notify")
    spec = rollout_spec(name, "1.0.0", [{"setWeight": 50}, {"analysis": {"metrics": ["quality"], "count": 2}}])
    spec["analysis"] = quality_metric(receiver.url)
    spec["notifications"] = {
        "webhooks": [
            {"name": "audit", "url": receiver.url + "/audit", "headers": [{"name": "X-Team", "value": "ml"}]},
            {
                "name": "teams",
                "url": receiver.url + "/teams",
                "template": "teams",
                "triggers": ["on-rollout-rolled-back"],
            },
        ]
    }
    receiver.json_for_get.update({"/quality/2.0.0": {"errorRate": 0.01}, "/quality/3.0.0": {"errorRate": 0.4}})
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    assert receiver.bodies() == []  # a first deployment is no rollout: nothing to tell

    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    wait_promoted(cluster, name, "2.0.0", timeout=120)
    receiver.wait_for("the promotion", lambda: triggers(receiver.bodies("/audit"))["on-rollout-promoted"] == 1)
    audit = receiver.bodies("/audit")
    assert triggers(audit) == {"on-rollout-started": 1, "on-step-completed": 2, "on-rollout-promoted": 1}
    promoted = next(body for body in audit if body["trigger"] == "on-rollout-promoted")
    assert promoted["kind"] == "ModelRolloutNotification"
    assert (promoted["rollout"], promoted["namespace"], promoted["stable"]) == (name, cluster.namespace, "2.0.0")
    assert receiver.headers("/audit")[0]["X-Team"] == "ml"
    slack_path = f"/slack/{TOKEN}"
    receiver.wait_for("Slack's copy", lambda: len(receiver.bodies(slack_path)) == 4)
    assert all("text" in body and "blocks" in body for body in receiver.bodies(slack_path))

    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "3.0.0"}})
    cluster.wait_for_phase(name, "RolledBack", timeout=120)
    receiver.wait_for("the rollback", lambda: len(receiver.bodies("/teams")) == 1)
    card = receiver.bodies("/teams")[0]
    assert card["@type"] == "MessageCard" and "rolled back" in card["title"]
    facts = {fact["name"]: fact["value"] for fact in card["sections"][0]["facts"]}
    assert facts["metric"] == "quality" and facts["value"] == "0.4" and facts["threshold"] == "max 0.05"
    receiver.wait_for("the rollback in audit", lambda: triggers(receiver.bodies("/audit"))["on-rollout-rolled-back"])
    rolled_back = next(b for b in receiver.bodies("/audit") if b["trigger"] == "on-rollout-rolled-back")
    assert (rolled_back["metric"], rolled_back["value"], rolled_back["candidate"]) == ("quality", "0.4", "3.0.0")

    def all_told() -> bool:
        status = cluster.status(name)
        return not status.get("notifications") and len(status.get("notified") or []) == 10

    cluster.wait_for("every message settled in status", all_told)
    outcomes = cluster.status(name)["notified"]
    assert {entry["outcome"] for entry in outcomes} == {"Delivered"}
    assert triggers(receiver.bodies("/audit"))["on-rollout-started"] == 2  # each sent once, never again
    # The token in the Secret's URL is nowhere but in the request itself.
    assert TOKEN not in json.dumps(cluster.rollout(name))
    assert all(TOKEN not in (event.message or "") for event in cluster.events(name))
    assert TOKEN not in operator.logs()


def test_a_receiver_that_is_down_never_holds_the_rollout_and_gets_each_message_once_it_is_up(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess
) -> None:
    down = Receiver(port=free_port())  # nothing listens there yet: connections are refused
    name = unique("down")
    spec = rollout_spec(name, "1.0.0", [{"setWeight": 50}], analysis={})
    spec["notifications"] = {"webhooks": [{"name": "audit", "url": down.url + "/audit", "maxAttempts": 10}]}
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    wait_promoted(cluster, name, "2.0.0")  # not held up by the receiver
    waiting = cluster.wait_for(
        "retries in status",
        lambda: [e for e in cluster.status(name).get("notifications") or [] if e["state"] == "Retrying"] or None,
    )
    assert "cannot connect" in waiting[0]["lastError"]
    down.start()
    try:
        down.wait_for("every message", lambda: len(down.bodies()) == 3)
        cluster.wait_for("nothing left to send", lambda: not cluster.status(name).get("notifications"))
        assert triggers(down.bodies()) == {"on-rollout-started": 1, "on-step-completed": 1, "on-rollout-promoted": 1}
        assert all(entry["attempts"] >= 2 for entry in cluster.status(name)["notified"])
    finally:
        down.stop()


def test_a_slow_receiver_never_holds_the_rollout(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess, receiver: Receiver
) -> None:
    name = unique("slow")
    spec = rollout_spec(name, "1.0.0", [{"setWeight": 25}, {"setWeight": 50}], analysis={})
    spec["notifications"] = {"webhooks": [{"name": "audit", "url": receiver.url + "/audit", "timeoutSeconds": 30}]}
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    receiver.released.clear()  # every answer waits until the test lets it go
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    wait_promoted(cluster, name, "2.0.0")
    receiver.wait_for("the promotion (still unanswered)", lambda: len(receiver.bodies()) == 4, timeout=20)
    assert all(entry["state"] == "Sending" for entry in cluster.status(name)["notifications"])
    receiver.released.set()
    cluster.wait_for("every message delivered", lambda: not cluster.status(name).get("notifications"))
    assert {entry["outcome"] for entry in cluster.status(name)["notified"]} == {"Delivered"}
    assert len(receiver.bodies()) == 4


def test_a_message_in_flight_when_the_operator_is_killed_is_not_sent_again(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess, receiver: Receiver
) -> None:
    name = unique("once")
    spec = rollout_spec(name, "1.0.0", [{"setWeight": 50}, {"pause": {}}], analysis={})
    spec["notifications"] = {"webhooks": [{"name": "audit", "url": receiver.url + "/audit", "timeoutSeconds": 30}]}
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    receiver.released.clear()
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    receiver.wait_for("the start (held)", lambda: triggers(receiver.bodies())["on-rollout-started"] == 1)
    operator.kill()  # while the receiver has the message and has not answered
    receiver.released.set()
    operator.start()
    cluster.wait_for_phase(name, "Paused", timeout=60)

    def settled() -> list[dict[str, Any]] | None:
        notified = cluster.status(name).get("notified") or []
        return [entry for entry in notified if entry["trigger"] == "on-rollout-started"] or None

    started = cluster.wait_for("the start's outcome", settled)
    assert started[0]["outcome"] == "Unknown"

    # The pause is told once, by the new operator, unless the killed one had already written it
    # Sending (the passes go on while a message is out: on a loaded machine the kill can come
    # after the pause); then it is Unknown and, like the start, never sent again.
    def pause_outcome() -> str | None:
        notified = cluster.status(name).get("notified") or []
        return next((entry["outcome"] for entry in notified if entry["trigger"] == "on-rollout-paused"), None)

    outcome = cluster.wait_for("the pause's outcome", pause_outcome)
    if outcome == "Delivered":
        receiver.wait_for("the pause", lambda: triggers(receiver.bodies())["on-rollout-paused"] == 1)
    else:
        assert outcome == "Unknown", outcome
    assert triggers(receiver.bodies())["on-rollout-paused"] <= 1
    assert triggers(receiver.bodies())["on-rollout-started"] == 1  # at most once, though nobody answered it
