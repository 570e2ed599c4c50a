"""Which watch events wake a rollout's daemon: changes it must act on, never the echo of its own write."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from modelrollout.handlers import deployment_changed
from modelrollout.runtime.cache import OwnWrites
from modelrollout.runtime.wakeups import WakeUps
from modelrollout.vocabulary.names import REVISION_LABEL, ROLLOUT_LABEL, VERSION_LABEL

NAMESPACE, ROLLOUT, REVISION = "ml", "fraud-scorer", "a1b2c3d4e5"


def deployment(replicas: int, ready: int, resource_version: int) -> dict[str, Any]:
    labels = {ROLLOUT_LABEL: ROLLOUT, REVISION_LABEL: REVISION, VERSION_LABEL: "2.0.0"}
    return {
        "metadata": {"name": f"{ROLLOUT}-{REVISION}", "labels": labels, "resourceVersion": str(resource_version)},
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready},
    }


WAKEUPS = WakeUps()


def woken_by(written: OwnWrites, body: dict[str, Any], kind: str = "MODIFIED") -> bool:
    wake = WAKEUPS.get(NAMESPACE, ROLLOUT)
    wake.clear()
    asyncio.run(
        deployment_changed(
            type=kind,
            namespace=NAMESPACE,
            name=body["metadata"]["name"],
            labels=body["metadata"]["labels"],
            body=body,  # type: ignore[arg-type]
            memo=SimpleNamespace(runtime=SimpleNamespace(written=written, wakeups=WAKEUPS)),  # type: ignore[arg-type]
        )
    )
    return wake.is_set()


def forget() -> None:
    WAKEUPS.forget(NAMESPACE, ROLLOUT)
    WAKEUPS.changed(("deployment", NAMESPACE, f"{ROLLOUT}-{REVISION}"), (), gone=True)


def test_the_echo_of_our_scale_write_does_not_wake_but_readiness_and_deletion_do() -> None:
    written = OwnWrites()
    try:
        assert woken_by(written, deployment(replicas=1, ready=1, resource_version=10))
        # The operator scales to 2; the API server answers with resourceVersion 11.
        scaled = deployment(replicas=2, ready=1, resource_version=11)
        written.deployment((NAMESPACE, ROLLOUT), REVISION, scaled)
        assert not woken_by(written, scaled), "the watch event of our own write"
        # Someone else's change to the same object, then the pods becoming ready: both wake.
        assert woken_by(written, deployment(replicas=3, ready=1, resource_version=12))
        assert woken_by(written, deployment(replicas=3, ready=3, resource_version=13))
        assert woken_by(written, deployment(replicas=3, ready=3, resource_version=14), kind="DELETED")
    finally:
        forget()


def test_an_event_older_than_our_write_still_wakes() -> None:
    """The controller's readiness update can reach the watch after our write was answered."""
    written = OwnWrites()
    try:
        assert woken_by(written, deployment(replicas=1, ready=0, resource_version=20))
        written.deployment((NAMESPACE, ROLLOUT), REVISION, deployment(replicas=2, ready=1, resource_version=22))
        assert woken_by(written, deployment(replicas=1, ready=1, resource_version=21))
    finally:
        forget()
