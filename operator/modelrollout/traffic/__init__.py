"""Traffic routers: how the split between stable and candidate reaches the requests.

One module per router behind the `Router` protocol (`base.py`): the replica ratio (no router),
Gateway API HTTPRoute, Istio VirtualService; `router_for` picks one from `spec.trafficRouting`.
"""

from modelrollout.traffic.base import (
    HEADER_ROUTE_NAME,
    Applied,
    HeaderMatch,
    NotSupported,
    NotVerified,
    RouteError,
    Router,
    RouteState,
    Verification,
    Verified,
)
from modelrollout.traffic.factory import RBAC, RbacNeed, rbac_needs, router_for
from modelrollout.traffic.gateway_api import GatewayApiFeatures, GatewayApiRouter, detect_features
from modelrollout.traffic.istio import IstioRouter
from modelrollout.traffic.replicas import ReplicaRouter

__all__ = [
    "HEADER_ROUTE_NAME",
    "RBAC",
    "Applied",
    "GatewayApiFeatures",
    "GatewayApiRouter",
    "HeaderMatch",
    "IstioRouter",
    "NotSupported",
    "NotVerified",
    "RbacNeed",
    "ReplicaRouter",
    "RouteError",
    "RouteState",
    "Router",
    "Verification",
    "Verified",
    "detect_features",
    "rbac_needs",
    "router_for",
]
