"""The router factory (no router without `spec.trafficRouting`), and the routers' RBAC needs."""

from __future__ import annotations

from typing import Any

import pytest

from modelrollout import rbac
from modelrollout.traffic import (
    GatewayApiFeatures,
    GatewayApiRouter,
    IstioRouter,
    Router,
    RouteResource,
    rbac_needs,
    router_for,
)

# The factory builds a router for one rollout: between its -stable and -canary Services.
ROLLOUT = "scorer"
SERVICES = ("scorer-stable", "scorer-canary")


@pytest.mark.parametrize("spec", [None, {}, {"gatewayAPI": None}])
def test_no_traffic_routing_is_no_router(spec: dict[str, Any] | None) -> None:
    # The engine splits by replica counts then (engine.common.splits_by_replicas).
    assert router_for(spec, ROLLOUT) is None


def test_routers_by_name() -> None:
    assert router_for({"gatewayAPI": {"httpRoute": "web"}}, ROLLOUT) == GatewayApiRouter("web", *SERVICES)
    features = GatewayApiFeatures(mirror_percent=False)
    assert router_for({"gatewayAPI": {"httpRoute": "web"}}, ROLLOUT, gateway_api=features) == GatewayApiRouter(
        "web", *SERVICES, features
    )
    assert router_for({"istio": {"virtualService": "web"}}, ROLLOUT) == IstioRouter("web", *SERVICES)
    assert router_for({"istio": {"virtualService": "web"}}, ROLLOUT, istio_version="v1") == IstioRouter(
        "web", *SERVICES, "v1"
    )
    for router in (GatewayApiRouter("web", *SERVICES), IstioRouter("web", *SERVICES)):
        assert isinstance(router, Router)
    istio = router_for({"istio": {"virtualService": "web"}}, ROLLOUT)
    assert istio is not None and istio.route_name == "web"
    assert istio.resource == RouteResource("networking.istio.io", "v1beta1", "virtualservices", "VirtualService")
    gateway = router_for({"gatewayAPI": {"httpRoute": "web"}}, ROLLOUT)
    assert gateway is not None
    assert gateway.resource == RouteResource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")


def test_a_router_needs_two_services() -> None:
    with pytest.raises(ValueError, match='stable and candidate Services must differ, both are "web"'):
        GatewayApiRouter("route", "web", "web")
    with pytest.raises(ValueError, match=r"networking\.istio\.io version must be one of v1beta1, v1, got v2"):
        IstioRouter("route", *SERVICES, "v2")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"gatewayAPI": {"httpRoute": "a"}, "istio": {"virtualService": "b"}},
            "spec.trafficRouting: set one of gatewayAPI, istio, not both",
        ),
        ({"gatewayAPI": {}}, "spec.trafficRouting.gatewayAPI.httpRoute: required"),
        ({"istio": {"virtualService": ""}}, "spec.trafficRouting.istio.virtualService: required"),
        ({"linkerd": {}}, "spec.trafficRouting: unknown router linkerd; use one of gatewayAPI, istio"),
    ],
)
def test_bad_specs_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        router_for(spec, ROLLOUT)


def test_rbac_needs_are_announced_in_the_operators_rules() -> None:
    needs = rbac_needs()
    assert {(n.api_group, n.resource) for n in needs} == {
        ("gateway.networking.k8s.io", "httproutes"),
        ("networking.istio.io", "virtualservices"),
    }
    for need in needs:
        rule = next(r for r in rbac.RULES if (r.api_group, r.resource) == (need.api_group, need.resource))
        assert set(need.verbs) <= set(rule.verbs)
        assert rule.scope == rbac.Scope.NAMESPACED


def test_the_spec_can_turn_the_mirror_percent_off() -> None:
    spec = {"gatewayAPI": {"httpRoute": "web", "mirrorPercentSupported": False}}
    assert router_for(spec, ROLLOUT) == GatewayApiRouter("web", *SERVICES, GatewayApiFeatures(mirror_percent=False))


def test_the_spec_model_is_accepted() -> None:
    models = pytest.importorskip("modelrollout.api.models")
    routing = getattr(models, "TrafficRouting", None)
    if routing is None:
        pytest.skip("spec.trafficRouting not in the API models yet")
    model = routing.model_validate({"gatewayAPI": {"httpRoute": "web", "mirrorPercentSupported": False}})
    assert router_for(model, ROLLOUT) == GatewayApiRouter("web", *SERVICES, GatewayApiFeatures(mirror_percent=False))
    istio = routing.model_validate({"istio": {"virtualService": "web"}})
    assert router_for(istio, ROLLOUT) == IstioRouter("web", *SERVICES)
