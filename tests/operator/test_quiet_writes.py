"""Quiet background measurements are written in batches; anything that changes a verdict at once.

A background measurement that passes changes nothing a decision reads, yet writing each one was most
of a large fleet's status writes (bench/scale.py). The operator holds such measurements back for up
to `--quiet-write-seconds` and writes them with the next change: here 6 s, with a measurement every
second, and then a breach, which is written (with every held measurement before it) in the rollback."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from tests.operator.test_canary import ERROR_RATIO, rollout_spec, unique
from tests.support.cluster import Cluster, DeploymentController
from tests.support.exporter import Exporter
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import PrometheusServer

QUIET_SECONDS = 6


def background(status: dict[str, Any]) -> dict[str, Any]:
    metrics = (status.get("backgroundAnalysis") or {}).get("metrics") or [{}]
    return dict(metrics[0])


def jumps_of(history: list[dict[str, Any]]) -> list[int]:
    """By how many measurements the background count grew from one written status to the next."""
    counts = [background(written).get("count", 0) for written in list(history) if written.get("backgroundAnalysis")]
    return [after - before for before, after in itertools.pairwise(counts)]


def test_passing_measurements_are_written_in_batches_and_a_breach_at_once(
    cluster: Cluster,
    deployment_controller: DeploymentController,
    shared_exporter: Exporter,
    prometheus_session: PrometheusServer,
    operator_with: Callable[..., OperatorProcess],
) -> None:
    operator_with("--quiet-write-seconds", str(QUIET_SECONDS))
    name = unique("quiet")
    steps = [{"setWeight": 25}, {"pause": {"duration": "1h"}}]
    cluster.create_rollout(name, rollout_spec(name, "1.0.0", steps))
    cluster.wait_for_phase(name, "Succeeded")
    series = f'{ERROR_RATIO}{{rollout="{name}",version="2.0.0"}}'
    shared_exporter.set(ERROR_RATIO, 0.01, rollout=name, version="2.0.0")
    prometheus_session.wait_for_value(series)
    with cluster.status_history(name) as history:
        cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
        # Wait for what is asserted below, a write that brought several held measurements at once,
        # not for a number of measurements: while the canary settles (pods becoming ready move the
        # weights), every pass changes status and is written at once, so on a slow machine the first
        # measurements went out one by one and the breach came before any batch.
        cluster.wait_for(
            "a batch of passing measurements",
            lambda: (
                max(jumps_of(history), default=0) >= 3
                and background(cluster.status(name)).get("successful", 0) >= QUIET_SECONDS
            ),
            timeout=120,
        )
        shared_exporter.set(ERROR_RATIO, 0.30, rollout=name, version="2.0.0")
        prometheus_session.wait_for_value(series, lambda value: value > 0.2)
        status = cluster.wait_for_phase(name, "RolledBack", timeout=60)
        # The watch runs in a thread of its own: leave only once it has seen what a GET just did.
        cluster.wait_for(
            "the watch to see the rollback", lambda: any(written.get("phase") == "RolledBack" for written in history)
        )

    # The passing measurements reached status several at a time, not one write each.
    assert max(jumps_of(history)) >= 3, history
    # The breach was not held: the first status that shows it is the rollback.
    first_failed = next(written for written in history if background(written).get("failed"))
    assert first_failed["phase"] == "RolledBack", first_failed
    # Nothing held was lost: the rollback's write carries every measurement, in order, the breach last.
    result = background(status)
    assert result["failed"] == 1 and result["successful"] == result["count"] - 1 >= QUIET_SECONDS, result
    phases = [m["phase"] for m in result["measurements"]]
    assert phases[-1] == "Failed" and set(phases[:-1]) == {"Successful"}, phases
    kept = result["measurements"]
    assert all(a["at"] < b["at"] for a, b in itertools.pairwise(kept)), kept
    assert "0.3 is not at most 0.05" in status["message"]
