"""A dry-run metric on the real operator, Prometheus and control plane: it is measured and fails, status
shows it as a dry run, a Warning Event says so, and the rollout is promoted all the same."""

from __future__ import annotations

from tests.operator.test_canary import ERROR_RATIO, rollout_spec, unique
from tests.support.cluster import Cluster, DeploymentController
from tests.support.exporter import Exporter
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import PrometheusServer

LATENCY = "model_p99_seconds"


def test_a_failing_dry_run_metric_never_stops_a_rollout(
    cluster: Cluster,
    deployment_controller: DeploymentController,
    operator: OperatorProcess,
    shared_exporter: Exporter,
    prometheus_session: PrometheusServer,
) -> None:
    name = unique("dry")
    steps = [{"setWeight": 50}, {"analysis": {"metrics": ["error-rate", "p99-latency"], "count": 2, "interval": "1s"}}]
    spec = rollout_spec(name, "1.0.0", steps)
    spec["analysis"]["metrics"].append(
        {
            "name": "p99-latency",
            "prometheus": {"query": f'{LATENCY}{{rollout="{{{{name}}}}",version="{{{{candidate}}}}"}}'},
            "threshold": {"max": 0.25},
            "dryRun": True,
        }
    )
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    shared_exporter.set(ERROR_RATIO, 0.01, rollout=name, version="2.0.0")
    shared_exporter.set(LATENCY, 0.9, rollout=name, version="2.0.0")  # far over its threshold
    prometheus_session.wait_for_value(f'{ERROR_RATIO}{{rollout="{name}",version="2.0.0"}}')
    prometheus_session.wait_for_value(f'{LATENCY}{{rollout="{name}",version="2.0.0"}}')
    with cluster.status_history(name) as history:
        cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
        cluster.wait_for("the canary to start", lambda: cluster.status(name).get("candidateVersion") == "2.0.0")
        status = cluster.wait_for_phase(name, "Succeeded", timeout=120)
    assert status["stableVersion"] == "2.0.0"

    def dry_entries(kind: str) -> list[dict[str, object]]:
        return [
            metric
            for seen in history
            for metric in (seen.get(kind) or {}).get("metrics", [])
            if metric["name"] == "p99-latency"
        ]

    step = dry_entries("stepAnalysis")
    assert step, "the step analysis never showed the dry-run metric"
    assert all(entry.get("dryRun") is True for entry in step)
    assert step[-1]["phase"] == "Failed" and "0.9 is not at most 0.25" in str(step[-1]["message"])

    events = cluster.events(name)
    dry = [event for event in events if event.reason == "DryRunMetricFailed"]
    assert dry and dry[0].type == "Warning"
    assert "'p99-latency'" in dry[0].message and "dry run" in dry[0].message
    reasons = [event.reason for event in events]
    assert "AnalysisSucceeded" in reasons and "Promoted" in reasons
    assert "AnalysisFailed" not in reasons and "RolledBack" not in reasons
