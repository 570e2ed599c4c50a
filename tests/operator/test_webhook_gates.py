"""Webhook gates from the real operator process on the real API server (the chart's RBAC), against a
local HTTP receiver: a gate that says not yet (HTTP 403), one that is down, one that is slow, each
keep the rollout where it is; a yes lets it on; a rollback gate's yes rolls back; post-rollout is told
once. `modelrollout status` shows the gate and why it waits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.operator.test_canary import rollout_spec, unique
from tests.operator.test_notifications import wait_promoted
from tests.support.cluster import Cluster, DeploymentController
from tests.support.operator_process import OperatorProcess
from tests.support.receiver import Receiver, free_port

from modelrollout.cli import main as cli


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver().start()
    answers: dict[str, int] = {}
    served.status_for = lambda path, body: answers.get(path, 403)
    served.answers = answers  # type: ignore[attr-defined]
    try:
        yield served
    finally:
        served.stop()


def gate(name: str, kind: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "url": url, "interval": "1s", "timeoutSeconds": 2, **extra}


def gate_entry(cluster: Cluster, name: str, gate_name: str) -> dict[str, Any] | None:
    status = cluster.status(name)
    for entry in status.get("gates") or []:
        if entry["name"] == gate_name and entry.get("revision") == status.get("candidateRevision"):
            return dict(entry)
    return None


def test_confirm_gates_hold_the_rollout_until_they_say_yes_and_post_rollout_is_told_once(
    cluster: Cluster,
    deployment_controller: DeploymentController,
    operator: OperatorProcess,
    receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    answers: dict[str, int] = receiver.answers  # type: ignore[attr-defined]
    name = unique("gated")
    spec = rollout_spec(name, "1.0.0", [{"setWeight": 50}], analysis={})
    spec["webhooks"] = [
        gate("load-test", "confirm-rollout", receiver.url + "/start", metadata={"team": "ml"}),
        gate("change-window", "confirm-promotion", receiver.url + "/promote"),
        gate("done", "post-rollout", receiver.url + "/done"),
    ]
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})

    waiting = cluster.wait_for(
        "the confirm-rollout gate to say not yet",
        lambda: (e := gate_entry(cluster, name, "load-test")) and e["attempts"] >= 2 and e,
    )
    assert waiting["state"] == "Waiting" and "HTTP 403" in waiting["message"]
    assert cluster.replicas_by_version().get("2.0.0", 0) == 0  # the candidate is not even created
    assert "waiting for webhook gate 'load-test'" in cluster.status(name)["message"]
    payload = receiver.bodies("/start")[0]
    assert (payload["name"], payload["namespace"], payload["type"]) == (name, cluster.namespace, "confirm-rollout")
    assert payload["metadata"] == {"team": "ml"} and payload["candidate"] == "2.0.0"
    capsys.readouterr()
    assert cli(["status", name, "--kubeconfig", str(cluster.kubeconfig), "-n", cluster.namespace]) == 0
    shown = capsys.readouterr().out
    assert "load-test (confirm-rollout, rollout): waiting" in shown and "HTTP 403" in shown

    answers["/start"] = 200
    cluster.wait_for("the confirm-promotion gate", lambda: gate_entry(cluster, name, "change-window"), timeout=60)
    cluster.wait_for("a not yet from it", lambda: (gate_entry(cluster, name, "change-window") or {})["attempts"] >= 2)
    status = cluster.status(name)
    assert status["stableVersion"] == "1.0.0" and status["phase"] == "Progressing"
    assert gate_entry(cluster, name, "load-test")["state"] == "Open"  # type: ignore[index]

    answers["/promote"] = 200
    wait_promoted(cluster, name, "2.0.0")
    receiver.wait_for("the post-rollout call", lambda: len(receiver.bodies("/done")) == 1)
    done = receiver.bodies("/done")[0]
    assert (done["type"], done["phase"], done["name"]) == ("post-rollout", "Succeeded", name)
    reasons = cluster.event_reasons(name)
    assert reasons.count("GateWaiting") == 2 and reasons.count("GateOpened") == 2


def test_a_gate_that_is_down_or_slow_is_not_yet_and_a_rollback_gate_rolls_back(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess, receiver: Receiver
) -> None:
    answers: dict[str, int] = receiver.answers  # type: ignore[attr-defined]
    name = unique("rollback")
    down = f"http://127.0.0.1:{free_port()}/nobody"
    spec = rollout_spec(name, "1.0.0", [{"setWeight": 25}, {"setWeight": 50}, {"pause": {}}], analysis={})
    spec["webhooks"] = [
        gate("more-traffic", "confirm-traffic-increase", receiver.url + "/more"),
        gate("pager", "rollback", receiver.url + "/rollback"),
    ]
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")

    # Down: nothing listens on the gate's port.
    cluster.patch_spec(
        name,
        {
            "model": {"name": "fraud-scorer", "version": "2.0.0"},
            "webhooks": [gate("more-traffic", "confirm-traffic-increase", down), spec["webhooks"][1]],
        },
    )
    entry = cluster.wait_for(
        "the down gate", lambda: (e := gate_entry(cluster, name, "more-traffic")) and e["attempts"] >= 2 and e
    )
    assert "cannot connect" in entry["message"] and cluster.status(name)["weights"]["candidate"] == 0

    # Slow: the receiver holds its answer past the gate's timeout.
    receiver.released.clear()
    cluster.patch_spec(name, {"webhooks": spec["webhooks"]})
    entry = cluster.wait_for(
        "the slow gate",
        lambda: (e := gate_entry(cluster, name, "more-traffic")) and "no answer within" in e["message"] and e,
        timeout=60,
    )
    assert cluster.status(name)["weights"]["candidate"] == 0
    receiver.released.set()

    answers["/more"] = 200
    cluster.wait_for_phase(name, "Paused", timeout=60)  # at the pause step: 50% on the candidate
    assert cluster.status(name)["weights"]["candidate"] == 50
    assert len(receiver.bodies("/rollback")) >= 2  # asked all along, said no (403)
    answers["/rollback"] = 200
    rolled_back = cluster.wait_for_phase(name, "RolledBack", timeout=60)
    assert "webhook gate 'pager' (rollback) said roll back" in rolled_back["message"]
    assert "RollbackHook" in cluster.event_reasons(name)
    cluster.wait_for("the candidate scaled to zero", lambda: cluster.replicas_by_version().get("2.0.0") == 0)


def active_selects(cluster: Cluster, name: str) -> str | None:
    """The revision the rollout's entry Service (blue-green: the active Service) selects."""
    service = cluster.core.read_namespaced_service(name, cluster.namespace)
    assert service.spec is not None
    return dict(service.spec.selector or {}).get("modelrollout.io/revision")


def test_a_blue_green_whose_confirm_promotion_gate_says_no_stays_on_the_preview_until_it_says_yes(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess, receiver: Receiver
) -> None:
    answers: dict[str, int] = receiver.answers  # type: ignore[attr-defined]
    name = unique("bg-gated")
    spec = rollout_spec(name, "1.0.0", [], analysis={})
    spec["strategy"] = {"blueGreen": {"scaleDownDelaySeconds": 0}}  # autoPromotion: the switch is due at once
    spec["webhooks"] = [
        gate("load-test", "pre-rollout", receiver.url + "/start"),
        gate("change-window", "confirm-promotion", receiver.url + "/promote"),
    ]
    answers["/start"] = 200
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    blue = cluster.status(name)["stableRevision"]
    assert active_selects(cluster, name) == blue
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})

    waiting = cluster.wait_for(
        "the confirm-promotion gate to say not yet",
        lambda: (e := gate_entry(cluster, name, "change-window")) and e["attempts"] >= 2 and e,
        timeout=90,
    )
    assert waiting["state"] == "Waiting" and "HTTP 403" in waiting["message"]
    status = cluster.status(name)
    green = status["candidateRevision"]
    assert status["phase"] == "Progressing" and status["stage"] == "ReadyToSwitch", status
    assert gate_entry(cluster, name, "load-test")["state"] == "Open"  # type: ignore[index]
    assert cluster.replicas_by_version().get("2.0.0") == 4  # the preview is up at full size
    assert active_selects(cluster, name) == blue  # the active Service is unchanged
    assert status["stableVersion"] == "1.0.0" and status["weights"]["candidate"] == 0
    assert "waiting for webhook gate 'change-window'" in status["message"]
    assert receiver.bodies("/promote")[0]["type"] == "confirm-promotion"

    answers["/promote"] = 200
    wait_promoted(cluster, name, "2.0.0")
    assert active_selects(cluster, name) == green
    reasons = cluster.event_reasons(name)
    assert "Switched" in reasons and reasons.count("GateOpened") == 2
