"""The operator killed (SIGKILL) in the middle of a rollout continues from its status on restart."""

from __future__ import annotations

from collections import Counter

import pytest
from tests.operator.test_canary import rollout_spec, unique
from tests.support.cluster import Cluster, DeploymentController
from tests.support.operator_process import OperatorProcess

from modelrollout.cli import main as cli

STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "3s"}},
    {"setWeight": 50},
    {"pause": {}},
    {"setWeight": 75},
]


@pytest.mark.parametrize("kill_at", ["after-first-weight", "in-timed-pause", "in-gate"])
def test_sigkill_mid_rollout_resumes_without_repeating_steps(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess, kill_at: str
) -> None:
    name = unique("restart")
    cluster.create_rollout(name, rollout_spec(name, "1.0.0", STEPS, analysis={}))
    cluster.wait_for_phase(name, "Succeeded")
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    wanted_step = {"after-first-weight": 1, "in-timed-pause": 1, "in-gate": 3}[kill_at]
    cluster.wait_for(
        f"step {wanted_step}", lambda: cluster.status(name).get("currentStepIndex") == wanted_step, timeout=30
    )
    if kill_at == "in-gate":
        cluster.wait_for_phase(name, "Paused")
    before = cluster.status(name)
    operator.kill()
    assert cluster.status(name) == before  # nothing in the cluster moved while it was down
    operator.start()
    if kill_at == "in-gate":
        # Back from the dead, it still waits for a person; killed again, it still does.
        operator.wait_for_log("Activity 'start' succeeded", timeout=30)
        assert cluster.wait_for_phase(name, "Paused")["currentStepIndex"] == 3
        operator.kill()
        operator.start()
    cluster.wait_for_phase(name, "Paused", timeout=30)
    assert cli(["promote", name, "--kubeconfig", str(cluster.kubeconfig), "-n", cluster.namespace]) == 0
    status = cluster.wait_for_phase(name, "Succeeded", timeout=60)
    assert status["stableVersion"] == "2.0.0"
    counts = Counter(cluster.event_reasons(name))
    assert counts["RolloutStarted"] == 1
    assert counts["StepCompleted"] == len(STEPS)  # every step completed exactly once
    assert counts["Promoted"] == 1


def test_candidate_that_never_becomes_ready_is_rolled_back_at_the_deadline(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess
) -> None:
    name = unique("deadline")
    spec = rollout_spec(name, "1.0.0", [{"setWeight": 50}], analysis={}, progressDeadlineSeconds=3)
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    deployment_controller.broken_versions.add("2.0.0")
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    status = cluster.wait_for_phase(name, "RolledBack", timeout=30)
    assert "0/2 replicas ready" in status["message"] and "progressDeadlineSeconds 3" in status["message"]
    assert "ProgressDeadlineExceeded" in cluster.event_reasons(name)
    cluster.wait_for("the candidate scaled to zero", lambda: cluster.replicas_by_version() == {"1.0.0": 4, "2.0.0": 0})
