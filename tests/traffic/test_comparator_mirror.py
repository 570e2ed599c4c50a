"""A rollout with a compare mirror: both routers mirror to `<rollout>-comparator`, read it back, and take
over (or drop) a mirror to the candidate that an earlier spec wrote."""

from __future__ import annotations

from modelrollout.api.validation import parse_spec
from modelrollout.kube.routing import route_target
from modelrollout.traffic import GatewayApiRouter, IstioRouter
from modelrollout.vocabulary.routes import RouteState

from .test_gateway_api import httproute, stable_ref
from .test_istio import PREDICT, dest, virtualservice

STABLE, CANDIDATE, COMPARATOR = "fraud-scorer-stable", "fraud-scorer-canary", "fraud-scorer-comparator"
GATEWAY = GatewayApiRouter("fraud-scorer", STABLE, CANDIDATE, mirror_service=COMPARATOR)
ISTIO = IstioRouter("fraud-scorer", STABLE, CANDIDATE, mirror_service=COMPARATOR)
SHADOW = RouteState(0, 30)


def test_the_httproute_mirrors_to_the_comparator_and_reads_it_back() -> None:
    edited = GATEWAY.edit(httproute({"backendRefs": [stable_ref()]}), SHADOW)
    assert not isinstance(edited, Exception) and isinstance(edited, dict)
    (rule,) = edited["spec"]["rules"]
    assert rule["backendRefs"] == [{**stable_ref(), "weight": 100}]
    assert rule["filters"] == [
        {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": COMPARATOR, "port": 8080}, "percent": 30}}
    ]
    assert GATEWAY.observe(edited) == SHADOW
    # The same route read by a router for a plain mirror sees no mirror to the candidate.
    assert GatewayApiRouter("fraud-scorer", STABLE, CANDIDATE).observe(edited) == RouteState()
    stopped = GATEWAY.edit(edited, RouteState())
    assert isinstance(stopped, dict) and "filters" not in stopped["spec"]["rules"][0]


def test_a_mirror_to_the_candidate_is_moved_to_the_comparator() -> None:
    plain = GatewayApiRouter("fraud-scorer", STABLE, CANDIDATE).edit(httproute({"backendRefs": [stable_ref()]}), SHADOW)
    assert isinstance(plain, dict)
    assert GATEWAY.observe(plain) == RouteState(), "the comparator's router must rewrite it"
    moved = GATEWAY.edit(plain, SHADOW)
    assert isinstance(moved, dict)
    targets = [item["requestMirror"]["backendRef"]["name"] for item in moved["spec"]["rules"][0]["filters"]]
    assert targets == [COMPARATOR]


def test_the_virtualservice_mirrors_to_the_comparator_as_the_stable_host_is_written() -> None:
    route = virtualservice({"name": "primary", "match": [PREDICT], "route": [dest(f"{STABLE}.ml.svc.cluster.local")]})
    edited = ISTIO.edit(route, SHADOW)
    assert isinstance(edited, dict)
    (http,) = edited["spec"]["http"]
    assert http["mirror"] == {"host": f"{COMPARATOR}.ml.svc.cluster.local", "port": {"number": 8080}}
    assert http["mirrorPercentage"] == {"value": 30.0}
    assert ISTIO.observe(edited) == SHADOW
    plain = IstioRouter("fraud-scorer", STABLE, CANDIDATE).edit(route, SHADOW)
    assert isinstance(plain, dict)
    moved = ISTIO.edit(plain, SHADOW)  # ours, not "mirrors elsewhere already"
    assert isinstance(moved, dict) and moved["spec"]["http"][0]["mirror"]["host"].startswith(COMPARATOR)
    stopped = ISTIO.edit(edited, RouteState())
    assert isinstance(stopped, dict) and "mirror" not in stopped["spec"]["http"][0]


def test_route_target_picks_the_comparator_only_for_a_compare_mirror() -> None:
    base = {
        "model": {"name": "m", "version": "1"},
        "template": {"spec": {"containers": [{"name": "s"}]}},
        "trafficRouting": {"istio": {"virtualService": "fraud-scorer"}},
    }
    plain = {**base, "strategy": {"canary": {"steps": [{"mirror": {"percent": 30}}]}}}
    compared = {**base, "strategy": {"canary": {"steps": [{"mirror": {"percent": 30, "compare": {}}}]}}}
    for spec, mirror_to in ((plain, CANDIDATE), (compared, COMPARATOR)):
        target = route_target(parse_spec(spec), "fraud-scorer", "ml")
        assert target is not None and isinstance(target.router, IstioRouter)
        assert target.router.mirror_to == mirror_to


def test_a_mirror_left_at_the_comparator_is_taken_back_when_compare_is_dropped() -> None:
    gateway = GatewayApiRouter("fraud-scorer", STABLE, CANDIDATE, comparator_service=COMPARATOR)
    at_comparator = GATEWAY.edit(httproute({"backendRefs": [stable_ref()]}), SHADOW)
    assert isinstance(at_comparator, dict)
    for state in (SHADOW, RouteState()):
        edited = gateway.edit(at_comparator, state)
        assert isinstance(edited, dict)
        targets = [f["requestMirror"]["backendRef"]["name"] for f in edited["spec"]["rules"][0].get("filters", [])]
        assert targets == ([CANDIDATE] if state.mirror_percent else [])
    istio = IstioRouter("fraud-scorer", STABLE, CANDIDATE, comparator_service=COMPARATOR)
    route = virtualservice({"name": "primary", "route": [dest(STABLE)]})
    at_comparator_vs = ISTIO.edit(route, SHADOW)
    assert isinstance(at_comparator_vs, dict)
    restored = istio.edit(at_comparator_vs, RouteState())
    assert isinstance(restored, dict) and "mirror" not in restored["spec"]["http"][0]
