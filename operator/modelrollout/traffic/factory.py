"""Pick the router the spec names, and say what each router needs from RBAC.

`spec.trafficRouting` (absent: no router; the engine splits by replica counts behind the rollout's
one Service):

    trafficRouting:
      gatewayAPI: {httpRoute: fraud-scorer, mirrorPercentSupported: true}   # or
      istio: {virtualService: fraud-scorer}

given as the raw spec dict or as the `TrafficRouting` model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel

from modelrollout.traffic.base import Router
from modelrollout.traffic.gateway_api import HTTPROUTES, GatewayApiFeatures, GatewayApiRouter
from modelrollout.traffic.istio import GROUP as ISTIO_GROUP
from modelrollout.traffic.istio import PLURAL as ISTIO_PLURAL
from modelrollout.traffic.istio import IstioRouter
from modelrollout.vocabulary.names import candidate_service_name, comparator_name, stable_service_name

FIELD = "spec.trafficRouting"
_ROUTERS = {"gatewayAPI": "httpRoute", "istio": "virtualService"}


@dataclass(frozen=True)
class RbacNeed:
    """One permission a router needs, in the shape of `modelrollout.rbac.Rule` (all namespaced)."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]
    why: str


# The operator edits routes that users own; it never creates or deletes them. list/watch let the
# operator notice a route edited behind its back (and re-verify); patch is the write; update is kept
# for clients that write with PUT.
_ROUTE_VERBS = ("get", "list", "watch", "patch", "update")

RBAC: Mapping[str, tuple[RbacNeed, ...]] = {
    "gatewayAPI": (
        RbacNeed(
            HTTPROUTES.group,
            HTTPROUTES.plural,
            _ROUTE_VERBS,
            "Gateway API traffic routing: set the stable/candidate backend weights, the mirror and the header "
            "rule of an HTTPRoute",
        ),
    ),
    "istio": (
        RbacNeed(
            ISTIO_GROUP,
            ISTIO_PLURAL,
            _ROUTE_VERBS,
            "Istio traffic routing: set the weights, the mirror and the header route of a VirtualService",
        ),
    ),
}


def rbac_needs() -> tuple[RbacNeed, ...]:
    """Every router's permissions: the operator image serves any spec, so it needs them all."""
    return tuple(need for needs in RBAC.values() for need in needs)


def router_for(
    spec_traffic_routing: Mapping[str, Any] | BaseModel | None,
    rollout: str,
    *,
    gateway_api: GatewayApiFeatures | None = None,
    istio_version: str = "v1beta1",
    mirror_service: str = "",
) -> Router | None:
    """The router `spec.trafficRouting` names for the canary of `rollout` (between its `-stable` and
    `-canary` Services; a mirror goes to `mirror_service` when given, the comparator); None when it
    names none (the split is the replica ratio); ValueError, naming the field, when it names two or an
    unknown one."""
    if isinstance(spec_traffic_routing, BaseModel):
        spec_traffic_routing = spec_traffic_routing.model_dump(by_alias=True, exclude_none=True)
    if not spec_traffic_routing:
        return None
    unknown = sorted(set(spec_traffic_routing) - set(_ROUTERS))
    if unknown:
        raise ValueError(f"{FIELD}: unknown router {', '.join(unknown)}; use one of {', '.join(_ROUTERS)}")
    chosen = [key for key in _ROUTERS if spec_traffic_routing.get(key) is not None]
    if len(chosen) > 1:
        raise ValueError(f"{FIELD}: set one of {', '.join(chosen)}, not both")
    if not chosen:
        return None
    key = chosen[0]
    options = spec_traffic_routing[key]
    name = options.get(_ROUTERS[key]) if isinstance(options, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ValueError(f"{FIELD}.{key}.{_ROUTERS[key]}: required, the name of the route in the rollout's namespace")
    stable, candidate = stable_service_name(rollout), candidate_service_name(rollout)
    if key == "gatewayAPI":
        features = gateway_api or GatewayApiFeatures()
        # The spec can only turn the percent off (a cluster with an older Gateway API), never force it on.
        if options.get("mirrorPercentSupported") is False:
            features = replace(features, mirror_percent=False)
        return GatewayApiRouter(name, stable, candidate, features, mirror_service, comparator_name(rollout))
    return IstioRouter(name, stable, candidate, istio_version, mirror_service, comparator_name(rollout))
