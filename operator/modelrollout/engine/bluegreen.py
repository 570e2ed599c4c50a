"""Blue-green: the new version (green) comes up at full size behind a preview Service, is checked,
and the active Service switches to it at once; the old version (blue) stays up for
scaleDownDelaySeconds so that a failed post-promotion analysis switches back instantly.

The stage lives in status.currentStepIndex (preview, pre-promotion analysis, gate, switched).
"""

from __future__ import annotations

from datetime import timedelta

from modelrollout.api.models import Automation, Phase, Verdict, Weights
from modelrollout.engine.canary import ended, resume, start
from modelrollout.engine.common import (
    BG_GATE,
    BG_PRE_ANALYSIS,
    BG_PREVIEW,
    BG_SWITCHED,
    PAUSE_INCONCLUSIVE,
    PAUSE_PROMOTION,
    PAUSE_USER,
    Pass,
    check_deadline,
    drop_unfinished_step_analysis,
    finish_promotion,
    parse_time,
    run_background_analysis,
    run_gate_analysis,
    start_background_analysis,
)
from modelrollout.engine.types import EnsureDeployment, ScaleDeployment

STAGES = {
    BG_PREVIEW: "preview",
    BG_PRE_ANALYSIS: "pre-promotion analysis",
    BG_GATE: "promotion",
    BG_SWITCHED: "switched",
}


def _enter(run: Pass, stage: int) -> None:
    status = run.status
    if status.current_step_index is not None and status.current_step_index != stage:
        run.event("StepCompleted", f"blue-green {STAGES[status.current_step_index]} completed")
    status.current_step_index = stage
    status.step_started_at = run.at
    drop_unfinished_step_analysis(status)
    status.pause_reason = None
    status.phase = Phase.PROGRESSING


def run_blue_green(run: Pass) -> None:
    status, spec = run.status, run.spec
    blue_green = spec.strategy.blue_green
    assert blue_green is not None
    if status.candidate_revision != run.revision:
        start(run)
    assert status.candidate_revision is not None and status.stable_revision is not None
    run.actions.append(EnsureDeployment(status.candidate_revision, spec.replicas))
    run.actions.append(ScaleDeployment(status.stable_revision, spec.replicas))
    for _ in range(len(STAGES) + 1):
        if ended(status):
            return
        stage = status.current_step_index if status.current_step_index is not None else BG_PREVIEW
        switched = stage == BG_SWITCHED
        status.weights = Weights(stable=0, candidate=100) if switched else Weights()
        if switched:
            start_background_analysis(run)
        run_background_analysis(run)
        if ended(status):
            return
        if status.phase == Phase.PAUSED and status.pause_reason in (PAUSE_USER, PAUSE_INCONCLUSIVE):
            if not run.promote_requested:
                return
            resume(run, fresh_step_analysis=False)
        if stage == BG_PREVIEW:
            if run.ready(status.candidate_revision) < spec.replicas:
                status.message = (
                    f"preview of {status.candidate_version}: {run.ready(status.candidate_revision)}/{spec.replicas} "
                    "replicas ready"
                )
                check_deadline(run)
                return
            _enter(run, BG_PRE_ANALYSIS)
        elif stage == BG_PRE_ANALYSIS:
            gate = blue_green.pre_promotion_analysis
            if (
                gate is not None
                and run_gate_analysis(run, gate, BG_PRE_ANALYSIS, "pre-promotion") != Verdict.SUCCESSFUL
            ):
                return
            _enter(run, BG_GATE)
        elif stage == BG_GATE:
            if not _may_switch(run):
                return
            _enter(run, BG_SWITCHED)
            status.switched_at = run.at
            status.message = f"switched traffic to {status.candidate_version}; {status.stable_version} kept running"
            run.event("Switched", status.message)
        else:
            _after_switch(run)
            return


def _may_switch(run: Pass) -> bool:
    status, spec = run.status, run.spec
    blue_green = spec.strategy.blue_green
    assert blue_green is not None and status.step_started_at is not None
    if run.promote_requested:
        run.promote_requested = run.promote_full = False
        return True
    if not blue_green.auto_promotion or spec.automation != Automation.AUTO:
        if status.pause_reason != PAUSE_PROMOTION:
            status.pause_reason = PAUSE_PROMOTION
            status.phase = Phase.PAUSED
            status.message = f"preview of {status.candidate_version} ready; `promote` to switch traffic to it"
            run.event("WaitingForPromote", status.message)
        return False
    opens = parse_time(status.step_started_at) + timedelta(seconds=blue_green.auto_promotion_seconds)
    if run.now < opens:
        status.message = f"switching to {status.candidate_version} in {(opens - run.now).total_seconds():.0f}s"
        run.again_in((opens - run.now).total_seconds())
        return False
    return True


def _after_switch(run: Pass) -> None:
    status, spec = run.status, run.spec
    blue_green = spec.strategy.blue_green
    assert blue_green is not None and status.switched_at is not None
    gate = blue_green.post_promotion_analysis
    if gate is not None:
        verdict = run_gate_analysis(run, gate, BG_SWITCHED, "post-promotion")
        if verdict != Verdict.SUCCESSFUL:
            return
    scale_down_at = parse_time(status.switched_at) + timedelta(seconds=blue_green.scale_down_delay_seconds)
    if run.now < scale_down_at:
        status.message = (
            f"{status.candidate_version} is live; {status.stable_version} scales down at "
            f"{scale_down_at.isoformat(timespec='seconds')}"
        )
        run.again_in((scale_down_at - run.now).total_seconds())
        return
    finish_promotion(run)
