"""The chart's `shards`: one working replica per shard, coordinated through Leases, never with kopf peering."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.chart.conftest import NAMESPACE, NAMESPACED, SHARDED, Render, find, one

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is needed to render the chart")


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    [container] = containers
    return container


def test_one_shard_renders_exactly_the_unsharded_chart(render: Render) -> None:
    assert render({"shards": 1}) == render({})
    assert render({**NAMESPACED, "shards": 1}) == render(NAMESPACED)


def test_three_shards_run_three_working_replicas_without_peering(render: Render) -> None:
    objects = render(SHARDED)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    # An unsharded operator holds no Lease: from shards 1 to 2 only Recreate keeps it apart from the new pods.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    args = _container(objects)["args"]
    assert "--shards=3" in args
    assert "--shard-identity=$(POD_ID)" in args
    assert "--shard-lease-seconds=30" in args
    assert [arg for arg in args if arg.startswith("--shard-lease-prefix=")], args
    assert f"--operator-namespace={NAMESPACE}" in args
    assert not [arg for arg in args if arg.startswith("--peering")]
    for kind in ("CustomResourceDefinition", "ClusterKopfPeering", "KopfPeering"):
        assert not find(objects, kind), f"{kind} rendered with shards"


def test_the_shard_identity_is_the_pod_name(render: Render) -> None:
    container = _container(render(SHARDED))
    env = {variable["name"]: variable for variable in container["env"]}
    # Kubernetes expands $(POD_ID) in args only from a variable the container defines.
    assert "--shard-identity=$(POD_ID)" in container["args"]
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_a_drain_stops_one_sharded_replica_at_a_time(render: Render) -> None:
    objects = render(SHARDED)
    pdb = one(objects, "PodDisruptionBudget")["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": one(objects, "Deployment")["spec"]["selector"]}


def test_the_lease_role_is_bound_to_the_operator_in_the_release_namespace(render: Render) -> None:
    objects = render(SHARDED)
    [role] = [r for r in find(objects, "Role") if r["metadata"]["name"].endswith("-shards")]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "watch", "create", "update", "delete"],
        }
    ]
    [binding] = [b for b in find(objects, "RoleBinding") if b["metadata"]["name"] == role["metadata"]["name"]]
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": one(objects, "ServiceAccount")["metadata"]["name"], "namespace": NAMESPACE}
    ]


def test_the_shard_leases_go_to_the_leader_election_priority_level(render: Render) -> None:
    objects = render(SHARDED)
    spec = one(objects, "FlowSchema")["spec"]
    assert spec["priorityLevelConfiguration"] == {"name": "leader-election"}
    [rule] = spec["rules"]
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    assert rule["subjects"] == [{"kind": "ServiceAccount", "serviceAccount": {"name": account, "namespace": NAMESPACE}}]
    assert [(r["apiGroups"], r["resources"], r["namespaces"]) for r in rule["resourceRules"]] == [
        (["coordination.k8s.io"], ["leases"], [NAMESPACE])
    ]
    assert not find(render({}), "FlowSchema"), "unsharded: no Lease, no FlowSchema"
    assert not find(render({**SHARDED, "shardLeaseFlowSchema": False}), "FlowSchema")


def test_notes_say_how_to_see_the_shard_leases(chart: Any) -> None:
    notes = chart.render(SHARDED, name="modelrollout", namespace=NAMESPACE, is_install=True)
    text = next(body for path, body in notes.items() if path.endswith("NOTES.txt"))
    assert "3 replicas share the ModelRollouts in 3 shards" in text
    assert f"kubectl get leases -n {NAMESPACE} -l modelrollout.io/lease=shard" in text
    unsharded = chart.render({}, name="modelrollout", namespace=NAMESPACE, is_install=True)
    assert "shard" not in next(body for path, body in unsharded.items() if path.endswith("NOTES.txt"))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"shards": 3, "replicaCount": 2}, "shards=3 and replicaCount=2: with shards > 1 the chart runs one replica"),
        ({"shards": 2, "leaderElection": {"enabled": True}}, "shards=2 and leaderElection.enabled: sharding replaces"),
    ],
)
def test_sharding_with_kopf_peering_is_refused(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        chart.render(values, name="modelrollout", namespace=NAMESPACE, is_install=True)


@pytest.mark.parametrize(("shards", "message"), [(0, "minimum: got 0, want 1"), (65, "maximum: got 65, want 64")])
def test_the_schema_bounds_shards_to_1_to_64(chart: Any, render: Render, shards: int, message: str) -> None:
    from modelrollout.sharding.plan import MAX_SHARDS

    assert MAX_SHARDS == 64
    with pytest.raises(helm.HelmValuesError, match=re.escape(f"at '/shards': {message}")):
        chart.validate_schema({"shards": shards})
    assert one(render({"shards": 64}), "Deployment")["spec"]["replicas"] == 64


def test_helm_lint_passes_sharded_and_namespaced() -> None:
    from tests.chart.conftest import CHART

    report = helm.lint(CHART, {**SHARDED, **NAMESPACED}, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert report["errors"] == []
    assert [message for message in report["messages"] if message["severity"] >= 2] == []


def test_the_sharded_args_parse_with_the_operator_cli(render: Render) -> None:
    """Needs `modelrollout run --shards/--shard-identity` (the sharded runtime's flags)."""
    from modelrollout.cli import build_parser

    args = build_parser().parse_args(_container(render(SHARDED))["args"])
    assert args.shards == 3
    assert args.shard_identity == "$(POD_ID)"  # what the kubelet expands to the pod's name
    assert args.shard_lease_seconds == 30
    assert args.operator_namespace == NAMESPACE


def test_the_schema_bounds_the_shard_lease_as_the_cli_does(chart: Any, render: Render) -> None:
    from modelrollout.cli import build_parser

    least = build_parser().parse_args(_container(render({**SHARDED, "shardLeaseSeconds": 3}))["args"])
    assert least.shard_lease_seconds == 3
    with pytest.raises(helm.HelmValuesError, match=re.escape("at '/shardLeaseSeconds': minimum: got 2, want 3")):
        chart.validate_schema({**SHARDED, "shardLeaseSeconds": 2})
