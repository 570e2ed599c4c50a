"""The rollout state machine: decide(rollout, status, observations, now) -> actions and new status.

No I/O and no clock: everything the next pass needs is in the status it returns, so a restarted
operator given the same status and observations makes the same decision. The observer calls
`needs` first (due measurements, fresh Deployments, the route), gathers them, and calls `decide`
once. The strategies
live in `canary.py` and `bluegreen.py`; what they share, in `common.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from modelrollout.analysis.agreement import agreement_queries
from modelrollout.api.durations import format_duration, parse_duration
from modelrollout.api.models import (
    AnalysisStatus,
    BlueGreenStage,
    CanaryStage,
    Condition,
    LastCommand,
    ModelRolloutSpec,
    ModelRolloutStatus,
    PauseReason,
    Phase,
    SharedStage,
    Summary,
    Verdict,
    Weights,
    json_string_part,
    render_template,
    url_part,
)
from modelrollout.api.validation import InvalidSpec
from modelrollout.engine.bluegreen import SWITCHED, run_blue_green
from modelrollout.engine.canary import candidate_replicas, route_at, run_canary
from modelrollout.engine.common import (
    DEADLINE_REASON,
    Pass,
    analysis_is_current,
    clear_candidate,
    next_due_in,
    parse_time,
    replica_split,
    resume,
    revision_of,
    revision_source,
    roll_back,
    splits_by_replicas,
    stable_message,
    step_analysis_spec,
    template_values,
    timestamp,
)
from modelrollout.engine.comparator import comparator_actions
from modelrollout.engine.evaluation import evaluation_job
from modelrollout.engine.gates import PROMOTION, gate_requests, not_yet_open
from modelrollout.engine.ground_truth import accuracy_request, concept_condition, is_accuracy
from modelrollout.engine.monitoring import drift_condition, monitor, record_hook_result
from modelrollout.engine.stages import (
    IN_FLIGHT,
    Trigger,
    hold_of,
    move,
    pause_reason_of,
    phase_of,
    position_after_invalid,
    read_older,
)
from modelrollout.engine.types import (
    Action,
    Command,
    CommandAction,
    Deadlines,
    Decision,
    DeleteComparator,
    DeleteDeployment,
    DeleteEvaluationJob,
    DeleteEvaluationJobs,
    DeploymentState,
    EnsureComparator,
    EnsureDeployment,
    EnsureEvaluationJob,
    EnsureService,
    EventRecord,
    FireHook,
    MeasurementRequest,
    Needs,
    Observations,
    RestartDeployment,
    RolloutRef,
    ScaleDeployment,
    Selector,
    SetRoute,
)
from modelrollout.vocabulary.names import (
    REVISION_LABEL,
    ROLLOUT_LABEL,
    candidate_service_name,
    service_name,
    stable_service_name,
)

__all__ = [
    "command_of",
    "decide",
    "needs",
    "parse_time",
    "replica_split",
    "revision_of",
    "timestamp",
]


# --- measurement planning -----------------------------------------------------------------------


def _running(analysis: AnalysisStatus | None) -> bool:
    return analysis is not None and analysis.phase == Verdict.RUNNING


def needs(
    ref: RolloutRef, status: ModelRolloutStatus, now: datetime, deployments: Mapping[str, DeploymentState]
) -> Needs:
    """What the observer must gather for this pass's one `decide`, given the watch-fed Deployments."""
    try:
        spec = ref.spec_model()
    except InvalidSpec:
        return Needs()
    if status.stage is None:  # written by an older operator: read as `decide` will
        status = status.model_copy(deep=True)
        read_older(status, spec)
    return Needs(
        measurements=_due_measurements(ref, spec, status, now),
        fresh_deployments=_deadline_may_fail(spec, status, now, deployments),
        route=spec.strategy.blue_green is None and not splits_by_replicas(spec),
        gates=gate_requests(ref, spec, status, now),
    )


def _deadline_may_fail(
    spec: ModelRolloutSpec, status: ModelRolloutStatus, now: datetime, deployments: Mapping[str, DeploymentState]
) -> bool:
    """Whether this pass may fail a version for pods not ready by the progress deadline.

    Then the Deployments are read afresh: at 10,000 rollouts the watch lagged so that hundreds of
    candidates were rolled back as 0/1 ready though the API said 1/1. Only then: a read per pass of
    every rollout in a long pause would be most of the operator's API calls.
    """
    revision = revision_of(spec)
    if status.candidate_revision != revision:
        return False
    if status.stable_revision is None:  # the first deployment
        if status.phase == Phase.FAILED or status.rollout_started_at is None:
            return False  # already failed: nothing new to confirm
        started, wanted = status.rollout_started_at, spec.replicas
    else:
        if status.phase not in (Phase.PROGRESSING, Phase.PAUSED) or status.step_started_at is None:
            return False
        started, wanted = status.step_started_at, wanted_candidate_replicas(spec, status)
    if (now - parse_time(started)).total_seconds() <= spec.progress_deadline_seconds:
        return False
    seen = deployments.get(revision)
    return (seen.ready if seen is not None else 0) < wanted


def _due_measurements(
    ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus, now: datetime
) -> list[MeasurementRequest]:
    if status.phase == Phase.SUCCEEDED and spec.monitoring is not None and status.monitoring is not None:
        return _plan_monitoring(ref, spec, status, now)
    if status.phase not in (Phase.PROGRESSING, Phase.PAUSED) or status.candidate_revision != revision_of(spec):
        return []
    values = template_values(ref, spec, status)
    requests: list[MeasurementRequest] = []
    background = status.background_analysis
    if background is not None and _running(background):
        interval = parse_duration(spec.analysis.interval)
        for metric in spec.analysis.metrics:
            result = background.result(metric.name)
            if metric.background and next_due_in(result, background.started_at, interval, now, False) <= 0:
                requests.append(_request("background", metric.name, spec, values))
    step = status.step_analysis
    gate = step_analysis_spec(spec, status)
    if step is not None and _running(step) and gate is not None and analysis_is_current(step, status):
        interval = parse_duration(gate.interval)
        for name in gate.metrics:
            result = step.result(name)
            if (result is None or result.phase == Verdict.RUNNING) and next_due_in(
                result, step.started_at, interval, now, True
            ) <= 0:
                request = _request("step", name, spec, values)
                if request.provider == "job":
                    job = evaluation_job(
                        ref.name,
                        revision_of(spec),
                        step.started_at,
                        spec.analysis.metric(name),
                        result.count if result is not None else 0,
                        values,
                    )
                    request = replace(request, job=job)
                requests.append(request)
    return requests


def _plan_monitoring(
    ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus, now: datetime
) -> list[MeasurementRequest]:
    assert spec.monitoring is not None and status.monitoring is not None
    if status.monitoring.version != status.stable_version:
        return []
    analysis = status.monitoring.analysis
    interval = parse_duration(spec.monitoring.interval)
    values = template_values(ref, spec, status, watching_stable=True)
    return [
        _request("monitor", name, spec, values)
        for name in spec.monitoring.metrics
        if next_due_in(analysis.result(name), analysis.started_at, interval, now, False) <= 0
    ]


def _request(kind: str, name: str, spec: ModelRolloutSpec, values: dict[str, str]) -> MeasurementRequest:
    """The rendered queries a metric needs, by role (a job metric's Job is added by the caller)."""
    metric = spec.analysis.metric(name)
    if metric.web is not None:
        web = metric.web.model_copy(
            update={
                "url": render_template(metric.web.url, values, escape=url_part),
                "body": render_template(metric.web.body, values, escape=json_string_part) if metric.web.body else None,
            }
        )
        return MeasurementRequest(kind, name, {"value": web.json_path}, web.url, provider="web", web=web)
    if metric.job is not None:
        return MeasurementRequest(kind, name, {}, None, provider="job")
    if metric.accuracy is not None:
        return accuracy_request(kind, name, spec, values)
    if metric.agreement is not None:
        rendered = {role: render_template(query, values) for role, query in agreement_queries(metric.agreement).items()}
        return MeasurementRequest(kind, name, rendered, spec.analysis.prometheus.address)
    prometheus = metric.query
    address = prometheus.address or spec.analysis.prometheus.address
    raw: dict[str, str | None] = {}
    if metric.kind == "threshold":
        raw = {"value": prometheus.query, "count": prometheus.count_query}
    else:
        stable = prometheus.stable_query or prometheus.for_stable(prometheus.query)
        reference_needed = metric.kind == "compare" or (metric.drift is not None and metric.drift.reference == "stable")
        raw = {
            "candidate": prometheus.query,
            ("stable" if metric.kind == "compare" else "reference"): (stable if reference_needed else None),
        }
        if metric.kind == "compare":
            raw["count"] = prometheus.count_query
            raw["stableCount"] = prometheus.stable_count_query or prometheus.for_stable(prometheus.count_query)
    queries = {role: render_template(query, values) for role, query in raw.items() if query}
    training = None
    if (
        metric.drift is not None
        and metric.drift.training_reference is not None
        and metric.drift.reference == "training"
    ):
        training = (metric.drift.training_reference.config_map, metric.drift.training_reference.key)
    return MeasurementRequest(kind, name, queries, address, vector=metric.kind == "drift", training=training)


# --- the decision ------------------------------------------------------------------------------


def decide(ref: RolloutRef, status: ModelRolloutStatus, observed: Observations, now: datetime) -> Decision:
    # A copy, so the caller's status is never changed. Dumping and validating again is pydantic's
    # compiled core end to end: a quarter of the time of model_copy(deep=True), whose deepcopy walks
    # every nested model in Python (5 % of the operator's CPU at 10,000 rollouts).
    working = ModelRolloutStatus.model_validate(status.model_dump())
    try:
        spec = ref.spec_model()
    except InvalidSpec as invalid:
        read_older(working, None)
        return _refuse(ref, working, "InvalidSpec", f"invalid spec: {invalid}", now, observed.command)
    read_older(working, spec)
    route_error = observed.route_refusal or (observed.route.error if observed.route is not None else None)
    if route_error is not None:
        # Without a usable route nothing may move: traffic stays where the route sends it now, and a
        # first deployment waits for the route the spec names. A route write the router refused is
        # the same news: retrying it every pass would change nothing.
        return _refuse(ref, working, "TrafficRoutingInvalid", route_error, now, observed.command)
    run = Pass(ref, spec, working, observed, now, revision_of(spec))
    if working.stage == SharedStage.INVALID:
        # The spec (or the route) was fixed: carry on from the stage it interrupted.
        back_to = working.interrupted_stage or position_after_invalid(working, spec)
        run.enter(Trigger.VALID_AGAIN, back_to)
        working.message = "spec and traffic routing are valid again"
        run.event("SpecValid", "the spec and traffic routing are valid again; resuming")
    _apply_command(run)
    if observed.hook_result is not None:
        # The outcome of the hook the previous pass fired, whatever the rollout does meanwhile.
        for reason, message, warning in record_hook_result(working, observed.hook_result):
            run.event(reason, message, warning=warning)
    # A promote waits in status until a gate can use it: sent while an analysis runs or pods start,
    # it must not be lost.
    if working.promotion_requested is not None:
        run.promote_requested = True
        run.promote_full = run.promote_full or working.promotion_requested == "full"
    if working.stable_revision is None:
        _first_deploy(run)
    elif run.revision == working.stable_revision:
        _settle_on_stable(run)
    elif run.revision == working.rolled_back_revision:
        _hold_rolled_back(run)
    elif spec.strategy.blue_green is not None:
        run_blue_green(run)
    else:
        run_canary(run)
    in_flight = run.stage in IN_FLIGHT
    working.promotion_requested = (
        ("full" if run.promote_full else "step") if run.promote_requested and in_flight else None
    )
    if working.gates and working.candidate_revision is None:
        working.gates = None  # webhook gates belong to a candidate; promoted or withdrawn, they go
    working.observed_generation = ref.generation
    assert phase_matches_stage(working), (working.stage, working.phase, working.pause_reason)
    _set_conditions(run)
    working.summary = summarize(working, spec)
    # The comparator first: a mirror to it must find it (copies sent before it is ready are dropped).
    comparator = comparator_actions(spec, status, working)
    return Decision(comparator + _traffic_actions(run) + compact(run.actions), working, run.events, run.deadlines())


def summarize(status: ModelRolloutStatus, spec: ModelRolloutSpec) -> Summary:
    """The printer columns' words: a shadow or header route is live traffic even at weight 0, and a
    template-only change is a candidate of the same version (told apart by its revision)."""
    weights = status.weights
    traffic = f"{weights.stable}/{weights.candidate}"
    if weights.mirror:
        traffic += f" +mirror {weights.mirror}%"
    if weights.header_route:
        traffic += f" header {weights.header}" if weights.header else " +header route"
    candidate = status.candidate_version or ""
    if candidate and candidate == status.stable_version and status.candidate_revision:
        candidate = f"{candidate} (rev {status.candidate_revision[:7]})"
    step = ""
    steps = spec.strategy.steps
    if spec.strategy.blue_green is None and status.current_step_index is not None and steps:
        step = f"{min(status.current_step_index, len(steps))}/{len(steps)}"
    return Summary(candidate=candidate, traffic=traffic, step=step)


def _selector(revision: str | None, rollout: str) -> Selector:
    labels = {ROLLOUT_LABEL: rollout}
    if revision is not None:
        labels[REVISION_LABEL] = revision
    return tuple(sorted(labels.items()))


def desired_services(run: Pass) -> dict[str, Selector]:
    """Every Service of the rollout and what it selects, derived from status alone.

    Replica-ratio canary: one Service selecting every version. Otherwise the entry Service and
    `-stable` select the active version, and `-canary` (`-preview` for blue-green) the candidate,
    or the active version when there is no candidate, so routes that name it stay valid.
    """
    status, spec, name = run.status, run.spec, run.ref.name
    blue_green = spec.strategy.blue_green is not None
    if not blue_green and splits_by_replicas(spec):
        return {service_name(name): _selector(None, name)}
    in_flight = status.candidate_revision is not None and status.phase in (Phase.PROGRESSING, Phase.PAUSED)
    active = status.stable_revision
    if blue_green and in_flight and status.stage in SWITCHED:
        active = status.candidate_revision
    candidate = status.candidate_revision if in_flight else active
    return {
        service_name(name): _selector(active, name),
        stable_service_name(name): _selector(active, name),
        candidate_service_name(name, blue_green): _selector(candidate, name),
    }


def _traffic_actions(run: Pass) -> list[Action]:
    """Services first (a switch or promotion points them at pods that are ready), then the route."""
    actions: list[Action] = []
    for name, selector in desired_services(run).items():
        if run.observed.services.get(name) != selector:
            actions.append(EnsureService(name, selector))
    if run.observed.route is not None and run.observed.route.state != run.route:
        actions.append(SetRoute(run.route))
    return actions


def compact(actions: list[Action]) -> list[Action]:
    """One action per Deployment: the last word wins, so a pass that first asked for replicas and
    then rolled back never creates pods it no longer wants."""
    final: dict[str, Action] = {}
    ensured: set[str] = set()
    others: list[Action] = []
    for action in actions:
        if isinstance(action, (EnsureService, SetRoute)):
            continue
        if isinstance(action, (FireHook, RestartDeployment, DeleteEvaluationJob)):
            others.append(action)
            continue
        if isinstance(action, (EnsureEvaluationJob, DeleteEvaluationJobs, EnsureComparator, DeleteComparator)):
            if action not in others:
                others.append(action)
            continue
        if isinstance(action, EnsureDeployment):
            ensured.add(action.revision)
        final[action.revision] = action
    result: list[Action] = []
    for revision, action in final.items():
        if isinstance(action, ScaleDeployment) and revision in ensured:
            action = EnsureDeployment(revision, action.replicas)
        result.append(action)
    return result + others


def _refuse(
    ref: RolloutRef, status: ModelRolloutStatus, reason: str, message: str, now: datetime, command: Command | None
) -> Decision:
    events = []
    if status.phase != Phase.FAILED or status.message != message:
        events.append(EventRecord("Warning", reason, message))
    if command is not None and command.id != handled_command_id(status):
        why = f"nothing moves until the spec and route are usable ({message})"
        status.last_command = LastCommand(
            id=command.id, action=command.action.value, outcome="Ignored", reason=why, at=timestamp(now)
        )
        status.last_command_id = None
        events.append(EventRecord("Normal", "CommandIgnored", f"{command.action.value} ignored: {why}"))
    move(status, Trigger.INVALID, SharedStage.INVALID)
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
        _put_condition(status, kind, value, reason, message, ref.generation, at)
    for condition in status.conditions:
        condition.observed_generation = ref.generation
    return Decision([], status, events, Deadlines())


def _condition_reason(status: ModelRolloutStatus, kind: str) -> str | None:
    condition = status.condition(kind)
    return condition.reason if condition is not None and condition.status == "True" else None


# --- commands -------------------------------------------------------------------------------------


def _apply_command(run: Pass) -> None:
    """Carry out a person's command, or say why it does not apply: either way its id and outcome go
    into `status.lastCommand`, which the CLI waits for (a command that changed nothing used to print
    "sent" and leave the person guessing)."""
    command = run.observed.command
    status = run.status
    if command is None or command.id == handled_command_id(status):
        return
    applied, reason = _carry_out(run, command.action)
    status.last_command = LastCommand(
        id=command.id,
        action=command.action.value,
        outcome="Applied" if applied else "Ignored",
        reason=reason,
        at=run.at,
    )
    status.last_command_id = None  # an older operator's record, now superseded by lastCommand
    if not applied:
        run.event("CommandIgnored", f"{command.action.value} ignored: {reason}")


def handled_command_id(status: ModelRolloutStatus) -> str | None:
    """The id of the last command handled; an older operator kept only `lastCommandId`."""
    return status.last_command.id if status.last_command is not None else status.last_command_id


def _carry_out(run: Pass, action: CommandAction) -> tuple[bool, str]:
    """(applied, what it did or why it does not apply), in words for the person who sent it."""
    status = run.status
    in_flight = run.stage in IN_FLIGHT
    where = f"the rollout is {status.phase.value}" + (f" ({status.message})" if status.message else "")
    if action in (CommandAction.PROMOTE, CommandAction.PROMOTE_FULL):
        full = action == CommandAction.PROMOTE_FULL
        if not in_flight:
            return False, f"no candidate to promote: {where}"
        applies, reason = promote_outcome(run, full)
        if applies:
            run.promote_requested = True
            run.promote_full = full
            run.event("PromoteRequested", "promotion requested" + (" (full)" if full else "") + f": {reason}")
        return applies, reason
    if action == CommandAction.ABORT:
        if not in_flight:
            return False, f"no candidate to abort: {where}"
        candidate = status.candidate_version
        roll_back(run, "Aborted", "aborted by a person")
        return True, f"rolled back {candidate}; all traffic is on {status.stable_version}"
    if action == CommandAction.RETRY:
        if run.stage != SharedStage.ROLLED_BACK:
            return False, f"only a rolled-back rollout can be retried: {where}"
        status.rolled_back_revision = None
        status.candidate_revision = None
        run.event("RetryRequested", "retrying the rolled-back version")
        return True, f"delivering {run.spec.model.version} again from the first step"
    if action == CommandAction.PAUSE:
        if not in_flight:
            return False, f"nothing in flight to pause: {where}"
        if hold_of(status) == PauseReason.USER:
            return False, "already paused by a person; `resume` to continue"
        run.enter(Trigger.HOLD, run.stage, hold=PauseReason.USER)
        status.message = "paused by a person; `resume` or `promote` to continue"
        run.event("Paused", status.message)
        return True, f"paused at {run.stage.value}; `resume` or `promote` to continue"
    if action == CommandAction.RESUME:
        if not in_flight:
            return False, f"nothing in flight to resume: {where}"
        if hold_of(status) is None:
            waits = "it is not paused"
            if status.pause_reason:
                waits = f"it waits for {status.pause_reason} (`promote` goes past it)"
            return False, f"not paused by a person or an inconclusive analysis: {waits}"
        resume(run)
        return True, "resumed"
    assert action == CommandAction.RESTART, action
    return _restart(run)


def _restart(run: Pass) -> tuple[bool, str]:
    status = run.status
    if status.stable_revision is None:
        return False, "no stable version to restart yet"
    if run.spec.strategy.blue_green is not None and run.stage in SWITCHED:
        return False, f"traffic has switched to {status.candidate_version}; {status.stable_version} is being retired"
    status.restarted_at = run.at
    run.actions.append(RestartDeployment(status.stable_revision, run.at))
    run.event("Restarting", f"restarting the pods of {status.stable_version}, one at a time")
    return True, f"restarting the pods of {status.stable_version} one at a time (one extra pod, none taken out first)"


def promote_outcome(run: Pass, full: bool) -> tuple[bool, str]:
    """Whether a promote sent now does something, and what: at a gate it goes past it in this pass;
    elsewhere it is queued in status (`promotionRequested`) until the next gate it can open, except
    where no gate will use it (a running analysis step, a promotion under way, a switched blue-green)."""
    status, spec = run.status, run.spec
    stage = run.stage
    hold = hold_of(status)
    if hold == PauseReason.USER:
        return True, "resumes the rollout a person paused and goes past the gate it stands at"
    if hold == PauseReason.INCONCLUSIVE:
        return True, "lets the inconclusive analysis pass"
    if stage == CanaryStage.PROMOTING:
        return False, f"{status.candidate_version} is already being promoted"
    if stage in SWITCHED:
        return False, f"traffic already switched to {status.candidate_version}; nothing is left to promote past"
    if stage in (CanaryStage.PAUSED_AT_STEP, CanaryStage.STEP_DONE_WAITING):
        what = "skips the remaining steps and promotes" if full else "goes past the step"
        return True, f"{what} (step {status.current_step_index})"
    if stage in (CanaryStage.AWAITING_PROMOTION, BlueGreenStage.AWAITING_SWITCH):
        what = f"makes {status.candidate_version} stable"
        if stage == BlueGreenStage.AWAITING_SWITCH:
            what = f"switches traffic to {status.candidate_version}"
        waiting = ", ".join(map(repr, not_yet_open(spec, status, "confirm-promotion", PROMOTION)))
        if waiting:  # a promote opens a person's gate, never a webhook gate (docs/gates.md)
            return True, f"queued: {what} once webhook gate {waiting} (confirm-promotion) says yes"
        return True, what
    queued = "queued: takes effect at the next gate (a pause, an analysis verdict or a manual step)"
    if spec.strategy.blue_green is not None:
        return True, "queued: traffic switches as soon as the preview is ready and has passed its analysis"
    steps = spec.strategy.steps
    index = status.current_step_index or 0
    if index >= len(steps):
        return True, queued
    step = steps[index]
    if step.analysis is not None:
        if full:
            return True, f"queued: once step {index}'s analysis passes, the remaining steps are skipped"
        return False, (
            f"step {index} is an analysis ({', '.join(step.analysis.metrics)}): promote does not cut it short, "
            "it lets an Inconclusive result pass; wait for its verdict, or `promote --full` to skip the steps after it"
        )
    if step.pause is not None and step.pause.duration is not None:
        return True, f"ends step {index}'s pause now" + ("; the remaining steps are skipped" if full else "")
    if full:
        return True, "queued: once the current step is in place, the remaining steps are skipped"
    return True, queued


# --- branches -------------------------------------------------------------------------------------


def _first_deploy(run: Pass) -> None:
    status, spec = run.status, run.spec
    run.actions.append(EnsureDeployment(run.revision, spec.replicas))
    if status.rollout_started_at is None or status.candidate_revision != run.revision:
        status.rollout_started_at = run.at
        status.candidate_revision = run.revision
        status.candidate_version = spec.model.version
        run.event("Deploying", f"deploying {spec.model.version} as the first stable version")
        if run.stage != SharedStage.DEPLOYING:
            run.enter(Trigger.DEPLOY_FIRST, SharedStage.DEPLOYING)
    ready = run.ready(run.revision)
    if ready >= spec.replicas:
        status.stable_revision = run.revision
        status.stable_version = spec.model.version
        status.stable_source = revision_source(run)
        status.candidate_revision = None
        status.candidate_version = None
        status.rollout_started_at = None
        run.enter(Trigger.DEPLOYED, SharedStage.STABLE)
        status.weights = Weights(stable=100, candidate=0)
        # The words the next pass on a settled stable version writes: the Succeeded status is
        # written once, not again seconds later only to reword the replica count.
        status.message = stable_message(status.stable_version, ready, spec.replicas)
        run.event("Deployed", status.message)
        return
    waited = (run.now - parse_time(status.rollout_started_at)).total_seconds()
    if waited > spec.progress_deadline_seconds:
        message = (
            f"{spec.model.version}: {ready}/{spec.replicas} replicas ready after {format_duration(waited)} "
            f"(progressDeadlineSeconds {spec.progress_deadline_seconds})"
        )
        if run.stage != SharedStage.DEPLOY_FAILED:
            run.event(DEADLINE_REASON, message, warning=True)
            run.enter(Trigger.DEADLINE_MISSED, SharedStage.DEPLOY_FAILED)
        status.message = message
    else:
        status.message = f"waiting for {spec.model.version}: {ready}/{spec.replicas} replicas ready"
        # Readiness changes wake the loop; the timer is for the deadline.
        run.again_in(spec.progress_deadline_seconds - waited + 0.01)


def _settle_on_stable(run: Pass) -> None:
    status, spec = run.status, run.spec
    if status.candidate_revision is not None:
        if status.phase in (Phase.PROGRESSING, Phase.PAUSED):
            run.event(
                "RolloutAborted",
                f"spec is back on the stable version {status.stable_version}; candidate "
                f"{status.candidate_version} withdrawn",
            )
        run.actions.append(DeleteDeployment(status.candidate_revision))
        clear_candidate(status)
    status.rolled_back_revision = None
    if status.stable_source is None or status.stable_source.revision != run.revision:
        status.stable_source = revision_source(run)  # a status written before stableSource existed
    run.actions.append(EnsureDeployment(run.revision, spec.replicas))
    ready = run.ready(run.revision)
    status.weights = Weights(stable=100, candidate=0)
    if run.stage != SharedStage.STABLE:
        run.enter(Trigger.WITHDRAWN, SharedStage.STABLE)
    # The message follows readiness: a readiness change wakes the loop.
    status.message = stable_message(status.stable_version, ready, spec.replicas)
    monitor(run)


def _hold_rolled_back(run: Pass) -> None:
    status = run.status
    if status.stable_revision is not None:
        run.actions.append(ScaleDeployment(status.stable_revision, run.spec.replicas))
    if status.candidate_revision is not None:
        run.actions.append(ScaleDeployment(status.candidate_revision, 0))
    status.weights = Weights(stable=100, candidate=0)
    assert run.stage == SharedStage.ROLLED_BACK, run.stage  # only a rollback names a rolled-back revision


# --- conditions ------------------------------------------------------------------------------------


def _put_condition(
    status: ModelRolloutStatus, kind: str, state: str, reason: str, message: str, generation: int, at: str
) -> None:
    """Set a condition in place; one that did not change is left as it is (most passes change none,
    and building five models per pass was a third of a measurement pass's decision)."""
    index = next((i for i, existing in enumerate(status.conditions) if existing.type == kind), None)
    existing = status.conditions[index] if index is not None else None
    since: str | None = at
    if existing is not None:
        if (existing.status, existing.reason, existing.message, existing.observed_generation) == (
            state,
            reason,
            message,
            generation,
        ):
            return
        if existing.status == state:
            since = existing.last_transition_time
    condition = Condition(
        type=kind,
        status=state,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=since,
    )
    if index is None:
        status.conditions.append(condition)
    else:
        status.conditions[index] = condition


def _set_conditions(run: Pass) -> None:
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
        ("Ready", "True" if settled else "False", reason, message),
        ("Progressing", "True" if moving else "False", reason, message),
        ("Degraded", "True" if degraded else "False", reason, message),
        # kstatus's abnormal-true pair, which Flux's and kpt's health checks read: Stalled makes a
        # rolled-back rollout fail a GitOps health check at once instead of at its timeout.
        ("Reconciling", "True" if moving else "False", reason, message),
        ("Stalled", "True" if degraded else "False", reason, message),
    ]
    if run.spec.monitoring is not None:
        accuracy = [name for name in run.spec.monitoring.metrics if is_accuracy(run.spec, name)]
        drifted, why = drift_condition(status, run.spec.monitoring.consecutive_failures, skip=accuracy)
        conditions.append(("Drifted", "True" if drifted else "False", "Drifted" if drifted else "WithinLimits", why))
    elif status.condition("Drifted") is not None:
        status.conditions = [c for c in status.conditions if c.type != "Drifted"]
    concept = concept_condition(status, run.spec)
    if concept is not None:
        dropped, why = concept
        conditions.append(
            ("ConceptDrift", "True" if dropped else "False", "ConceptDrift" if dropped else "WithinBaseline", why)
        )
    elif status.condition("ConceptDrift") is not None:
        status.conditions = [c for c in status.conditions if c.type != "ConceptDrift"]
    for kind, state, why_reason, why_message in conditions:
        _put_condition(status, kind, state, why_reason, why_message, run.ref.generation, run.at)


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


def wanted_candidate_replicas(spec: ModelRolloutSpec, status: ModelRolloutStatus) -> int:
    """How many ready pods the candidate needs where the rollout stands (a canary step may need fewer)."""
    steps = spec.strategy.steps
    index = status.current_step_index or 0
    if spec.strategy.blue_green is not None or status.stage == CanaryStage.PROMOTING or index >= len(steps):
        return spec.replicas
    return candidate_replicas(spec, route_at(steps, index))


def phase_matches_stage(status: ModelRolloutStatus) -> bool:
    """Whether status's phase and pauseReason are what its stage says (every decision's are)."""
    stage = status.stage if status.stage is not None else SharedStage.PENDING
    return status.pause_reason == pause_reason_of(stage, status.pause_reason) and status.phase == phase_of(
        stage, status.pause_reason
    )
