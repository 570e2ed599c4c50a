"""Blue-green: the new version (green) comes up at full size behind a preview Service, is checked,
and the active Service switches to it at once; the old version (blue) stays up for
scaleDownDelaySeconds so that a failed post-promotion analysis switches back instantly.

The stage lives in status.stage (Preview, PrePromotionAnalysis, ReadyToSwitch or AwaitingSwitch,
PostPromotionAnalysis, ScaleDownDelay); the moves between them are in `stages.TRANSITIONS`.
"""

from __future__ import annotations

from datetime import timedelta

from modelrollout.api.models import Automation, BlueGreenStage, CanaryStage, SharedStage, Verdict, Weights
from modelrollout.engine.common import (
    Pass,
    check_deadline,
    drop_unfinished_step_analysis,
    ended,
    finish_promotion,
    parse_time,
    resume,
    roll_back,
    run_background_analysis,
    run_gate_analysis,
    start,
    start_background_analysis,
)
from modelrollout.engine.gates import PROMOTION, ROLLOUT, gates_open, rollback_requested
from modelrollout.engine.stages import Trigger, hold_of
from modelrollout.engine.types import EnsureDeployment, ScaleDeployment

Stage = BlueGreenStage
SWITCHED = (Stage.POST_PROMOTION_ANALYSIS, Stage.SCALE_DOWN_DELAY)
# What the StepCompleted event calls the stage it leaves (the words a person saw before stages).
DONE_WITH: dict[BlueGreenStage | CanaryStage | SharedStage, str] = {
    Stage.PREVIEW: "preview",
    Stage.PRE_PROMOTION_ANALYSIS: "pre-promotion analysis",
    Stage.READY_TO_SWITCH: "promotion",
    Stage.AWAITING_SWITCH: "promotion",
}


def _enter(run: Pass, trigger: Trigger, stage: BlueGreenStage) -> None:
    left = run.stage
    if left in DONE_WITH:
        run.event("StepCompleted", f"blue-green {DONE_WITH[left]} completed")
    run.status.step_started_at = run.at
    drop_unfinished_step_analysis(run.status)
    run.enter(trigger, stage)


def run_blue_green(run: Pass) -> None:
    status, spec = run.status, run.spec
    blue_green = spec.strategy.blue_green
    assert blue_green is not None
    if status.candidate_revision != run.revision:
        start(run)
    assert status.candidate_revision is not None and status.stable_revision is not None
    run.actions.append(ScaleDeployment(status.stable_revision, spec.replicas))
    if spec.webhooks and not _webhooks_let_on(run):
        return
    run.actions.append(EnsureDeployment(status.candidate_revision, spec.replicas))
    for _ in range(len(Stage) + 1):
        if ended(status):
            return
        stage = run.stage
        switched = stage in SWITCHED
        status.weights = Weights(stable=0, candidate=100) if switched else Weights()
        if switched:
            start_background_analysis(run)
        run_background_analysis(run)
        if ended(status):
            return
        if hold_of(status) is not None:
            if not run.promote_requested:
                return
            resume(run, fresh_step_analysis=False)
            stage = run.stage
        if stage == Stage.PREVIEW:
            if run.ready(status.candidate_revision) < spec.replicas:
                status.message = (
                    f"preview of {status.candidate_version}: {run.ready(status.candidate_revision)}/{spec.replicas} "
                    "replicas ready"
                )
                check_deadline(run)
                return
            _enter(run, Trigger.PREVIEW_READY, Stage.PRE_PROMOTION_ANALYSIS)
        elif stage == Stage.PRE_PROMOTION_ANALYSIS:
            gate = blue_green.pre_promotion_analysis
            if gate is not None and run_gate_analysis(run, gate, "pre-promotion") != Verdict.SUCCESSFUL:
                return
            _enter(run, Trigger.PRE_ANALYSIS_PASSED, Stage.READY_TO_SWITCH)
        elif stage in (Stage.READY_TO_SWITCH, Stage.AWAITING_SWITCH):
            if not _may_switch(run):
                return
            _enter(run, Trigger.SWITCH, Stage.POST_PROMOTION_ANALYSIS)
            status.switched_at = run.at
            status.message = f"switched traffic to {status.candidate_version}; {status.stable_version} kept running"
            run.event("Switched", status.message)
        elif stage == Stage.POST_PROMOTION_ANALYSIS:
            gate = blue_green.post_promotion_analysis
            if gate is not None and run_gate_analysis(run, gate, "post-promotion") != Verdict.SUCCESSFUL:
                return
            # The passed analysis stays in status for `kubectl get -o yaml` (see drop_unfinished_step_analysis).
            run.enter(Trigger.POST_ANALYSIS_PASSED, Stage.SCALE_DOWN_DELAY)
        else:
            _scale_down_after_delay(run)
            return


def _webhooks_let_on(run: Pass) -> bool:
    """The webhook gates of a blue-green (engine/gates.py): a `rollback` gate's yes rolls back; while
    `confirm-rollout` / `pre-rollout` wait in the preview stage, the preview is not even created."""
    status = run.status
    asked_back = rollback_requested(run)
    if asked_back is not None:
        roll_back(run, "RollbackHook", asked_back)
        return False
    if run.stage != Stage.PREVIEW:
        return True
    kinds = ("confirm-rollout", "pre-rollout")
    waited = any(gate.type in kinds for gate in run.spec.webhooks) and not all(
        entry.state == "Open"
        for entry in status.gates or []
        if entry.type in kinds and entry.scope == ROLLOUT and entry.revision == status.candidate_revision
    )
    if not gates_open(run, kinds, ROLLOUT):
        status.weights = Weights()
        return False
    if waited:
        # The preview starts now: its pods' progress deadline counts from here, not from the wait.
        status.step_started_at = run.at
    return True


def _promotion_confirmed(run: Pass) -> bool:
    """`confirm-promotion` webhook gates, asked when the switch is otherwise due (a person's
    promote or auto-promotion): until they say yes the active Service stays on stable."""
    return not run.spec.webhooks or gates_open(run, ("confirm-promotion",), PROMOTION)


def _may_switch(run: Pass) -> bool:
    status, spec = run.status, run.spec
    blue_green = spec.strategy.blue_green
    assert blue_green is not None and status.step_started_at is not None
    if run.promote_requested:
        if not _promotion_confirmed(run):
            return False  # the promote stays queued (status.promotionRequested) until the gate says yes
        run.promote_requested = run.promote_full = False
        return True
    if not blue_green.auto_promotion or spec.automation != Automation.AUTO:
        if run.stage != Stage.AWAITING_SWITCH:
            run.enter(Trigger.AWAIT_PROMOTION, Stage.AWAITING_SWITCH)
            status.message = f"preview of {status.candidate_version} ready; `promote` to switch traffic to it"
            run.event("WaitingForPromote", status.message)
        return False
    opens = parse_time(status.step_started_at) + timedelta(seconds=blue_green.auto_promotion_seconds)
    if run.now < opens:
        status.message = f"switching to {status.candidate_version} in {(opens - run.now).total_seconds():.0f}s"
        run.again_in((opens - run.now).total_seconds())
        return False
    return _promotion_confirmed(run)


def _scale_down_after_delay(run: Pass) -> None:
    status, spec = run.status, run.spec
    blue_green = spec.strategy.blue_green
    assert blue_green is not None and status.switched_at is not None
    scale_down_at = parse_time(status.switched_at) + timedelta(seconds=blue_green.scale_down_delay_seconds)
    if run.now < scale_down_at:
        status.message = (
            f"{status.candidate_version} is live; {status.stable_version} scales down at "
            f"{scale_down_at.isoformat(timespec='seconds')}"
        )
        run.again_in((scale_down_at - run.now).total_seconds())
        return
    finish_promotion(run)
