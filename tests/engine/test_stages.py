"""The state machine without a cluster: every listed move is taken, every other one refused, phase
and pauseReason follow from the stage, and rollouts reach their stages through the table."""

from __future__ import annotations

import itertools

import pytest

from modelrollout.api.models import (
    ALL_STAGES,
    BlueGreenStage,
    CanaryStage,
    ModelRolloutStatus,
    PauseReason,
    Phase,
    SharedStage,
    Stage,
)
from modelrollout.engine import stages
from modelrollout.engine.machine import phase_matches_stage
from modelrollout.engine.stages import (
    HOLDS,
    IMPLIED_PAUSE,
    IN_FLIGHT,
    TRANSITIONS,
    IllegalTransition,
    Trigger,
    move,
    pause_reason_of,
    phase_of,
)
from modelrollout.engine.types import CommandAction
from tests.unit.world import World, make_spec

EVERY_MOVE = list(itertools.product(ALL_STAGES, Trigger, ALL_STAGES))


def at(stage: Stage, pause_reason: PauseReason | None = None) -> ModelRolloutStatus:
    status = ModelRolloutStatus(stage=stage)
    status.pause_reason = pause_reason_of(stage, pause_reason)
    status.phase = phase_of(stage, status.pause_reason)
    return status


@pytest.mark.parametrize("transition", sorted(TRANSITIONS), ids=lambda t: "-".join(map(str, t)))
def test_every_listed_transition_is_taken(transition: stages.Transition) -> None:
    start, trigger, to = transition
    status = at(start)
    move(status, trigger, to, hold=PauseReason.USER if trigger == Trigger.HOLD else None)
    assert status.stage == to
    assert phase_matches_stage(status)


def test_every_transition_not_listed_is_refused() -> None:
    refused = 0
    for start, trigger, to in EVERY_MOVE:
        if (start, trigger, to) in TRANSITIONS:
            continue
        status = at(start)
        with pytest.raises(IllegalTransition):
            move(status, trigger, to)
        assert status.stage == start, "a refused move changes nothing"
        refused += 1
    assert refused == len(EVERY_MOVE) - len(TRANSITIONS)


def test_each_strategy_stays_within_its_own_stages() -> None:
    for start, trigger, to in TRANSITIONS:
        if (start in CanaryStage and to in BlueGreenStage) or (start in BlueGreenStage and to in CanaryStage):
            assert trigger == Trigger.START, (start, trigger, to)  # a new candidate of another strategy
    assert (*CanaryStage, *BlueGreenStage) == IN_FLIGHT


def test_every_stage_is_reachable_from_pending() -> None:
    reached = {SharedStage.PENDING}
    frontier = [SharedStage.PENDING]
    while frontier:
        here = frontier.pop()
        for start, _, to in TRANSITIONS:
            if start == here and to not in reached:
                reached.add(to)
                frontier.append(to)
    assert reached == set(ALL_STAGES)


EXPECTED_PHASE: dict[Stage, Phase] = {
    SharedStage.PENDING: Phase.PENDING,
    SharedStage.DEPLOYING: Phase.PROGRESSING,
    SharedStage.DEPLOY_FAILED: Phase.FAILED,
    SharedStage.STABLE: Phase.SUCCEEDED,
    SharedStage.ROLLED_BACK: Phase.ROLLED_BACK,
    SharedStage.INVALID: Phase.FAILED,
    CanaryStage.STEPPING: Phase.PROGRESSING,
    CanaryStage.PAUSED_AT_STEP: Phase.PAUSED,
    CanaryStage.STEP_DONE_WAITING: Phase.PAUSED,
    CanaryStage.AWAITING_PROMOTION: Phase.PAUSED,
    CanaryStage.PROMOTING: Phase.PROGRESSING,
    BlueGreenStage.PREVIEW: Phase.PROGRESSING,
    BlueGreenStage.PRE_PROMOTION_ANALYSIS: Phase.PROGRESSING,
    BlueGreenStage.READY_TO_SWITCH: Phase.PROGRESSING,
    BlueGreenStage.AWAITING_SWITCH: Phase.PAUSED,
    BlueGreenStage.POST_PROMOTION_ANALYSIS: Phase.PROGRESSING,
    BlueGreenStage.SCALE_DOWN_DELAY: Phase.PROGRESSING,
}


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_phase_and_pause_reason_follow_from_the_stage(stage: Stage) -> None:
    assert phase_of(stage, pause_reason_of(stage)) == EXPECTED_PHASE[stage]
    assert pause_reason_of(stage) == IMPLIED_PAUSE.get(stage)
    for hold in HOLDS:
        status = at(stage)
        if stage in IN_FLIGHT:
            move(status, Trigger.HOLD, stage, hold=hold)
            assert (status.stage, status.phase, status.pause_reason) == (stage, Phase.PAUSED, hold)
        else:
            assert pause_reason_of(stage, hold) is None, "a settled rollout has nothing to pause"


def test_pause_reasons_are_an_enum_in_the_crd() -> None:
    from modelrollout.api.crd import crd_manifest

    schema = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert schema["properties"]["pauseReason"]["enum"] == [reason.value for reason in PauseReason]
    assert schema["properties"]["stage"]["enum"] == [stage.value for stage in ALL_STAGES]


# --- rollouts pass through the table ----------------------------------------------------------------


def stages_seen(world: World, until: Phase, seconds: float = 1.0) -> list[Stage | None]:
    seen: list[Stage | None] = []
    for _ in range(200):
        world.step(seconds)
        if not seen or seen[-1] != world.status.stage:
            seen.append(world.status.stage)
        assert phase_matches_stage(world.status)
        if world.status.phase == until:
            return seen
    raise AssertionError(f"never reached {until}: {seen}")


def test_a_canary_goes_through_its_stages() -> None:
    world = World(make_spec("1.0.0", automation="manual"))
    assert stages_seen(world, Phase.SUCCEEDED) == [SharedStage.DEPLOYING, SharedStage.STABLE]
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    seen = stages_seen(world, Phase.PAUSED)
    assert seen[-1] == CanaryStage.STEP_DONE_WAITING and world.status.pause_reason == PauseReason.MANUAL_STEP
    world.command(CommandAction.PROMOTE_FULL)
    seen = stages_seen(world, Phase.SUCCEEDED)
    assert seen[-1] == SharedStage.STABLE


def test_a_blue_green_rollout_goes_through_its_stages_without_step_indexes() -> None:
    world = World(make_spec("1.0.0", strategy={"blueGreen": {"scaleDownDelaySeconds": 30}}))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    seen: list[Stage | None] = []
    for _ in range(60):
        world.step(1)
        assert world.status.current_step_index is None
        if world.status.stage not in seen:
            seen.append(world.status.stage)
        if world.status.phase == Phase.SUCCEEDED:
            break
    assert BlueGreenStage.SCALE_DOWN_DELAY in seen and seen[-1] == SharedStage.STABLE
    assert seen.index(BlueGreenStage.SCALE_DOWN_DELAY) > seen.index(BlueGreenStage.PREVIEW)


def test_a_person_pausing_holds_the_stage_and_resume_goes_on() -> None:
    world = World(make_spec("1.0.0", strategy={"blueGreen": {"scaleDownDelaySeconds": 30}}))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    assert world.status.stage == BlueGreenStage.PREVIEW
    candidate = world.status.candidate_revision or ""
    world.unready.add(candidate)
    world._set(candidate, world.deployments[candidate].replicas)  # its pods are not ready yet
    world.step(1)
    assert world.status.stage == BlueGreenStage.PREVIEW
    world.command(CommandAction.PAUSE)
    world.step(1)
    assert (world.status.stage, world.status.phase, world.status.pause_reason) == (
        BlueGreenStage.PREVIEW,
        Phase.PAUSED,
        PauseReason.USER,
    )
    world.command(CommandAction.RESUME)
    world.step(1)
    assert (world.status.stage, world.status.phase, world.status.pause_reason) == (
        BlueGreenStage.PREVIEW,
        Phase.PROGRESSING,
        None,
    )


def test_an_invalid_spec_interrupts_a_stage_and_its_fix_goes_back_to_it() -> None:
    world = World(make_spec("1.0.0", strategy={"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.PAUSED)
    stage = world.status.stage
    assert stage == CanaryStage.PAUSED_AT_STEP
    good = world.spec
    world.change_spec(replicas=0)
    world.step(1)
    assert (world.status.stage, world.status.phase, world.status.interrupted_stage) == (
        SharedStage.INVALID,
        Phase.FAILED,
        stage,
    )
    world.spec = good
    world.step(0)
    assert world.status.stage == stage and world.status.interrupted_stage is None
    assert (world.status.phase, world.status.pause_reason) == (Phase.PAUSED, PauseReason.PAUSE_STEP)
    assert "SpecValid" in world.reasons()
