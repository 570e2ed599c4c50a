"""Fault 3: the API server answers 409, 429 (with Retry-After) and 500 to a share of the operator's
requests for a whole canary. The operator retries with backoff and ends where a fault-free run ends:
the same Events, each step completed once, the new version stable, and no crash.

One operator watches two namespaces on one API server; faults are injected in one of them only, so
the other is the fault-free run to compare with (and the test's own requests there are unharmed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes.client.rest import ApiException

from tests.faults.conftest import Faulty, HeldDeploymentController, Operators, Recorder, pods_for
from tests.faults.rollouts import canary_spec, counts, messages, monotonic, set_error_ratio, unique
from tests.support.cluster import Cluster, release_namespace
from tests.support.exporter import Exporter
from tests.support.prometheus import PrometheusServer

OLD, NEW = "1.0.0", "2.0.0"
STEPS: list[dict[str, Any]] = [
    {"setWeight": 25},
    {"analysis": {"metrics": ["error-rate"], "count": 2, "interval": "1s"}},
    {"setWeight": 50},
    {"pause": {"duration": "2s"}},
    {"setWeight": 75},
]
WRITES = ["create", "patch", "delete"]
OPERATOR_WRITES = ["modelrollouts.modelrollout.io/status", "deployments.apps", "services"]
T = TypeVar("T")


def _retrying(call: Callable[[], T], attempts: int = 20) -> T:
    """The test's own requests in the faulty namespace, retried as kubectl's user would."""
    for _ in range(attempts - 1):
        try:
            return call()
        except ApiException as error:
            if error.status not in (409, 429, 500):
                raise
            time.sleep(0.2)
    return call()


def _wait_promoted(cluster: Cluster, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status = cluster.status(name)
        return status if status.get("phase") == "Succeeded" and status.get("stableVersion") == NEW else None

    return cluster.wait_for(f"{name} to promote {NEW}", probe, timeout=150)


def test_operator_rides_out_409_429_and_500(
    faulty: Faulty,
    deployment_controller: HeldDeploymentController,
    operators: Operators,
    recorder: Recorder,
    shared_exporter: Exporter,
    prometheus_session: PrometheusServer,
) -> None:
    spoiled = faulty.cluster
    clean = faulty.another_namespace()
    clean_controller = pods_for(clean).start()
    operator = operators.new(extra_args=["--namespace", clean.namespace, "--verbose"]).start()
    try:
        names = {id(spoiled): unique("faulty"), id(clean): unique("clean")}
        for cluster in (spoiled, clean):
            name = names[id(cluster)]
            cluster.create_rollout(name, canary_spec(name, OLD, STEPS))
            set_error_ratio(shared_exporter, prometheus_session, name, NEW, 0.01)
        for cluster in (spoiled, clean):
            cluster.wait_for_phase(names[id(cluster)], "Succeeded")

        only_there = {"namespaces": [spoiled.namespace]}
        # One of each for certain (the next status writes), then a share at random: the operator
        # makes few writes per rollout, and 10 % of them can miss one kind of fault altogether.
        for status in (409, 429, 500):
            faulty.inject(status, limit=1, verbs=["patch"], resources=[OPERATOR_WRITES[0]], **only_there)
        faulty.inject(409, ratio=0.1, verbs=["patch"], resources=OPERATOR_WRITES, **only_there)
        faulty.inject(429, ratio=0.1, verbs=WRITES, resources=[*OPERATOR_WRITES, "events"], retry_after=1, **only_there)
        faulty.inject(
            500,
            ratio=0.1,
            verbs=[*WRITES, "list", "watch"],
            resources=[*OPERATOR_WRITES, "events", "modelrollouts.modelrollout.io"],
            **only_there,
        )
        for cluster in (spoiled, clean):
            name = names[id(cluster)]
            _retrying(lambda c=cluster, n=name: c.patch_spec(n, {"model": {"name": "fraud-scorer", "version": NEW}}))

        finals = {}
        for cluster in (spoiled, clean):
            name = names[id(cluster)]
            finals[id(cluster)] = _wait_promoted(cluster, name)
            cluster.wait_for(f"{name}'s Promoted event", lambda c=cluster, n=name: "Promoted" in c.event_reasons(n))
        injected = faulty.injected()
        faulty.clear_faults()
    finally:
        clean_controller.stop()
        release_namespace(clean)

    faulty_name, clean_name = names[id(spoiled)], names[id(clean)]
    final = finals[id(spoiled)]
    assert final["stableVersion"] == NEW and "candidateVersion" not in final
    assert final["weights"] == finals[id(clean)]["weights"]
    assert {c["type"]: c["status"] for c in final["conditions"]} == {
        c["type"]: c["status"] for c in finals[id(clean)]["conditions"]
    }
    assert [d.spec.replicas for d in spoiled.deployments().values()] == [4]
    assert spoiled.core.read_namespaced_service(faulty_name, spoiled.namespace).spec.selector == {
        "modelrollout.io/rollout": faulty_name
    }

    # The same Events as the fault-free run, each step completed once.
    assert counts(spoiled, faulty_name) == counts(clean, clean_name)
    completed = sorted(messages(spoiled, faulty_name, "StepCompleted"))  # retried POSTs may land out of order
    assert completed == sorted(messages(clean, clean_name, "StepCompleted"))
    assert len(completed) == len(set(completed)) == len(STEPS)

    candidate = recorder.replicas_of(faulty_name, NEW)
    assert monotonic(candidate), f"the candidate was scaled back down: {candidate}"

    # Faults really were served, and the operator retried them rather than giving up or crashing.
    assert all(injected.get(status, 0) > 0 for status in (409, 429, 500)), injected
    assert operator.alive
    logs = operator.logs()
    assert "retrying PATCH" in logs  # the operator's own client, with backoff
    # kopf's own requests (its finalizer patch, Event posts) are few: whether a fault lands on one is
    # chance, so its retries are not asserted; the same end state above is what proves they worked.
    assert "reconcile failed" not in logs
