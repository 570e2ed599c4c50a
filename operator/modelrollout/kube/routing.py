"""Reading and writing the user's route object for a traffic router: the routers' only I/O.

Reading happens before a pass (what does the user's route do now?), writing when the engine asks
for a SetRoute. Blue-green switches Services, not routes, so it reads and writes no route. The
routers (`traffic/`) are pure; this module fetches the object they name and patches it with their
edit, handing the engine the same `RouteState` the routers speak.

Writes are JSON merge patches that carry `metadata.resourceVersion` (see `apply_edit` for why).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from modelrollout.api.models import ModelRolloutSpec
from modelrollout.kube.api import CRDS, ApiError, KubeApi, Resource, merge_patch_between
from modelrollout.traffic.base import JsonDict, RouteError, Router, RouteResource, missing_route
from modelrollout.traffic.factory import router_for
from modelrollout.traffic.gateway_api import HTTPROUTE_CRD, GatewayApiFeatures, features_of
from modelrollout.vocabulary.names import comparator_name
from modelrollout.vocabulary.routes import RouteState, RouteView

logger = logging.getLogger(__name__)

#: Re-read and re-apply this many times when someone else wrote the route between our read and
#: our write (409 Conflict on the resourceVersion precondition).
CONFLICT_ATTEMPTS = 5


def resource_of(route: RouteResource) -> Resource:
    return Resource(route.group, route.version, route.plural)


@dataclass(frozen=True)
class RouteTarget:
    """The route one rollout's canary steers: its router and the namespace both live in."""

    router: Router
    namespace: str

    @property
    def name(self) -> str:
        return self.router.route_name

    @property
    def kind(self) -> str:
        return self.router.resource.kind


def route_target(
    spec: ModelRolloutSpec, rollout: str, namespace: str, gateway_api: GatewayApiFeatures | None = None
) -> RouteTarget | None:
    """The route this rollout's canary steers, if it has one."""
    if spec.strategy.blue_green is not None:
        return None
    mirror_service = comparator_name(rollout) if spec.shadow_comparison() is not None else ""
    router = router_for(spec.traffic_routing, rollout, gateway_api=gateway_api, mirror_service=mirror_service)
    return RouteTarget(router, namespace) if router is not None else None


async def observe_route(api: KubeApi, target: RouteTarget) -> RouteView:
    current = await api.get(resource_of(target.router.resource), target.namespace, target.name)
    if current is None:
        return RouteView(error=str(missing_route(target.kind, target.namespace, target.name)))
    seen = target.router.observe(current)
    if isinstance(seen, RouteError):
        return RouteView(error=str(seen))
    return RouteView(state=seen)


class RouteWriteError(Exception):
    """The router refused the edit (the route is missing, or changed shape between reading and
    writing); `error` names the route and what is wrong."""

    def __init__(self, error: RouteError):
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class Applied:
    """The route now carries the desired state; `changed` is False when it already did (no write)."""

    changed: bool
    attempts: int = 1


async def apply_route(api: KubeApi, target: RouteTarget, state: RouteState) -> Applied:
    """Read the route, edit it to carry `state`, and write it if that changes anything."""
    result = await apply_edit(
        api,
        resource_of(target.router.resource),
        target.kind,
        target.namespace,
        target.name,
        lambda route: target.router.edit(route, state),
    )
    if isinstance(result, RouteError):
        raise RouteWriteError(result)
    return result


async def apply_edit(
    api: KubeApi,
    resource: Resource,
    kind: str,
    namespace: str,
    name: str,
    edit: Callable[[JsonDict], JsonDict | RouteError],
    attempts: int = CONFLICT_ATTEMPTS,
) -> Applied | RouteError:
    """GET the object, compute the edit, and write it as a merge patch conditional on the
    resourceVersion we read; on 409 someone wrote in between, so read again and redo the edit.

    Why a merge patch with `metadata.resourceVersion` rather than a JSON patch with a `test` op: a
    merge patch replaces lists whole, and our edit rewrites `spec.rules` / `spec.http` (lists), so
    without a precondition we could overwrite a rule the user changed a moment ago. The
    resourceVersion precondition is the API server's own optimistic concurrency: a stale one is a
    409 Conflict, the same answer as a stale update, distinct from every validation error. A failed
    JSON patch `test` is a 422, which is also what a schema violation returns, so we could not tell
    "retry" from "give up". The patch sent is also the smallest one (`merge_patch_between`): only the
    changed lists.
    """
    for attempt in range(1, attempts + 1):
        current = await api.get(resource, namespace, name)
        if current is None:
            return missing_route(kind, namespace, name)
        edited = edit(current)
        if isinstance(edited, RouteError):
            return edited
        patch = merge_patch_between(_without_rv(current), _without_rv(edited))
        if patch is None:
            return Applied(changed=False, attempts=attempt)
        patch.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            await api.merge_patch(resource, namespace, name, patch)
        except ApiError as error:
            if error.status == 404:
                return missing_route(kind, namespace, name)
            if error.status != 409 or attempt == attempts:
                raise
            logger.info("%s %s/%s changed under us (%s); reading it again", kind, namespace, name, error.message)
            continue
        logger.info("%s %s/%s: routing updated", kind, namespace, name)
        return Applied(changed=True, attempts=attempt)
    raise AssertionError("unreachable")


def _without_rv(obj: JsonDict) -> JsonDict:
    metadata = {key: value for key, value in (obj.get("metadata") or {}).items() if key != "resourceVersion"}
    return {**obj, "metadata": metadata}


async def detect_features(api: KubeApi) -> GatewayApiFeatures:
    """Read the installed HTTPRoute CRD and say which optional fields it keeps."""
    return features_of(await api.get(CRDS, None, HTTPROUTE_CRD))


class GatewayFeatures:
    """What the installed Gateway API accepts (RequestMirror percent, rule names), read once.

    Reading the CRD needs no extra permission (kopf already reads CRDs); the answer is kept for the
    operator's life, as CRDs change only with an upgrade of the Gateway API.
    """

    def __init__(self) -> None:
        self._features: GatewayApiFeatures | None = None

    async def get(self, api: KubeApi) -> GatewayApiFeatures:
        if self._features is None:
            self._features = await detect_features(api)
        return self._features
