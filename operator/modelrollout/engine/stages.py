"""The rollout state machine as data: its stages, the one table of the moves between them, and
what a person sees of each (phase, pauseReason).

Every stage change goes through `move`, which refuses a move the table does not list: a new
branch of the engine that forgets to say what it does to the stage fails its tests instead of
writing a status nobody planned for. `phase` is never set anywhere else; it follows from the stage
and from a hold (a person's pause, or an inconclusive analysis), which may sit on any stage of a
rollout in flight without changing it.

Status written before stages existed is read by `stage_of` (its position lived in `phase`,
`pauseReason` and, for blue-green, sentinel values of `currentStepIndex`).
"""

from __future__ import annotations

import enum

from modelrollout.api.models import (
    BlueGreenStage,
    CanaryStage,
    ModelRolloutSpec,
    ModelRolloutStatus,
    PauseReason,
    Phase,
    SharedStage,
    Stage,
)

Canary, BlueGreen, Shared = CanaryStage, BlueGreenStage, SharedStage


class Trigger(enum.StrEnum):
    """What makes a rollout change stage."""

    DEPLOY_FIRST = "DeployFirst"  # the first version's Deployment is asked for
    DEPLOYED = "Deployed"  # the first version's pods are ready
    DEADLINE_MISSED = "DeadlineMissed"  # the first version's pods were not ready in time
    START = "Start"  # a new candidate starts (or replaces the one in flight)
    STEP_PAUSE = "StepPause"  # a pause step without duration is reached
    STEP_DONE_MANUAL = "StepDoneManual"  # automation: manual, a step is done
    ADVANCE = "Advance"  # the next canary step begins
    AWAIT_PROMOTION = "AwaitPromotion"  # every step or the preview is done; a person promotes
    PROMOTE = "Promote"  # the candidate scales to full size before it becomes stable
    PREVIEW_READY = "PreviewReady"  # blue-green: the preview's pods are ready
    PRE_ANALYSIS_PASSED = "PreAnalysisPassed"  # blue-green: the preview passed its analysis
    SWITCH = "Switch"  # blue-green: traffic goes to the new version
    POST_ANALYSIS_PASSED = "PostAnalysisPassed"  # blue-green: the switched version passed its analysis
    PROMOTED = "Promoted"  # the candidate is the stable version
    WITHDRAWN = "Withdrawn"  # the spec is back on the stable version
    ROLL_BACK = "RollBack"  # a failed analysis, a missed deadline, an abort
    HOLD = "Hold"  # a person paused, or an analysis was inconclusive: the stage waits for a person
    RESUME = "Resume"  # the person said go on
    INVALID = "Invalid"  # the spec or the route became unusable
    VALID_AGAIN = "ValidAgain"  # and was fixed: back to the stage it interrupted


CANARY_IN_FLIGHT: tuple[Stage, ...] = tuple(CanaryStage)
BLUE_GREEN_IN_FLIGHT: tuple[Stage, ...] = tuple(BlueGreenStage)
IN_FLIGHT: tuple[Stage, ...] = CANARY_IN_FLIGHT + BLUE_GREEN_IN_FLIGHT
# Where a new candidate may start from: a settled rollout, or one whose candidate it replaces.
STARTS_FROM: tuple[Stage, ...] = (Shared.STABLE, Shared.ROLLED_BACK, *IN_FLIGHT)
# Where a person's `resume` (or a `promote` through a hold) goes on: the stage itself, except that a
# canary goes on by its step index (a promotion it interrupted starts again), and a blue-green gate
# looks again at whether it may switch.
RESUMES_TO: dict[Stage, Stage] = {
    **{stage: Canary.STEPPING for stage in CANARY_IN_FLIGHT},
    **{stage: stage for stage in BLUE_GREEN_IN_FLIGHT},
    BlueGreen.AWAITING_SWITCH: BlueGreen.READY_TO_SWITCH,
}
INTERRUPTIBLE: tuple[Stage, ...] = tuple(stage for stage in (*SharedStage, *IN_FLIGHT) if stage != Shared.INVALID)

Transition = tuple[Stage, Trigger, Stage]

TRANSITIONS: frozenset[Transition] = frozenset(
    [
        (Shared.PENDING, Trigger.DEPLOY_FIRST, Shared.DEPLOYING),
        (Shared.DEPLOYING, Trigger.DEPLOYED, Shared.STABLE),
        (Shared.DEPLOY_FAILED, Trigger.DEPLOYED, Shared.STABLE),
        (Shared.DEPLOYING, Trigger.DEADLINE_MISSED, Shared.DEPLOY_FAILED),
        (Shared.DEPLOY_FAILED, Trigger.DEPLOY_FIRST, Shared.DEPLOYING),  # the spec changed
        *((start, Trigger.START, first) for start in STARTS_FROM for first in (Canary.STEPPING, BlueGreen.PREVIEW)),
        (Canary.STEPPING, Trigger.STEP_PAUSE, Canary.PAUSED_AT_STEP),
        (Canary.STEPPING, Trigger.STEP_DONE_MANUAL, Canary.STEP_DONE_WAITING),
        *(
            (waiting, Trigger.ADVANCE, Canary.STEPPING)
            for waiting in (Canary.STEPPING, Canary.PAUSED_AT_STEP, Canary.STEP_DONE_WAITING)
        ),
        (Canary.STEPPING, Trigger.AWAIT_PROMOTION, Canary.AWAITING_PROMOTION),
        (Canary.STEPPING, Trigger.PROMOTE, Canary.PROMOTING),
        (Canary.AWAITING_PROMOTION, Trigger.PROMOTE, Canary.PROMOTING),
        (Canary.PROMOTING, Trigger.PROMOTED, Shared.STABLE),
        (BlueGreen.PREVIEW, Trigger.PREVIEW_READY, BlueGreen.PRE_PROMOTION_ANALYSIS),
        (BlueGreen.PRE_PROMOTION_ANALYSIS, Trigger.PRE_ANALYSIS_PASSED, BlueGreen.READY_TO_SWITCH),
        (BlueGreen.READY_TO_SWITCH, Trigger.AWAIT_PROMOTION, BlueGreen.AWAITING_SWITCH),
        (BlueGreen.READY_TO_SWITCH, Trigger.SWITCH, BlueGreen.POST_PROMOTION_ANALYSIS),
        (BlueGreen.AWAITING_SWITCH, Trigger.SWITCH, BlueGreen.POST_PROMOTION_ANALYSIS),
        (BlueGreen.POST_PROMOTION_ANALYSIS, Trigger.POST_ANALYSIS_PASSED, BlueGreen.SCALE_DOWN_DELAY),
        (BlueGreen.SCALE_DOWN_DELAY, Trigger.PROMOTED, Shared.STABLE),
        *((stage, Trigger.WITHDRAWN, Shared.STABLE) for stage in (*IN_FLIGHT, Shared.ROLLED_BACK, Shared.STABLE)),
        *((stage, Trigger.ROLL_BACK, Shared.ROLLED_BACK) for stage in IN_FLIGHT),
        *((stage, Trigger.HOLD, stage) for stage in IN_FLIGHT),
        *((stage, Trigger.RESUME, RESUMES_TO[stage]) for stage in IN_FLIGHT),
        *((stage, Trigger.INVALID, Shared.INVALID) for stage in (*INTERRUPTIBLE, Shared.INVALID)),
        *((Shared.INVALID, Trigger.VALID_AGAIN, stage) for stage in INTERRUPTIBLE),
    ]
)

# What waiting stages wait for; a hold (User, Inconclusive) overrides it.
IMPLIED_PAUSE: dict[Stage, PauseReason] = {
    Canary.PAUSED_AT_STEP: PauseReason.PAUSE_STEP,
    Canary.STEP_DONE_WAITING: PauseReason.MANUAL_STEP,
    Canary.AWAITING_PROMOTION: PauseReason.PROMOTION,
    BlueGreen.AWAITING_SWITCH: PauseReason.PROMOTION,
}
HOLDS = (PauseReason.USER, PauseReason.INCONCLUSIVE)
SETTLED_PHASE: dict[Stage, Phase] = {
    Shared.PENDING: Phase.PENDING,
    Shared.DEPLOYING: Phase.PROGRESSING,
    Shared.DEPLOY_FAILED: Phase.FAILED,
    Shared.STABLE: Phase.SUCCEEDED,
    Shared.ROLLED_BACK: Phase.ROLLED_BACK,
    Shared.INVALID: Phase.FAILED,
}


class IllegalTransition(AssertionError):
    """The engine tried a stage change its table does not list: a bug, never a user's doing."""


def pause_reason_of(stage: Stage, hold: PauseReason | None = None) -> PauseReason | None:
    if stage not in IN_FLIGHT:
        return None
    return hold if hold in HOLDS else IMPLIED_PAUSE.get(stage)


def phase_of(stage: Stage, pause_reason: PauseReason | None = None) -> Phase:
    if stage in SETTLED_PHASE:
        return SETTLED_PHASE[stage]
    return Phase.PAUSED if pause_reason is not None else Phase.PROGRESSING


def hold_of(status: ModelRolloutStatus) -> PauseReason | None:
    """The hold on the stage, if any: a person's pause, or an inconclusive analysis."""
    return status.pause_reason if status.pause_reason in HOLDS else None


def move(status: ModelRolloutStatus, trigger: Trigger, to: Stage, hold: PauseReason | None = None) -> None:
    """The one way a stage changes: checked against the table; phase and pauseReason follow."""
    at = status.stage if status.stage is not None else Shared.PENDING
    if (at, trigger, to) not in TRANSITIONS:
        raise IllegalTransition(f"no move from {at} on {trigger} to {to}")
    if trigger == Trigger.INVALID and at != Shared.INVALID:
        status.interrupted_stage = at
    elif trigger == Trigger.VALID_AGAIN:
        status.interrupted_stage = None
    status.stage = to
    status.pause_reason = pause_reason_of(to, hold if trigger == Trigger.HOLD else None)
    status.phase = phase_of(to, status.pause_reason)


def stage_of(status: ModelRolloutStatus, spec: ModelRolloutSpec | None) -> Stage:
    """The status's stage; for status written before stages existed, worked out from the rest."""
    if status.stage is not None:
        return status.stage
    phase = status.phase
    if phase == Phase.PENDING:
        return Shared.PENDING
    if phase == Phase.SUCCEEDED:
        return Shared.STABLE
    if phase == Phase.ROLLED_BACK:
        return Shared.ROLLED_BACK
    degraded = status.condition("Degraded")
    if phase == Phase.FAILED and degraded is not None and degraded.reason in ("InvalidSpec", "TrafficRoutingInvalid"):
        return Shared.INVALID
    if status.stable_revision is None:
        return Shared.DEPLOY_FAILED if phase == Phase.FAILED else Shared.DEPLOYING
    if status.candidate_revision is None:
        return Shared.STABLE
    return _position_of_older(status, spec)


def _position_of_older(status: ModelRolloutStatus, spec: ModelRolloutSpec | None) -> Stage:
    """Where an older status's candidate stood, from its pauseReason and step index."""
    blue_green = spec.strategy.blue_green if spec is not None else None
    if blue_green is None:
        return {
            PauseReason.PAUSE_STEP: Canary.PAUSED_AT_STEP,
            PauseReason.MANUAL_STEP: Canary.STEP_DONE_WAITING,
            PauseReason.PROMOTION: Canary.AWAITING_PROMOTION,
        }.get(status.pause_reason or PauseReason.USER, Canary.STEPPING)
    index = status.current_step_index  # blue-green kept 0 preview, 1 analysis, 2 gate, 3 switched
    if index == 1:
        return BlueGreen.PRE_PROMOTION_ANALYSIS
    if index == 2:
        return BlueGreen.AWAITING_SWITCH if status.pause_reason == PauseReason.PROMOTION else BlueGreen.READY_TO_SWITCH
    if index == 3:
        post = blue_green.post_promotion_analysis
        analysis = status.step_analysis
        passed = analysis is not None and analysis.step_index == 3 and analysis.phase == "Successful"
        return BlueGreen.POST_PROMOTION_ANALYSIS if post is not None and not passed else BlueGreen.SCALE_DOWN_DELAY
    return BlueGreen.PREVIEW


def read_older(status: ModelRolloutStatus, spec: ModelRolloutSpec | None) -> None:
    """Give a status written before stages existed its stage, in place (blue-green's step index and
    its analyses' sentinel step indexes become stages)."""
    if status.stage is not None:
        return
    stage = stage_of(status, spec)
    if spec is None:
        # The spec is invalid now: without it a candidate's position cannot be told (blue-green's
        # step index reads as a canary's). The fixed spec tells it (`position_after_invalid`).
        status.stage = Shared.INVALID if stage in (*IN_FLIGHT, Shared.INVALID) else stage
        return
    if stage == Shared.INVALID:
        status.interrupted_stage = position_after_invalid(status, spec)
    if spec.strategy.blue_green is not None:
        analysis = status.step_analysis
        if analysis is not None and analysis.step_index in (1, 3) and analysis.stage is None:
            pre = analysis.step_index == 1
            analysis.stage = BlueGreen.PRE_PROMOTION_ANALYSIS if pre else BlueGreen.POST_PROMOTION_ANALYSIS
            analysis.step_index = None
        status.current_step_index = None
    status.stage = stage


def position_after_invalid(status: ModelRolloutStatus, spec: ModelRolloutSpec) -> Stage:
    """Where an older status that was read while its spec was invalid stood (it kept only the
    progress; the stage it was interrupted at was never written)."""
    probe = status.model_copy(update={"stage": None, "phase": Phase.PROGRESSING, "conditions": []}, deep=True)
    read_older(probe, spec)
    status.current_step_index, status.step_analysis = probe.current_step_index, probe.step_analysis
    assert probe.stage is not None and probe.stage != Shared.INVALID
    return probe.stage
