"""Reading a route back gives the state the router wrote into it, for both routers."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelrollout.traffic.base import HeaderMatch, RouteError, RouteState
from modelrollout.traffic.gateway_api import GatewayApiRouter
from modelrollout.traffic.istio import IstioRouter

STABLE, CANDIDATE = "scorer-stable", "scorer-canary"

HTTPROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "scorer", "namespace": "ml", "resourceVersion": "7"},
    "spec": {
        "parentRefs": [{"name": "gateway"}],
        "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/docs"}}], "backendRefs": [{"name": "docs"}]},
            {"backendRefs": [{"name": STABLE, "port": 80}]},
        ],
    },
}
VIRTUALSERVICE: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1beta1",
    "kind": "VirtualService",
    "metadata": {"name": "scorer", "namespace": "ml", "resourceVersion": "7"},
    "spec": {"hosts": ["scorer"], "http": [{"route": [{"destination": {"host": STABLE}}]}]},
}
STATES = [
    RouteState(STABLE, CANDIDATE),
    RouteState(STABLE, CANDIDATE, candidate_weight=10),
    RouteState(STABLE, CANDIDATE, candidate_weight=50),
    RouteState(STABLE, CANDIDATE, candidate_weight=100),
    RouteState(STABLE, CANDIDATE, mirror_percent=100),
    RouteState(STABLE, CANDIDATE, mirror_percent=25),
    RouteState(STABLE, CANDIDATE, header_route=HeaderMatch("x-canary", "yes")),
    RouteState(STABLE, CANDIDATE, candidate_weight=20, header_route=HeaderMatch("x-canary", "yes")),
]


@pytest.mark.parametrize("state", STATES, ids=repr)
@pytest.mark.parametrize(
    ("router", "route"),
    [(GatewayApiRouter("scorer"), HTTPROUTE), (IstioRouter("scorer"), VIRTUALSERVICE)],
    ids=["gateway-api", "istio"],
)
def test_observe_reads_back_what_desired_wrote(
    router: GatewayApiRouter | IstioRouter, route: dict[str, Any], state: RouteState
) -> None:
    edited = router.desired(copy.deepcopy(route), state)
    assert not isinstance(edited, RouteError)
    assert router.observe(edited, STABLE, CANDIDATE) == state
    restored = router.restore(edited, STABLE, CANDIDATE)
    assert not isinstance(restored, RouteError)
    assert router.observe(restored, STABLE, CANDIDATE) == RouteState(STABLE, CANDIDATE)


@pytest.mark.parametrize(
    ("router", "route", "message"),
    [
        (GatewayApiRouter("scorer"), HTTPROUTE, 'HTTPRoute ml/scorer has no rule with a backendRef to Service "other"'),
        (
            IstioRouter("scorer"),
            VIRTUALSERVICE,
            'VirtualService ml/scorer has no http route with a destination host "other"',
        ),
    ],
    ids=["gateway-api", "istio"],
)
def test_observe_names_what_is_missing(
    router: GatewayApiRouter | IstioRouter, route: dict[str, Any], message: str
) -> None:
    seen = router.observe(route, "other", "other-canary")
    assert isinstance(seen, RouteError)
    assert message in str(seen)
