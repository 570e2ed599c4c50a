"""One reconcile pass: read, decide, act, record. Knows the API client, not kopf.

The order is deliberate: actions are carried out before the status that explains them is written,
so a crash in between replays the same (idempotent) actions from the old status on the next pass,
and a rollback reaches the cluster as early as possible.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import ModelRolloutSpec, PrometheusAuth, WebHeader
from modelrollout.api.templates import referenced_templates
from modelrollout.api.validation import InvalidSpec, parse_spec
from modelrollout.engine.common import timestamp
from modelrollout.engine.machine import command_of, decide, needs
from modelrollout.engine.types import (
    Deadlines,
    Decision,
    DeploymentState,
    HookResult,
    MeasurementRequest,
    Observations,
    RolloutRef,
    Selector,
)
from modelrollout.kube.actuator import Actuator
from modelrollout.kube.api import (
    CLUSTER_TEMPLATES,
    CONFIGMAPS,
    DEPLOYMENTS,
    MODELROLLOUTS,
    SECRETS,
    SERVICES,
    TEMPLATES,
    ApiError,
    KubeApi,
    merge_patch_between,
)
from modelrollout.kube.evaluation import observe_evaluation
from modelrollout.kube.events import EventLedger, pending_event
from modelrollout.kube.hooks import HookRunner
from modelrollout.kube.manifests import Owner
from modelrollout.kube.routing import GatewayFeatures, RouteWriteError, apply_route, observe_route, route_target
from modelrollout.kube.webhook_gates import ask_all
from modelrollout.metrics.base import MetricBackend, QueryStatus
from modelrollout.metrics.factory import BackendFactory
from modelrollout.metrics.prometheus import Credentials
from modelrollout.notify.ledger import next_retry_in
from modelrollout.notify.notifier import Notifier
from modelrollout.runtime.cache import Key, OwnWrites, ParsedSpecs, ParsedStatuses, deployment_state
from modelrollout.runtime.pacing import PassGate, RoutineGate
from modelrollout.runtime.status_writer import HeldStatus, quiet_change
from modelrollout.runtime.wakeups import WakeUps
from modelrollout.sharding.plan import shard_labels_in
from modelrollout.vocabulary.names import COMMAND_ANNOTATION, ROLLOUT_LABEL, stable_service_name
from modelrollout.vocabulary.routes import RouteState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeftForNextPass:
    """What a pass's actions gave that only the next pass decides on, which follows at once. Kept in
    memory for that one pass: lost on a restart, the route write is refused again, and the hook (its
    attempt counted in status) is fired again at its next attempt."""

    hook_result: HookResult | None = None
    route_refusal: str | None = None


@dataclass
class Runtime:
    """What every pass needs, built once at start-up."""

    api: KubeApi
    backend: MetricBackend
    default_prometheus: str | None
    events: EventLedger = field(default_factory=EventLedger)
    hooks: HookRunner = field(default_factory=HookRunner)
    gateway_features: GatewayFeatures = field(default_factory=GatewayFeatures)
    prometheus_timeout: float = 10.0
    prometheus_batch_seconds: float = 0.0
    written: OwnWrites = field(default_factory=OwnWrites)
    statuses: ParsedStatuses = field(default_factory=ParsedStatuses)
    specs: ParsedSpecs = field(default_factory=ParsedSpecs)
    routine: RoutineGate = field(default_factory=RoutineGate)
    passes: PassGate = field(default_factory=PassGate.adaptive)
    wakeups: WakeUps = field(default_factory=WakeUps)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # How long a quiet background measurement may wait to be written (see `quiet_change`); 0: never.
    quiet_write_seconds: float = 0.0
    left_for_next_pass: dict[Key, LeftForNextPass] = field(default_factory=dict)
    # Where the operator-wide notification ConfigMap and Secret are (None: only spec.notifications).
    operator_namespace: str | None = None
    # Sharded: whether this replica still surely holds the shard it runs (modelrollout.sharding).
    may_act: Callable[[], bool] = field(default=lambda: True)

    backends: BackendFactory = field(init=False)
    notifier: Notifier = field(init=False)
    _gate_session: aiohttp.ClientSession | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        # `backend` is the default Prometheus's; every metric's backend comes from the factory.
        self.backends = BackendFactory(
            self.backend, prometheus_timeout=self.prometheus_timeout, batch_seconds=self.prometheus_batch_seconds
        )
        self.notifier = Notifier(self.api, self.operator_namespace, self.wakeups.wake)

    def gate_session(self) -> aiohttp.ClientSession:
        """The HTTP session webhook gates are asked on (made in the loop, on first use)."""
        if self._gate_session is None or self._gate_session.closed:
            self._gate_session = aiohttp.ClientSession()
        return self._gate_session

    async def close_backends(self) -> None:
        """Close the backends' connections (their aiohttp sessions close in the loop)."""
        await self.backends.aclose()
        await self.notifier.close()
        if self._gate_session is not None:
            await self._gate_session.close()


async def secret_data(runtime: Runtime, namespace: str, name: str, where: str) -> dict[str, str] | str | None:
    """A Secret's data, None when there is no such Secret, or what kept the operator from reading it:
    `where` names the Secret and the field that asks for it (never a value)."""
    try:
        secret = await runtime.api.get(SECRETS, namespace, name)
    except ApiError as error:
        if error.status == 403:
            return f"the operator may not read {where}: grant it get on that Secret"
        return f"reading {where}: {error.status} {error.reason}"
    return None if secret is None else dict(secret.get("data") or {})


async def credentials_for(runtime: Runtime, namespace: str, auth: PrometheusAuth) -> Credentials | str:
    """The Prometheus credentials a Secret holds, or what is wrong (names only, never a value)."""
    where = f"Secret {namespace}/{auth.secret} (spec.analysis.prometheus.auth)"
    data = await secret_data(runtime, namespace, auth.secret, where)
    if data is None:
        return f"{where} not found"
    if isinstance(data, str):
        return data

    def value(key: str) -> str | None:
        raw = data.get(key)
        return base64.b64decode(raw).decode() if raw is not None else None

    keys = [k for k in (auth.bearer_token_key, auth.username_key, auth.password_key) if k is not None]
    missing = [k for k in keys if k not in data]
    if missing:
        return f"{where} has no key {', '.join(repr(k) for k in missing)}"
    if auth.bearer_token_key is not None:
        return Credentials(bearer_token=value(auth.bearer_token_key))
    assert auth.username_key is not None and auth.password_key is not None
    return Credentials(username=value(auth.username_key), password=value(auth.password_key))


async def web_headers(runtime: Runtime, namespace: str, metric: str, headers: list[WebHeader]) -> dict[str, str] | str:
    """A web metric's request headers, Secret values read (what is wrong names the Secret and key, never a value)."""
    resolved: dict[str, str] = {}
    for position, header in enumerate(headers):
        if header.value is not None:
            resolved[header.name] = header.value
            continue
        assert header.value_from is not None
        ref = header.value_from.secret_key_ref
        where = (
            f"Secret {namespace}/{ref.name} key {ref.key!r} "
            f"(spec.analysis.metrics[{metric}].web.headers[{position}].valueFrom)"
        )
        data = await secret_data(runtime, namespace, ref.name, where)
        if data is None:
            return f"{where}: the Secret is not found"
        if isinstance(data, str):
            return data
        raw = data.get(ref.key)
        if raw is None:
            return f"{where}: the Secret has no such key"
        try:
            resolved[header.name] = base64.b64decode(raw).decode()
        except ValueError:  # binascii.Error and UnicodeDecodeError both are
            return f"{where}: the value is not UTF-8 text"
    return resolved


async def measure(
    runtime: Runtime,
    namespace: str,
    requests: list[MeasurementRequest],
    auth: PrometheusAuth | None = None,
) -> dict[tuple[str, str], Observation]:
    """Run every due query (concurrently) and gather each metric's numbers or series; look at the
    evaluation Jobs of job metrics."""
    prometheus = runtime.backends.prometheus()
    credentials: Credentials | str | None = None
    if auth is not None and any(request.provider == "prometheus" for request in requests):
        credentials = await credentials_for(runtime, namespace, auth)
        if not isinstance(credentials, str):
            prometheus = runtime.backends.prometheus(credentials)

    async def one(request: MeasurementRequest) -> Observation:
        if request.job is not None:
            return await observe_evaluation(runtime.api, namespace, request.job, runtime.clock())
        backend = prometheus
        if request.web is not None:
            headers = await web_headers(runtime, namespace, request.metric, request.web.headers)
            if isinstance(headers, str):
                return Observation(value=None, error=headers)
            web = request.web
            backend = runtime.backends.web(web.method, headers, web.body, web.timeout_seconds)
        elif isinstance(credentials, str):
            return Observation(value=None, error=credentials)
        address = request.address or runtime.default_prometheus
        if not address:
            return Observation(
                value=None,
                error="no Prometheus address: set spec.analysis.prometheus.address or the operator's --prometheus-url",
            )
        roles = list(request.queries)
        if request.vector:
            vectors = await asyncio.gather(
                *(backend.query_vector(address, request.queries[r], domain=namespace) for r in roles)
            )
            for role, vector in zip(roles, vectors, strict=True):
                if vector.status == QueryStatus.ERROR:
                    return Observation(value=None, error=f"{role} query: {vector.message}")
            reference = await _training_reference(runtime, namespace, request.training) if request.training else None
            if isinstance(reference, str):
                return Observation(value=None, error=reference)
            return Observation(
                value=None,
                vectors={role: vector.samples for role, vector in zip(roles, vectors, strict=True)},
                reference=reference,
            )
        outcomes = await asyncio.gather(
            *(backend.query_scalar(address, request.queries[r], domain=namespace) for r in roles)
        )
        values: dict[str, float | None] = {}
        notes: list[str] = []
        for role, outcome in zip(roles, outcomes, strict=True):
            if outcome.status == QueryStatus.ERROR:
                label = "query" if role == "value" else f"{role} query"
                return Observation(
                    value=None, error=f"{label}: {outcome.message}" if role != "value" else outcome.message
                )
            values[role] = outcome.value if outcome.status == QueryStatus.VALUE else None
            if outcome.status == QueryStatus.EMPTY and role in ("value", "candidate"):
                notes.append(outcome.message)
        return Observation(value=values.get("value"), values=values, note="; ".join(notes))

    results = await asyncio.gather(*(one(request) for request in requests))
    return {(request.kind, request.metric): result for request, result in zip(requests, results, strict=True)}


async def _training_reference(runtime: Runtime, namespace: str, where: tuple[str, str]) -> dict[str, Any] | str:
    """The training-time reference document from a ConfigMap, or what is wrong with it."""
    name, key = where
    config_map = await runtime.api.get(CONFIGMAPS, namespace, name)
    if config_map is None:
        return f"training reference: ConfigMap {namespace}/{name} not found"
    text = (config_map.get("data") or {}).get(key)
    if text is None:
        return f"training reference: ConfigMap {namespace}/{name} has no key {key!r}"
    try:
        document = json.loads(text)
    except ValueError as error:
        return f"training reference: ConfigMap {namespace}/{name} key {key!r} is not JSON: {error}"
    return document if isinstance(document, dict) else f"training reference: {name}/{key} is not a JSON object"


async def fetch_templates(runtime: Runtime, namespace: str, spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The analysis templates a spec names: namespaced first, then cluster-scoped (built-ins need none)."""
    found: dict[str, dict[str, Any]] = {}
    for name in referenced_templates(spec):
        template = await runtime.api.get(TEMPLATES, namespace, name) or await runtime.api.get(
            CLUSTER_TEMPLATES, None, name
        )
        if template is not None:
            found[name] = dict(template.get("spec") or {})
    return found


@dataclass(frozen=True)
class PassResult:
    decision: Decision
    written: dict[str, Any] | None  # the object as our status write left it, if we wrote
    at: datetime
    events_posted: bool = True  # False: an Event could not be posted yet; look again soon
    held: HeldStatus | None = None  # the status this pass decided and did not write


@dataclass(frozen=True)
class Recorded:
    written: dict[str, Any] | None
    events_posted: bool
    held: HeldStatus | None = None


async def reconcile(
    runtime: Runtime,
    body: Mapping[str, Any],
    deployments: dict[str, DeploymentState],
    services: dict[str, Selector],
    held: HeldStatus | None = None,
) -> PassResult:
    """Run one pass: read, decide, act, record.

    `held` is the status the previous pass decided and did not write: it is decided from when the
    stored status is still the one it was based on (only the operator writes status)."""
    metadata = body.get("metadata", {})
    raw_spec = dict(body.get("spec") or {})
    key = (metadata["namespace"], metadata["name"])
    templates = await fetch_templates(runtime, metadata["namespace"], raw_spec)
    ref = RolloutRef(
        name=metadata["name"],
        namespace=metadata["namespace"],
        generation=int(metadata.get("generation", 1)),
        spec=raw_spec,
        templates=templates,
        parsed=runtime.specs.read(key, raw_spec, templates),
    )
    stored = dict(body.get("status") or {})
    held = held if held is not None and held.base == stored else None
    status = runtime.statuses.read(key, held.status if held is not None else stored)
    now = runtime.clock()
    try:
        spec: ModelRolloutSpec | None = ref.spec_model()
    except InvalidSpec:
        spec = None
    # Observe what the engine says it needs, then decide once.
    wanted = needs(ref, status, now, deployments)
    auth = spec.analysis.prometheus.auth if spec is not None else None
    measurements = await measure(runtime, ref.namespace, wanted.measurements, auth)
    if wanted.fresh_deployments:
        deployments = await read_deployments(runtime.api, ref.namespace, ref.name)
    target = None
    if spec is not None and wanted.route:
        uses_gateway = spec.traffic_routing is not None and spec.traffic_routing.gateway_api
        features = await runtime.gateway_features.get(runtime.api) if uses_gateway else None
        target = route_target(spec, ref.name, ref.namespace, features)
    route = await observe_route(runtime.api, target) if target is not None else None
    gate_answers = {}
    if wanted.gates:  # webhook gates (engine/gates.py): a 2xx answer is yes, anything else not yet
        gate_answers = await ask_all(runtime.gate_session(), runtime.api, ref.namespace, wanted.gates)
    left = runtime.left_for_next_pass.pop(key, LeftForNextPass())
    observations = Observations(
        deployments=deployments,
        services=services,
        route=route,
        measurements=measurements,
        command=command_of((metadata.get("annotations") or {}).get(COMMAND_ANNOTATION)),
        hook_result=left.hook_result,
        route_refusal=left.route_refusal,
        gate_answers=gate_answers,
    )
    decision = decide(ref, status, observations, now)
    if decision.actions:
        assert spec is not None  # decide() returns no actions for an invalid spec
        owner = Owner(ref.name, ref.namespace, metadata["uid"], shard_labels_in(metadata))
        try:
            hook_results = await Actuator(runtime.api, owner, spec, target, runtime.hooks, runtime.written).apply(
                decision.actions, deployments
            )
        except RouteWriteError as refused:
            # The route changed shape so that the router may not edit it (e.g. an Istio route that
            # already mirrors elsewhere). This pass's status spoke of a route that is not in force:
            # it is not recorded, and the next pass, at once, decides from the same status knowing
            # the refusal (which freezes the rollout with the router's message).
            runtime.left_for_next_pass[key] = LeftForNextPass(route_refusal=str(refused))
            unrecorded = replace(decision, status=status, events=[], deadlines=Deadlines.at_once())
            return PassResult(unrecorded, None, now, held=held)
        if hook_results:
            # One FireHook per pass at most: its outcome is the next pass's observation, decided at once.
            runtime.left_for_next_pass[key] = LeftForNextPass(hook_result=hook_results[-1])
            decision = replace(decision, deadlines=Deadlines.at_once())
    recorded = await record(runtime, body, stored, decision, held, spec)
    runtime.statuses.remember(key, decision.status)
    retry_in = next_retry_in(decision.status, now)
    if retry_in is not None:  # a message's next attempt: look again then, whatever else the rollout waits for
        soonest = Deadlines(
            next=min(retry_in, decision.deadlines.next if decision.deadlines.next is not None else retry_in),
            urgent=min(retry_in, decision.deadlines.urgent if decision.deadlines.urgent is not None else retry_in),
        )
        decision = replace(decision, deadlines=soonest)
    return PassResult(decision, recorded.written, now, recorded.events_posted, recorded.held)


async def read_deployments(api: KubeApi, namespace: str, rollout: str) -> dict[str, DeploymentState]:
    """The rollout's Deployments as the API server has them now, not as the watch last told."""
    listed = await api.list(DEPLOYMENTS, namespace, label_selector=f"{ROLLOUT_LABEL}={rollout}")
    states = [deployment_state(item) for item in listed]
    return {state.revision: state for state in states if state.revision}


async def record(
    runtime: Runtime,
    body: Mapping[str, Any],
    stored: dict[str, Any],
    decision: Decision,
    held: HeldStatus | None = None,
    spec: ModelRolloutSpec | None = None,
) -> Recorded:
    """Write the decided status with this pass's Events in it, then post the Events (see kube/events.py).

    A status that differs from the previous decision only by quiet measurements is held back (not
    written) for up to `runtime.quiet_write_seconds`, and written with the next change."""
    metadata = body["metadata"]
    key = (metadata["namespace"], metadata["name"])
    status = decision.status
    now = runtime.clock()
    at = timestamp(now)
    new = [pending_event(at, index, event, metadata["name"]) for index, event in enumerate(decision.events)]
    # Messages: outcomes of earlier attempts, retries now due, and this pass's news, all into status
    # before anything is sent (notify/ledger.py: at most once).
    sending = await runtime.notifier.prepare(key, spec, status, new, now)
    stored_pending = status.pending_events
    wire = status.wire()
    if not new and runtime.quiet_write_seconds > 0:
        since = held.since if held is not None else now
        previous = held.status if held is not None else stored
        unchanged = merge_patch_between(previous, wire) is None
        if (now - since).total_seconds() < runtime.quiet_write_seconds and (unchanged or quiet_change(previous, wire)):
            posted = await runtime.events.post(runtime.api, body, status.pending_events or [])
            keep = HeldStatus(base=stored, status=wire, since=since) if wire != stored else None
            return Recorded(None, events_posted=posted, held=keep)
    patch = merge_patch_between(stored, wire)
    if patch is not None or new:
        # Delivered Events leave status only with a write that happens anyway: no write of their own.
        pending = runtime.events.pending(key, stored_pending, new) or None
        if pending != stored_pending:
            status.pending_events = pending
            patch = merge_patch_between(stored, status.wire())
    written = None
    if patch is not None:
        try:
            written = await runtime.api.merge_patch(
                MODELROLLOUTS, metadata["namespace"], metadata["name"], {"status": patch}, subresource="status"
            )
        except ApiError as error:
            if error.status == 404:  # deleted while we decided: nothing left to record
                return Recorded(None, events_posted=True)
            raise
    runtime.notifier.stored(key, sending)  # only now may they be sent
    # Events only once the status that explains them is stored: a failed write replays the pass,
    # and its events with it.
    for event in new:
        log = logger.warning if event.type == "Warning" else logger.info
        log("%s/%s %s: %s", key[0], key[1], event.reason, event.message)
    posted = await runtime.events.post(runtime.api, body, status.pending_events or [])
    return Recorded(written, events_posted=posted)


async def release_route(api: KubeApi, name: str, namespace: str, raw_spec: dict[str, Any]) -> None:
    """On deletion: restore the user's route to 100% stable and keep the stable Service it names."""
    try:
        spec = parse_spec(raw_spec)
    except InvalidSpec:
        return  # an invalid spec never moved traffic
    target = route_target(spec, name, namespace)
    if target is None:
        return
    route = await observe_route(api, target)
    if route.error is None:
        await apply_route(api, target, RouteState())
    stable_service = stable_service_name(name)
    service = await api.get(SERVICES, namespace, stable_service)
    if service is not None and service.get("metadata", {}).get("ownerReferences"):
        await api.merge_patch(SERVICES, namespace, stable_service, {"metadata": {"ownerReferences": None}})
