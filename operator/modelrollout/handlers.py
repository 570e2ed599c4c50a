"""The kopf handlers: unpack kopf's arguments, run a pass, wait. Nothing else lives here.

Each ModelRollout gets one daemon that runs passes one at a time, so a rollout never has two passes
racing; any change to the rollout or to its Deployments wakes it at once, and otherwise it sleeps
until the engine's next deadline (a pause ending, a measurement falling due).
Deployments and Services are read from kopf indexes fed by watches, not fetched on every pass.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any, cast

import kopf
import kubernetes

from modelrollout import GROUP, PLURAL, VERSION
from modelrollout.engine.types import DeploymentState, Selector
from modelrollout.kube.actuator import deployment_state, resource_version
from modelrollout.kube.api import ApiError, KubeApi
from modelrollout.kube.names import (
    COMMAND_ANNOTATION,
    FINALIZER,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ROLLOUT_LABEL,
)
from modelrollout.metrics.prometheus import PrometheusBackend
from modelrollout.operator_metrics import OPERATOR_METRICS
from modelrollout.reconcile import HeldStatus, Runtime, deployment_states, newer, reconcile, release_route
from modelrollout.settings import OperatorOptions

logger = logging.getLogger(__name__)

# The fastest a rollout is looked at again after an error: enough to ride out an API hiccup
# without hammering the server.
ERROR_RETRY_SECONDS = 2.0
EVENT_RETRY_SECONDS = 5.0  # an Event the API server refused is posted again this soon
MANAGED = {MANAGED_BY_LABEL: MANAGED_BY}


class Wakers:
    """One asyncio.Event per rollout, set by watch events, awaited by the rollout's daemon."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], asyncio.Event] = {}
        self._seen: dict[tuple[str, str | None, str | None], tuple[Any, ...]] = {}

    def get(self, namespace: str, name: str) -> asyncio.Event:
        return self._events.setdefault((namespace, name), asyncio.Event())

    def wake(self, namespace: str | None, name: str | None) -> None:
        if namespace is not None and name is not None and (namespace, name) in self._events:
            self._events[(namespace, name)].set()

    def forget(self, namespace: str, name: str) -> None:
        self._events.pop((namespace, name), None)

    def changed(self, key: tuple[str, str | None, str | None], seen: tuple[Any, ...], gone: bool = False) -> bool:
        """Whether what matters of an object differs from what the last event showed."""
        if gone:
            self._seen.pop(key, None)  # nothing more will come of it; keep the memory bounded
            return True
        if self._seen.get(key) == seen:
            return False
        self._seen[key] = seen
        return True

    def forget_seen(self, namespace: str, name: str) -> None:
        self._seen.pop(("rollout", namespace, name), None)


WAKERS = Wakers()


@kopf.on.login()
def login(memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """Log in with the kubeconfig named by --kubeconfig, else as kopf does (in-cluster, $KUBECONFIG).

    kopf's own client login reads the default kubeconfig location fixed when the kubernetes
    package was first imported, so an explicit file is loaded here instead.
    """
    options: OperatorOptions = memo.options
    if options.kubeconfig is None:
        return kopf.login_via_client(logger=logger, **kwargs)
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=options.kubeconfig, client_configuration=configuration
    )
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0] if parts else None)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


class NoDiffBase(kopf.DiffBaseStorage):
    """Keeps no last-handled configuration, and sees no essence in an object.

    kopf stores a copy of the spec in an annotation after every spec change, to compute diffs for
    create/update handlers: one more write of the ModelRollout per change (0.8 per canary step at
    1,000 rollouts). This operator has none of those handlers: a daemon reads the whole spec on each
    pass, and the one changing handler, on.delete, needs no diff (kopf detects deletion before any
    diff). An essence that is always empty makes every watch event a no-op to kopf's change
    detection, so kopf writes nothing and skips the deep copies of the body that building one costs
    (6 % of the operator's busy time at 1,000 rollouts).
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return cast(kopf.BodyEssence, {})

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    options: OperatorOptions = memo.options
    # kopf's own bookkeeping goes under our API group, so users see one owner of these keys.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.peering.standalone = options.peering is None
    if options.peering is not None:
        settings.peering.name = options.peering
        settings.peering.lifetime = options.peering_lifetime
        # kopf pauses every peer whose priority equals another's; distinct random priorities make
        # exactly one replica active, and another takes over when its peering record expires.
        settings.peering.priority = random.randint(1, 1_000_000)
        settings.peering.mandatory = True
        settings.peering.clusterwide = not options.namespaces
    api = await KubeApi.connect(options.kubeconfig)
    memo.runtime = Runtime(
        api=api,
        backend=PrometheusBackend(timeout=options.prometheus_timeout, batch_seconds=options.prometheus_batch_seconds),
        default_prometheus=options.prometheus_url,
        prometheus_timeout=options.prometheus_timeout,
        prometheus_batch_seconds=options.prometheus_batch_seconds,
        quiet_write_seconds=options.quiet_write_seconds,
    )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is not None:
        try:
            await runtime.close_backends()
        finally:
            await runtime.api.close()


# The index functions are coroutines so that kopf calls them in the event loop: a plain function
# is run in a worker thread, a hand-off per watch event that cost more than the function itself.
@kopf.index("apps", "v1", "deployments", labels=MANAGED)
async def rollout_deployments(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[tuple[str, str], DeploymentState]:
    rollout = labels.get(ROLLOUT_LABEL)
    state = deployment_state(body)
    if not rollout or not state.revision or namespace is None:
        return {}
    return {(namespace, rollout): state}


@kopf.index("", "v1", "services", labels=MANAGED)
async def rollout_services(
    namespace: str | None, labels: Mapping[str, str], name: str, spec: kopf.Spec, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], tuple[str, tuple[int, Selector]]]:
    rollout = labels.get(ROLLOUT_LABEL)
    if not rollout or not namespace:
        return {}
    selector: Selector = tuple(sorted((spec.get("selector") or {}).items()))
    return {(namespace, rollout): (name, (resource_version(body), selector))}


# Wake-ups come from async event handlers: kopf runs them in the event loop after it has indexed
# the same event, so the woken daemon reads fresh indexes. (Waking from a sync index function ran
# in a worker thread before the index was updated: the daemon saw the old readiness and slept 5 s.)
# Only changes that can move a rollout wake it: most watch events are the echoes of its own
# writes (status, replicas), and a pass for each was most of the operator's work at scale.


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
async def deployment_changed(
    type: str | None,
    namespace: str | None,
    name: str | None,
    labels: Mapping[str, str],
    body: kopf.Body,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    state = deployment_state(body)
    seen = (state.replicas, state.ready_replicas)
    rollout = labels.get(ROLLOUT_LABEL)
    if not WAKERS.changed(("deployment", namespace, name), seen, gone=type == "DELETED"):
        return
    if type != "DELETED" and _echo_of_our_write(memo, namespace, rollout, state):
        return  # the daemon has the answer to that write already
    WAKERS.wake(namespace, rollout)


def _echo_of_our_write(memo: kopf.Memo, namespace: str | None, rollout: str | None, seen: DeploymentState) -> bool:
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is None or namespace is None or rollout is None:
        return False
    return runtime.written.is_answer(namespace, rollout, seen)


@kopf.on.event("", "v1", "services", labels=MANAGED)
async def service_changed(
    type: str | None, namespace: str | None, name: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> None:
    seen = (str(body.get("spec", {}).get("selector")),)
    if WAKERS.changed(("service", namespace, name), seen, gone=type == "DELETED"):
        WAKERS.wake(namespace, labels.get(ROLLOUT_LABEL))


@kopf.on.event(GROUP, VERSION, PLURAL)
async def rollout_changed(namespace: str | None, name: str | None, meta: kopf.Meta, **_: Any) -> None:
    annotations = meta.get("annotations") or {}
    seen = (meta.get("generation"), annotations.get(COMMAND_ANNOTATION), meta.get("deletionTimestamp"))
    if WAKERS.changed(("rollout", namespace, name), seen):
        WAKERS.wake(namespace, name)


class _QuietWakeups(logging.Filter):
    """The wake-up handlers run on every watch event; a log line for each would drown the rest."""

    NAMES = ("deployment_changed", "service_changed", "rollout_changed")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Handler '") and any(f"'{name}'" in message for name in self.NAMES))


logging.getLogger("kopf.objects").addFilter(_QuietWakeups())


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def rollout_deleted(name: str, namespace: str | None, spec: kopf.Spec, memo: kopf.Memo, **_: Any) -> None:
    """Leave the user's route as it was before the rollout: all traffic to the stable Service, which
    is kept (orphaned), so the route never points at a deleted Service. Deployments and the other
    Services go with the ModelRollout through their ownerReferences."""
    runtime: Runtime = memo.runtime
    assert namespace is not None
    await release_route(runtime.api, name, namespace, dict(spec))


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def rollout_loop(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    # kopf passes each index as a keyword named after its handler.
    deployments_index: kopf.Index[tuple[str, str], DeploymentState] = kwargs["rollout_deployments"]
    services_index: kopf.Index[tuple[str, str], tuple[str, tuple[int, Selector]]] = kwargs["rollout_services"]
    runtime: Runtime = memo.runtime
    options: OperatorOptions = memo.options
    assert namespace is not None  # ModelRollout is a namespaced resource
    wake = WAKERS.get(namespace, name)
    written: dict[str, Any] | None = None
    held: HeldStatus | None = None
    # One waiter for the stop, for the daemon's life: kopf makes each `stopped.wait()` a new task,
    # and at 10,000 rollouts one per sleep was a quarter of the operator's CPU.
    stopping = asyncio.ensure_future(stopped.wait())
    # Set when the coming pass only takes a background measurement: the longest it may wait for
    # a routine slot (modelrollout.pacing) before something urgent falls due.
    patience: float | None = None
    due_at: float | None = None  # the deadline the daemon slept until, when it was not woken before it
    try:
        while not stopped:
            gate = runtime.routine.slot(patience, wake, stopping) if patience is not None else nullcontext(False)
            async with gate:
                if stopped:  # stopped while waiting for a slot: no last pass on the way out
                    break
                if due_at is not None:
                    lateness = max(0.0, asyncio.get_running_loop().time() - due_at)
                    kind = "routine" if patience is not None else "urgent"
                    OPERATOR_METRICS.pass_lateness.labels(kind=kind).observe(lateness)
                wake.clear()
                current = newer(body, written)
                if current.get("metadata", {}).get("deletionTimestamp"):
                    return
                key = (namespace, name)
                started = asyncio.get_running_loop().time()
                try:
                    indexed = deployment_states(list(deployments_index.get(key, [])))
                    deployments = runtime.written.merged_deployments(key, indexed)
                    services = runtime.written.merged_services(key, dict(services_index.get(key, [])))
                    result = await reconcile(runtime, current, deployments, services, held)
                    written = result.written or written
                    held = result.held
                    decision = result.decision
                    deadlines = decision.deadlines
                    urgent = deadlines.urgent if deadlines.urgent is not None else math.inf
                    delay = min(
                        deadlines.next if deadlines.next is not None else options.resync_seconds,
                        options.resync_seconds,
                    )
                    if held is not None:  # written by this deadline at the latest
                        age = (runtime.clock() - held.since).total_seconds()
                        delay = min(delay, max(0.0, runtime.quiet_write_seconds - age))
                    if not result.events_posted:
                        delay = min(delay, EVENT_RETRY_SECONDS)
                    elapsed = asyncio.get_running_loop().time() - started
                    OPERATOR_METRICS.observe_pass(namespace, name, decision, result.at, elapsed)
                except ApiError as error:
                    logger.warning("%s/%s: API error, retrying: %s", namespace, name, error)
                    OPERATOR_METRICS.reconcile_errors.labels(kind="api").inc()
                    delay, urgent = ERROR_RETRY_SECONDS, ERROR_RETRY_SECONDS
                except Exception:
                    # One rollout's surprise must not stop the others or kill this loop: log it with
                    # the traceback and look again shortly.
                    logger.exception("%s/%s: reconcile failed", namespace, name)
                    OPERATOR_METRICS.reconcile_errors.labels(kind="internal").inc()
                    delay, urgent = ERROR_RETRY_SECONDS, ERROR_RETRY_SECONDS
            patience = due_at = None
            if delay > 0:
                deadline = asyncio.get_running_loop().time() + delay
                if not await _sleep(wake, stopping, delay):
                    due_at = deadline
                    if delay < urgent:
                        patience = min(urgent - delay, options.resync_seconds)
    finally:
        stopping.cancel()
        WAKERS.forget(namespace, name)
        if current_object_deleted(body):
            OPERATOR_METRICS.forget(namespace, name)
            runtime.written.forget((namespace, name))
            runtime.statuses.forget((namespace, name))
            runtime.specs.forget((namespace, name))
            runtime.events.forget((namespace, name))
            WAKERS.forget_seen(namespace, name)


def current_object_deleted(body: kopf.Body) -> bool:
    return bool(body.get("metadata", {}).get("deletionTimestamp"))


async def _sleep(wake: asyncio.Event, stopping: asyncio.Future[Any], seconds: float) -> bool:
    """Sleep until the deadline, a wake-up, or the daemon being stopped, whichever comes first;
    whether it ended before the deadline."""
    woken = asyncio.ensure_future(wake.wait())
    try:
        done, _ = await asyncio.wait({woken, stopping}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
    return bool(done)
