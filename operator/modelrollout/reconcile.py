"""One reconcile pass: read, decide, act, record. Knows the API client, not kopf.

The order is deliberate: actions are carried out before the status that explains them is written,
so a crash in between replays the same (idempotent) actions from the old status on the next pass,
and a rollback reaches the cluster as early as possible.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import ModelRolloutSpec, ModelRolloutStatus
from modelrollout.api.validation import InvalidSpec, parse_spec
from modelrollout.engine.machine import command_of, decide, plan_measurements
from modelrollout.engine.types import (
    Decision,
    DeploymentState,
    EventRecord,
    MeasurementRequest,
    Observations,
    RolloutRef,
    Selector,
)
from modelrollout.kube.actuator import Actuator
from modelrollout.kube.api import MODELROLLOUTS, ApiError, KubeApi, merge_patch_between
from modelrollout.kube.manifests import Owner
from modelrollout.kube.names import COMMAND_ANNOTATION
from modelrollout.kube.routing import observe_route, route_target
from modelrollout.metrics.base import MetricBackend, QueryStatus

logger = logging.getLogger(__name__)


class EventSink(Protocol):
    def __call__(self, body: Mapping[str, Any], record: EventRecord) -> None: ...


@dataclass
class Runtime:
    """What every pass needs, built once at start-up."""

    api: KubeApi
    backend: MetricBackend
    default_prometheus: str | None
    post_event: EventSink
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def deployment_states(items: list[DeploymentState]) -> dict[str, DeploymentState]:
    return {state.revision: state for state in items}


async def measure(runtime: Runtime, requests: list[MeasurementRequest]) -> dict[tuple[str, str], Observation]:
    async def one(request: MeasurementRequest) -> Observation:
        address = request.address or runtime.default_prometheus
        if not address:
            return Observation(
                value=None,
                error="no Prometheus address: set spec.analysis.prometheus.address or the operator's --prometheus-url",
            )
        outcome = await runtime.backend.query_scalar(address, request.query)
        if outcome.status == QueryStatus.ERROR:
            return Observation(value=None, error=outcome.message)
        if outcome.status == QueryStatus.EMPTY:
            return Observation(value=None, note=outcome.message)
        return Observation(value=outcome.value)

    results = await asyncio.gather(*(one(request) for request in requests))
    return {(request.kind, request.metric): result for request, result in zip(requests, results, strict=True)}


def read_status(raw: Mapping[str, Any] | None) -> ModelRolloutStatus:
    """The status as stored; one the operator cannot read (hand-edited) starts afresh, logged."""
    try:
        return ModelRolloutStatus.model_validate(dict(raw or {}))
    except ValidationError as error:
        logger.warning("status could not be read, starting from an empty one: %s", error)
        return ModelRolloutStatus()


def newer(body: Mapping[str, Any], written: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The fresher of kopf's view of the object and the answer to our last status write.

    kopf's view catches up only when the watch event arrives; deciding from it right after a write
    would replay the previous pass. resourceVersions are opaque by contract but etcd's are integers;
    if they are not, trust the watch.
    """
    if written is None:
        return body
    try:
        seen = int(body.get("metadata", {}).get("resourceVersion", "0"))
        ours = int(written.get("metadata", {}).get("resourceVersion", "0"))
    except ValueError:
        return body
    return written if ours > seen else body


@dataclass(frozen=True)
class PassResult:
    decision: Decision
    written: dict[str, Any] | None  # the object as our status write left it, if we wrote
    at: datetime


async def reconcile(
    runtime: Runtime,
    body: Mapping[str, Any],
    deployments: dict[str, DeploymentState],
    services: dict[str, Selector],
) -> PassResult:
    """Run one pass: read, decide, act, record."""
    metadata = body.get("metadata", {})
    ref = RolloutRef(
        name=metadata["name"],
        namespace=metadata["namespace"],
        generation=int(metadata.get("generation", 1)),
        spec=dict(body.get("spec") or {}),
    )
    stored = dict(body.get("status") or {})
    status = read_status(stored)
    now = runtime.clock()
    measurements = await measure(runtime, plan_measurements(ref, status, now))
    try:
        spec: ModelRolloutSpec | None = parse_spec(ref.spec)
    except InvalidSpec:
        spec = None
    target = route_target(spec, ref.name, ref.namespace) if spec is not None else None
    route = await observe_route(runtime.api, target) if target is not None else None
    observations = Observations(
        deployments=deployments,
        services=services,
        route=route,
        measurements=measurements,
        command=command_of((metadata.get("annotations") or {}).get(COMMAND_ANNOTATION)),
    )
    decision = decide(ref, status, observations, now)
    if decision.actions:
        assert spec is not None  # decide() returns no actions for an invalid spec
        owner = Owner(ref.name, ref.namespace, metadata["uid"])
        await Actuator(runtime.api, owner, spec, target).apply(decision.actions, deployments)
    written = await record(runtime, body, stored, decision)
    return PassResult(decision, written, now)


async def record(
    runtime: Runtime, body: Mapping[str, Any], stored: dict[str, Any], decision: Decision
) -> dict[str, Any] | None:
    metadata = body["metadata"]
    patch = merge_patch_between(stored, decision.status.wire())
    written = None
    if patch is not None:
        try:
            written = await runtime.api.merge_patch(
                MODELROLLOUTS, metadata["namespace"], metadata["name"], {"status": patch}, subresource="status"
            )
        except ApiError as error:
            if error.status == 404:  # deleted while we decided: nothing left to record
                return None
            raise
    # Events only once the status that explains them is stored: a failed write replays the pass,
    # and its events with it.
    for event in decision.events:
        runtime.post_event(body, event)
        log = logger.warning if event.type == "Warning" else logger.info
        log("%s/%s %s: %s", metadata["namespace"], metadata["name"], event.reason, event.message)
    return written
