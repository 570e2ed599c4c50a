"""VirtualService edits, before and after, without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from modelrollout.traffic import HEADER_ROUTE_NAME, IstioRouter, RouteError
from modelrollout.traffic.base import RouteResource
from modelrollout.vocabulary.routes import HeaderMatch, RouteState

JsonDict = dict[str, Any]
STABLE, CANDIDATE = "fraud-scorer-stable", "fraud-scorer-canary"
ROUTER = IstioRouter("fraud-scorer", STABLE, CANDIDATE)
HEADER = HeaderMatch("X-Tester", "yes")
PREDICT = {"uri": {"prefix": "/predict"}}


def state(weight: int = 0, mirror: int = 0, header: HeaderMatch | None = None) -> RouteState:
    return RouteState(weight, mirror, header)


def dest(host: str = STABLE, weight: int | None = None, **extra: Any) -> JsonDict:
    entry: JsonDict = {"destination": {"host": host, "port": {"number": 8080}, **extra}}
    return entry if weight is None else {**entry, "weight": weight}


def virtualservice(*http: JsonDict, version: str = "v1beta1") -> JsonDict:
    return {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "VirtualService",
        "metadata": {"name": "fraud-scorer", "namespace": "ml", "resourceVersion": "3", "labels": {"team": "risk"}},
        "spec": {"hosts": ["scorer.example.com"], "gateways": ["istio-system/public"], "http": list(http)},
    }


def simple(host: str = STABLE) -> JsonDict:
    return virtualservice({"name": "primary", "match": [PREDICT], "route": [dest(host)], "timeout": "5s"})


def edited(route: JsonDict, wanted: RouteState, router: IstioRouter = ROUTER) -> JsonDict:
    result = router.edit(route, wanted)
    assert not isinstance(result, RouteError), result
    return result


def https(route: JsonDict) -> list[JsonDict]:
    http: list[JsonDict] = route["spec"]["http"]
    return http


@pytest.mark.parametrize(
    ("weight", "route"),
    [
        (0, [dest(weight=100)]),
        (10, [dest(weight=90), dest(CANDIDATE, 10)]),
        (50, [dest(weight=50), dest(CANDIDATE, 50)]),
        (100, [dest(weight=0), dest(CANDIDATE, 100)]),
    ],
)
def test_weights(weight: int, route: list[JsonDict]) -> None:
    before = simple()
    after = edited(before, state(weight))
    assert after == virtualservice({"name": "primary", "match": [PREDICT], "route": route, "timeout": "5s"})
    assert ROUTER.observe(after) == state(weight)
    assert before == simple()


@pytest.mark.parametrize(
    ("host", "candidate"),
    [
        ("fraud-scorer-stable.ml", "fraud-scorer-canary.ml"),
        ("fraud-scorer-stable.ml.svc", "fraud-scorer-canary.ml.svc"),
        ("fraud-scorer-stable.ml.svc.cluster.local", "fraud-scorer-canary.ml.svc.cluster.local"),
        ("fraud-scorer-stable.ml.svc.corp.example", "fraud-scorer-canary.ml.svc.corp.example"),
    ],
)
def test_fqdn_hosts_keep_their_form(host: str, candidate: str) -> None:
    after = edited(simple(host), state(20, 25))
    assert https(after)[0]["route"] == [dest(host, 80), dest(candidate, 20)]
    assert https(after)[0]["mirror"] == {"host": candidate, "port": {"number": 8080}}
    assert ROUTER.observe(after) == state(20, 25)


def test_a_host_in_another_namespace_is_not_the_stable_service() -> None:
    assert isinstance(ROUTER.edit(simple("fraud-scorer-stable.other.svc.cluster.local"), state(10)), RouteError)


def test_the_candidate_gets_no_subset_of_the_stable_host() -> None:
    before = virtualservice({"route": [dest(subset="v1", weight=100)]})
    after = edited(before, state(30))
    assert https(after)[0]["route"] == [dest(subset="v1", weight=70), dest(CANDIDATE, 30)]


@pytest.mark.parametrize("percent", [100, 25])
def test_mirror(percent: int) -> None:
    after = edited(simple(), state(mirror=percent))
    assert https(after)[0] == {
        "name": "primary",
        "match": [PREDICT],
        "route": [dest(weight=100)],
        "timeout": "5s",
        "mirror": {"host": CANDIDATE, "port": {"number": 8080}},
        "mirrorPercentage": {"value": float(percent)},
    }
    assert ROUTER.observe(after) == state(mirror=percent)
    assert edited(after, state()) == edited(simple(), state())


def test_mirror_without_percentage_mirrors_everything() -> None:
    route = virtualservice({"route": [dest(weight=100)], "mirror": {"host": CANDIDATE}})
    assert ROUTER.observe(route) == state(mirror=100)
    assert https(edited(route, state(mirror=25)))[0]["mirrorPercentage"] == {"value": 25.0}


def test_a_users_own_mirror_is_kept_and_not_overwritten() -> None:
    mine = {"route": [dest()], "mirror": {"host": "audit-log"}, "mirrorPercentage": {"value": 1.0}}
    assert https(edited(virtualservice(mine), state(10)))[0]["mirror"] == {"host": "audit-log"}
    assert ROUTER.edit(virtualservice(mine), state(mirror=50)) == RouteError(
        "VirtualService",
        "ml",
        "fraud-scorer",
        'VirtualService ml/fraud-scorer http[0] already mirrors to "audit-log" and Istio\'s mirror holds one '
        "target; remove it to shadow the candidate",
    )


def test_header_route_on_and_off() -> None:
    on = edited(simple(), state(10, header=HEADER))
    assert https(on)[0] == {
        "name": HEADER_ROUTE_NAME,
        "match": [{**PREDICT, "headers": {"x-tester": {"exact": "yes"}}}],
        "timeout": "5s",
        "route": [dest(CANDIDATE, 100)],
    }
    assert https(on)[1]["route"] == [dest(weight=90), dest(CANDIDATE, 10)]
    assert ROUTER.observe(on) == state(10, header=HEADER)
    off = edited(on, state(10))
    assert off == edited(simple(), state(10))
    assert ROUTER.observe(off) == state(10)


def test_header_route_for_a_catch_all_goes_after_the_users_earlier_routes() -> None:
    admin = {"match": [{"uri": {"prefix": "/admin"}}], "route": [{"destination": {"host": "admin-ui"}}]}
    before = virtualservice(admin, {"route": [dest()]})
    after = edited(before, state(header=HEADER))
    assert https(after)[0] == admin
    assert https(after)[1] == {
        "name": HEADER_ROUTE_NAME,
        "match": [{"headers": {"x-tester": {"exact": "yes"}}}],
        "route": [dest(CANDIDATE, 100)],
    }
    assert ROUTER.observe(after) == state(header=HEADER)
    # Wherever someone moved it, the edit puts the header route back just before the managed route
    # (Istio takes the first route that matches, so after it the header route would catch nothing).
    early = [https(after)[1], https(after)[0], https(after)[2]]
    late = [https(after)[0], https(after)[2], https(after)[1]]
    for moved in (early, late):
        assert edited({**after, "spec": {**after["spec"], "http": moved}}, state(header=HEADER)) == after


def test_at_rest_after_abort() -> None:
    mid = edited(simple(), state(40, 25, HEADER))
    restored = edited(mid, RouteState())
    assert restored == virtualservice(
        {"name": "primary", "match": [PREDICT], "route": [dest(weight=100)], "timeout": "5s"}
    )
    assert ROUTER.observe(restored) == RouteState()


def user_owned() -> JsonDict:
    return virtualservice(
        {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}], "route": [{"destination": {"host": "admin-ui"}}]},
        {
            "name": "primary",
            "match": [PREDICT, {"uri": {"prefix": "/v2/predict"}}],
            "route": [dest("fraud-scorer-stable.ml.svc.cluster.local")],
            "retries": {"attempts": 3},
            "headers": {"request": {"set": {"x-a": "1"}}},
        },
        {"name": "explain", "match": [{"uri": {"prefix": "/explain"}}], "route": [dest(weight=100)]},
        {"name": "fallback", "route": [{"destination": {"host": "static-page"}}], "mirror": {"host": "audit-log"}},
    )


STATES = [state(), state(10), state(50, 25), state(100), state(0, 100), state(20, 0, HEADER), state(30, 25, HEADER)]


@pytest.mark.parametrize("wanted", STATES)
def test_idempotent(wanted: RouteState) -> None:
    for before in (simple(), simple("fraud-scorer-stable.ml.svc.cluster.local"), user_owned()):
        once = edited(before, wanted)
        assert edited(once, wanted) == once
        assert ROUTER.observe(once) == wanted
        for earlier in STATES:
            assert edited(edited(before, earlier), wanted) == once


def test_user_owned_routes_stay_untouched_and_two_managed_routes_are_both_managed() -> None:
    before = user_owned()
    after = edited(before, state(25, 50, HEADER))
    assert {k: v for k, v in after.items() if k != "spec"} == {k: v for k, v in before.items() if k != "spec"}
    assert after["spec"]["hosts"] == before["spec"]["hosts"]
    assert after["spec"]["gateways"] == before["spec"]["gateways"]
    http = https(after)
    assert [h.get("name") for h in http] == ["admin", HEADER_ROUTE_NAME, "primary", "explain", "fallback"]
    assert http[0] == https(before)[0]
    assert http[4] == https(before)[3]
    assert http[1]["match"] == [
        {"uri": {"prefix": "/predict"}, "headers": {"x-tester": {"exact": "yes"}}},
        {"uri": {"prefix": "/v2/predict"}, "headers": {"x-tester": {"exact": "yes"}}},
        {"uri": {"prefix": "/explain"}, "headers": {"x-tester": {"exact": "yes"}}},
    ]
    assert http[1]["retries"] == {"attempts": 3}
    assert http[1]["route"] == [dest("fraud-scorer-canary.ml.svc.cluster.local", 100)]
    assert http[2]["route"] == [
        dest("fraud-scorer-stable.ml.svc.cluster.local", 75),
        dest("fraud-scorer-canary.ml.svc.cluster.local", 25),
    ]
    assert http[2]["headers"] == {"request": {"set": {"x-a": "1"}}}
    assert http[3]["route"] == [dest(weight=75), dest(CANDIDATE, 25)]
    assert http[3]["mirror"] == {"host": CANDIDATE, "port": {"number": 8080}}
    assert edited(after, state()) == edited(before, state())


def test_v1_objects_are_edited_the_same_way() -> None:
    v1 = IstioRouter("fraud-scorer", STABLE, CANDIDATE, "v1")
    before = virtualservice({"route": [dest()]}, version="v1")
    assert https(edited(before, state(10), v1)) == https(edited(virtualservice({"route": [dest()]}), state(10)))
    assert v1.resource == RouteResource("networking.istio.io", "v1", "virtualservices", "VirtualService")
    with pytest.raises(ValueError, match="v1beta1, v1"):
        IstioRouter("fraud-scorer", STABLE, CANDIDATE, "v1alpha3")


def test_no_http_route_for_the_stable_service() -> None:
    route = virtualservice({"route": [{"destination": {"host": "other"}}]})
    error = ROUTER.edit(route, state(10))
    assert error == RouteError(
        "VirtualService",
        "ml",
        "fraud-scorer",
        'VirtualService ml/fraud-scorer has no http route with a destination host "fraud-scorer-stable"; add one, '
        "the operator manages its weights",
    )
    assert ROUTER.observe(route) == error


def test_a_foreign_destination_in_a_managed_route_is_refused() -> None:
    route = virtualservice({"route": [dest(weight=90), {"destination": {"host": "legacy"}, "weight": 10}]})
    assert ROUTER.edit(route, state(10)) == RouteError(
        "VirtualService",
        "ml",
        "fraud-scorer",
        'VirtualService ml/fraud-scorer http[0] sends traffic to "legacy" besides "fraud-scorer-stable"; the operator '
        'sets every destination of a route it manages, so move "legacy" to an http route of its own',
    )


def test_observe_reports_weights_by_share() -> None:
    route = virtualservice({"route": [dest(weight=3), dest(CANDIDATE, 1)]})
    assert ROUTER.observe(route) == state(25)
    assert https(edited(route, state(10)))[0]["route"] == [dest(weight=90), dest(CANDIDATE, 10)]
