"""Reading a route back gives the state the router wrote into it, for both routers: observe(edit(route, s)) == s."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelrollout.traffic.base import RouteError
from modelrollout.traffic.gateway_api import GatewayApiRouter
from modelrollout.traffic.istio import IstioRouter
from modelrollout.vocabulary.routes import HeaderMatch, RouteState

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
    RouteState(),
    RouteState(candidate_weight=10),
    RouteState(candidate_weight=50),
    RouteState(candidate_weight=100),
    RouteState(mirror_percent=100),
    RouteState(mirror_percent=25),
    RouteState(header=HeaderMatch("x-canary", "yes")),
    RouteState(candidate_weight=20, header=HeaderMatch("x-canary", "yes")),
]


@pytest.mark.parametrize("state", STATES, ids=repr)
@pytest.mark.parametrize(
    ("router", "route"),
    [
        (GatewayApiRouter("scorer", STABLE, CANDIDATE), HTTPROUTE),
        (IstioRouter("scorer", STABLE, CANDIDATE), VIRTUALSERVICE),
    ],
    ids=["gateway-api", "istio"],
)
def test_observe_reads_back_what_edit_wrote(
    router: GatewayApiRouter | IstioRouter, route: dict[str, Any], state: RouteState
) -> None:
    untouched = copy.deepcopy(route)
    edited = router.edit(route, state)
    assert not isinstance(edited, RouteError)
    assert route == untouched, "the argument is not modified"
    assert router.observe(edited) == state
    restored = router.edit(edited, RouteState())
    assert not isinstance(restored, RouteError)
    assert router.observe(restored) == RouteState()
    assert restored == router.edit(route, RouteState()), "at rest is the same route whatever came before"


@pytest.mark.parametrize(
    ("router", "route", "message"),
    [
        (
            GatewayApiRouter("scorer", "other", "other-canary"),
            HTTPROUTE,
            'HTTPRoute ml/scorer has no rule with a backendRef to Service "other"',
        ),
        (
            IstioRouter("scorer", "other", "other-canary"),
            VIRTUALSERVICE,
            'VirtualService ml/scorer has no http route with a destination host "other"',
        ),
    ],
    ids=["gateway-api", "istio"],
)
def test_observe_names_what_is_missing(
    router: GatewayApiRouter | IstioRouter, route: dict[str, Any], message: str
) -> None:
    seen = router.observe(route)
    assert isinstance(seen, RouteError)
    assert message in str(seen)
