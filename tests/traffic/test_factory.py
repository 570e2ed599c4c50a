"""The router factory, the replica-ratio router, and the routers' RBAC needs."""

from __future__ import annotations

from typing import Any

import pytest

from modelrollout import rbac
from modelrollout.traffic import (
    Applied,
    GatewayApiFeatures,
    GatewayApiRouter,
    IstioRouter,
    NotSupported,
    ReplicaRouter,
    Router,
    RouteState,
    rbac_needs,
    router_for,
)

STATE = RouteState("fraud-scorer-stable", "fraud-scorer-canary", 30, 0, None)


@pytest.mark.parametrize("spec", [None, {}, {"gatewayAPI": None}])
def test_no_router_is_the_replica_ratio(spec: dict[str, Any] | None) -> None:
    assert router_for(spec) == ReplicaRouter()


def test_routers_by_name() -> None:
    assert router_for({"gatewayAPI": {"httpRoute": "web"}}) == GatewayApiRouter("web")
    features = GatewayApiFeatures(mirror_percent=False)
    assert router_for({"gatewayAPI": {"httpRoute": "web"}}, gateway_api=features) == GatewayApiRouter("web", features)
    assert router_for({"istio": {"virtualService": "web"}}) == IstioRouter("web")
    assert router_for({"istio": {"virtualService": "web"}}, istio_version="v1") == IstioRouter("web", "v1")
    for router in (ReplicaRouter(), GatewayApiRouter("web"), IstioRouter("web")):
        assert isinstance(router, Router)
    assert router_for({"istio": {"virtualService": "web"}}).route_name == "web"
    assert ReplicaRouter().route_name is None


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
        router_for(spec)


async def test_replica_router_writes_nothing_and_cannot_verify() -> None:
    router = ReplicaRouter()
    route = {"spec": {"anything": 1}}
    assert router.desired(route, STATE) == route
    assert router.desired(route, STATE) is not route
    assert router.restore(route, "a", "b") == route
    assert router.verify(route, STATE) == NotSupported()
    # No API is touched: None stands in for the client.
    assert await router.apply(None, "ml", "x", STATE) == Applied(changed=False, attempts=0)  # type: ignore[arg-type]
    assert await router.verify_live(None, "ml", "x", STATE) == NotSupported()  # type: ignore[arg-type]


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
    assert router_for(spec) == GatewayApiRouter("web", GatewayApiFeatures(mirror_percent=False))


def test_the_spec_model_is_accepted() -> None:
    models = pytest.importorskip("modelrollout.api.models")
    routing = getattr(models, "TrafficRouting", None)
    if routing is None:
        pytest.skip("spec.trafficRouting not in the API models yet")
    model = routing.model_validate({"gatewayAPI": {"httpRoute": "web", "mirrorPercentSupported": False}})
    assert router_for(model) == GatewayApiRouter("web", GatewayApiFeatures(mirror_percent=False))
    assert router_for(routing.model_validate({"istio": {"virtualService": "web"}})) == IstioRouter("web")
