"""Fault 1: the operator SIGKILLed at every phase boundary and in the middle of an analysis, then
restarted. Every rollout goes on from where its status says it was: the user sees each step
completed once, one RolloutStarted, at most one Promoted, the candidate's Deployment never scaled
back down before promotion or rollback (no second weight bump), and no rollout left behind."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from modelrollout.cli import main as cli
from tests.faults.conftest import Faulty, HeldDeploymentController, Operators, Recorder, replicas_by_version
from tests.faults.rollouts import (
    blue_green_spec,
    canary_spec,
    counts,
    messages,
    monotonic,
    set_error_ratio,
    unique,
    wait_until,
)
from tests.support.cluster import Cluster
from tests.support.exporter import Exporter
from tests.support.operator_passes import metrics_url, serving_metrics, wait_for_passes
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import PrometheusServer

OLD, NEW = "1.0.0", "2.0.0"
ANALYSIS_STEP = 2
PAUSE_SECONDS = 3
CANARY_STEPS: list[dict[str, Any]] = [
    {"setWeight": 25},
    {"pause": {"duration": f"{PAUSE_SECONDS}s"}},
    {"analysis": {"metrics": ["error-rate"], "count": 3, "interval": "1s"}},
    {"setWeight": 50},
    {"pause": {}},
]
# Another rollout, parked at a gate while the operator dies: it must still be there, and be driven on.
BYSTANDER_STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}]
GOOD, BAD = 0.01, 0.30


def _status(cluster: Cluster, name: str) -> dict[str, Any]:
    return cluster.status(name)


def _step_count(status: dict[str, Any], index: int | str) -> int | None:
    """The first metric's count of the analysis of a canary step (its index) or blue-green stage (its name)."""
    analysis = status.get("stepAnalysis") or {}
    at = analysis.get("stepIndex") if isinstance(index, int) else analysis.get("stage")
    if at != index or not analysis.get("metrics"):
        return None
    return int(analysis["metrics"][0].get("count", 0))


def _start_rollouts(
    cluster: Cluster,
    exporter: Exporter,
    prometheus: PrometheusServer,
    main: str,
    main_spec: dict[str, Any],
    bystander: str,
    candidate_ratio: float,
) -> None:
    """Both rollouts settle on OLD; the bystander goes to its gate, then the main one starts NEW."""
    cluster.create_rollout(main, main_spec)
    cluster.create_rollout(bystander, canary_spec(bystander, OLD, BYSTANDER_STEPS))
    for name in (main, bystander):
        cluster.wait_for_phase(name, "Succeeded", timeout=60)
    set_error_ratio(exporter, prometheus, main, NEW, candidate_ratio)
    set_error_ratio(exporter, prometheus, bystander, NEW, GOOD)
    cluster.patch_spec(bystander, {"model": {"name": "fraud-scorer", "version": NEW}})
    cluster.wait_for_phase(bystander, "Paused", timeout=60)
    _wait_event(cluster, bystander, "Paused")
    cluster.patch_spec(main, {"model": {"name": "fraud-scorer", "version": NEW}})


def _wait_event(cluster: Cluster, name: str, reason: str, text: str = "") -> None:
    """Events are posted after the status write that explains them: a kill point is reached only once
    its event is out (losing it to the kill is a fault of its own: see test_events_survive_sigkill)."""
    cluster.wait_for(
        f"a {reason} event of {name}",
        lambda: any(text in message for message in messages(cluster, name, reason)),
        timeout=60,
    )


def _wait_restarted(operator: OperatorProcess, *names: str) -> None:
    """Until the restarted process has done a whole pass over each of `names` (its own /metrics
    say so): the pass that would do something wrong with what it read is the first one."""
    wait_until(
        "the operator's start",
        lambda: operator.logs().count("Activity 'start' succeeded") >= operator.starts,
        interval=0.1,
    )
    wait_for_passes(metrics_url(operator), dict.fromkeys(names, 0))


def _wait_for_the_pause_to_end(cluster: Cluster, name: str, duration: float) -> None:
    """Until the current step (a timed pause) would have ended, by the start time status records."""
    started = datetime.fromisoformat(_status(cluster, name)["stepStartedAt"].replace("Z", "+00:00")).timestamp()
    wait_until("the timed pause's end", lambda: time.time() > started + duration, interval=0.1)


def _assert_bystander_unharmed(cluster: Cluster, bystander: str) -> None:
    status = cluster.status(bystander)
    assert (status["phase"], status["pauseReason"], status["currentStepIndex"]) == ("Paused", "PauseStep", 1)
    assert cli(["promote", bystander, "--kubeconfig", str(cluster.kubeconfig), "-n", cluster.namespace]) == 0
    status = cluster.wait_for_phase(bystander, "Succeeded", timeout=60)
    assert status["stableVersion"] == NEW
    cluster.wait_for(f"{bystander}'s Promoted event", lambda: "Promoted" in cluster.event_reasons(bystander))
    seen = counts(cluster, bystander)
    assert (seen["RolloutStarted"], seen["StepCompleted"], seen["Promoted"]) == (1, len(BYSTANDER_STEPS), 1)


CANARY_POINTS = ["after-first-weight", "in-timed-pause", "mid-analysis", "at-gate", "in-promotion", "after-rollback"]


@pytest.mark.parametrize("kill_at", CANARY_POINTS)
def test_canary_survives_sigkill(
    cluster: Cluster,
    deployment_controller: HeldDeploymentController,
    operators: Operators,
    recorder: Recorder,
    shared_exporter: Exporter,
    prometheus_session: PrometheusServer,
    kill_at: str,
) -> None:
    name, bystander = unique("canary"), unique("bystander")
    operator = operators.new(extra_args=serving_metrics()).start()
    rolls_back = kill_at == "after-rollback"
    _start_rollouts(
        cluster,
        shared_exporter,
        prometheus_session,
        name,
        canary_spec(name, OLD, CANARY_STEPS),
        bystander,
        BAD if rolls_back else GOOD,
    )
    kube = ["--kubeconfig", str(cluster.kubeconfig), "-n", cluster.namespace]

    def at(index: int) -> bool:
        return _status(cluster, name).get("currentStepIndex") == index

    if kill_at == "after-first-weight":
        wait_until("step 0 to complete", lambda: at(1))
        _wait_event(cluster, name, "StepCompleted", "step 0 ")
    elif kill_at == "in-timed-pause":
        wait_until("the timed pause", lambda: at(1))
        _wait_event(cluster, name, "StepCompleted", "step 0 ")
    elif kill_at == "mid-analysis":
        wait_until("the first measurement of the analysis step", lambda: _step_count(_status(cluster, name), 2) == 1)
        _wait_event(cluster, name, "AnalysisStarted")
    elif kill_at in ("at-gate", "in-promotion"):
        wait_until("the gate", lambda: _status(cluster, name).get("pauseReason") == "PauseStep")
        _wait_event(cluster, name, "Paused")
        if kill_at == "in-promotion":
            deployment_controller.held.add(NEW)  # the candidate's new pods take their time
            assert cli(["promote", name, *kube]) == 0
            wait_until("the promotion", lambda: _status(cluster, name).get("stage") == "Promoting")
            _wait_event(cluster, name, "Promoting")
    else:
        wait_until("the rollback", lambda: _status(cluster, name).get("phase") == "RolledBack")
        _wait_event(cluster, name, "AnalysisFailed")
    before = _status(cluster, name)
    operator.kill()
    if kill_at == "in-timed-pause":
        _wait_for_the_pause_to_end(cluster, name, PAUSE_SECONDS)  # while nobody is watching
    operator.start()

    if kill_at == "at-gate":
        _wait_restarted(operator, name, bystander)
        after = _status(cluster, name)
        assert (after["phase"], after["pauseReason"], after["currentStepIndex"]) == ("Paused", "PauseStep", 4)
        assert cli(["promote", name, *kube]) == 0
    elif kill_at == "in-promotion":
        _wait_restarted(operator, name, bystander)
        assert _status(cluster, name).get("stage") == "Promoting"
        deployment_controller.held.clear()
    elif kill_at == "after-rollback":
        _wait_restarted(operator, name, bystander)
    else:
        wait_until("the gate", lambda: _status(cluster, name).get("pauseReason") == "PauseStep", timeout=60)
        assert cli(["promote", name, *kube]) == 0

    final = cluster.wait_for_phase(name, "RolledBack" if rolls_back else "Succeeded", timeout=60)
    _assert_bystander_unharmed(cluster, bystander)
    if rolls_back:
        assert final["stableVersion"] == OLD and final["weights"]["candidate"] == 0
        assert final["message"] == before["message"]  # the restart did not judge it again
        cluster.wait_for("the candidate scaled to zero", lambda: replicas_by_version(cluster, name) == {OLD: 4, NEW: 0})
    else:
        assert final["stableVersion"] == NEW
        cluster.wait_for("the Promoted event", lambda: "Promoted" in cluster.event_reasons(name))
        cluster.wait_for("the old version removed", lambda: replicas_by_version(cluster, name) == {NEW: 4})

    seen = counts(cluster, name)
    completed = messages(cluster, name, "StepCompleted")
    assert seen["RolloutStarted"] == 1
    assert len(completed) == len(set(completed)), f"a step completed twice: {completed}"
    assert seen["Promoted"] <= 1
    if rolls_back:
        assert seen["Promoted"] == 0 and seen["Promoting"] == 0
        assert seen["AnalysisFailed"] == 1
    else:
        assert len(completed) == len(CANARY_STEPS)
        assert (seen["Promoting"], seen["Promoted"], seen["AnalysisStarted"], seen["AnalysisSucceeded"]) == (1, 1, 1, 1)

    candidate = recorder.replicas_of(name, NEW)
    until_end = candidate[: candidate.index(0)] if rolls_back and 0 in candidate else candidate
    assert until_end and monotonic(until_end), f"candidate replicas went back down: {candidate}"
    if rolls_back:
        assert candidate[-1] == 0
    else:
        stable = recorder.replicas_of(name, OLD)
        from_full = stable[stable.index(4) :]
        assert monotonic([count for count in from_full if count >= 0], increasing=False), f"stable: {stable}"
        # Measurements of the analysis step: never started over, three in all.
        taken = [c for c in (_step_count(s, ANALYSIS_STEP) for s in recorder.statuses_of(name)) if c is not None]
        assert taken and monotonic(taken) and max(taken) <= 3, f"analysis step counts seen: {taken}"
        assert messages(cluster, name, "AnalysisSucceeded") == ["step 2: every metric passed (error-rate 3/3 ok)"]


BG_POINTS = ["in-preview-analysis", "switched-before-scale-down"]


@pytest.mark.parametrize("kill_at", BG_POINTS)
def test_blue_green_survives_sigkill(
    cluster: Cluster,
    deployment_controller: HeldDeploymentController,
    operators: Operators,
    recorder: Recorder,
    shared_exporter: Exporter,
    prometheus_session: PrometheusServer,
    kill_at: str,
) -> None:
    name, bystander = unique("bluegreen"), unique("bystander")
    operator = operators.new(extra_args=serving_metrics()).start()
    spec = blue_green_spec(
        name,
        OLD,
        prePromotionAnalysis={"metrics": ["error-rate"], "count": 3, "interval": "1s"},
        postPromotionAnalysis={"metrics": ["error-rate"], "count": 2, "interval": "1s"},
        scaleDownDelaySeconds=4,
    )
    _start_rollouts(cluster, shared_exporter, prometheus_session, name, spec, bystander, GOOD)
    if kill_at == "in-preview-analysis":
        wait_until(
            "the first pre-promotion measurement",
            lambda: _step_count(_status(cluster, name), "PrePromotionAnalysis") == 1,
        )
        _wait_event(cluster, name, "AnalysisStarted")
        assert replicas_by_version(cluster, name) == {OLD: 4, NEW: 4}
        assert _status(cluster, name)["weights"]["candidate"] == 0
    else:
        wait_until("the switch", lambda: bool(_status(cluster, name).get("switchedAt")))
        _wait_event(cluster, name, "Switched")
        assert replicas_by_version(cluster, name) == {OLD: 4, NEW: 4}  # the old version is kept for a way back
    operator.kill()
    operator.start()

    final = cluster.wait_for_phase(name, "Succeeded", timeout=60)
    assert final["stableVersion"] == NEW
    _assert_bystander_unharmed(cluster, bystander)
    cluster.wait_for("the Promoted event", lambda: "Promoted" in cluster.event_reasons(name))
    cluster.wait_for("the old version removed", lambda: replicas_by_version(cluster, name) == {NEW: 4})
    seen = counts(cluster, name)
    completed = messages(cluster, name, "StepCompleted")
    assert len(completed) == len(set(completed)) == 3, f"stages completed: {completed}"
    assert (seen["RolloutStarted"], seen["Switched"], seen["Promoted"]) == (1, 1, 1)
    assert (seen["AnalysisStarted"], seen["AnalysisSucceeded"]) == (2, 2)
    assert recorder.replicas_of(name, NEW) == [4]
    assert recorder.replicas_of(name, OLD) == [4, -1]  # never scaled down before it was deleted
    taken = [c for c in (_step_count(s, "PrePromotionAnalysis") for s in recorder.statuses_of(name)) if c is not None]
    assert taken and monotonic(taken) and max(taken) <= 3, f"pre-promotion counts seen: {taken}"
    succeeded = messages(cluster, name, "AnalysisSucceeded")
    assert succeeded == [
        "pre-promotion: every metric passed (error-rate 3/3 ok)",
        "post-promotion: every metric passed (error-rate 2/2 ok)",
    ], succeeded


def test_events_of_the_last_pass_survive_sigkill(
    faulty: Faulty, deployment_controller: HeldDeploymentController, operators: Operators
) -> None:
    """Deterministic form of a race the matrix above steps around (on a loaded machine kopf's
    in-memory Event queue lost the AnalysisFailed Warning of a rollback, and StepCompleted events,
    in 3 of 8 kill points): the API server refuses Events at the moment the operator dies. The
    Events wait in status.pendingEvents; the restarted operator posts each of them once."""
    cluster = faulty.cluster
    name = unique("events")
    operator = operators.new(extra_args=serving_metrics()).start()
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}]
    cluster.create_rollout(name, canary_spec(name, OLD, steps, metrics=[]))
    cluster.wait_for_phase(name, "Succeeded")
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": NEW}})
    cluster.wait_for_phase(name, "Paused")
    _wait_event(cluster, name, "Paused")
    faulty.inject(500, verbs=["create"], resources=["events"], namespaces=[cluster.namespace])
    assert cli(["promote", name, "--kubeconfig", str(cluster.kubeconfig), "-n", cluster.namespace]) == 0
    succeeded = cluster.wait_for_phase(name, "Succeeded")
    assert succeeded["stableVersion"] == NEW
    # What the API server refused is kept in status, under the names it will be posted with.
    waiting = {event["reason"] for event in succeeded.get("pendingEvents") or []}
    assert {"PromoteRequested", "Promoted"} <= waiting, succeeded.get("pendingEvents")
    assert "Promoted" not in cluster.event_reasons(name)
    operator.kill()
    faulty.clear_faults()
    operator.start()
    _wait_restarted(operator, name)
    seen = counts(cluster, name)  # once the Events status names as pending are posted
    assert (seen["RolloutStarted"], seen["StepCompleted"], seen["Promoted"]) == (1, len(steps), 1), seen
    assert (seen["PromoteRequested"], seen["Promoting"]) == (1, 1), seen
