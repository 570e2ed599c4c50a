"""Fault 2: Prometheus stopped in the middle of a canary. Measurements become Error with a message
saying Prometheus is unreachable; with a high consecutiveErrorLimit the rollout waits (and never
promotes while Prometheus is down) and goes on when it is back; with a low one it rolls back with
AnalysisError. Each test has a Prometheus of its own: stopping the session's would hurt others."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.conftest import HeldDeploymentController, Operators, Recorder
from tests.faults.rollouts import ERROR_RATIO, canary_spec, counts, set_error_ratio, unique, wait_until
from tests.support.cluster import Cluster
from tests.support.exporter import Exporter, running_exporter
from tests.support.operator_passes import metrics_url, passes, serving_metrics, wait_for_passes
from tests.support.prometheus import PrometheusServer

OLD, NEW = "1.0.0", "2.0.0"
INTERVAL = 2.0
COUNT = 3


@pytest.fixture
def own_exporter() -> Iterator[Exporter]:
    with running_exporter() as exporter:
        yield exporter


@pytest.fixture
def own_prometheus(own_exporter: Exporter) -> Iterator[PrometheusServer]:
    server = PrometheusServer([own_exporter.target])
    try:
        server.start()
        yield server
    finally:
        server.close()


def _spec(name: str, prometheus: PrometheusServer, consecutive_error_limit: int, count: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"setWeight": 50},
        {"analysis": {"metrics": ["error-rate"], "count": count, "interval": f"{INTERVAL:g}s"}},
    ]
    spec = canary_spec(
        name,
        OLD,
        steps,
        consecutiveErrorLimit=consecutive_error_limit,
        prometheus={"address": prometheus.address},
    )
    spec["analysis"]["metrics"][0]["background"] = False  # only the analysis step measures
    return spec


def _errors(status: dict[str, Any]) -> int:
    metrics = (status.get("stepAnalysis") or {}).get("metrics") or [{}]
    return int(metrics[0].get("error", 0))


def _measurements(status: dict[str, Any]) -> list[dict[str, Any]]:
    analysis = status.get("stepAnalysis") or {}
    metrics = analysis.get("metrics") or [{}]
    return list(metrics[0].get("measurements") or [])


def _deliver(cluster: Cluster, name: str, spec: dict[str, Any], exporter: Exporter, prom: PrometheusServer) -> None:
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    set_error_ratio(exporter, prom, name, NEW, 0.01)


@pytest.mark.parametrize(
    "down_from",
    ["before-analysis", "after-first-measurement"],
)
def test_high_error_limit_waits_and_never_promotes_while_prometheus_is_down(
    cluster: Cluster,
    deployment_controller: HeldDeploymentController,
    operators: Operators,
    recorder: Recorder,
    own_exporter: Exporter,
    own_prometheus: PrometheusServer,
    down_from: str,
) -> None:
    name = unique("promdown")
    operators.new().start()
    _deliver(cluster, name, _spec(name, own_prometheus, 100, COUNT), own_exporter, own_prometheus)
    if down_from == "before-analysis":
        own_prometheus.stop(graceful=False)
        cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": NEW}})
    else:
        cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": NEW}})
        wait_until(
            "the first successful measurement",
            lambda: [m["phase"] for m in _measurements(cluster.status(name))] == ["Successful"],
        )
        own_prometheus.stop(graceful=False)

    cluster.wait_for(
        "an Error measurement",
        lambda: any(m["phase"] == "Error" for m in _measurements(cluster.status(name))),
        timeout=30,
    )
    errors = [m for m in _measurements(cluster.status(name)) if m["phase"] == "Error"]
    assert all("unreachable" in m["message"] and own_prometheus.address in m["message"] for m in errors), errors

    # Long past the time the step would have taken (an Error where each of its measurements and two
    # more would have been): still not promoted, still not rolled back.
    cluster.wait_for(
        f"{COUNT + 2} Error measurements",
        lambda: _errors(cluster.status(name)) >= COUNT + 2,
        timeout=30 + (COUNT + 2) * INTERVAL * 4,
    )
    seen = recorder.statuses_of(name)
    phases = [status.get("phase") for status in seen]
    promoted_while_down = any(s.get("phase") == "Succeeded" and s.get("stableVersion") == NEW for s in seen)
    assert not promoted_while_down, f"promoted while Prometheus was down; phases seen: {phases}"
    status = cluster.status(name)
    assert status["phase"] != "RolledBack", status["message"]
    assert status.get("candidateVersion") == NEW
    assert "Promoted" not in cluster.event_reasons(name)

    own_prometheus.start()
    # A rollout parked for a person would never go on by itself: say so instead of timing out.
    status = cluster.status(name)
    assert status.get("pauseReason") != "Inconclusive", f"paused for a person: {status.get('message')}"
    final = cluster.wait_for_phase(name, "Succeeded", timeout=60)
    assert final["stableVersion"] == NEW
    assert counts(cluster, name)["Promoted"] == 1
    # The gate passed on measurements taken; the ones Prometheus could not answer are said apart,
    # neither counted as failures nor hidden ("error-rate 3/9 ok" read as six failures).
    passed = [event.message for event in cluster.events(name) if event.reason == "AnalysisSucceeded"]
    assert len(passed) == 1, passed
    tally = re.fullmatch(
        rf"step 1: every metric passed \(error-rate {COUNT} ok, (\d+) could not be measured \(Error\) of (\d+)\)",
        passed[0],
    )
    assert tally is not None and int(tally[1]) >= 1 and int(tally[2]) == COUNT + int(tally[1]), passed[0]


def test_low_error_limit_rolls_back_with_analysis_error_and_stays_rolled_back(
    cluster: Cluster,
    deployment_controller: HeldDeploymentController,
    operators: Operators,
    own_exporter: Exporter,
    own_prometheus: PrometheusServer,
) -> None:
    name = unique("promdown")
    operator = operators.new(extra_args=serving_metrics()).start()
    _deliver(cluster, name, _spec(name, own_prometheus, 1, 5), own_exporter, own_prometheus)
    own_prometheus.stop(graceful=False)
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": NEW}})

    status = cluster.wait_for_phase(name, "RolledBack", timeout=60)
    assert "consecutive errors, more than consecutiveErrorLimit 1" in status["message"], status["message"]
    assert "unreachable" in status["message"]
    measurements = _measurements(status)
    assert [m["phase"] for m in measurements] == ["Error", "Error"]
    assert all("unreachable" in m["message"] for m in measurements)
    assert status["stableVersion"] == OLD and status["weights"]["candidate"] == 0
    cluster.wait_for("the AnalysisError event", lambda: "AnalysisError" in cluster.event_reasons(name))
    event = next(e for e in cluster.events(name) if e.reason == "AnalysisError")
    assert event.type == "Warning" and "unreachable" in event.message

    # Prometheus back (and answering well): a rolled-back version stays rolled back.
    own_prometheus.start()
    own_prometheus.wait_for_value(f'{ERROR_RATIO}{{rollout="{name}",version="{NEW}"}}')
    url = metrics_url(operator)
    wait_for_passes(url, {name: (passes(url) or {}).get(name, 0)})  # it has looked again since
    after = cluster.status(name)
    assert (after["phase"], after["stableVersion"]) == ("RolledBack", OLD)
    assert "Promoted" not in cluster.event_reasons(name)
