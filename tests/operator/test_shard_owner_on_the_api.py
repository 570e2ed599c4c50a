"""On the real control plane: `modelrollout status` finds a sharded rollout's shard Lease by its labels
and names the replica holding it, says so in one line when the person may not list Leases, and the
chart's sharded RBAC lets the operator's ServiceAccount use Leases in its own namespace and nowhere else.

The Leases of these tests live in the test's own namespace (given as `--operator-namespace`), so a
sharded operator that another test runs in the session's operator namespace is never in the way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException
from tests.support.cluster import Cluster
from tests.support.control_plane import (
    OPERATOR_NAMESPACE,
    RealControlPlane,
    chart_identity,
    chart_rbac_objects,
    wait_until,
)

from modelrollout import GROUP, PLURAL, VERSION
from modelrollout.sharding.plan import shard_labels, shard_lease_name, shard_of

SHARDS = 3
HOLDER = "modelrollout-modelrollout-operator-6f7d9c-x2k4p"


def _status(
    cluster: Cluster, name: str, *extra: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "modelrollout.cli",
            "status",
            name,
            "-n",
            cluster.namespace,
            "--kubeconfig",
            str(kubeconfig or cluster.kubeconfig),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        # One screen row per status row: the Owner row is matched whole.
        env={**os.environ, "COLUMNS": "200"},
    )


def _create_rollout(cluster: Cluster, name: str, labels: dict[str, str]) -> None:
    from tests.operator.test_canary import rollout_spec

    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelRollout",
        "metadata": {"name": name, "labels": labels},
        "spec": rollout_spec(name, "1.0.0", [{"setWeight": 50}]),
    }
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, body)


def _deployment(name: str) -> kubernetes.client.V1Deployment:
    selector = {"app": name}
    return kubernetes.client.V1Deployment(
        metadata=kubernetes.client.V1ObjectMeta(name=name),
        spec=kubernetes.client.V1DeploymentSpec(
            replicas=0,
            selector=kubernetes.client.V1LabelSelector(match_labels=selector),
            template=kubernetes.client.V1PodTemplateSpec(
                metadata=kubernetes.client.V1ObjectMeta(labels=selector),
                spec=kubernetes.client.V1PodSpec(containers=[kubernetes.client.V1Container(name="m", image="x")]),
            ),
        ),
    )


def _micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _shard_lease(shard: int, holder: str, renewed: datetime, name: str | None = None) -> kubernetes.client.V1Lease:
    return kubernetes.client.V1Lease(
        metadata=kubernetes.client.V1ObjectMeta(
            name=name or shard_lease_name("modelrollout", shard),
            labels={"modelrollout.io/lease": "shard", "modelrollout.io/shard": str(shard)},
            annotations={"modelrollout.io/shards": str(SHARDS)},
        ),
        spec=kubernetes.client.V1LeaseSpec(
            holder_identity=holder, lease_duration_seconds=30, acquire_time=renewed, renew_time=renewed
        ),
    )


@pytest.fixture
def leases(real_control_plane: RealControlPlane, cluster: Cluster) -> kubernetes.client.CoordinationV1Api:
    return kubernetes.client.CoordinationV1Api(cluster.api_client)


def test_status_names_the_replica_that_holds_a_sharded_rollouts_shard(
    cluster: Cluster, leases: kubernetes.client.CoordinationV1Api
) -> None:
    name = f"sharded-{uuid.uuid4().hex[:6]}"
    shard = shard_of(cluster.namespace, name, SHARDS)
    _create_rollout(cluster, name, shard_labels(cluster.namespace, name, SHARDS))
    leases.create_namespaced_lease(cluster.namespace, _shard_lease(shard, HOLDER, datetime.now(UTC)))
    where = ("--operator-namespace", cluster.namespace)

    shown = _status(cluster, name, *where)
    assert shown.returncode == 0, shown.stderr
    [owner_line] = [line for line in shown.stdout.splitlines() if line.startswith("Owner")]
    assert f"shard {shard} of {SHARDS}: {HOLDER}, alive (renewed " in owner_line

    as_json = _status(cluster, name, *where, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    owner = json.loads(as_json.stdout)["owner"]
    assert (owner["shard"], owner["shards"], owner["holder"], owner["alive"]) == (shard, SHARDS, HOLDER, True)
    assert owner["lease"] == f"{cluster.namespace}/modelrollout-shard-{shard}"

    # The holder stopped renewing two minutes ago: its Lease has expired, by this machine's clock.
    stopped = {"spec": {"renewTime": _micro_time(datetime.now(UTC) - timedelta(seconds=120))}}
    leases.patch_namespaced_lease(shard_lease_name("modelrollout", shard), cluster.namespace, stopped)
    expired = json.loads(_status(cluster, name, *where, "-o", "json").stdout)["owner"]
    assert expired["alive"] is False and expired["holder"] == HOLDER
    assert f"shard {shard} of {SHARDS}: last held by {HOLDER}, expired " in _status(cluster, name, *where).stdout


def test_an_unsharded_rollout_shows_no_owner(cluster: Cluster, leases: kubernetes.client.CoordinationV1Api) -> None:
    name = f"plain-{uuid.uuid4().hex[:6]}"
    _create_rollout(cluster, name, {})
    shown = _status(cluster, name, "--operator-namespace", cluster.namespace)
    assert shown.returncode == 0, shown.stderr
    assert "Owner" not in shown.stdout
    assert "owner" not in json.loads(_status(cluster, name, "-o", "json").stdout)


@pytest.fixture
def reader_kubeconfig(real_control_plane: RealControlPlane, cluster: Cluster, tmp_path: Path) -> Path:
    """A person who may read ModelRollouts in the test's namespace, and nothing about Leases."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(cluster.api_client)
    ns = cluster.namespace
    named = kubernetes.client.V1ObjectMeta(name="reader")
    cluster.core.create_namespaced_service_account(ns, kubernetes.client.V1ServiceAccount(metadata=named))
    rule = kubernetes.client.V1PolicyRule(api_groups=[GROUP], resources=[PLURAL], verbs=["get", "list"])
    rbac.create_namespaced_role(ns, kubernetes.client.V1Role(metadata=named, rules=[rule]))
    binding = kubernetes.client.V1RoleBinding(
        metadata=named,
        role_ref=kubernetes.client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="reader"),
        subjects=[kubernetes.client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=ns)],
    )
    rbac.create_namespaced_role_binding(ns, binding)
    return real_control_plane.plane.service_account_kubeconfig(tmp_path / "reader.kubeconfig", ns, "reader")


def test_a_person_who_may_not_list_leases_is_told_so_in_one_line(cluster: Cluster, reader_kubeconfig: Path) -> None:
    name = f"sharded-{uuid.uuid4().hex[:6]}"
    shard = shard_of(cluster.namespace, name, SHARDS)
    _create_rollout(cluster, name, shard_labels(cluster.namespace, name, SHARDS))
    for where in ((), ("--operator-namespace", cluster.namespace)):
        shown = _status(cluster, name, *where, kubeconfig=reader_kubeconfig)
        assert shown.returncode == 0, shown.stderr
        assert "Traceback" not in shown.stdout + shown.stderr
        [owner_line] = [line for line in shown.stdout.splitlines() if line.startswith("Owner")]
        assert f"shard {shard} of {SHARDS}, owner unknown: cannot list leases (403 Forbidden" in owner_line
        owner = json.loads(_status(cluster, name, *where, "-o", "json", kubeconfig=reader_kubeconfig).stdout)["owner"]
        assert owner["alive"] is None and owner["problem"].startswith("owner unknown: cannot list leases (403")


@pytest.fixture
def sharded_operator_identity(real_control_plane: RealControlPlane, cluster: Cluster, tmp_path: Path) -> Iterator[Path]:
    """The chart's ServiceAccount and RBAC for `shards: 3`, as a release of its own."""
    values = {"shards": SHARDS}
    release = f"sharded-{cluster.namespace}"
    kubeconfig = chart_identity(
        real_control_plane, cluster.api_client, tmp_path / "sharded.kubeconfig", values, release
    )
    try:
        yield kubeconfig
    finally:
        for document in chart_rbac_objects(values, release=release):
            try:
                _delete(cluster.api_client, document)
            except ApiException as error:
                if error.status != 404:
                    raise


def _delete(api_client: kubernetes.client.ApiClient, document: dict[str, Any]) -> None:
    dynamic = kubernetes.dynamic.DynamicClient(api_client)  # type: ignore[no-untyped-call]
    resource = dynamic.resources.get(api_version=document["apiVersion"], kind=document["kind"])
    metadata = document["metadata"]
    resource.delete(name=metadata["name"], namespace=metadata.get("namespace"))


def test_the_operators_lease_requests_are_served_at_leader_election_priority(
    cluster: Cluster, sharded_operator_identity: Path
) -> None:
    """The chart's FlowSchema puts the replicas' Lease requests in the API server's leader-election
    priority level, so an overloaded server does not starve their renewals (docs/benchmarks.md).
    The API server names the priority level it served a request at in a response header."""
    flowcontrol = kubernetes.client.FlowcontrolApiserverV1Api(cluster.api_client)
    leader_election = flowcontrol.read_priority_level_configuration("leader-election").metadata.uid
    client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(sharded_operator_identity)
    )
    with client:
        coordination = kubernetes.client.CoordinationV1Api(client)
        apps = kubernetes.client.AppsV1Api(client)

        def served_at_leader_election() -> bool:
            # The API server applies a new FlowSchema a moment after it is created.
            _, _, headers = coordination.list_namespaced_lease_with_http_info(OPERATOR_NAMESPACE)
            return bool(headers.get("X-Kubernetes-PF-PriorityLevel-UID") == leader_election)

        wait_until("the operator's Lease requests at the leader-election priority level", served_at_leader_election)
        _, _, headers = apps.list_namespaced_deployment_with_http_info(cluster.namespace)
        assert headers.get("X-Kubernetes-PF-PriorityLevel-UID") not in (None, leader_election), "only Leases"


def test_the_charts_sharded_rbac_lets_the_operator_use_leases_in_its_namespace_and_label_rollouts(
    cluster: Cluster, sharded_operator_identity: Path
) -> None:
    client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(sharded_operator_identity)
    )
    with client:
        coordination = kubernetes.client.CoordinationV1Api(client)
        name = f"rbac-{cluster.namespace}-shard-0"
        lease = _shard_lease(0, "replica-a", datetime.now(UTC), name=name)
        created = coordination.create_namespaced_lease(OPERATOR_NAMESPACE, lease)
        assert created.spec is not None
        assert coordination.read_namespaced_lease(name, OPERATOR_NAMESPACE).spec == created.spec
        selector = "modelrollout.io/lease=shard,modelrollout.io/shard=0"
        listed = coordination.list_namespaced_lease(OPERATOR_NAMESPACE, label_selector=selector)
        assert name in [item.metadata.name for item in listed.items if item.metadata is not None]
        assert listed.metadata is not None
        watched = kubernetes.watch.Watch().stream(  # type: ignore[no-untyped-call]
            coordination.list_namespaced_lease,
            OPERATOR_NAMESPACE,
            field_selector=f"metadata.name={name}",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=5,
        )
        created.spec.holder_identity = "replica-b"
        coordination.replace_namespaced_lease(name, OPERATOR_NAMESPACE, created)  # a renewal is an update
        seen = next(iter(watched))
        assert seen["type"] == "MODIFIED" and seen["object"].spec.holder_identity == "replica-b"
        coordination.delete_namespaced_lease(name, OPERATOR_NAMESPACE)
        # The shard labels go on a rollout, its Deployments and its Services with a merge patch.
        rollout = f"labelled-{uuid.uuid4().hex[:6]}"
        _create_rollout(cluster, rollout, {})
        cluster.apps.create_namespaced_deployment(cluster.namespace, _deployment(rollout))
        cluster.core.create_namespaced_service(
            cluster.namespace,
            kubernetes.client.V1Service(
                metadata=kubernetes.client.V1ObjectMeta(name=rollout),
                spec=kubernetes.client.V1ServiceSpec(ports=[kubernetes.client.V1ServicePort(port=80)]),
            ),
        )
        labels = {"metadata": {"labels": shard_labels(cluster.namespace, rollout, SHARDS)}}
        as_operator = kubernetes.client.CustomObjectsApi(client)
        as_operator.patch_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, rollout, labels)
        kubernetes.client.AppsV1Api(client).patch_namespaced_deployment(rollout, cluster.namespace, labels)
        kubernetes.client.CoreV1Api(client).patch_namespaced_service(rollout, cluster.namespace, labels)
        assert cluster.rollout(rollout)["metadata"]["labels"] == labels["metadata"]["labels"]
        # Only in its own namespace: another namespace's Leases are not the operator's.
        with pytest.raises(ApiException) as refused:
            coordination.list_namespaced_lease(cluster.namespace)
        assert refused.value.status == 403
        with pytest.raises(ApiException) as refused:
            coordination.create_namespaced_lease(cluster.namespace, lease)
        assert refused.value.status == 403
