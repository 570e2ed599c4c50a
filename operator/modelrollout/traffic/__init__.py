"""Traffic routers: how the split between stable and candidate reaches the requests.

One module per router behind the `Router` protocol (`base.py`): Gateway API HTTPRoute, Istio
VirtualService; `router_for` picks one from `spec.trafficRouting` (none: the engine splits by
replica counts). Routers are pure: `observe(route)` and `edit(route, state)` on the route's dict;
`kube.routing` reads and writes the object.

A new router: one module here with a frozen dataclass on `ObjectRouter` (route name, stable and
candidate Services) that has `resource`, `observe` and `edit`, with `observe(edit(route, s)) == s`
for every state it supports; its key in `factory.py` (`_ROUTERS`, `RBAC`, `router_for`); the
field in `api.models.TrafficRouting`. Nothing in the engine changes: it speaks `RouteState`.
"""

from modelrollout.traffic.base import (
    HEADER_ROUTE_NAME,
    RouteError,
    Router,
    RouteResource,
)
from modelrollout.traffic.factory import RBAC, RbacNeed, rbac_needs, router_for
from modelrollout.traffic.gateway_api import GatewayApiFeatures, GatewayApiRouter, features_of
from modelrollout.traffic.istio import IstioRouter

__all__ = [
    "HEADER_ROUTE_NAME",
    "RBAC",
    "GatewayApiFeatures",
    "GatewayApiRouter",
    "IstioRouter",
    "RbacNeed",
    "RouteError",
    "RouteResource",
    "Router",
    "features_of",
    "rbac_needs",
    "router_for",
]
