"""kopf running for real (the `modelrollout run` process) against the API server, with a real
Prometheus: what a user sees in status, Events and Deployments."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.support.cluster import Cluster, DeploymentController
from tests.support.exporter import Exporter
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import PrometheusServer

from modelrollout.cli import main as cli

ERROR_RATIO = "model_error_ratio"


def rollout_spec(name: str, version: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "replicas": 4,
        "model": {"name": "fraud-scorer", "version": version},
        "template": {"spec": {"containers": [{"name": "server", "image": "reference-model-server:test"}]}},
        "strategy": {"canary": {"steps": steps}},
        "analysis": {
            "interval": "1s",
            "metrics": [
                {
                    "name": "error-rate",
                    "prometheus": {"query": f'{ERROR_RATIO}{{rollout="{{{{name}}}}",version="{{{{candidate}}}}"}}'},
                    "threshold": {"max": 0.05},
                }
            ],
        },
        **extra,
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_first_version_becomes_stable_with_owned_deployment_and_service(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess
) -> None:
    name = unique("scorer")
    cluster.create_rollout(name, rollout_spec(name, "1.0.0", [{"setWeight": 50}]))
    status = cluster.wait_for_phase(name, "Succeeded")
    assert status["stableVersion"] == "1.0.0"
    assert status["observedGeneration"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "Progressing": "False",
        "Degraded": "False",
        "Reconciling": "False",
        "Stalled": "False",
    }
    deployments = cluster.deployments()
    assert len(deployments) == 1
    deployment = next(iter(deployments.values()))
    assert deployment.spec.replicas == 4
    owner = deployment.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("ModelRollout", name, True)
    env = {item.name: item.value for item in deployment.spec.template.spec.containers[0].env}
    assert env["MODEL_VERSION"] == "1.0.0" and env["ROLLOUT_NAME"] == name
    service = cluster.core.read_namespaced_service(name, cluster.namespace)
    assert service.spec.selector == {"modelrollout.io/rollout": name}
    assert service.metadata.owner_references[0].name == name
    assert "Deployed" in cluster.event_reasons(name)


def test_canary_that_passes_is_promoted(
    cluster: Cluster,
    deployment_controller: DeploymentController,
    operator: OperatorProcess,
    shared_exporter: Exporter,
    prometheus_session: PrometheusServer,
) -> None:
    name = unique("good")
    steps = [{"setWeight": 50}, {"analysis": {"metrics": ["error-rate"], "count": 2, "interval": "1s"}}]
    cluster.create_rollout(name, rollout_spec(name, "1.0.0", steps))
    cluster.wait_for_phase(name, "Succeeded")
    shared_exporter.set(ERROR_RATIO, 0.01, rollout=name, version="2.0.0")
    prometheus_session.wait_for_value(f'{ERROR_RATIO}{{rollout="{name}",version="2.0.0"}}')
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    cluster.wait_for("the canary to start", lambda: cluster.status(name).get("candidateVersion") == "2.0.0")
    status = cluster.wait_for_phase(name, "Succeeded", timeout=90)
    assert status["stableVersion"] == "2.0.0"
    assert "candidateVersion" not in status
    assert status["weights"] == {"stable": 100, "candidate": 0, "mirror": 0, "headerRoute": False}
    assert cluster.replicas_by_version() == {"2.0.0": 4}
    reasons = cluster.event_reasons(name)
    for reason in ("RolloutStarted", "StepCompleted", "AnalysisSucceeded", "Promoted"):
        assert reason in reasons


def test_canary_whose_metric_breaches_is_rolled_back(
    cluster: Cluster,
    deployment_controller: DeploymentController,
    operator: OperatorProcess,
    shared_exporter: Exporter,
    prometheus_session: PrometheusServer,
) -> None:
    name = unique("bad")
    steps = [{"setWeight": 25}, {"pause": {"duration": "1h"}}]
    cluster.create_rollout(name, rollout_spec(name, "1.0.0", steps))
    cluster.wait_for_phase(name, "Succeeded")
    shared_exporter.set(ERROR_RATIO, 0.30, rollout=name, version="3.0.0")
    prometheus_session.wait_for_value(f'{ERROR_RATIO}{{rollout="{name}",version="3.0.0"}}')
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "3.0.0"}})
    status = cluster.wait_for_phase(name, "RolledBack", timeout=60)
    assert "error-rate" in status["message"] and "0.3 is not at most 0.05" in status["message"]
    assert status["weights"] == {"stable": 100, "candidate": 0, "mirror": 0, "headerRoute": False}
    assert status["stableVersion"] == "1.0.0"
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "RolledBack"
    cluster.wait_for("the candidate scaled to zero", lambda: cluster.replicas_by_version() == {"1.0.0": 4, "3.0.0": 0})
    failed = [event for event in cluster.events(name) if event.reason == "AnalysisFailed"]
    assert failed and failed[0].type == "Warning" and "0.3 is not at most 0.05" in failed[0].message
    measurements = status["backgroundAnalysis"]["metrics"][0]["measurements"]
    assert measurements[-1]["phase"] == "Failed" and measurements[-1]["value"] == 0.3
    assert "rolled back" in operator.logs()


def test_invalid_spec_is_reported_and_nothing_is_created(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess
) -> None:
    name = unique("invalid")
    cluster.create_rollout(name, rollout_spec(name, "1.0.0", [{"setWeight": 60}, {"setWeight": 30}]))
    status = cluster.wait_for_phase(name, "Failed")
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert (
        "spec.strategy.canary.steps[1].setWeight: must be greater than the previous weight (60)" in degraded["message"]
    )
    cluster.wait_for("the InvalidSpec event", lambda: "InvalidSpec" in cluster.event_reasons(name))
    assert cluster.deployments() == {}
    assert cluster.core.list_namespaced_service(cluster.namespace).items == []


def test_people_promote_and_abort_through_the_cli_without_touching_spec(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess
) -> None:
    name = unique("gated")
    cluster.create_rollout(name, rollout_spec(name, "1.0.0", [{"setWeight": 50}, {"pause": {}}], analysis={}))
    cluster.wait_for_phase(name, "Succeeded")
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    paused = cluster.wait_for_phase(name, "Paused")
    assert paused["pauseReason"] == "PauseStep"
    generation = cluster.rollout(name)["metadata"]["generation"]
    kube = ["--kubeconfig", str(cluster.kubeconfig), "-n", cluster.namespace]
    assert cli(["promote", name, *kube]) == 0
    cluster.wait_for_phase(name, "Succeeded")
    assert cluster.status(name)["stableVersion"] == "2.0.0"
    rollout = cluster.rollout(name)
    assert rollout["metadata"]["generation"] == generation  # spec untouched
    assert json.loads(rollout["metadata"]["annotations"]["modelrollout.io/command"])["action"] == "promote"

    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "3.0.0"}})
    cluster.wait_for_phase(name, "Paused")
    assert cli(["abort", name, *kube]) == 0
    status = cluster.wait_for_phase(name, "RolledBack")
    assert "aborted by a person" in status["message"]
    assert cli(["retry", name, *kube]) == 0
    cluster.wait_for_phase(name, "Paused")
    assert cli(["promote", "--full", name, *kube]) == 0
    assert cluster.wait_for_phase(name, "Succeeded")["stableVersion"] == "3.0.0"
    assert cli(["promote", "no-such-rollout", *kube]) == 3
