"""What every strategy shares: the working state of a pass, time, replicas, analyses, rollback.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

from modelrollout.analysis.accuracy import labels_not_ready
from modelrollout.analysis.evaluate import Limits, features_kept, measurements_kept, overall, record, worst
from modelrollout.analysis.judgement import judge_metric
from modelrollout.api.durations import format_duration, parse_duration
from modelrollout.api.models import (
    AnalysisStatus,
    AnalysisStep,
    BlueGreenStage,
    CanaryStage,
    MetricResult,
    ModelRolloutSpec,
    ModelRolloutStatus,
    PauseReason,
    RevisionSource,
    SharedStage,
    Stage,
    Verdict,
    Weights,
)
from modelrollout.engine.evaluation import JOB_POLL_SECONDS, evaluation_job
from modelrollout.engine.stages import RESUMES_TO, Trigger, hold_of, move
from modelrollout.engine.types import (
    Action,
    Deadlines,
    DeleteDeployment,
    DeleteEvaluationJob,
    DeleteEvaluationJobs,
    EnsureDeployment,
    EnsureEvaluationJob,
    EventRecord,
    Observations,
    RolloutRef,
    ScaleDeployment,
)
from modelrollout.vocabulary.builtin_templates import TEMPLATE_VARIABLES
from modelrollout.vocabulary.routes import RouteState

# The reason of the rollback (or failure) for pods not ready in time: the one decision made on
# Deployments read afresh (see `machine.needs`).
DEADLINE_REASON = "ProgressDeadlineExceeded"


def timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def revision_of(spec: ModelRolloutSpec) -> str:
    """Identify a deliverable version: the model and the pod template, nothing else."""
    if spec._revision is None:
        payload = json.dumps({"model": spec.model.wire(), "template": spec.template}, sort_keys=True)
        spec._revision = hashlib.sha256(payload.encode()).hexdigest()[:10]
    return spec._revision


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


def splits_by_replicas(spec: ModelRolloutSpec) -> bool:
    """No traffic router (`spec.trafficRouting` names none): one Service fronts every version, so
    the canary's share of traffic is its share of the ready pods (`replica_split`), and there is no
    route to read or write. With a router the Deployments keep their size and the route moves traffic."""
    routing = spec.traffic_routing
    return routing is None or (routing.gateway_api is None and routing.istio is None)


def step_analysis_spec(spec: ModelRolloutSpec, status: ModelRolloutStatus) -> AnalysisStep | None:
    """The analysis that the current canary step (or blue-green stage) runs, if any."""
    blue_green = spec.strategy.blue_green
    if blue_green is not None:
        if status.stage == BlueGreenStage.PRE_PROMOTION_ANALYSIS:
            return blue_green.pre_promotion_analysis
        if status.stage == BlueGreenStage.POST_PROMOTION_ANALYSIS:
            return blue_green.post_promotion_analysis
        return None
    index, steps = status.current_step_index, spec.strategy.steps
    return steps[index].analysis if index is not None and 0 <= index < len(steps) else None


def analysis_is_current(analysis: AnalysisStatus, status: ModelRolloutStatus) -> bool:
    """The step analysis in status is the current step's (or blue-green stage's), not a finished one's."""
    if analysis.stage is not None:
        return analysis.stage == status.stage
    return analysis.step_index == status.current_step_index


def next_due_in(result: MetricResult | None, started_at: str, interval: float, now: datetime, immediate: bool) -> float:
    """Seconds until a metric's next measurement falls due (0 when it is due now)."""
    if result is None or not result.measurements:
        start = parse_time(started_at)
        due = start if immediate else start + timedelta(seconds=interval)
    else:
        due = parse_time(result.measurements[-1].at) + timedelta(seconds=interval)
    return max((due - now).total_seconds(), 0.0)


def template_values(
    ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus, watching_stable: bool = False
) -> dict[str, str]:
    """What `{{variables}}` stand for; monitoring a promoted model measures the stable version as candidate."""
    candidate = status.candidate_version or spec.model.version
    values = {
        "name": ref.name,
        "namespace": ref.namespace,
        "model": spec.model.name,
        "stable": status.stable_version or "",
        "candidate": (status.stable_version or candidate) if watching_stable else candidate,
    }
    assert set(values) == set(TEMPLATE_VARIABLES)
    return values


@dataclass
class Pass:
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
    routine_requeue: list[float] = field(default_factory=list)  # background measurements only
    promote_requested: bool = False
    promote_full: bool = False
    route: RouteState = field(default_factory=RouteState)  # what the router should do this pass
    background_recorded: bool = False

    @cached_property
    def at(self) -> str:
        """The pass's time as status writes it (`now` never changes during a pass)."""
        return timestamp(self.now)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(EventRecord("Warning" if warning else "Normal", reason, message))

    def again_in(self, seconds: float, routine: bool = False) -> None:
        """Look again in `seconds`; `routine`: only a background measurement falls due then, which
        may wait when the operator is busy (a step, a gate or a deadline may not)."""
        (self.routine_requeue if routine else self.requeue).append(max(seconds, 0.0))

    def deadlines(self) -> Deadlines:
        everything = self.requeue + self.routine_requeue
        return Deadlines(
            next=min(everything) if everything else None, urgent=min(self.requeue) if self.requeue else None
        )

    def enter(self, trigger: Trigger, to: Stage, hold: PauseReason | None = None) -> None:
        """Change stage (see `stages.move`): phase and pauseReason follow."""
        move(self.status, trigger, to, hold)

    @property
    def stage(self) -> Stage:
        return self.status.stage if self.status.stage is not None else SharedStage.PENDING

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

    def route_in_place(self) -> bool:
        """The router reports what this pass asks of it (always true without a router)."""
        view = self.observed.route
        return view is None or view.state == self.route


def new_analysis(run: Pass, kind: str, step_index: int | None, stage: Stage | None = None) -> AnalysisStatus:
    return AnalysisStatus.model_validate({"kind": kind, "stepIndex": step_index, "stage": stage, "startedAt": run.at})


def clear_candidate(status: ModelRolloutStatus) -> None:
    status.candidate_revision = None
    status.candidate_version = None
    status.current_step_index = None
    status.step_started_at = None
    status.rollout_started_at = None
    status.background_analysis = None
    status.step_analysis = None
    status.switched_at = None


def drop_unfinished_step_analysis(status: ModelRolloutStatus) -> None:
    """Leaving a step: a finished analysis stays in status until the next one starts, so that
    `kubectl get -o yaml` shows what the last gate measured (its last measurement is written in
    the very pass that moves on); one still running would speak of a step no longer current."""
    if status.step_analysis is not None and status.step_analysis.phase == Verdict.RUNNING:
        status.step_analysis = None


def roll_back(run: Pass, reason: str, message: str) -> None:
    """Everything back on stable in this very pass: route, replicas, and (blue-green) selectors."""
    status, spec = run.status, run.spec
    run.route = RouteState()
    if status.candidate_revision is not None:
        run.actions.append(ScaleDeployment(status.candidate_revision, 0))
    if status.stable_revision is not None:
        run.actions.append(ScaleDeployment(status.stable_revision, spec.replicas))
    status.rolled_back_revision = status.candidate_revision
    status.weights = Weights(stable=100, candidate=0)
    drop_evaluation_jobs(run)
    run.enter(Trigger.ROLL_BACK, SharedStage.ROLLED_BACK)
    status.switched_at = None
    status.message = f"rolled back {status.candidate_version}: {message}"
    if status.background_analysis is not None and status.background_analysis.phase == Verdict.RUNNING:
        status.background_analysis.phase = Verdict.PENDING
    run.event(reason, status.message, warning=True)


def drop_evaluation_jobs(run: Pass) -> None:
    """A candidate's analyses are over: no evaluation Job of it is needed any more."""
    if any(metric.job is not None for metric in run.spec.analysis.metrics):
        run.actions.append(DeleteEvaluationJobs())


def finish_promotion(run: Pass) -> None:
    """The candidate becomes stable; the old version goes."""
    status = run.status
    assert status.stable_revision is not None
    run.actions.append(DeleteDeployment(status.stable_revision))
    previous = status.stable_version
    status.previous_stable = status.stable_source
    status.stable_source = revision_source(run)
    drop_evaluation_jobs(run)
    status.stable_revision = status.candidate_revision
    status.stable_version = status.candidate_version
    clear_candidate(status)
    run.route = RouteState()
    status.weights = Weights(stable=100, candidate=0)
    run.enter(Trigger.PROMOTED, SharedStage.STABLE)
    # The message the next pass writes for a settled stable version: one status write, not two.
    status.message = stable_message(status.stable_version, run.ready(status.stable_revision), run.spec.replicas)
    run.event("Promoted", f"{status.stable_version} promoted to stable (was {previous})")


def revision_source(run: Pass) -> RevisionSource:
    """What the spec's revision is built from, as the spec says it (to write it back unchanged)."""
    return RevisionSource(
        version=run.spec.model.version,
        revision=run.revision,
        model=dict(run.ref.spec.get("model") or {}),
        template=dict(run.ref.spec.get("template") or {}),
    )


def stable_message(version: str | None, ready: int, replicas: int) -> str:
    return f"{version} is stable with {ready}/{replicas} ready replica(s)"


def check_deadline(run: Pass) -> bool:
    """Roll back when the candidate's pods are not ready in time; True if it did."""
    status, spec = run.status, run.spec
    assert status.step_started_at is not None
    waited = (run.now - parse_time(status.step_started_at)).total_seconds()
    if waited <= spec.progress_deadline_seconds:
        # Only the deadline needs a timer: a readiness change wakes the loop (and the resync is the
        # safety net for a missed watch event). A poll here was most of the operator's passes at
        # 10,000 rollouts, and starved the watches that would have told it the pods were ready.
        run.again_in(spec.progress_deadline_seconds - waited + 0.01)
        return False
    state = run.observed.deployments.get(status.candidate_revision or "")
    ready = state.ready if state else 0
    wanted = state.replicas if state else 0
    roll_back(
        run,
        DEADLINE_REASON,
        f"candidate {status.candidate_version} had {ready}/{wanted} replicas ready after "
        f"{format_duration(waited)} (progressDeadlineSeconds {spec.progress_deadline_seconds})",
    )
    return True


def tally(analysis: AnalysisStatus) -> str:
    """Each metric's count of passing measurements, with the others named apart: "1/8 ok" alone read
    as seven failures when seven were Errors (Prometheus down), which is another story to a person;
    and "every metric passed (error-rate 4/15 ok)" hid eleven measurements that could not be taken."""
    return "; ".join(
        f"{result.name}{' (dry run)' if result.dry_run else ''} {measured(result)}" for result in analysis.metrics
    )


def measured(result: MetricResult) -> str:
    """`3/3 ok` when every measurement passed; else each kind counted apart, e.g. `4 ok, 11 could
    not be measured (Error) of 15`."""
    if result.successful == result.count:
        return f"{result.successful}/{result.count} ok"
    parts = [f"{result.successful} ok"] + [
        f"{number} {what}"
        for number, what in (
            (result.failed, "failed"),
            (result.inconclusive, "inconclusive"),
            (result.error, "could not be measured (Error)"),
        )
        if number
    ]
    return ", ".join(parts) + f" of {result.count}"


def run_gate_analysis(run: Pass, gate: AnalysisStep, label: str) -> Verdict:
    """Run (or continue) the analysis of the current step or blue-green stage; act on
    Failed/Error/Inconclusive.

    Returns Successful when the gate is passed (or a person promoted past an inconclusive one).
    """
    status, spec = run.status, run.spec
    if status.step_analysis is None or not analysis_is_current(status.step_analysis, status):
        blue_green = spec.strategy.blue_green is not None
        status.step_analysis = new_analysis(
            run, "step", None if blue_green else status.current_step_index, run.stage if blue_green else None
        )
        status.step_analysis.metrics = [
            MetricResult(name=name, dry_run=spec.analysis.metric(name).dry_run) for name in gate.metrics
        ]
        run.event("AnalysisStarted", f"{label}: measuring {', '.join(gate.metrics)}")
        run.again_in(0)
    analysis = status.step_analysis
    before = analysis.phase
    limits = Limits.of(spec.analysis, gate.consecutive_success_limit)
    evaluating: set[str] = set()
    waiting_for_labels: set[str] = set()
    for position, result in enumerate(analysis.metrics):
        observation = run.observed.measurements.get(("step", result.name))
        if observation is not None and result.phase == Verdict.RUNNING:
            metric = spec.analysis.metric(result.name)
            if metric.job is not None:
                values = template_values(run.ref, spec, status)
                job = evaluation_job(run.ref.name, run.revision, analysis.started_at, metric, result.count, values)
                if observation.pending:
                    run.actions.append(EnsureEvaluationJob(job))
                    evaluating.add(result.name)
                    continue
                run.actions.append(DeleteEvaluationJob(job.name))
            if metric.accuracy is not None and labels_not_ready(
                metric, observation, (run.now - parse_time(analysis.started_at)).total_seconds(), bounded=True
            ):
                waiting_for_labels.add(result.name)  # no measurement yet; bounded by labelWait
                continue
            measurement = judge_metric(metric, observation, run.at)
            keep = measurements_kept(len(analysis.metrics), metric.measurement_retention)
            analysis.metrics[position] = updated = record(
                result, measurement, limits, gate.count, keep, features_kept(len(analysis.metrics))
            )
            tell_dry_run_verdict(run, result, updated, label)
    analysis.phase = overall(analysis)
    if analysis.phase == Verdict.SUCCESSFUL:
        if before != Verdict.SUCCESSFUL:
            run.event("AnalysisSucceeded", f"{label}: every metric passed ({tally(analysis)})")
        return Verdict.SUCCESSFUL
    if analysis.phase == Verdict.RUNNING:
        status.message = f"{label}: analysis running ({tally(analysis)})"
        interval = parse_duration(gate.interval)
        waiting = [result for result in analysis.metrics if result.phase == Verdict.RUNNING]
        run.again_in(
            min(
                JOB_POLL_SECONDS
                if result.name in evaluating
                else interval
                if result.name in waiting_for_labels
                else next_due_in(result, analysis.started_at, interval, run.now, True)
                for result in waiting
            )
        )
        return Verdict.RUNNING
    if run.promote_requested and analysis.phase == Verdict.INCONCLUSIVE:
        return Verdict.SUCCESSFUL
    if before == Verdict.RUNNING:
        judge_analysis_outcome(run, analysis, f"{label} analysis")
    return analysis.phase


def tell_dry_run_verdict(run: Pass, before: MetricResult, after: MetricResult, what: str) -> None:
    """A dry-run metric that reaches a verdict other than a pass says so in an Event, and that it
    decided nothing: the point of a dry run is to see what the metric would have done."""
    if not after.dry_run or after.phase == before.phase or after.phase in (Verdict.RUNNING, Verdict.SUCCESSFUL):
        return
    run.event(
        "DryRunMetric" + after.phase.value,
        f"{what}: dry-run metric {after.name!r} is {after.phase.value} ({after.message}); dry run, so the "
        "rollout goes on as if it had passed",
        warning=True,
    )


def judge_analysis_outcome(run: Pass, analysis: AnalysisStatus, what: str) -> None:
    culprit = worst(analysis)
    reason = f"{what}: metric {culprit.name!r} {culprit.message}" if culprit else what
    if analysis.phase in (Verdict.FAILED, Verdict.ERROR):
        roll_back(run, "AnalysisFailed" if analysis.phase == Verdict.FAILED else "AnalysisError", reason)
    elif analysis.phase == Verdict.INCONCLUSIVE and hold_of(run.status) != PauseReason.INCONCLUSIVE:
        status = run.status
        run.enter(Trigger.HOLD, run.stage, hold=PauseReason.INCONCLUSIVE)
        status.message = f"{reason}; waiting for a person (`promote` to go on, `abort` to roll back)"
        run.event("AnalysisInconclusive", status.message, warning=True)


def run_background_analysis(run: Pass) -> None:
    status, spec = run.status, run.spec
    analysis = status.background_analysis
    if analysis is None or analysis.phase != Verdict.RUNNING or run.background_recorded:
        return
    run.background_recorded = True  # a measurement counts once, however many steps this pass runs
    limits = Limits.of(spec.analysis)
    waiting_for_labels: set[str] = set()
    for metric in spec.analysis.metrics:
        observation = run.observed.measurements.get(("background", metric.name))
        if not metric.background or observation is None:
            continue
        result = analysis.result(metric.name)
        if result is None:
            result = MetricResult(name=metric.name, dry_run=metric.dry_run)
            analysis.metrics.append(result)
        if metric.accuracy is not None and labels_not_ready(
            metric, observation, (run.now - parse_time(analysis.started_at)).total_seconds(), bounded=False
        ):
            waiting_for_labels.add(metric.name)  # labels still to come: no measurement
            continue
        keep = measurements_kept(len(spec.analysis.metrics), metric.measurement_retention)
        measurement = judge_metric(metric, observation, run.at)
        updated = record(result, measurement, limits, None, keep, features_kept(len(spec.analysis.metrics)))
        analysis.metrics[analysis.metrics.index(result)] = updated
        tell_dry_run_verdict(run, result, updated, "background analysis")
    analysis.phase = overall(analysis)
    if analysis.phase == Verdict.RUNNING:
        interval = parse_duration(spec.analysis.interval)
        run.again_in(
            min(
                (
                    interval
                    if metric.name in waiting_for_labels
                    else next_due_in(analysis.result(metric.name), analysis.started_at, interval, run.now, False)
                    for metric in spec.analysis.metrics
                    if metric.background
                ),
                default=interval,
            ),
            routine=True,
        )
    else:
        judge_analysis_outcome(run, analysis, "background analysis")


def start_background_analysis(run: Pass) -> None:
    """Background analysis begins once the candidate sees traffic (served, mirrored or header-routed)."""
    status, spec = run.status, run.spec
    if status.background_analysis is None and any(metric.background for metric in spec.analysis.metrics):
        status.background_analysis = new_analysis(run, "background", None)
        run.again_in(parse_duration(spec.analysis.interval), routine=True)


# --- what both strategies do with a candidate ----------------------------------------------------


def start(run: Pass) -> None:
    """A new candidate: the one in flight (if any) goes, and delivery starts from the first stage."""
    status = run.status
    if status.candidate_revision is not None and status.candidate_revision != run.revision:
        run.event(
            "CandidateReplaced",
            f"{status.candidate_version} is replaced by {run.spec.model.version} before it finished",
        )
        run.actions.append(DeleteDeployment(status.candidate_revision))
        drop_evaluation_jobs(run)
    clear_candidate(status)
    status.rolled_back_revision = None
    status.candidate_revision = run.revision
    status.candidate_version = run.spec.model.version
    blue_green = run.spec.strategy.blue_green is not None
    status.current_step_index = None if blue_green else 0
    status.step_started_at = run.at
    status.rollout_started_at = run.at
    run.enter(Trigger.START, BlueGreenStage.PREVIEW if blue_green else CanaryStage.STEPPING)
    kind = "blue-green" if blue_green else "canary"
    status.message = f"delivering {run.spec.model.version} by {kind}"
    run.event("RolloutStarted", f"{kind} of {run.spec.model.version} started (stable: {status.stable_version})")


def ended(status: ModelRolloutStatus) -> bool:
    """The candidate is out of the picture: rolled back, or promoted in this pass."""
    return status.stage == SharedStage.ROLLED_BACK or status.candidate_revision is None


def resume(run: Pass, fresh_step_analysis: bool = True) -> None:
    """Go on after a hold (a person's pause, an inconclusive analysis); an inconclusive background
    analysis starts afresh.

    A person who looked at inconclusive metrics and said go on should not see the rollout stop
    again on the same tally. `resume` also re-measures an inconclusive analysis step, while
    `promote` lets that step pass.
    """
    status = run.status
    if status.background_analysis is not None and status.background_analysis.phase == Verdict.INCONCLUSIVE:
        status.background_analysis = new_analysis(run, "background", None)
    step = status.step_analysis
    if fresh_step_analysis and step is not None and step.phase == Verdict.INCONCLUSIVE:
        status.step_analysis = None
    run.enter(Trigger.RESUME, RESUMES_TO[run.stage])
    run.event("Resumed", "rollout resumed")
