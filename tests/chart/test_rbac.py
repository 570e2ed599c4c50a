"""The chart grants exactly the permissions operator/modelrollout/rbac.py lists, in every install mode."""

from __future__ import annotations

from typing import Any

import pytest

from modelrollout import rbac

pytest.importorskip("helm_python", reason="helm-python-sdk is needed to render the chart")

from tests.chart.conftest import EVERYTHING, NAMESPACE, NAMESPACED, SCENARIOS, SHARDED, Render, find

SERVICE_ACCOUNT = {"kind": "ServiceAccount", "name": "modelrollout-modelrollout-operator", "namespace": NAMESPACE}


def _rendered_grants(objects: list[dict[str, Any]]) -> set[rbac.Grant]:
    """(where, apiGroup, resource, verb) for every rule bound to the operator's ServiceAccount."""
    bound = {
        (binding["roleRef"]["kind"], binding["roleRef"]["name"], binding["metadata"].get("namespace"))
        for binding in find(objects, "ClusterRoleBinding") + find(objects, "RoleBinding")
        if SERVICE_ACCOUNT in binding["subjects"]
    }
    granted: set[rbac.Grant] = set()
    for role in find(objects, "ClusterRole") + find(objects, "Role"):
        namespace = role["metadata"].get("namespace")
        if (role["kind"], role["metadata"]["name"], namespace) not in bound:
            continue
        where = rbac.CLUSTER if role["kind"] == "ClusterRole" else namespace
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.update((where, group, resource, verb) for verb in rule["verbs"])
    return granted


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_chart_grants_exactly_what_rbac_py_lists(render: Render, scenario: str) -> None:
    values = SCENARIOS[scenario]
    objects = render(values)
    peering = values.get("replicaCount", 1) > 1 or values.get("leaderElection", {}).get("enabled", False)
    expected = rbac.grants(
        namespaces=values.get("watchNamespaces", []),
        peering=peering,
        operator_namespace=NAMESPACE,
        sharded=values.get("shards", 1) > 1,
    )
    granted = _rendered_grants(objects)
    assert expected - granted == set(), "missing from the chart"
    assert granted - expected == set(), "granted by the chart but not in rbac.py"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_no_wildcards(render: Render, scenario: str) -> None:
    for grant in _rendered_grants(render(SCENARIOS[scenario])):
        assert "*" not in grant[1:], grant


def test_namespaced_install_keeps_only_cluster_scoped_reads_cluster_wide(render: Render) -> None:
    granted = _rendered_grants(render(NAMESPACED))
    cluster = {(group, resource) for where, group, resource, _ in granted if where == rbac.CLUSTER}
    assert cluster == {
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("", "namespaces"),
        ("modelrollout.io", "clustermodelanalysistemplates"),
    }
    for namespace in NAMESPACED["watchNamespaces"]:
        assert (namespace, "modelrollout.io", "modelrollouts", "watch") in granted
    assert not any(where == "default" for where, *_ in granted)


def test_every_rule_says_why_and_is_not_a_wildcard() -> None:
    for rule in rbac.RULES:
        assert rule.why.strip()
        assert rule.verbs and "*" not in rule.verbs and rule.resource != "*"


def test_no_permission_is_granted_ahead_of_the_code_that_uses_it() -> None:
    assert [rule for rule in rbac.RULES if rule.planned] == []


def test_peering_grants_follow_the_scope(render: Render) -> None:
    cluster_wide = _rendered_grants(render(EVERYTHING))
    assert (rbac.CLUSTER, "kopf.dev", "clusterkopfpeerings", "patch") in cluster_wide
    namespaced = _rendered_grants(render({**NAMESPACED, "leaderElection": {"enabled": True}}))
    assert ("team-a", "kopf.dev", "kopfpeerings", "patch") in namespaced
    assert not any(resource == "clusterkopfpeerings" for _, _, resource, _ in namespaced)


LEASE_VERBS = {"get", "list", "watch", "create", "update", "delete"}


@pytest.mark.parametrize("values", [SHARDED, {**SHARDED, **NAMESPACED}], ids=["cluster-wide", "namespaced"])
def test_sharded_installs_grant_the_lease_verbs_in_the_release_namespace_only(
    render: Render, values: dict[str, Any]
) -> None:
    leases = {
        (where, verb)
        for where, group, resource, verb in _rendered_grants(render(values))
        if (group, resource) == ("coordination.k8s.io", "leases")
    }
    assert leases == {(NAMESPACE, verb) for verb in LEASE_VERBS}


@pytest.mark.parametrize("values", [SHARDED, {**SHARDED, **NAMESPACED}], ids=["cluster-wide", "namespaced"])
def test_sharded_installs_may_label_rollouts_deployments_and_services(render: Render, values: dict[str, Any]) -> None:
    """The shard labels are written with a patch on each object's metadata, wherever rollouts are watched."""
    granted = _rendered_grants(render(values))
    places = values.get("watchNamespaces") or [rbac.CLUSTER]
    for where in places:
        for group, resource in (("modelrollout.io", "modelrollouts"), ("apps", "deployments"), ("", "services")):
            assert (where, group, resource, "patch") in granted, (where, resource)


@pytest.mark.parametrize("values", [{}, {"shards": 1}, NAMESPACED, EVERYTHING])
def test_unsharded_installs_grant_no_leases(render: Render, values: dict[str, Any]) -> None:
    assert not any(resource == "leases" for _, _, resource, _ in _rendered_grants(render(values)))
