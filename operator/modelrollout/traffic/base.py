"""The router protocol and its value types.

A router turns a desired split (`RouteState`) into an edit of a route object that the user owns (an
HTTPRoute, a VirtualService), checks that the route says what we asked for, and puts it back to
100% stable after an abort. The edit itself is pure (`desired`, `verify`, `restore` take and return
plain dicts), so every case is testable without a cluster; `apply` is the only I/O.

Bad input (a route that does not exist, or has nothing pointing at the rollout's stable Service) is
a `RouteError` *value*, not an exception: the engine turns it into a `Degraded` condition and moves
no traffic. Transport failures stay `ApiError` exceptions, retried by the caller like any other.

Writes are JSON merge patches that carry `metadata.resourceVersion` (see `apply_edit` for why).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from modelrollout.kube.api import ApiError, KubeApi, Resource, merge_patch_between

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

#: The name of the one rule (HTTPRoute) / http route (VirtualService) the operator adds for a
#: header-routed step; everything else in the route belongs to the user.
HEADER_ROUTE_NAME = "modelrollout-header-route"

#: Re-read and re-apply this many times when someone else wrote the route between our read and
#: our write (409 Conflict on the resourceVersion precondition).
CONFLICT_ATTEMPTS = 5


@dataclass(frozen=True)
class HeaderMatch:
    """Requests whose header `name` equals `value` exactly go to the candidate."""

    name: str
    value: str

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a header route needs a header name")


@dataclass(frozen=True)
class RouteState:
    """The routing the engine wants now, in percent.

    `candidate_weight` is the share of live traffic answered by the candidate; `mirror_percent` the
    share of requests copied to the candidate (its answers dropped); `header_route` sends matching
    requests to the candidate whatever the weights say.
    """

    stable_service: str
    candidate_service: str
    candidate_weight: int = 0
    mirror_percent: int = 0
    header_route: HeaderMatch | None = None

    def __post_init__(self) -> None:
        for field_name in ("candidate_weight", "mirror_percent"):
            value = getattr(self, field_name)
            if not 0 <= value <= 100:
                raise ValueError(f"{field_name} must be within 0..100, got {value}")
        if self.stable_service == self.candidate_service:
            raise ValueError(f'stable and candidate Services must differ, both are "{self.stable_service}"')

    @classmethod
    def at_rest(cls, stable_service: str, candidate_service: str) -> RouteState:
        """All traffic on stable, no mirror, no header route: where a rollout starts and an abort ends."""
        return cls(stable_service, candidate_service)


@dataclass(frozen=True)
class RouteError:
    """Bad input the user must fix; `message` names the object, its kind, and what is missing."""

    kind: str
    namespace: str
    name: str
    message: str

    def __str__(self) -> str:
        return self.message


def missing_route(kind: str, namespace: str, name: str) -> RouteError:
    return RouteError(
        kind,
        namespace,
        name,
        f"{kind} {namespace}/{name} does not exist; create it, or name an existing {kind} in spec.trafficRouting",
    )


@dataclass(frozen=True)
class Verified:
    """The route carries the weights, mirror and header route asked for."""


@dataclass(frozen=True)
class NotVerified:
    reason: str


@dataclass(frozen=True)
class NotSupported:
    """The router cannot observe the split (the replica-ratio router: replica counts realise it)."""

    reason: str = "this router has no route to read; the split is realised by replica counts"


Verification = Verified | NotVerified | NotSupported


@dataclass(frozen=True)
class Applied:
    """The route now carries the desired state; `changed` is False when it already did (no write)."""

    changed: bool
    attempts: int = 1


@runtime_checkable
class Router(Protocol):
    """One traffic router: pure edits of a route object, plus a thin async `apply`."""

    @property
    def route_name(self) -> str | None:
        """The route object this router edits, from the spec; None for the replica-ratio router."""
        ...

    def desired(self, route: JsonDict, state: RouteState) -> JsonDict | RouteError:
        """The route object edited to carry `state` (a new dict; the argument is not modified)."""
        ...

    def verify(self, route: JsonDict, state: RouteState) -> Verification:
        """Whether `route` routes as `state` says."""
        ...

    def restore(self, route: JsonDict, stable_service: str, candidate_service: str) -> JsonDict | RouteError:
        """100% stable, no mirror to the candidate, no managed header rule."""
        ...

    def observe(self, route: JsonDict, stable_service: str, candidate_service: str) -> RouteState | RouteError:
        """What the route does now: the candidate's weight, mirrored share and header route."""
        ...

    async def apply(self, api: KubeApi, namespace: str, name: str, state: RouteState) -> Applied | RouteError:
        """Read the route, edit it to carry `state`, and write it if that changes anything."""
        ...

    async def verify_live(
        self, api: KubeApi, namespace: str, name: str, state: RouteState
    ) -> Verification | RouteError:
        """Read the route and `verify` it."""
        ...


def route_namespace(route: JsonDict) -> str:
    return str((route.get("metadata") or {}).get("namespace") or "default")


class ObjectRouter:
    """What the HTTPRoute and VirtualService routers share: restore, apply and verify_live from
    `desired` and `verify`, which each subclass implements for its object."""

    kind: ClassVar[str]

    @property
    def resource(self) -> Resource:
        raise NotImplementedError

    def _error(self, route: JsonDict, message: str) -> RouteError:
        return RouteError(
            self.kind, route_namespace(route), str((route.get("metadata") or {}).get("name", "")), message
        )

    def desired(self, route: JsonDict, state: RouteState) -> JsonDict | RouteError:
        raise NotImplementedError

    def verify(self, route: JsonDict, state: RouteState) -> Verification:
        raise NotImplementedError

    def restore(self, route: JsonDict, stable_service: str, candidate_service: str) -> JsonDict | RouteError:
        # Restoring is the at-rest state, so restore(x) == desired(x, at_rest): one code path to test.
        return self.desired(route, RouteState.at_rest(stable_service, candidate_service))

    async def apply(self, api: KubeApi, namespace: str, name: str, state: RouteState) -> Applied | RouteError:
        return await apply_edit(api, self.resource, self.kind, namespace, name, lambda obj: self.desired(obj, state))

    async def verify_live(
        self, api: KubeApi, namespace: str, name: str, state: RouteState
    ) -> Verification | RouteError:
        current = await api.get(self.resource, namespace, name)
        if current is None:
            return missing_route(self.kind, namespace, name)
        return self.verify(current, state)


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


def set_or_drop(owner: JsonDict, key: str, values: list[Any], had_key: bool) -> None:
    """Write a list back, leaving the key absent if it was absent and the list stayed empty, so that a
    route we did not need to change reads exactly as the user wrote it."""
    if values or had_key:
        owner[key] = values
    else:
        owner.pop(key, None)


def clone(obj: JsonDict) -> JsonDict:
    return copy.deepcopy(obj)


def share(part: float, total: float) -> float:
    """`part` of `total` in percent; an empty total sends nothing anywhere."""
    return 0.0 if total <= 0 else 100.0 * part / total


def same_percent(actual: float, wanted: int) -> bool:
    # Weights are small integers, so shares are exact up to float rounding.
    return abs(actual - wanted) < 1e-6
