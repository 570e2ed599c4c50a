"""The rollout state machine: decide(rollout, status, observations, now) -> actions and new status.

No I/O and no clock: everything the next pass needs is in the status it returns, so a restarted
operator given the same status and observations makes the same decision. The handler calls
`plan_measurements` first, queries the metric backends, and passes the results in.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from modelrollout.analysis.evaluate import Limits, judge, overall, record, worst
from modelrollout.api.durations import format_duration, parse_duration
from modelrollout.api.models import (
    TEMPLATE_VARIABLES,
    AnalysisStatus,
    Automation,
    CanaryStep,
    Condition,
    MetricResult,
    ModelRolloutSpec,
    ModelRolloutStatus,
    Phase,
    Verdict,
    Weights,
    render_template,
)
from modelrollout.api.validation import InvalidSpec, parse_spec
from modelrollout.engine.types import (
    Action,
    Command,
    CommandAction,
    Decision,
    DeleteDeployment,
    EnsureDeployment,
    EnsureService,
    EventRecord,
    MeasurementRequest,
    Observations,
    RolloutRef,
    ScaleDeployment,
)

# How soon to look again while pods are starting: readiness changes also wake the loop, this is
# only the fallback.
READINESS_POLL_SECONDS = 5.0
# How often a settled rollout is looked at again, as a safety net for missed watch events.
IDLE_RESYNC_SECONDS = 300.0

PAUSE_STEP = "PauseStep"
PAUSE_MANUAL_STEP = "ManualStep"
PAUSE_PROMOTION = "Promotion"
PAUSE_INCONCLUSIVE = "Inconclusive"
PAUSE_USER = "User"
PROMOTING = "Promoting"


def timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def revision_of(spec: ModelRolloutSpec) -> str:
    """Identify a deliverable version: the model and the pod template, nothing else."""
    payload = json.dumps({"model": spec.model.wire(), "template": spec.template}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def replica_split(total: int, weight: int) -> tuple[int, int]:
    """(stable, candidate) replicas that realise a weight behind one Service.

    The candidate gets ceil(total x weight / 100); stable keeps the rest and never drops below one
    replica while it still serves traffic (weight under 100).
    """
    candidate = math.ceil(total * weight / 100)
    stable = total - candidate
    if weight < 100:
        stable = max(stable, 1)
    return stable, candidate


def template_values(ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus) -> dict[str, str]:
    values = {
        "name": ref.name,
        "namespace": ref.namespace,
        "model": spec.model.name,
        "stable": status.stable_version or "",
        "candidate": status.candidate_version or spec.model.version,
    }
    assert set(values) == set(TEMPLATE_VARIABLES)
    return values


# --- measurement planning -----------------------------------------------------------------------


def _due(result: MetricResult | None, started_at: str, interval: float, now: datetime, immediate: bool) -> bool:
    return _next_due_in(result, started_at, interval, now, immediate) <= 0


def _running(analysis: AnalysisStatus | None) -> bool:
    return analysis is not None and analysis.phase == Verdict.RUNNING


def plan_measurements(ref: RolloutRef, status: ModelRolloutStatus, now: datetime) -> list[MeasurementRequest]:
    """The queries that fall due in this pass, for the handler to run before `decide`."""
    try:
        spec = parse_spec(ref.spec)
    except InvalidSpec:
        return []
    if status.phase not in (Phase.PROGRESSING, Phase.PAUSED) or status.candidate_revision != revision_of(spec):
        return []
    values = template_values(ref, spec, status)
    requests: list[MeasurementRequest] = []
    background = status.background_analysis
    if _running(background):
        assert background is not None
        interval = parse_duration(spec.analysis.interval)
        for metric in spec.analysis.metrics:
            if metric.background and _due(background.result(metric.name), background.started_at, interval, now, False):
                requests.append(_request("background", metric.name, spec, values))
    step = status.step_analysis
    index = status.current_step_index
    steps = spec.strategy.canary.steps
    if _running(step) and index is not None and index < len(steps) and steps[index].analysis is not None:
        assert step is not None
        step_spec = steps[index].analysis
        assert step_spec is not None
        interval = parse_duration(step_spec.interval)
        for name in step_spec.metrics:
            result = step.result(name)
            if (result is None or result.phase == Verdict.RUNNING) and _due(
                result, step.started_at, interval, now, True
            ):
                requests.append(_request("step", name, spec, values))
    return requests


def _request(kind: str, name: str, spec: ModelRolloutSpec, values: dict[str, str]) -> MeasurementRequest:
    metric = spec.analysis.metric(name)
    address = metric.prometheus.address or spec.analysis.prometheus.address
    return MeasurementRequest(kind, name, render_template(metric.prometheus.query, values), address)


# --- the decision ------------------------------------------------------------------------------


@dataclass
class _Pass:
    """The working state of one decision; mutated while deciding, returned as a Decision."""

    ref: RolloutRef
    spec: ModelRolloutSpec
    status: ModelRolloutStatus
    observed: Observations
    now: datetime
    revision: str
    actions: list[Action] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    requeue: list[float] = field(default_factory=list)
    promote_requested: bool = False
    promote_full: bool = False

    @property
    def at(self) -> str:
        return timestamp(self.now)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(EventRecord("Warning" if warning else "Normal", reason, message))

    def again_in(self, seconds: float) -> None:
        self.requeue.append(max(seconds, 0.0))

    def replicas_now(self, revision: str, default: int) -> int:
        """Replicas a Deployment has: as set earlier in this pass, else as observed."""
        for action in reversed(self.actions):
            if isinstance(action, (EnsureDeployment, ScaleDeployment)) and action.revision == revision:
                return action.replicas
        state = self.observed.deployments.get(revision)
        return state.replicas if state is not None else default

    def ready(self, revision: str | None) -> int:
        state = self.observed.deployments.get(revision or "")
        return state.ready if state is not None else 0


def decide(ref: RolloutRef, status: ModelRolloutStatus, observed: Observations, now: datetime) -> Decision:
    working = status.model_copy(deep=True)
    try:
        spec = parse_spec(ref.spec)
    except InvalidSpec as invalid:
        return _refuse(ref, working, invalid, now)
    run = _Pass(ref, spec, working, observed, now, revision_of(spec))
    if working.phase == Phase.FAILED and _condition_reason(working, "Degraded") == "InvalidSpec":
        # The spec was fixed: carry on from the progress the status still holds.
        working.phase = Phase.PROGRESSING if working.candidate_revision else Phase.PENDING
        working.message = "spec is valid again"
        run.event("SpecValid", "the spec is valid again; resuming")
    _apply_command(run)
    if not observed.service_exists:
        run.actions.append(EnsureService())
    if working.stable_revision is None:
        _first_deploy(run)
    elif run.revision == working.stable_revision:
        _settle_on_stable(run)
    elif run.revision == working.rolled_back_revision:
        _hold_rolled_back(run)
    else:
        _canary(run)
    working.observed_generation = ref.generation
    _set_conditions(run)
    requeue = min(run.requeue) if run.requeue else IDLE_RESYNC_SECONDS
    return Decision(compact(run.actions), working, run.events, requeue)


def compact(actions: list[Action]) -> list[Action]:
    """One action per Deployment: the last word wins, so a pass that first asked for replicas and
    then rolled back never creates pods it no longer wants."""
    final: dict[str, Action] = {}
    ensured: set[str] = set()
    result: list[Action] = []
    for action in actions:
        if isinstance(action, EnsureService):
            if action not in result:
                result.append(action)
            continue
        if isinstance(action, EnsureDeployment):
            ensured.add(action.revision)
        final[action.revision] = action
    for revision, action in final.items():
        if isinstance(action, ScaleDeployment) and revision in ensured:
            action = EnsureDeployment(revision, action.replicas)
        result.append(action)
    return result


def _refuse(ref: RolloutRef, status: ModelRolloutStatus, invalid: InvalidSpec, now: datetime) -> Decision:
    message = f"invalid spec: {invalid}"
    events = []
    if status.phase != Phase.FAILED or status.message != message:
        events.append(EventRecord("Warning", "InvalidSpec", message))
    status.phase = Phase.FAILED
    status.message = message
    status.observed_generation = ref.generation
    at = timestamp(now)
    for kind, value in (
        ("Ready", "False"),
        ("Progressing", "False"),
        ("Degraded", "True"),
        ("Reconciling", "False"),
        ("Stalled", "True"),
    ):
        _put_condition(status, Condition(type=kind, status=value, reason="InvalidSpec", message=message), at)
    for condition in status.conditions:
        condition.observed_generation = ref.generation
    return Decision([], status, events, None)


def _condition_reason(status: ModelRolloutStatus, kind: str) -> str | None:
    condition = status.condition(kind)
    return condition.reason if condition is not None and condition.status == "True" else None


# --- commands -------------------------------------------------------------------------------------


def _apply_command(run: _Pass) -> None:
    command = run.observed.command
    status = run.status
    if command is None or command.id == status.last_command_id:
        return
    status.last_command_id = command.id
    in_flight = status.phase in (Phase.PROGRESSING, Phase.PAUSED) and status.candidate_revision is not None
    action = command.action
    if action in (CommandAction.PROMOTE, CommandAction.PROMOTE_FULL) and in_flight:
        run.promote_requested = True
        run.promote_full = action == CommandAction.PROMOTE_FULL
        run.event("PromoteRequested", "promotion requested" + (" (full)" if run.promote_full else ""))
    elif action == CommandAction.ABORT and in_flight:
        _roll_back(run, "Aborted", "aborted by a person")
    elif action == CommandAction.RETRY and status.phase == Phase.ROLLED_BACK:
        status.rolled_back_revision = None
        status.candidate_revision = None
        run.event("RetryRequested", "retrying the rolled-back version")
    elif action == CommandAction.PAUSE and in_flight:
        status.pause_reason = PAUSE_USER
        status.phase = Phase.PAUSED
        status.message = "paused by a person; `resume` or `promote` to continue"
        run.event("Paused", status.message)
    elif (
        action == CommandAction.RESUME
        and status.phase == Phase.PAUSED
        and status.pause_reason
        in (
            PAUSE_USER,
            PAUSE_INCONCLUSIVE,
        )
    ):
        _resume(run)
    else:
        run.event(
            "CommandIgnored",
            f"{action.value} does not apply while the rollout is {status.phase.value}",
            warning=True,
        )


def _resume(run: _Pass, fresh_step_analysis: bool = True) -> None:
    """Go on after a pause; an inconclusive background analysis starts afresh.

    A person who looked at inconclusive metrics and said go on should not see the rollout stop
    again on the same tally. `resume` also re-measures an inconclusive analysis step, while
    `promote` lets that step pass.
    """
    status = run.status
    if status.background_analysis is not None and status.background_analysis.phase == Verdict.INCONCLUSIVE:
        status.background_analysis = _new_analysis(run, "background", None)
    step = status.step_analysis
    if fresh_step_analysis and step is not None and step.phase == Verdict.INCONCLUSIVE:
        status.step_analysis = None
    status.pause_reason = None
    status.phase = Phase.PROGRESSING
    run.event("Resumed", "rollout resumed")


# --- branches -------------------------------------------------------------------------------------


def _first_deploy(run: _Pass) -> None:
    status, spec = run.status, run.spec
    run.actions.append(EnsureDeployment(run.revision, spec.replicas))
    if status.rollout_started_at is None or status.candidate_revision != run.revision:
        status.rollout_started_at = run.at
        status.candidate_revision = run.revision
        status.candidate_version = spec.model.version
        run.event("Deploying", f"deploying {spec.model.version} as the first stable version")
    ready = run.ready(run.revision)
    if ready >= spec.replicas:
        status.stable_revision = run.revision
        status.stable_version = spec.model.version
        status.candidate_revision = None
        status.candidate_version = None
        status.rollout_started_at = None
        status.phase = Phase.SUCCEEDED
        status.weights = Weights(stable=100, candidate=0)
        status.message = f"{spec.model.version} is stable with {ready} ready replica(s)"
        run.event("Deployed", status.message)
        return
    waited = (run.now - parse_time(status.rollout_started_at)).total_seconds()
    if waited > spec.progress_deadline_seconds:
        message = (
            f"{spec.model.version}: {ready}/{spec.replicas} replicas ready after {format_duration(waited)} "
            f"(progressDeadlineSeconds {spec.progress_deadline_seconds})"
        )
        if status.phase != Phase.FAILED:
            run.event("ProgressDeadlineExceeded", message, warning=True)
        status.phase = Phase.FAILED
        status.message = message
    else:
        status.phase = Phase.PROGRESSING
        status.message = f"waiting for {spec.model.version}: {ready}/{spec.replicas} replicas ready"
    run.again_in(READINESS_POLL_SECONDS)


def _settle_on_stable(run: _Pass) -> None:
    status, spec = run.status, run.spec
    if status.candidate_revision is not None:
        if status.phase in (Phase.PROGRESSING, Phase.PAUSED):
            run.event(
                "RolloutAborted",
                f"spec is back on the stable version {status.stable_version}; candidate "
                f"{status.candidate_version} withdrawn",
            )
        run.actions.append(DeleteDeployment(status.candidate_revision))
        _clear_candidate(status)
    status.rolled_back_revision = None
    run.actions.append(EnsureDeployment(run.revision, spec.replicas))
    ready = run.ready(run.revision)
    status.weights = Weights(stable=100, candidate=0)
    status.phase = Phase.SUCCEEDED
    status.message = f"{status.stable_version} is stable with {ready}/{spec.replicas} ready replica(s)"
    if ready < spec.replicas:
        run.again_in(READINESS_POLL_SECONDS)


def _hold_rolled_back(run: _Pass) -> None:
    status = run.status
    if status.stable_revision is not None:
        run.actions.append(ScaleDeployment(status.stable_revision, run.spec.replicas))
    if status.candidate_revision is not None:
        run.actions.append(ScaleDeployment(status.candidate_revision, 0))
    status.weights = Weights(stable=100, candidate=0)
    status.phase = Phase.ROLLED_BACK


def _clear_candidate(status: ModelRolloutStatus) -> None:
    status.candidate_revision = None
    status.candidate_version = None
    status.current_step_index = None
    status.step_started_at = None
    status.rollout_started_at = None
    status.pause_reason = None
    status.background_analysis = None
    status.step_analysis = None


def _new_analysis(run: _Pass, kind: str, step_index: int | None) -> AnalysisStatus:
    return AnalysisStatus.model_validate({"kind": kind, "stepIndex": step_index, "startedAt": run.at})


# --- canary --------------------------------------------------------------------------------------


def _weight_at(steps: list[CanaryStep], index: int) -> int:
    """The weight in force at a step: set by the last setWeight at or before it."""
    weight = 0
    for step in steps[: index + 1]:
        if step.set_weight is not None:
            weight = step.set_weight
    return weight


def _start_candidate(run: _Pass) -> None:
    status = run.status
    if status.candidate_revision is not None and status.candidate_revision != run.revision:
        run.event(
            "CandidateReplaced",
            f"{status.candidate_version} is replaced by {run.spec.model.version} before it finished",
        )
        run.actions.append(DeleteDeployment(status.candidate_revision))
    _clear_candidate(status)
    status.rolled_back_revision = None
    status.candidate_revision = run.revision
    status.candidate_version = run.spec.model.version
    status.current_step_index = 0
    status.step_started_at = run.at
    status.rollout_started_at = run.at
    status.phase = Phase.PROGRESSING
    status.message = f"delivering {run.spec.model.version} by canary"
    run.event("RolloutStarted", f"canary of {run.spec.model.version} started (stable: {status.stable_version})")


def _canary(run: _Pass) -> None:
    status, spec = run.status, run.spec
    if status.candidate_revision != run.revision:
        _start_candidate(run)
    steps = spec.strategy.canary.steps
    # Each pass may finish several steps that need no waiting (a pause of 0s, an analysis step
    # whose results are in); the bound keeps a malformed status from looping.
    for _ in range(len(steps) + 2):
        if _ended(status):
            return
        _run_background_analysis(run)
        if _ended(status):
            return
        index = status.current_step_index if status.current_step_index is not None else 0
        promoting = status.pause_reason == PROMOTING
        _apply_weight(run, 100 if promoting else _weight_at(steps, min(index, len(steps) - 1)), promoting)
        if status.phase == Phase.PAUSED and status.pause_reason in (PAUSE_USER, PAUSE_INCONCLUSIVE):
            if not run.promote_requested:
                return
            _resume(run, fresh_step_analysis=False)
        if index >= len(steps):
            _promote(run)
            return
        if not _step_done(run, steps[index], index):
            return
        if spec.automation == Automation.MANUAL and not run.promote_requested:
            if status.pause_reason != PAUSE_MANUAL_STEP:
                status.pause_reason = PAUSE_MANUAL_STEP
                status.phase = Phase.PAUSED
                status.message = f"step {index} ({steps[index].describe()}) done; waiting for `promote`"
                run.event("WaitingForPromote", status.message)
            return
        run.promote_requested = run.promote_full
        _advance(run, index, len(steps) if run.promote_full else index + 1)


def _ended(status: ModelRolloutStatus) -> bool:
    """The candidate is out of the picture: rolled back, or promoted in this pass."""
    return status.phase == Phase.ROLLED_BACK or status.candidate_revision is None


def _advance(run: _Pass, index: int, to: int) -> None:
    status = run.status
    steps = run.spec.strategy.canary.steps
    run.event("StepCompleted", f"step {index} ({steps[index].describe()}) completed")
    status.current_step_index = to
    status.step_started_at = run.at
    status.step_analysis = None
    status.pause_reason = None
    status.phase = Phase.PROGRESSING
    status.message = f"step {to}: {steps[to].describe()}" if to < len(steps) else "all steps completed; promoting"


def _apply_weight(run: _Pass, weight: int, promoting: bool) -> None:
    status, spec = run.status, run.spec
    stable_replicas, candidate_replicas = replica_split(spec.replicas, weight)
    assert status.candidate_revision is not None and status.stable_revision is not None
    run.actions.append(EnsureDeployment(status.candidate_revision, candidate_replicas))
    # Stable keeps the replicas it has until the candidate's pods are ready to take the traffic
    # over, so capacity never dips while the candidate starts.
    candidate_ready = run.ready(status.candidate_revision)
    stable_now = run.replicas_now(status.stable_revision, spec.replicas)
    stable_target = stable_replicas if candidate_ready >= candidate_replicas else max(stable_replicas, stable_now)
    if promoting and candidate_ready >= candidate_replicas:
        stable_target = 0
    run.actions.append(ScaleDeployment(status.stable_revision, stable_target))
    stable_ready = min(run.ready(status.stable_revision), stable_target if stable_target else 0)
    serving = candidate_ready + stable_ready
    candidate_share = round(100 * candidate_ready / serving) if serving else 0
    status.weights = Weights(stable=100 - candidate_share, candidate=candidate_share)
    if (
        candidate_share > 0
        and status.background_analysis is None
        and any(metric.background for metric in spec.analysis.metrics)
    ):
        status.background_analysis = _new_analysis(run, "background", None)
        run.again_in(parse_duration(spec.analysis.interval))


def _candidate_ready_for(run: _Pass, weight: int) -> bool:
    _, candidate_replicas = replica_split(run.spec.replicas, weight)
    return run.ready(run.status.candidate_revision) >= candidate_replicas


def _check_deadline(run: _Pass) -> bool:
    """Roll back when the candidate's pods are not ready in time; True if it did."""
    status, spec = run.status, run.spec
    assert status.step_started_at is not None
    waited = (run.now - parse_time(status.step_started_at)).total_seconds()
    if waited <= spec.progress_deadline_seconds:
        run.again_in(min(READINESS_POLL_SECONDS, spec.progress_deadline_seconds - waited + 0.01))
        return False
    state = run.observed.deployments.get(status.candidate_revision or "")
    ready = state.ready if state else 0
    wanted = state.replicas if state else 0
    _roll_back(
        run,
        "ProgressDeadlineExceeded",
        f"candidate {status.candidate_version} had {ready}/{wanted} replicas ready after "
        f"{format_duration(waited)} (progressDeadlineSeconds {spec.progress_deadline_seconds})",
    )
    return True


def _step_done(run: _Pass, step: CanaryStep, index: int) -> bool:
    status, spec = run.status, run.spec
    assert status.step_started_at is not None
    if not _candidate_ready_for(run, _weight_at(spec.strategy.canary.steps, index)):
        _check_deadline(run)
        return False
    if step.set_weight is not None:
        return True
    if step.pause is not None:
        if step.pause.duration is None:
            if run.promote_requested:
                return True
            if status.pause_reason != PAUSE_STEP:
                status.pause_reason = PAUSE_STEP
                status.phase = Phase.PAUSED
                status.message = f"step {index}: paused until `promote`"
                run.event("Paused", status.message)
            return False
        ends = parse_time(status.step_started_at) + timedelta(seconds=parse_duration(step.pause.duration))
        if run.now >= ends or run.promote_requested:
            return True
        status.message = f"step {index}: pausing {step.pause.duration} (until {timestamp(ends)})"
        run.again_in((ends - run.now).total_seconds())
        return False
    return _step_analysis_done(run, step, index)


def _step_analysis_done(run: _Pass, step: CanaryStep, index: int) -> bool:
    status, spec = run.status, run.spec
    analysis_spec = step.analysis
    assert analysis_spec is not None
    if status.step_analysis is None or status.step_analysis.step_index != index:
        status.step_analysis = _new_analysis(run, "step", index)
        status.step_analysis.metrics = [MetricResult(name=name) for name in analysis_spec.metrics]
        run.event("AnalysisStarted", f"step {index}: measuring {', '.join(analysis_spec.metrics)}")
        run.again_in(0)
    analysis = status.step_analysis
    before = analysis.phase
    limits = Limits.of(spec.analysis)
    for position, result in enumerate(analysis.metrics):
        observation = run.observed.measurements.get(("step", result.name))
        if observation is not None and result.phase == Verdict.RUNNING:
            threshold = spec.analysis.metric(result.name).threshold
            analysis.metrics[position] = record(
                result, judge(observation, threshold, run.at), limits, analysis_spec.count
            )
    analysis.phase = overall(analysis)
    if analysis.phase == Verdict.SUCCESSFUL:
        if before != Verdict.SUCCESSFUL:
            run.event("AnalysisSucceeded", f"step {index}: every metric passed ({_tally(analysis)})")
        return True
    if analysis.phase == Verdict.RUNNING:
        status.message = f"step {index}: analysis running ({_tally(analysis)})"
        interval = parse_duration(analysis_spec.interval)
        waiting = [result for result in analysis.metrics if result.phase == Verdict.RUNNING]
        run.again_in(min(_next_due_in(result, analysis.started_at, interval, run.now, True) for result in waiting))
        return False
    if run.promote_requested and analysis.phase == Verdict.INCONCLUSIVE:
        return True
    if before == Verdict.RUNNING:
        _judge_analysis_outcome(run, analysis, f"step {index} analysis")
    return False


def _next_due_in(
    result: MetricResult | None, started_at: str, interval: float, now: datetime, immediate: bool
) -> float:
    """Seconds until a metric's next measurement falls due (0 when it is due now)."""
    if result is None or not result.measurements:
        start = parse_time(started_at)
        due = start if immediate else start + timedelta(seconds=interval)
    else:
        due = parse_time(result.measurements[-1].at) + timedelta(seconds=interval)
    return max((due - now).total_seconds(), 0.0)


def _tally(analysis: AnalysisStatus) -> str:
    return ", ".join(f"{result.name} {result.successful}/{result.count} ok" for result in analysis.metrics)


def _run_background_analysis(run: _Pass) -> None:
    status, spec = run.status, run.spec
    analysis = status.background_analysis
    if analysis is None or analysis.phase != Verdict.RUNNING:
        return
    limits = Limits.of(spec.analysis)
    for metric in spec.analysis.metrics:
        observation = run.observed.measurements.get(("background", metric.name))
        if not metric.background or observation is None:
            continue
        result = analysis.result(metric.name)
        if result is None:
            result = MetricResult(name=metric.name)
            analysis.metrics.append(result)
        updated = record(result, judge(observation, metric.threshold, run.at), limits, None)
        analysis.metrics[analysis.metrics.index(result)] = updated
    analysis.phase = overall(analysis)
    if analysis.phase == Verdict.RUNNING:
        interval = parse_duration(spec.analysis.interval)
        run.again_in(
            min(
                (
                    _next_due_in(analysis.result(metric.name), analysis.started_at, interval, run.now, False)
                    for metric in spec.analysis.metrics
                    if metric.background
                ),
                default=interval,
            )
        )
    else:
        _judge_analysis_outcome(run, analysis, "background analysis")


def _judge_analysis_outcome(run: _Pass, analysis: AnalysisStatus, what: str) -> None:
    culprit = worst(analysis)
    reason = f"{what}: metric {culprit.name!r} {culprit.message}" if culprit else what
    if analysis.phase in (Verdict.FAILED, Verdict.ERROR):
        _roll_back(run, "AnalysisFailed" if analysis.phase == Verdict.FAILED else "AnalysisError", reason)
    elif analysis.phase == Verdict.INCONCLUSIVE and run.status.pause_reason != PAUSE_INCONCLUSIVE:
        status = run.status
        status.pause_reason = PAUSE_INCONCLUSIVE
        status.phase = Phase.PAUSED
        status.message = f"{reason}; waiting for a person (`promote` to go on, `abort` to roll back)"
        run.event("AnalysisInconclusive", status.message, warning=True)


def _roll_back(run: _Pass, reason: str, message: str) -> None:
    status, spec = run.status, run.spec
    if status.candidate_revision is not None:
        run.actions.append(ScaleDeployment(status.candidate_revision, 0))
    if status.stable_revision is not None:
        run.actions.append(ScaleDeployment(status.stable_revision, spec.replicas))
    status.rolled_back_revision = status.candidate_revision
    status.weights = Weights(stable=100, candidate=0)
    status.phase = Phase.ROLLED_BACK
    status.pause_reason = None
    status.message = f"rolled back {status.candidate_version}: {message}"
    if status.background_analysis is not None and status.background_analysis.phase == Verdict.RUNNING:
        status.background_analysis.phase = Verdict.PENDING
    run.event(reason, status.message, warning=True)


def _promote(run: _Pass) -> None:
    status, spec = run.status, run.spec
    if spec.automation != Automation.AUTO and not run.promote_requested and status.pause_reason != PROMOTING:
        if status.pause_reason != PAUSE_PROMOTION:
            status.pause_reason = PAUSE_PROMOTION
            status.phase = Phase.PAUSED
            status.message = f"all steps done; `promote` to make {status.candidate_version} stable"
            run.event("WaitingForPromote", status.message)
        return
    if status.pause_reason != PROMOTING:
        # Remembered in status, so the decision holds across passes (and restarts) while pods scale.
        status.pause_reason = PROMOTING
        status.phase = Phase.PROGRESSING
        status.step_started_at = run.at
        run.event("Promoting", f"promoting {status.candidate_version}: scaling it to {spec.replicas} replicas")
        _apply_weight(run, 100, promoting=True)
    candidate_ready = run.ready(status.candidate_revision)
    if candidate_ready < spec.replicas:
        status.message = f"promoting {status.candidate_version}: {candidate_ready}/{spec.replicas} replicas ready"
        _check_deadline(run)
        return
    assert status.stable_revision is not None
    run.actions.append(DeleteDeployment(status.stable_revision))
    previous = status.stable_version
    status.stable_revision = status.candidate_revision
    status.stable_version = status.candidate_version
    _clear_candidate(status)
    status.weights = Weights(stable=100, candidate=0)
    status.phase = Phase.SUCCEEDED
    status.message = f"{status.stable_version} promoted to stable (was {previous})"
    run.event("Promoted", status.message)


# --- conditions ------------------------------------------------------------------------------------


def _put_condition(status: ModelRolloutStatus, condition: Condition, at: str) -> None:
    existing = status.condition(condition.type)
    if existing is not None and existing.status == condition.status:
        condition.last_transition_time = existing.last_transition_time
    else:
        condition.last_transition_time = at
    status.conditions = [c for c in status.conditions if c.type != condition.type] + [condition]


def _set_conditions(run: _Pass) -> None:
    status = run.status
    phase = status.phase
    message = status.message
    reason = phase.value
    if phase == Phase.ROLLED_BACK:
        reason = "RolledBack"
    elif phase == Phase.PAUSED and status.pause_reason:
        reason = status.pause_reason
    settled = phase == Phase.SUCCEEDED
    moving = phase in (Phase.PROGRESSING, Phase.PAUSED, Phase.PENDING)
    degraded = phase in (Phase.ROLLED_BACK, Phase.FAILED)
    conditions = [
        Condition(type="Ready", status="True" if settled else "False", reason=reason, message=message),
        Condition(type="Progressing", status="True" if moving else "False", reason=reason, message=message),
        Condition(type="Degraded", status="True" if degraded else "False", reason=reason, message=message),
        # kstatus's abnormal-true pair, which Flux's and kpt's health checks read: Stalled makes a
        # rolled-back rollout fail a GitOps health check at once instead of at its timeout.
        Condition(type="Reconciling", status="True" if moving else "False", reason=reason, message=message),
        Condition(type="Stalled", status="True" if degraded else "False", reason=reason, message=message),
    ]
    for condition in conditions:
        condition.observed_generation = run.ref.generation
        _put_condition(status, condition, run.at)


def is_settled(status: ModelRolloutStatus) -> bool:
    return status.phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED)


def command_of(annotation: str | None) -> Command | None:
    """Read the command annotation; a malformed one is ignored (the CLI writes it, not people)."""
    if not annotation:
        return None
    try:
        data = json.loads(annotation)
        return Command(id=str(data["id"]), action=CommandAction(data["action"]))
    except (ValueError, KeyError, TypeError):
        return None
