"""Canary: weights, mirrors and header routes step by step, with pauses and analysis gates.

Without a traffic router the weight is a replica ratio behind one Service. With a router (Gateway
API, Istio) the stable version keeps its full size, the candidate gets the replicas its share of
traffic needs, and a step counts as done only once the router reports the state it was asked for.
"""

from __future__ import annotations

import math
from datetime import timedelta

from modelrollout.api.durations import parse_duration
from modelrollout.api.models import Automation, CanaryStage, CanaryStep, ModelRolloutSpec, Verdict, Weights
from modelrollout.engine.common import (
    Pass,
    check_deadline,
    drop_unfinished_step_analysis,
    ended,
    finish_promotion,
    parse_time,
    replica_split,
    resume,
    roll_back,
    run_background_analysis,
    run_gate_analysis,
    splits_by_replicas,
    start,
    start_background_analysis,
    timestamp,
)
from modelrollout.engine.gates import PROMOTION, ROLLOUT, gates_open, rollback_requested, step_scope
from modelrollout.engine.stages import Trigger, hold_of
from modelrollout.engine.types import EnsureDeployment, ScaleDeployment
from modelrollout.vocabulary.routes import HeaderMatch, RouteState


def route_at(steps: list[CanaryStep], index: int) -> RouteState:
    """What the router should do at a step: the last weight, mirror and header route set up to it."""
    weight, mirror, header = 0, 0, None
    for step in steps[: index + 1]:
        if step.set_weight is not None:
            weight = step.set_weight
        if step.mirror is not None:
            mirror = step.mirror.percent
        if step.set_header_route is not None:
            header = HeaderMatch(step.set_header_route.name, step.set_header_route.value)
    return RouteState(candidate_weight=weight, mirror_percent=mirror, header=header)


def run_canary(run: Pass) -> None:
    status, spec = run.status, run.spec
    if status.candidate_revision != run.revision:
        start(run)
    steps = spec.strategy.steps
    # This pass's measurements are recorded once, before the steps: the loop below may go through
    # several steps, and each must not count the same measurement again.
    run_background_analysis(run)
    if not ended(status) and run.spec.webhooks:
        asked_back = rollback_requested(run)
        if asked_back is not None:
            roll_back(run, "RollbackHook", asked_back)
            return
    # Each pass may finish several steps that need no waiting (a pause of 0s, an analysis step
    # whose results are in); the bound keeps a malformed status from looping.
    for _ in range(len(steps) + 2):
        if ended(status):
            return
        index = status.current_step_index if status.current_step_index is not None else 0
        promoting = run.stage == CanaryStage.PROMOTING
        target = RouteState(candidate_weight=100) if promoting else route_at(steps, min(index, len(steps) - 1))
        if not promoting and spec.webhooks and not webhook_gates_open(run, index):
            # Nothing moves past a webhook gate that has not said yes: the traffic stays where it is.
            if index > 0 or status.weights.candidate > 0:
                apply_route(run, route_at(steps, index - 1) if index > 0 else RouteState(), False)
            return
        apply_route(run, target, promoting)
        if hold_of(status) is not None:
            if not run.promote_requested:
                return
            resume(run, fresh_step_analysis=False)
        if index >= len(steps):
            promote(run)
            return
        if not step_done(run, steps[index], index):
            return
        if spec.automation == Automation.MANUAL and not run.promote_requested:
            if run.stage != CanaryStage.STEP_DONE_WAITING:
                run.enter(Trigger.STEP_DONE_MANUAL, CanaryStage.STEP_DONE_WAITING)
                status.message = f"step {index} ({steps[index].describe()}) done; waiting for `promote`"
                run.event("WaitingForPromote", status.message)
            return
        full = run.promote_full
        step = steps[index]
        opened_a_gate = step.pause is not None or step.analysis is not None or spec.automation == Automation.MANUAL
        if opened_a_gate and not full:
            # A plain promote opens one gate: a pause, an analysis a person let through, a manual
            # step. A promote sent while a weight was being set waits for the next gate.
            run.promote_requested = False
        advance(run, index, len(steps) if full else index + 1)


def webhook_gates_open(run: Pass, index: int) -> bool:
    """confirm-rollout and pre-rollout before the first step (the candidate is not even created
    before they open), confirm-traffic-increase before a step that raises the candidate's weight."""
    steps = run.spec.strategy.steps
    if index == 0 and not gates_open(run, ("confirm-rollout", "pre-rollout"), ROLLOUT):
        return False
    if index < len(steps):
        before = route_at(steps, index - 1).candidate_weight if index > 0 else 0
        if route_at(steps, index).candidate_weight > before:
            return gates_open(run, ("confirm-traffic-increase",), step_scope(index))
    return True


def advance(run: Pass, index: int, to: int) -> None:
    status = run.status
    steps = run.spec.strategy.steps
    run.event("StepCompleted", f"step {index} ({steps[index].describe()}) completed")
    status.current_step_index = to
    status.step_started_at = run.at
    drop_unfinished_step_analysis(status)
    run.enter(Trigger.ADVANCE, CanaryStage.STEPPING)
    status.message = f"step {to}: {steps[to].describe()}" if to < len(steps) else "all steps completed; promoting"


def _candidate_replicas(run: Pass, target: RouteState) -> int:
    return candidate_replicas(run.spec, target)


def candidate_replicas(spec: ModelRolloutSpec, target: RouteState) -> int:
    """The candidate's replicas that a route target needs."""
    total = spec.replicas
    if splits_by_replicas(spec):
        return replica_split(total, target.candidate_weight)[1]
    share = max(target.candidate_weight, target.mirror_percent)
    wanted = math.ceil(total * share / 100)
    # A header route needs at least one pod behind it, even at weight 0.
    return max(wanted, 1) if target.header is not None or share > 0 else wanted


def apply_route(run: Pass, target: RouteState, promoting: bool) -> None:
    """Ask for the replicas and routing of a target; report the weights actually in force."""
    status, spec = run.status, run.spec
    assert status.candidate_revision is not None and status.stable_revision is not None
    candidate_replicas = _candidate_replicas(run, target)
    run.actions.append(EnsureDeployment(status.candidate_revision, candidate_replicas))
    candidate_ready = run.ready(status.candidate_revision)
    ready_for_target = candidate_ready >= candidate_replicas
    if not splits_by_replicas(spec):
        # The router moves traffic only to pods that are ready; stable keeps its full size.
        run.route = target if ready_for_target else _route_now(run, target)
        run.actions.append(ScaleDeployment(status.stable_revision, spec.replicas))
        observed = run.observed.route.state if run.observed.route is not None else None
        realised = observed or RouteState()
        status.weights = Weights(
            stable=100 - realised.candidate_weight,
            candidate=realised.candidate_weight,
            mirror=realised.mirror_percent,
            header_route=realised.header is not None,
            header=f"{realised.header.name}={realised.header.value}" if realised.header is not None else None,
        )
        candidate_sees_traffic = realised != RouteState()
    else:
        stable_replicas = replica_split(spec.replicas, target.candidate_weight)[0]
        # Stable keeps the replicas it has until the candidate's pods are ready to take the traffic
        # over, so capacity never dips while the candidate starts.
        stable_now = run.replicas_now(status.stable_revision, spec.replicas)
        stable_target = stable_replicas if ready_for_target else max(stable_replicas, stable_now)
        if promoting and ready_for_target:
            stable_target = 0
        run.actions.append(ScaleDeployment(status.stable_revision, stable_target))
        stable_ready = min(run.ready(status.stable_revision), stable_target)
        serving = candidate_ready + stable_ready
        share = round(100 * candidate_ready / serving) if serving else 0
        status.weights = Weights(stable=100 - share, candidate=share)
        candidate_sees_traffic = share > 0
    if candidate_sees_traffic:
        start_background_analysis(run)


def _route_now(run: Pass, target: RouteState) -> RouteState:
    """While the candidate's pods start, keep what the router already does (never more)."""
    observed = run.observed.route.state if run.observed.route is not None else None
    current = observed or RouteState()
    return RouteState(
        candidate_weight=min(current.candidate_weight, target.candidate_weight),
        mirror_percent=min(current.mirror_percent, target.mirror_percent),
        header=current.header if current.header == target.header else None,
    )


def step_done(run: Pass, step: CanaryStep, index: int) -> bool:
    status, spec = run.status, run.spec
    assert status.step_started_at is not None
    target = route_at(spec.strategy.steps, index)
    if run.ready(status.candidate_revision) < _candidate_replicas(run, target):
        check_deadline(run)
        return False
    if not run.route_in_place():
        status.message = f"step {index}: waiting for the traffic router to apply {step.describe()}"
        check_deadline(run)
        return False
    if step.set_weight is not None or step.mirror is not None or step.set_header_route is not None:
        return True
    if step.pause is not None:
        if step.pause.duration is None:
            if run.promote_requested:
                return True
            if run.stage != CanaryStage.PAUSED_AT_STEP:
                run.enter(Trigger.STEP_PAUSE, CanaryStage.PAUSED_AT_STEP)
                status.message = f"step {index}: paused until `promote`"
                run.event("Paused", status.message)
            return False
        ends = parse_time(status.step_started_at) + timedelta(seconds=parse_duration(step.pause.duration))
        if run.now >= ends or run.promote_requested:
            return True
        status.message = f"step {index}: pausing {step.pause.duration} (until {timestamp(ends)})"
        run.again_in((ends - run.now).total_seconds())
        return False
    assert step.analysis is not None
    return run_gate_analysis(run, step.analysis, f"step {index}") == Verdict.SUCCESSFUL


def promote(run: Pass) -> None:
    status, spec = run.status, run.spec
    if spec.automation != Automation.AUTO and not run.promote_requested and run.stage != CanaryStage.PROMOTING:
        if run.stage != CanaryStage.AWAITING_PROMOTION:
            run.enter(Trigger.AWAIT_PROMOTION, CanaryStage.AWAITING_PROMOTION)
            status.message = f"all steps done; `promote` to make {status.candidate_version} stable"
            run.event("WaitingForPromote", status.message)
        return
    starting = run.stage != CanaryStage.PROMOTING
    if starting and spec.webhooks and not gates_open(run, ("confirm-promotion",), PROMOTION):
        return
    if starting:
        # Remembered in status, so the decision holds across passes (and restarts) while pods scale.
        run.promote_requested = run.promote_full = False
        run.enter(Trigger.PROMOTE, CanaryStage.PROMOTING)
        status.step_started_at = run.at
        apply_route(run, RouteState(candidate_weight=100), promoting=True)
    candidate_ready = run.ready(status.candidate_revision)
    if candidate_ready < spec.replicas:
        if starting:  # a candidate already at full size is promoted in this pass: Promoted says it all
            run.event("Promoting", f"promoting {status.candidate_version}: scaling it to {spec.replicas} replicas")
        status.message = f"promoting {status.candidate_version}: {candidate_ready}/{spec.replicas} replicas ready"
        check_deadline(run)
        return
    finish_promotion(run)
