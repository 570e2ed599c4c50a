"""Job metrics in the engine: the Job is an action, its progress an observation, and the measurement
is taken (and the Job deleted) only once the Job has finished."""

from __future__ import annotations

from typing import Any

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import Phase, Verdict
from modelrollout.engine.evaluation import JOB_POLL_SECONDS
from modelrollout.engine.machine import needs
from modelrollout.engine.types import (
    CommandAction,
    DeleteEvaluationJob,
    DeleteEvaluationJobs,
    EnsureEvaluationJob,
    EvaluationJob,
)
from tests.unit.world import World, make_spec

JOB_SPEC = {
    "template": {
        "spec": {"containers": [{"name": "evaluate", "image": "scorer:eval", "args": ["--version", "{{candidate}}"]}]}
    }
}


def evaluation_spec(version: str, **analysis: Any) -> dict[str, Any]:
    return make_spec(
        version,
        strategy={"canary": {"steps": [{"analysis": {"metrics": ["offline"], "count": 1}}, {"setWeight": 50}]}},
        analysis={
            "metrics": [
                {
                    "name": "offline",
                    "background": False,
                    "job": {"spec": JOB_SPEC, "timeoutSeconds": 120},
                    "threshold": {"min": 0.9},
                }
            ],
            **analysis,
        },
    )


def candidate_world(**analysis: Any) -> World:
    world = World(evaluation_spec("1.0.0", **analysis))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.metric_values["offline"] = Observation(value=None, pending=True)
    world.step(1)  # the canary starts, and with it step 0's analysis: its first measurement is due at once
    return world


def asked_jobs(world: World) -> list[EvaluationJob]:
    return [request.job for request in world.needed[-1].measurements if request.job is not None]


def test_the_job_runs_before_any_traffic_and_a_bad_score_rolls_back() -> None:
    world = candidate_world()
    first = world.step(0)
    [job] = asked_jobs(world)
    assert EnsureEvaluationJob(job) in first.actions
    assert job.spec["template"]["spec"]["containers"][0]["args"] == ["--version", "2.0.0"]
    assert job.timeout_seconds == 120
    assert first.deadlines.next == JOB_POLL_SECONDS, "a running Job is looked at again soon, not at once"
    assert world.status.weights.candidate == 0 and world.replicas("2.0.0") == 0
    # Still running: the same Job (its name follows from status alone, so a restart finds it).
    world.step(JOB_POLL_SECONDS)
    assert asked_jobs(world) == [job]
    assert world.status.step_analysis is not None
    assert world.status.step_analysis.metrics[0].count == 0, "nothing is measured while the Job runs"
    world.metric_values["offline"] = Observation(value=0.63, values={"value": 0.63})
    done = world.step(JOB_POLL_SECONDS)
    assert DeleteEvaluationJob(job.name) in done.actions
    assert world.status.phase == Phase.ROLLED_BACK
    assert "metric 'offline'" in world.status.message and "0.63 is not at least 0.9" in world.status.message
    assert all(decision.status.weights.candidate == 0 for decision in world.decisions)
    assert world.replicas("2.0.0") == 0


def test_a_good_score_lets_the_canary_go_on() -> None:
    world = candidate_world()
    world.step(0)
    [job] = asked_jobs(world)
    world.metric_values["offline"] = Observation(value=0.97, values={"value": 0.97})
    done = world.step(JOB_POLL_SECONDS)
    assert DeleteEvaluationJob(job.name) in done.actions
    assert world.status.current_step_index == 1
    assert "AnalysisSucceeded" in world.reasons()


def test_each_measurement_is_a_job_of_its_own() -> None:
    world = candidate_world(consecutiveErrorLimit=2)
    world.step(0)
    [first] = asked_jobs(world)
    failed = f"evaluation Job {first.name} failed: BackoffLimitExceeded"
    world.metric_values["offline"] = Observation(value=None, error=failed)
    world.step(JOB_POLL_SECONDS)
    step = world.status.step_analysis
    assert step is not None and step.metrics[0].measurements[-1].phase == Verdict.ERROR
    world.metric_values["offline"] = Observation(value=None, pending=True)
    interval_later = world.step(30)
    [second] = asked_jobs(world)
    assert second.name != first.name
    assert EnsureEvaluationJob(second) in interval_later.actions
    assert len(second.name) <= 56


def test_needs_asks_for_no_job_outside_an_analysis_step() -> None:
    world = World(evaluation_spec("1.0.0"))
    world.run(Phase.SUCCEEDED)
    assert not needs(world.ref(), world.status, world.now, world.deployments).measurements


def test_a_blue_green_pre_promotion_analysis_can_be_an_evaluation_job() -> None:
    spec = evaluation_spec("1.0.0")
    spec["strategy"] = {"blueGreen": {"prePromotionAnalysis": {"metrics": ["offline"], "count": 1}}}
    world = World(spec)
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.metric_values["offline"] = Observation(value=None, pending=True)
    ensured: list[EnsureEvaluationJob] = []
    for _ in range(10):
        ensured = [a for a in world.step(1).actions if isinstance(a, EnsureEvaluationJob)]
        if ensured:
            break
    assert ensured, "the preview's evaluation Job was never asked for"
    world.metric_values["offline"] = Observation(value=0.5, values={"value": 0.5})
    world.run(Phase.ROLLED_BACK, seconds=JOB_POLL_SECONDS)
    assert world.status.switched_at is None, "a failed pre-promotion evaluation never switches traffic"
    assert all(decision.status.weights.candidate == 0 for decision in world.decisions)


def test_a_job_left_running_by_an_analysis_that_ended_otherwise_goes_with_the_candidate() -> None:
    world = candidate_world()
    world.step(0)
    assert asked_jobs(world), "the evaluation Job runs"
    world.command(CommandAction.ABORT)
    aborted = world.step(1)
    assert world.status.phase == Phase.ROLLED_BACK
    assert DeleteEvaluationJobs() in aborted.actions


def test_rollouts_without_job_metrics_never_list_jobs() -> None:
    world = World(make_spec("1.0.0"))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.SUCCEEDED)
    assert not any(isinstance(a, DeleteEvaluationJobs) for d in world.decisions for a in d.actions)
