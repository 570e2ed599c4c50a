"""The rollout state machine, pass by pass, without a cluster."""

from __future__ import annotations

import copy

import pytest

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import ModelRolloutStatus, Phase, Verdict
from modelrollout.api.validation import parse_spec
from modelrollout.engine.machine import decide, needs, replica_split, revision_of
from modelrollout.engine.types import CommandAction, DeleteDeployment, EnsureDeployment, Observations, ScaleDeployment

from .world import T0, World, make_spec

BAD = Observation(value=0.4)
GOOD = Observation(value=0.01)


def deployed(version: str = "1.0.0", **overrides: object) -> World:
    world = World(make_spec(version, **overrides))
    world.run(Phase.SUCCEEDED)
    return world


# --- replica ratio ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [
        (4, 0, (4, 0)),
        (4, 10, (3, 1)),
        (4, 25, (3, 1)),
        (4, 50, (2, 2)),
        (4, 99, (1, 4)),
        (4, 100, (0, 4)),
        (1, 10, (1, 1)),
        (10, 33, (6, 4)),
        (3, 100, (0, 3)),
    ],
)
def test_replica_split_rounds_the_candidate_up_and_keeps_one_stable_while_it_serves(
    total: int, weight: int, expected: tuple[int, int]
) -> None:
    assert replica_split(total, weight) == expected


# --- first deployment ---------------------------------------------------------------------------------


def test_first_version_is_deployed_as_stable_with_a_service_and_succeeds_when_ready() -> None:
    world = World(make_spec("1.0.0"))
    first = world.step()
    assert any(isinstance(a, EnsureDeployment) and a.replicas == 4 for a in first.actions)
    assert world.services == {"fraud-scorer": (("modelrollout.io/rollout", "fraud-scorer"),)}
    assert world.status.phase == Phase.PROGRESSING  # pods asked for, not ready yet
    world.step(1)
    assert world.status.phase == Phase.SUCCEEDED
    assert world.status.stable_version == "1.0.0"
    assert world.status.candidate_version is None
    assert world.status.weights.stable == 100
    assert "Deployed" in world.reasons()
    ready = world.status.condition("Ready")
    assert ready is not None and ready.status == "True" and ready.observed_generation == 1


def test_first_version_waits_for_pods_then_reports_the_deadline_and_recovers() -> None:
    world = World(make_spec("1.0.0", progressDeadlineSeconds=60))
    world.unready.add("x")  # replaced below once the revision is known
    world.step()
    revision = next(iter(world.deployments))
    world.unready = {revision}
    world.deployments.clear()
    world.step(1)
    assert world.status.phase == Phase.PROGRESSING
    assert "0/4 replicas ready" in world.status.message
    assert not world.needed[-1].fresh_deployments
    world.step(61)
    assert world.status.phase == Phase.FAILED
    assert "progressDeadlineSeconds 60" in world.status.message
    assert world.needed[-1].fresh_deployments, "the operator reads the Deployments afresh before it decides the failure"
    world.step(1)
    assert not world.needed[-1].fresh_deployments, "once failed, nothing new to confirm"
    world.unready.clear()
    world.step(1)
    world.step(1)
    assert world.status.phase == Phase.SUCCEEDED


def test_a_pass_never_changes_the_status_it_was_given() -> None:
    # The operator hands the previous pass's decided status to the next one (it is not parsed again
    # when the stored status is the same), so a pass must work on a copy, nested analyses included.
    world = deployed()
    world.metric_values["error-rate"] = GOOD
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    measured = 0
    for _ in range(12):
        given = world.status
        before = given.model_dump()
        world.step(5)
        assert given.model_dump() == before
        background = world.status.background_analysis
        measured = max([measured, *(metric.count for metric in (background.metrics if background else []))])
    assert measured > 1  # passes that appended measurements were among them


# --- canary that passes -------------------------------------------------------------------------------


def test_canary_runs_every_step_in_order_and_promotes() -> None:
    world = deployed()
    world.metric_values["error-rate"] = GOOD
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    assert world.status.phase == Phase.PROGRESSING
    assert world.status.candidate_version == "2.0.0"
    world.step(1)
    # step 0: setWeight 25 of 4 replicas -> 1 candidate, 3 stable
    assert (world.replicas("1.0.0"), world.replicas("2.0.0")) == (3, 1)
    assert world.status.weights.candidate == 25
    assert world.status.current_step_index == 1  # setWeight done, now pausing 30s
    world.step(10)
    assert world.status.current_step_index == 1
    world.step(25)
    assert world.status.current_step_index == 2
    world.run(Phase.SUCCEEDED)
    weights = [decision.status.weights.candidate for decision in world.decisions]
    assert 50 in weights[weights.index(25) :]  # 25 first, then 50, then promotion
    world.run(Phase.SUCCEEDED)
    assert world.status.stable_version == "2.0.0"
    assert world.replicas("2.0.0") == 4 and world.replicas("1.0.0") == 0
    assert world.status.weights.stable == 100
    assert [
        reason for reason in world.reasons() if reason in {"RolloutStarted", "StepCompleted", "Promoting", "Promoted"}
    ] == ["RolloutStarted", "StepCompleted", "StepCompleted", "StepCompleted", "Promoting", "Promoted"]
    # background analysis ran while the candidate had traffic, and every measurement passed
    assert world.queries and all('version="2.0.0"' in query for query in world.queries)


def test_a_candidate_already_at_full_size_is_promoted_in_one_pass_without_a_promoting_event() -> None:
    world = deployed(strategy={"canary": {"steps": [{"setWeight": 50}, {"setWeight": 100}]}})
    world.metric_values["error-rate"] = GOOD
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.SUCCEEDED)
    assert world.status.stable_version == "2.0.0"
    assert "Promoting" not in world.reasons()
    promoted = [event for event in world.events if event.reason == "Promoted"]
    assert len(promoted) == 1 and "promoted to stable (was 1.0.0)" in promoted[0].message
    # the status message is the settled one at once: the next pass has nothing to write
    assert world.status.message == "2.0.0 is stable with 4/4 ready replica(s)"
    settled = world.status.wire()
    world.step(1)
    assert world.status.wire() == settled


def test_stable_keeps_capacity_until_the_candidate_is_ready() -> None:
    world = deployed()
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    candidate = revision_of(parse_spec(world.spec))
    world.unready.add(candidate)
    world.step(1)
    world.step(1)
    assert world.replicas("2.0.0") == 1
    assert world.replicas("1.0.0") == 4  # candidate not ready: stable not scaled down yet
    assert world.status.weights.candidate == 0
    world.unready.clear()
    world.step(1)
    world.step(1)
    assert world.replicas("1.0.0") == 3


# --- rollback -----------------------------------------------------------------------------------------------

STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "30s"}},
    {"setWeight": 50},
    {"analysis": {"metrics": ["error-rate"], "count": 2, "interval": "5s"}},
    {"setWeight": 75},
    {"pause": {"duration": "20s"}},
]


@pytest.mark.parametrize("failing_step", range(len(STEPS)))
def test_a_breach_at_any_step_rolls_back_at_once(failing_step: int) -> None:
    world = deployed(strategy={"canary": {"steps": STEPS}})
    world.metric_values["error-rate"] = GOOD
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    for _ in range(200):
        world.step(1)
        if world.status.current_step_index == failing_step:
            break
    world.metric_values["error-rate"] = BAD
    world.run(Phase.ROLLED_BACK, seconds=1)
    assert world.replicas("2.0.0") == 0
    assert world.replicas("1.0.0") == 4
    assert world.status.weights.candidate == 0
    assert "error-rate" in world.status.message and "0.4 is not at most 0.05" in world.status.message
    assert world.events[-1].type == "Warning" and world.events[-1].reason == "AnalysisFailed"
    degraded = world.status.condition("Degraded")
    assert degraded is not None and degraded.status == "True"
    # the failed version is not retried on later passes
    for _ in range(5):
        world.step(30)
    assert world.status.phase == Phase.ROLLED_BACK
    assert world.replicas("2.0.0") == 0


def test_consecutive_errors_beyond_the_limit_roll_back_and_one_error_does_not() -> None:
    world = deployed(analysis={**make_spec()["analysis"], "consecutiveErrorLimit": 2})
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    world.step(1)
    world.metric_values["error-rate"] = Observation(value=None, error="Prometheus unreachable")
    world.step(10)
    assert world.status.phase == Phase.PROGRESSING
    world.metric_values["error-rate"] = GOOD
    world.step(10)
    world.metric_values["error-rate"] = Observation(value=None, error="Prometheus unreachable")
    world.run(Phase.ROLLED_BACK, seconds=10)
    assert "3 consecutive errors, more than consecutiveErrorLimit 2" in world.status.message
    background = world.status.background_analysis
    assert background is not None
    assert background.metrics[0].error == 4


def test_candidate_not_ready_within_the_deadline_is_rolled_back() -> None:
    world = deployed(progressDeadlineSeconds=30)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    assert world.status.candidate_revision is not None
    world.unready.add(world.status.candidate_revision)
    first = len(world.needed)
    world.step(5)
    while world.status.phase != Phase.ROLLED_BACK and len(world.needed) - first < 50:
        world.step(5)
    assert world.status.phase == Phase.ROLLED_BACK
    # Only the pass that rolls back asks for a fresh read of the Deployments first.
    fresh = [wanted.fresh_deployments for wanted in world.needed[first:]]
    assert fresh == [False] * (len(fresh) - 1) + [True]
    assert "ProgressDeadlineExceeded" in world.reasons()
    assert "0/1 replicas ready" in world.status.message
    assert world.replicas("1.0.0") == 4


def test_a_candidate_waiting_for_its_pods_is_looked_at_again_only_at_the_deadline() -> None:
    # Readiness changes wake the operator; a timer is only needed for the deadline. (A 5 s poll here
    # was most of the operator's work at 10,000 rollouts.)
    world = deployed(progressDeadlineSeconds=600)
    world.spec.pop("analysis")  # no measurements: nothing else asks for a timer
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    created = world.step(1)
    assert created.deadlines.next is not None and 599 < created.deadlines.next <= 600.01
    assert world.status.candidate_revision is not None
    world.unready.add(world.status.candidate_revision)
    world.step(1)  # the step that scales the candidate: its pods stop being ready
    waiting = world.step(1)  # one second into the pause, whose deadline counts from its start
    assert world.status.phase == Phase.PROGRESSING
    assert waiting.deadlines.next is not None and 598 < waiting.deadlines.next <= 599.01
    world.step(waiting.deadlines.next)
    assert world.status.phase == Phase.ROLLED_BACK
    assert "ProgressDeadlineExceeded" in world.reasons()


def test_a_first_version_waiting_for_its_pods_is_looked_at_again_only_at_the_deadline() -> None:
    world = World(make_spec("1.0.0", progressDeadlineSeconds=120))
    world.step()
    world.unready = set(world.deployments)
    world.deployments.clear()  # created again by the next pass, now with pods that are not ready
    waiting = world.step(20)
    assert world.status.phase == Phase.PROGRESSING
    assert waiting.deadlines.next is not None and 99 < waiting.deadlines.next <= 100.01
    world.step(waiting.deadlines.next)
    assert world.status.phase == Phase.FAILED


def test_inconclusive_measurements_pause_for_a_person_and_promote_goes_on() -> None:
    world = deployed()
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.metric_values["error-rate"] = Observation(value=None)
    world.run(Phase.PAUSED, seconds=5)
    assert world.status.pause_reason == "Inconclusive"
    assert "query returned no data" in world.status.message
    world.step(60)
    assert world.status.phase == Phase.PAUSED  # it never promotes on no data
    world.metric_values["error-rate"] = GOOD
    world.command(CommandAction.PROMOTE)
    world.step(1)
    assert world.status.phase == Phase.PROGRESSING
    world.run(Phase.SUCCEEDED)


# --- people -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("at_step", range(len(STEPS)))
def test_abort_at_any_step_rolls_back_and_retry_starts_again(at_step: int) -> None:
    world = deployed(strategy={"canary": {"steps": STEPS}})
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    for _ in range(200):
        world.step(1)
        if world.status.current_step_index == at_step:
            break
    world.command(CommandAction.ABORT)
    world.step(1)
    assert world.status.phase == Phase.ROLLED_BACK
    assert "aborted by a person" in world.status.message
    assert world.replicas("2.0.0") == 0
    world.step(1)  # the same command is not handled twice
    assert world.reasons().count("Aborted") == 1
    world.command(CommandAction.RETRY)
    world.step(1)
    assert world.status.phase == Phase.PROGRESSING
    assert world.status.current_step_index == 0
    world.run(Phase.SUCCEEDED)
    assert world.status.stable_version == "2.0.0"


def test_pause_holds_the_rollout_and_resume_continues() -> None:
    world = deployed()
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    world.step(1)
    world.command(CommandAction.PAUSE)
    world.step(1)
    assert world.status.phase == Phase.PAUSED and world.status.pause_reason == "User"
    index = world.status.current_step_index
    world.step(120)
    assert world.status.current_step_index == index
    world.command(CommandAction.RESUME)
    world.run(Phase.SUCCEEDED)


def test_a_pause_without_duration_waits_for_promote() -> None:
    world = deployed(strategy={"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}})
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.PAUSED)
    assert world.status.pause_reason == "PauseStep"
    world.step(3600)
    assert world.status.phase == Phase.PAUSED
    world.command(CommandAction.PROMOTE)
    world.run(Phase.SUCCEEDED)


def test_manual_automation_waits_for_promote_after_every_step() -> None:
    world = deployed(automation="manual")
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    promotes = 0
    for _ in range(50):
        world.run({Phase.PAUSED, Phase.SUCCEEDED}, seconds=31)
        if world.status.phase == Phase.SUCCEEDED:
            break
        assert world.status.pause_reason in ("ManualStep", "Promotion")
        world.command(CommandAction.PROMOTE)
        promotes += 1
    assert world.status.stable_version == "2.0.0"
    assert promotes == 4  # three steps, then the promotion itself


def test_assisted_automation_runs_steps_alone_and_waits_for_the_final_promotion() -> None:
    world = deployed(automation="assisted")
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.PAUSED, seconds=5)
    assert world.status.pause_reason == "Promotion"
    assert world.status.current_step_index == 3
    assert world.replicas("2.0.0") == 2  # still at the last step's weight, not 100
    world.command(CommandAction.PROMOTE)
    world.run(Phase.SUCCEEDED)


def test_promote_full_skips_the_remaining_steps() -> None:
    world = deployed(strategy={"canary": {"steps": STEPS}})
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    world.step(1)
    world.command(CommandAction.PROMOTE_FULL)
    world.step(1)
    world.run(Phase.SUCCEEDED)
    assert world.now - T0 < __import__("datetime").timedelta(seconds=30)


def test_a_command_that_does_not_apply_is_reported_not_acted_on() -> None:
    world = deployed()
    world.command(CommandAction.PROMOTE)
    world.step(1)
    assert world.status.phase == Phase.SUCCEEDED
    assert (world.events[-1].type, world.events[-1].reason) == ("Normal", "CommandIgnored")
    assert "promote ignored: no candidate to promote: the rollout is Succeeded" in world.events[-1].message


# --- spec changes -----------------------------------------------------------------------------------------


def test_a_newer_version_mid_rollout_replaces_the_candidate() -> None:
    world = deployed()
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    world.step(1)
    old_candidate = world.status.candidate_revision
    world.change_spec(model={"name": "fraud-scorer", "version": "3.0.0"})
    decision = world.step(1)
    assert DeleteDeployment(str(old_candidate)) in decision.actions
    assert world.status.candidate_version == "3.0.0"
    assert world.status.current_step_index == 0
    assert "CandidateReplaced" in world.reasons()
    world.run(Phase.SUCCEEDED)
    assert world.status.stable_version == "3.0.0"
    assert world.replicas("2.0.0") == 0


def test_going_back_to_the_stable_version_withdraws_the_candidate_without_a_new_rollout() -> None:
    world = deployed()
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    world.step(1)
    world.change_spec(model={"name": "fraud-scorer", "version": "1.0.0"})
    world.step(1)
    assert world.status.phase == Phase.SUCCEEDED
    assert world.status.candidate_version is None
    assert world.replicas("2.0.0") == 0 and world.replicas("1.0.0") == 4
    assert "RolloutAborted" in world.reasons()


def test_a_new_version_after_a_rollback_starts_a_new_rollout() -> None:
    world = deployed()
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.metric_values["error-rate"] = BAD
    world.run(Phase.ROLLED_BACK)
    world.metric_values["error-rate"] = GOOD
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.1"})
    world.run(Phase.SUCCEEDED)
    assert world.status.stable_version == "2.0.1"


def test_a_replica_change_on_the_stable_version_scales_it() -> None:
    world = deployed()
    world.change_spec(replicas=6)
    decision = world.step(1)
    assert any(isinstance(a, EnsureDeployment) and a.replicas == 6 for a in decision.actions)
    assert world.status.phase == Phase.SUCCEEDED


# --- bad input --------------------------------------------------------------------------------------------


def test_an_invalid_spec_fails_names_the_field_and_touches_nothing() -> None:
    world = World(make_spec(strategy={"canary": {"steps": [{"setWeight": 50}, {"setWeight": 20}]}}))
    decision = world.step()
    assert decision.actions == []
    assert world.status.phase == Phase.FAILED
    degraded = world.status.condition("Degraded")
    assert degraded is not None and degraded.reason == "InvalidSpec"
    assert "spec.strategy.canary.steps[1].setWeight: must be greater than the previous weight (50)" in degraded.message
    assert world.events[-1].reason == "InvalidSpec"
    world.step(1)
    assert world.reasons().count("InvalidSpec") == 1  # not repeated on every pass


def test_an_invalid_spec_mid_rollout_freezes_it_and_fixing_it_resumes() -> None:
    world = deployed()
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    world.step(1)
    replicas = (world.replicas("1.0.0"), world.replicas("2.0.0"))
    good_strategy = world.spec["strategy"]
    world.change_spec(strategy={"canary": {"steps": [{"pause": {"duration": "soon"}}]}})
    decision = world.step(1)
    assert decision.actions == []
    assert world.status.phase == Phase.FAILED
    assert (world.replicas("1.0.0"), world.replicas("2.0.0")) == replicas
    assert world.status.candidate_version == "2.0.0"  # progress is kept
    world.change_spec(strategy=good_strategy)
    world.run(Phase.SUCCEEDED)
    assert world.status.stable_version == "2.0.0"


# --- restarts -----------------------------------------------------------------------------------------------


def test_same_status_in_same_decision_out_at_every_pass_of_a_rollout() -> None:
    """An operator restarted at any point reads the status back and decides exactly the same."""
    world = deployed(strategy={"canary": {"steps": STEPS}}, automation="assisted")
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    checked_phases = set()
    for _ in range(120):
        before = ModelRolloutStatus.model_validate(copy.deepcopy(world.status.wire()))
        observed = world.observations()
        first = decide(world.ref(), before, observed, world.now)
        again = decide(world.ref(), ModelRolloutStatus.model_validate(before.wire()), observed, world.now)
        assert first.actions == again.actions
        assert first.status.wire() == again.status.wire()
        assert first.events == again.events
        checked_phases.add(world.status.phase)
        world.step(2)
        if world.status.phase == Phase.PAUSED and world.status.pause_reason == "Promotion":
            world.command(CommandAction.PROMOTE)
        if world.status.phase == Phase.SUCCEEDED:
            break
    assert {Phase.PROGRESSING, Phase.PAUSED, Phase.SUCCEEDED} <= checked_phases


def test_measurements_are_planned_only_when_due() -> None:
    world = deployed()
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    world.step(1)
    assert world.status.background_analysis is not None
    assert needs(world.ref(), world.status, world.now, world.deployments).measurements == []
    later = world.now + __import__("datetime").timedelta(seconds=10)
    due = needs(world.ref(), world.status, later, world.deployments).measurements
    assert [r.metric for r in due] == ["error-rate"]


def test_measurements_in_status_are_bounded() -> None:
    world = deployed(strategy={"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1h"}}]}})
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    for _ in range(40):
        world.step(10)
    background = world.status.background_analysis
    assert background is not None and background.metrics[0].count > 30
    assert len(background.metrics[0].measurements) == 10
    assert background.metrics[0].measurements[-1].phase == Verdict.SUCCESSFUL


def test_rollback_scales_the_candidate_to_zero_in_the_same_pass() -> None:
    world = deployed()
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    world.step(1)
    world.metric_values["error-rate"] = BAD
    decision = world.step(10)
    candidate = world.status.rolled_back_revision
    assert (
        ScaleDeployment(str(candidate), 0) in decision.actions
        or EnsureDeployment(str(candidate), 0) in decision.actions
    )
    assert not any(
        isinstance(a, EnsureDeployment) and a.revision == candidate and a.replicas > 0 for a in decision.actions
    )


def test_no_observations_means_no_crash_on_empty_status() -> None:
    decision = decide(World(make_spec()).ref(), ModelRolloutStatus(), Observations(), T0)
    assert decision.status.phase == Phase.PROGRESSING


def test_a_promote_sent_while_pods_start_waits_for_the_gate_it_can_open() -> None:
    world = deployed(
        strategy={"canary": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}]}}
    )
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    candidate = revision_of(parse_spec(world.spec))
    world.unready.add(candidate)
    world.step(1)  # the canary starts; the candidate's pods are not ready yet
    world.command(CommandAction.PROMOTE)
    world.step(1)
    world.step(1)
    assert world.status.current_step_index == 0
    assert world.status.promotion_requested == "step"  # kept, not lost
    world.unready.clear()
    world.run(Phase.PAUSED)
    # The held promote opened the first gate; the rollout now waits at the second one.
    assert world.status.current_step_index == 3
    assert world.status.promotion_requested is None
    world.command(CommandAction.PROMOTE)
    world.run(Phase.SUCCEEDED)


def test_a_pass_that_measures_and_completes_steps_counts_each_measurement_once() -> None:
    steps = [
        {"setWeight": 25},
        {"pause": {"duration": "10s"}},
        {"pause": {"duration": "0s"}},
        {"setWeight": 50},
        {"pause": {"duration": "1h"}},
    ]
    world = deployed(strategy={"canary": {"steps": steps}})
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    for _ in range(12):
        world.step(5)
    background = world.status.background_analysis
    assert background is not None
    result = background.metrics[0]
    assert result.count == len({m.at for m in result.measurements}) == len(world.queries)


def test_a_finished_step_analysis_stays_in_status_until_the_next_one_starts() -> None:
    """Its last measurement is written in the pass that moves on: a user still sees what the gate
    measured while the following steps run, until the next gate starts or promotion clears it."""
    gate = {"analysis": {"metrics": ["error-rate"], "count": 2, "interval": "5s"}}
    steps = [{"setWeight": 25}, gate, {"setWeight": 50}, {"pause": {}}, gate]
    world = deployed(strategy={"canary": {"steps": steps}})
    world.metric_values["error-rate"] = GOOD
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.PAUSED, seconds=5)
    assert world.status.current_step_index == 3
    kept = world.status.step_analysis
    assert kept is not None and kept.step_index == 1 and kept.phase == Verdict.SUCCESSFUL
    assert [m.phase for m in kept.metrics[0].measurements] == [Verdict.SUCCESSFUL, Verdict.SUCCESSFUL]
    world.command(CommandAction.PROMOTE)
    world.step(1)
    fresh = world.status.step_analysis
    assert world.status.current_step_index == 4 and fresh is not None and fresh.step_index == 4
    assert fresh.phase == Verdict.RUNNING and len(fresh.metrics[0].measurements) <= 1
    world.run(Phase.SUCCEEDED, seconds=5)
    assert world.status.step_analysis is None


def test_errors_do_not_count_towards_an_analysis_steps_count() -> None:
    """An outage neither completes a step's analysis nor makes it inconclusive: the step waits."""
    steps = [{"setWeight": 50}, {"analysis": {"metrics": ["error-rate"], "count": 3, "interval": "5s"}}]
    world = deployed(
        strategy={"canary": {"steps": steps}}, analysis={**make_spec()["analysis"], "consecutiveErrorLimit": 50}
    )
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.metric_values["error-rate"] = GOOD
    world.run(Phase.PROGRESSING)
    for _ in range(4):
        world.step(2)
    world.metric_values["error-rate"] = Observation(value=None, error="Prometheus unreachable")
    for _ in range(10):
        world.step(5)
    assert world.status.phase == Phase.PROGRESSING and world.status.current_step_index == 1
    world.metric_values["error-rate"] = GOOD
    world.run(Phase.SUCCEEDED, seconds=5)
    assert "AnalysisSucceeded" in world.reasons()


def test_only_background_measurements_are_routine_deadlines() -> None:
    """The operator may delay a background measurement when busy, never a pause's end: a pass's
    decision tells the two deadlines apart."""
    world = deployed(strategy={"canary": {"steps": [{"setWeight": 25}, {"pause": {"duration": "30s"}}]}})
    world.metric_values["error-rate"] = GOOD
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    pausing = world.step(1)
    assert world.status.current_step_index == 1
    # The background analysis (every 10s) falls due first; the pause ends in 30s.
    assert pausing.deadlines.next == pytest.approx(10.0)
    assert pausing.deadlines.urgent == pytest.approx(30.0)
    measuring = world.step(pausing.deadlines.next)
    assert measuring.deadlines.next == pytest.approx(10.0)
    assert measuring.deadlines.urgent == pytest.approx(20.0)
    world.run(Phase.SUCCEEDED)
    # A promoted rollout has nothing urgent left.
    assert world.decisions[-1].deadlines.urgent is None
