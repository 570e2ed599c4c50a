"""The router protocol: two pure functions of a route object, and what the caller needs to fetch it.

A router is built for one rollout's route (its name, the stable and candidate Services). It reads
what the route does now (`observe(route) -> RouteState`) and edits it to do what the engine wants
(`edit(route, state) -> route`, a new dict; the argument is not modified). Both take and return the
route as the API server's plain dict, so every case is testable without a cluster; reading and
writing the object is `kube.routing`'s job, with the `resource` the router names.

Bad input (a route that does not exist, or has nothing pointing at the rollout's stable Service) is
a `RouteError` *value*, not an exception: the engine turns it into a `Degraded` condition and moves
no traffic.

Without `spec.trafficRouting` there is no router: one Service fronts every version and the engine
realises the split by replica counts (`engine.common.splits_by_replicas`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from modelrollout.vocabulary.routes import RouteState

JsonDict = dict[str, Any]

#: The name of the one rule (HTTPRoute) / http route (VirtualService) the operator adds for a
#: header-routed step; everything else in the route belongs to the user.
HEADER_ROUTE_NAME = "modelrollout-header-route"


@dataclass(frozen=True)
class RouteResource:
    """Where a route object lives in the API: enough for the caller to read and patch it."""

    group: str
    version: str
    plural: str
    kind: str


@dataclass(frozen=True)
class RouteError:
    """Bad input the user must fix; `message` names the object, its kind, and what is wrong."""

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


@runtime_checkable
class Router(Protocol):
    """One traffic router: a pure reading and a pure edit of the route object it names."""

    @property
    def route_name(self) -> str:
        """The route object this router edits, from the spec (in the rollout's namespace)."""
        ...

    @property
    def resource(self) -> RouteResource:
        """The route's API group, version, plural and kind."""
        ...

    def observe(self, route: JsonDict) -> RouteState | RouteError:
        """What the route does now: the candidate's weight, mirrored share and header route."""
        ...

    def edit(self, route: JsonDict, state: RouteState) -> JsonDict | RouteError:
        """The route object edited to carry `state` (a new dict; the argument is not modified)."""
        ...


def route_namespace(route: JsonDict) -> str:
    return str((route.get("metadata") or {}).get("namespace") or "default")


@dataclass(frozen=True)
class ObjectRouter:
    """What the HTTPRoute and VirtualService routers share: the route and Services they are for."""

    route_name: str
    stable_service: str
    candidate_service: str

    kind: ClassVar[str]

    def __post_init__(self) -> None:
        if self.stable_service == self.candidate_service:
            raise ValueError(f'stable and candidate Services must differ, both are "{self.stable_service}"')

    def _error(self, route: JsonDict, message: str) -> RouteError:
        return RouteError(
            self.kind, route_namespace(route), str((route.get("metadata") or {}).get("name", "")), message
        )


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
