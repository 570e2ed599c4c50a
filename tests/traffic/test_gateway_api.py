"""HTTPRoute edits, before and after, without a cluster."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from modelrollout.traffic import HEADER_ROUTE_NAME, GatewayApiFeatures, GatewayApiRouter, RouteError
from modelrollout.vocabulary.routes import HeaderMatch, RouteState

JsonDict = dict[str, Any]
STABLE, CANDIDATE = "fraud-scorer-stable", "fraud-scorer-canary"
ROUTER = GatewayApiRouter("fraud-scorer", STABLE, CANDIDATE)
HEADER = HeaderMatch("x-tester", "yes")


def state(weight: int = 0, mirror: int = 0, header: HeaderMatch | None = None) -> RouteState:
    return RouteState(weight, mirror, header)


def stable_ref(weight: int | None = None) -> JsonDict:
    ref: JsonDict = {"name": STABLE, "port": 8080}
    return ref if weight is None else {**ref, "weight": weight}


def candidate_ref(weight: int) -> JsonDict:
    return {"name": CANDIDATE, "port": 8080, "weight": weight}


def httproute(*rules: JsonDict, **spec: Any) -> JsonDict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": "fraud-scorer",
            "namespace": "ml",
            "resourceVersion": "7",
            "annotations": {"team": "risk"},
        },
        "spec": {"parentRefs": [{"name": "public", "namespace": "gateways"}], **spec, "rules": list(rules)},
        "status": {"parents": []},
    }


def simple() -> JsonDict:
    return httproute(
        {"matches": [{"path": {"type": "PathPrefix", "value": "/predict"}}], "backendRefs": [stable_ref()]}
    )


def edited(route: JsonDict, wanted: RouteState, router: GatewayApiRouter = ROUTER) -> JsonDict:
    result = router.edit(route, wanted)
    assert not isinstance(result, RouteError), result
    return result


def rules_of(route: JsonDict) -> list[JsonDict]:
    rules: list[JsonDict] = route["spec"]["rules"]
    return rules


MIRROR_100 = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": CANDIDATE, "port": 8080}}}
MIRROR_25 = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": CANDIDATE, "port": 8080}, "percent": 25}}
PREDICT = {"path": {"type": "PathPrefix", "value": "/predict"}}


# --- weights ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight", "refs"),
    [
        (0, [stable_ref(100)]),
        (10, [stable_ref(90), candidate_ref(10)]),
        (50, [stable_ref(50), candidate_ref(50)]),
        (100, [stable_ref(0), candidate_ref(100)]),
    ],
)
def test_weights(weight: int, refs: list[JsonDict]) -> None:
    before = simple()
    after = edited(before, state(weight))
    assert after == httproute({"matches": [PREDICT], "backendRefs": refs})
    assert ROUTER.observe(after) == state(weight)
    assert before == simple(), "the argument is not modified"


def test_candidate_ref_copies_the_stable_refs_fields() -> None:
    ref = {
        "group": "",
        "kind": "Service",
        "name": STABLE,
        "namespace": "ml",
        "port": 9000,
        "weight": 1,
        "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "a", "value": "b"}]}}],
    }
    after = edited(httproute({"backendRefs": [ref]}), state(30))
    assert rules_of(after)[0]["backendRefs"] == [{**ref, "weight": 70}, {**ref, "name": CANDIDATE, "weight": 30}]


def test_weights_move_down_again_and_the_candidate_leaves_at_zero() -> None:
    at_50 = edited(simple(), state(50))
    assert rules_of(edited(at_50, state(20)))[0]["backendRefs"] == [stable_ref(80), candidate_ref(20)]
    assert rules_of(edited(at_50, state(0)))[0]["backendRefs"] == [stable_ref(100)]


# --- mirror -------------------------------------------------------------------------------------------


def test_mirror_100_has_no_percent() -> None:
    after = edited(simple(), state(mirror=100))
    assert rules_of(after) == [{"matches": [PREDICT], "backendRefs": [stable_ref(100)], "filters": [MIRROR_100]}]
    assert ROUTER.observe(after) == state(mirror=100)


def test_mirror_25_carries_percent() -> None:
    after = edited(simple(), state(mirror=25))
    assert rules_of(after)[0]["filters"] == [MIRROR_25]
    assert ROUTER.observe(after) == state(mirror=25)
    assert edited(after, state(mirror=50)) != after


def test_mirror_percent_can_be_left_out_for_gateway_api_before_1_2() -> None:
    old = GatewayApiRouter("fraud-scorer", STABLE, CANDIDATE, GatewayApiFeatures(mirror_percent=False))
    after = edited(simple(), state(mirror=25), old)
    assert rules_of(after)[0]["filters"] == [MIRROR_100]
    # Read back as it is: the older RequestMirror copies every request.
    assert old.observe(after) == state(mirror=100)
    assert edited(after, state(mirror=25), old) == after


def test_a_pruned_percent_reads_as_a_full_mirror() -> None:
    pruned = edited(simple(), state(mirror=100))  # what an older CRD keeps of a 25% mirror
    assert ROUTER.observe(pruned) == state(mirror=100)
    assert rules_of(edited(pruned, state(mirror=25)))[0]["filters"] == [MIRROR_25]


def test_mirror_replaces_ours_in_place_and_keeps_the_users_filters() -> None:
    user_mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "audit-log", "port": 80}}}
    rewrite = {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}
    before = httproute({"backendRefs": [stable_ref()], "filters": [rewrite, MIRROR_100, user_mirror]})
    after = edited(before, state(mirror=25))
    assert rules_of(after)[0]["filters"] == [rewrite, MIRROR_25, user_mirror]
    assert rules_of(edited(after, state()))[0]["filters"] == [rewrite, user_mirror]


def test_mirror_and_weight_together() -> None:
    after = edited(simple(), state(10, 100))
    assert rules_of(after)[0] == {
        "matches": [PREDICT],
        "backendRefs": [stable_ref(90), candidate_ref(10)],
        "filters": [MIRROR_100],
    }


# --- header route -------------------------------------------------------------------------------------


def header_rule(*matches: JsonDict, named: bool = False) -> JsonDict:
    rule: JsonDict = {"name": HEADER_ROUTE_NAME} if named else {}
    return {**rule, "matches": list(matches), "backendRefs": [candidate_ref(100)]}


def with_tester(match: JsonDict) -> JsonDict:
    return {**match, "headers": [{"type": "Exact", "name": "x-tester", "value": "yes"}]}


def test_header_route_on_and_off() -> None:
    on = edited(simple(), state(header=HEADER))
    assert rules_of(on) == [
        header_rule(with_tester(PREDICT)),
        {"matches": [PREDICT], "backendRefs": [stable_ref(100)]},
    ]
    assert ROUTER.observe(on) == state(header=HEADER)
    off = edited(on, state())
    assert off == edited(simple(), state())
    assert ROUTER.observe(off) == state()


def test_header_rule_named_where_gateway_api_has_rule_names() -> None:
    named = GatewayApiRouter("fraud-scorer", STABLE, CANDIDATE, GatewayApiFeatures(rule_names=True))
    on = edited(simple(), state(header=HEADER), named)
    assert rules_of(on)[0] == header_rule(with_tester(PREDICT), named=True)
    assert named.observe(on) == state(header=HEADER)
    assert len(rules_of(edited(on, state(header=HEADER), named))) == 2
    assert len(rules_of(edited(on, state(), named))) == 1


def test_header_rule_without_matches_gets_the_default_path_and_keeps_the_rules_filters() -> None:
    rewrite = {"type": "URLRewrite", "urlRewrite": {"hostname": "scorer.internal"}}
    before = httproute({"backendRefs": [stable_ref()], "filters": [rewrite, MIRROR_100], "timeouts": {"request": "5s"}})
    on = edited(before, state(header=HEADER, mirror=100))
    assert rules_of(on)[0] == {
        "matches": [with_tester({"path": {"type": "PathPrefix", "value": "/"}})],
        "filters": [rewrite],
        "timeouts": {"request": "5s"},
        "backendRefs": [candidate_ref(100)],
    }


def test_header_replaces_a_same_named_header_match_and_a_changed_header_moves_the_rule() -> None:
    match = {
        **PREDICT,
        "headers": [
            {"type": "Exact", "name": "X-Tester", "value": "old"},
            {"type": "Exact", "name": "x-region", "value": "eu"},
        ],
    }
    before = httproute({"matches": [match], "backendRefs": [stable_ref()]})
    on = edited(before, state(header=HEADER))
    assert rules_of(on)[0]["matches"] == [
        {
            **PREDICT,
            "headers": [
                {"type": "Exact", "name": "x-region", "value": "eu"},
                {"type": "Exact", "name": "x-tester", "value": "yes"},
            ],
        }
    ]
    moved = edited(on, state(header=HeaderMatch("x-beta", "1")))
    assert len(rules_of(moved)) == 2
    assert rules_of(moved)[0]["matches"][0]["headers"][-1] == {"type": "Exact", "name": "x-beta", "value": "1"}
    assert ROUTER.observe(moved) == state(header=HeaderMatch("x-beta", "1"))


# --- back at rest, idempotence ------------------------------------------------------------------------


def test_at_rest_after_abort() -> None:
    mid_rollout = edited(simple(), state(40, 25, HEADER))
    restored = edited(mid_rollout, RouteState())
    assert restored == httproute({"matches": [PREDICT], "backendRefs": [stable_ref(100)]})
    assert ROUTER.observe(restored) == RouteState()


STATES = [state(), state(10), state(50, 25), state(100), state(0, 100), state(20, 0, HEADER), state(30, 25, HEADER)]


@pytest.mark.parametrize("wanted", STATES)
@pytest.mark.parametrize("features", [GatewayApiFeatures(), GatewayApiFeatures(mirror_percent=False, rule_names=True)])
def test_idempotent(wanted: RouteState, features: GatewayApiFeatures) -> None:
    router = GatewayApiRouter("fraud-scorer", STABLE, CANDIDATE, features)
    # Without requestMirror.percent a partial mirror is written, and so read back, as a full one.
    written = wanted if features.mirror_percent or wanted.mirror_percent == 0 else replace(wanted, mirror_percent=100)
    for before in (simple(), user_owned(), two_rules()):
        once = edited(before, wanted, router)
        assert edited(once, wanted, router) == once
        assert router.observe(once) == written
        # From any earlier state too: the result depends on the state, not on the path taken.
        for earlier in STATES:
            assert edited(edited(before, earlier, router), wanted, router) == once


# --- the user's parts ---------------------------------------------------------------------------------


def user_owned() -> JsonDict:
    return httproute(
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
            "backendRefs": [{"name": "admin-ui", "port": 80}],
        },
        {
            "matches": [PREDICT],
            "backendRefs": [stable_ref()],
            "filters": [
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-a", "value": "1"}]}}
            ],
        },
        {
            "matches": [{"path": {"type": "Exact", "value": "/healthz"}}],
            "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "probe-log", "port": 80}}}],
            "backendRefs": [{"name": "health", "port": 80}],
        },
        hostnames=["scorer.example.com", "scorer.internal"],
    )


def test_user_owned_rules_filters_hostnames_stay_untouched_in_order() -> None:
    before = user_owned()
    after = edited(before, state(25, 50, HEADER))
    assert {k: v for k, v in after.items() if k != "spec"} == {k: v for k, v in before.items() if k != "spec"}
    assert after["spec"]["hostnames"] == before["spec"]["hostnames"]
    assert after["spec"]["parentRefs"] == before["spec"]["parentRefs"]
    rules = rules_of(after)
    assert rules[0] == rules_of(before)[0]
    assert rules[1]["backendRefs"] == [candidate_ref(100)]  # the header rule, before the managed one
    assert rules[2]["backendRefs"] == [stable_ref(75), candidate_ref(25)]
    assert rules[2]["filters"][0] == rules_of(before)[1]["filters"][0]
    assert rules[3] == rules_of(before)[2]
    assert edited(after, state()) == edited(before, state())


def two_rules() -> JsonDict:
    return httproute(
        {"matches": [PREDICT], "backendRefs": [stable_ref()]},
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/explain"}}],
            "backendRefs": [stable_ref(1)],
            "timeouts": {"request": "30s"},
        },
    )


def test_two_rules_on_the_stable_service_are_both_managed() -> None:
    after = edited(two_rules(), state(10, 100, HEADER))
    rules = rules_of(after)
    assert len(rules) == 3
    assert rules[0]["matches"] == [
        with_tester(PREDICT),
        with_tester({"path": {"type": "PathPrefix", "value": "/explain"}}),
    ]
    for rule in rules[1:]:
        assert rule["backendRefs"] == [stable_ref(90), candidate_ref(10)]
        assert rule["filters"] == [MIRROR_100]
    assert rules[2]["timeouts"] == {"request": "30s"}
    assert ROUTER.observe(after) == state(10, 100, HEADER)


def test_a_managed_rule_edited_behind_our_back_is_brought_back_in_line() -> None:
    after = edited(two_rules(), state(10))
    off = copy.deepcopy(after)
    off["spec"]["rules"][1]["backendRefs"] = [stable_ref(100)]
    assert edited(off, state(10)) == after


def test_observe_reads_shares_not_literal_weights() -> None:
    route = httproute({"backendRefs": [{**stable_ref(), "weight": 9}, {**candidate_ref(1)}]})
    assert ROUTER.observe(route) == state(10)


# --- bad input ----------------------------------------------------------------------------------------


def test_no_rule_for_the_stable_service() -> None:
    route = httproute({"backendRefs": [{"name": "something-else", "port": 80}]})
    error = ROUTER.edit(route, state(10))
    assert error == RouteError(
        "HTTPRoute",
        "ml",
        "fraud-scorer",
        'HTTPRoute ml/fraud-scorer has no rule with a backendRef to Service "fraud-scorer-stable"; add one, '
        "the operator manages its weights",
    )
    assert ROUTER.observe(route) == error


def test_same_name_in_another_namespace_or_kind_is_not_the_stable_service() -> None:
    for ref in ({**stable_ref(), "namespace": "other"}, {**stable_ref(), "group": "example.com", "kind": "Backend"}):
        assert isinstance(ROUTER.edit(httproute({"backendRefs": [ref]}), state(10)), RouteError)


def test_a_foreign_backend_in_a_managed_rule_is_refused() -> None:
    before = httproute({"backendRefs": [stable_ref(90), {"name": "legacy-scorer", "port": 8080, "weight": 10}]})
    assert ROUTER.edit(before, state(10)) == RouteError(
        "HTTPRoute",
        "ml",
        "fraud-scorer",
        'HTTPRoute ml/fraud-scorer rules[0] sends traffic to "legacy-scorer" besides Service "fraud-scorer-stable"; '
        'the operator sets every backendRef of a rule it manages, so move "legacy-scorer" to a rule of its own',
    )


def test_a_route_without_spec_is_bad_input() -> None:
    bare = {"metadata": {"name": "fraud-scorer", "namespace": "ml"}}
    assert isinstance(ROUTER.edit(copy.deepcopy(bare), state()), RouteError)
