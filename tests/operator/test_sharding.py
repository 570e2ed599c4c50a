"""Sharded operators (issue 20): two and three replicas, each acting on its own share of the rollouts.

Every replica runs as its own `modelrollout run --shards N` process with the permissions the chart
grants for `shards: N`. What is checked is what a user would: every rollout finishes, no step is taken
twice (each step's Event once), a replica killed mid-rollout has its shard taken over, and going from
2 to 3 shards loses nothing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from tests.operator.test_canary import rollout_spec
from tests.support.cluster import Cluster, DeploymentController
from tests.support.control_plane import OPERATOR_NAMESPACE, RealControlPlane, chart_identity
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import PrometheusServer

from modelrollout.cli import main as cli
from modelrollout.sharding.plan import SHARD_LABEL, SHARDS_LABEL, shard_lease_name, shard_of

pytestmark = pytest.mark.timeout(300)

LEASE_SECONDS = 10
TIMED = [{"setWeight": 50}, {"pause": {"duration": "2s"}}, {"setWeight": 100}]
GATED = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]


def names_covering(namespace: str, shards: int, per_shard: int = 1) -> list[str]:
    """Rollout names that fill every shard, `per_shard` each (a shard is a hash: names are drawn)."""
    wanted = dict.fromkeys(range(shards), per_shard)
    names: list[str] = []
    while any(wanted.values()):
        name = f"sharded-{uuid.uuid4().hex[:6]}"
        shard = shard_of(namespace, name, shards)
        if wanted[shard]:
            names.append(name)
            wanted[shard] -= 1
    return names


class Replicas:
    """N replicas of the operator, each a process, sharing one Lease prefix of their own."""

    def __init__(self, cluster: Cluster, prometheus: PrometheusServer, tmp_path: Path, kubeconfig: Path) -> None:
        self.cluster = cluster
        self.prometheus = prometheus
        self.tmp_path = tmp_path
        self.kubeconfig = kubeconfig
        self.prefix = f"t{uuid.uuid4().hex[:6]}"
        self.processes: dict[str, OperatorProcess] = {}

    def start(self, identity: str, shards: int) -> OperatorProcess:
        flags = [
            "--shards", str(shards),
            "--shard-identity", identity,
            "--shard-lease-prefix", self.prefix,
            "--shard-lease-seconds", str(LEASE_SECONDS),
            "--operator-namespace", OPERATOR_NAMESPACE,
        ]  # fmt: skip
        log = self.tmp_path / f"operator-{identity}.log"
        process = OperatorProcess(self.kubeconfig, self.cluster.namespace, self.prometheus.address, log, flags)
        self.processes[identity] = process.start()
        return process

    def holders(self, shards: int) -> dict[int, str | None]:
        coordination = kubernetes.client.CoordinationV1Api(self.cluster.api_client)
        held: dict[int, str | None] = {}
        for shard in range(shards):
            try:
                lease = coordination.read_namespaced_lease(shard_lease_name(self.prefix, shard), OPERATOR_NAMESPACE)
            except kubernetes.client.ApiException as error:
                if error.status != 404:
                    raise
                held[shard] = None
                continue
            held[shard] = lease.spec.holder_identity
        return held

    def wait_held(self, shards: int, by: set[str]) -> dict[int, str | None]:
        """Every shard held, by exactly the replicas `by`, each within its fair share."""
        fair = -(-shards // len(by))

        def settled() -> dict[int, str | None] | None:
            held = self.holders(shards)
            counts = Counter(held.values())
            ok = set(counts) == by and all(count <= fair for count in counts.values())
            return held if ok else None

        return self.cluster.wait_for(f"{shards} shards held by {sorted(by)}", settled, timeout=90)

    def logs(self) -> str:
        return "\n".join(f"--- {who} ---\n{p.logs()[-6000:]}" for who, p in self.processes.items())


@pytest.fixture
def replicas(
    cluster: Cluster,
    prometheus_session: PrometheusServer,
    tmp_path: Path,
    control_plane: RealControlPlane | None,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[int], Replicas]]:
    made: list[Replicas] = []

    def make(shards: int) -> Replicas:
        if control_plane is not None:
            kubeconfig = chart_identity(
                control_plane, cluster.api_client, tmp_path / "sharded.kubeconfig", {"shards": shards}, "mro-sharded"
            )
        else:  # the emulator: no RBAC, one admin
            kubeconfig = cluster.operator_kubeconfig
            try:
                cluster.core.create_namespace({"metadata": {"name": OPERATOR_NAMESPACE}})
            except kubernetes.client.ApiException as error:
                if error.status != 409:
                    raise
        group = Replicas(cluster, prometheus_session, tmp_path, kubeconfig)
        made.append(group)
        return group

    try:
        yield make
    finally:
        report = getattr(request.node, "rep_call", None)
        for group in made:
            if any(p.alive for p in group.processes.values()):
                cluster.delete_all_rollouts()
            for process in group.processes.values():
                process.stop()
            if report is not None and report.failed:
                print(group.logs())


def create(cluster: Cluster, names: list[str], steps: list[dict[str, Any]]) -> None:
    for name in names:
        cluster.create_rollout(name, rollout_spec(name, "1.0.0", steps, analysis={}, replicas=1))
    for name in names:
        cluster.wait_for_phase(name, "Succeeded", timeout=90)


def deliver(cluster: Cluster, names: list[str]) -> None:
    for name in names:
        cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})


def assert_each_step_once(cluster: Cluster, names: list[str], steps: list[dict[str, Any]]) -> None:
    for name in names:
        counts = Counter(cluster.event_reasons(name))
        assert counts["RolloutStarted"] == 1, (name, counts)
        assert counts["StepCompleted"] == len(steps), (name, counts)
        assert counts["Promoted"] == 1, (name, counts)


def promote(cluster: Cluster, name: str) -> None:
    assert cli(["promote", name, "--kubeconfig", str(cluster.kubeconfig), "-n", cluster.namespace, "--no-wait"]) == 0


def test_two_replicas_share_the_rollouts_and_act_on_each_once(
    cluster: Cluster, deployment_controller: DeploymentController, replicas: Callable[[int], Replicas]
) -> None:
    group = replicas(2)
    group.start("replica-a", 2)
    group.start("replica-b", 2)
    held = group.wait_held(2, {"replica-a", "replica-b"})
    assert held[0] != held[1]
    names = names_covering(cluster.namespace, 2, per_shard=2)
    create(cluster, names, TIMED)
    for name in names:
        labels = cluster.rollout(name)["metadata"]["labels"]
        assert labels[SHARD_LABEL] == str(shard_of(cluster.namespace, name, 2)) and labels[SHARDS_LABEL] == "2"
    for deployment in cluster.deployments().values():
        rollout = deployment.metadata.labels["modelrollout.io/rollout"]
        assert deployment.metadata.labels[SHARD_LABEL] == str(shard_of(cluster.namespace, rollout, 2))
    deliver(cluster, names)
    for name in names:
        assert cluster.wait_for_phase(name, "Succeeded", timeout=90)["stableVersion"] == "2.0.0"
    assert_each_step_once(cluster, names, TIMED)


def test_a_killed_replicas_shard_is_taken_over_and_its_rollouts_finish(
    cluster: Cluster, deployment_controller: DeploymentController, replicas: Callable[[int], Replicas]
) -> None:
    group = replicas(2)
    group.start("replica-a", 2)
    group.start("replica-b", 2)
    held = group.wait_held(2, {"replica-a", "replica-b"})
    names = names_covering(cluster.namespace, 2)
    create(cluster, names, GATED)
    deliver(cluster, names)
    for name in names:
        cluster.wait_for_phase(name, "Paused", timeout=90)
    victim = held[0]
    assert victim is not None
    group.processes[victim].kill()
    survivor = ({"replica-a", "replica-b"} - {victim}).pop()
    group.wait_held(2, {survivor})  # within the Lease's 10 s and a tick, on an idle machine
    for name in names:
        promote(cluster, name)
    for name in names:
        assert cluster.wait_for_phase(name, "Succeeded", timeout=90)["stableVersion"] == "2.0.0"
    assert_each_step_once(cluster, names, GATED)


def test_resharding_from_two_to_three_replicas_loses_nothing(
    cluster: Cluster, deployment_controller: DeploymentController, replicas: Callable[[int], Replicas]
) -> None:
    group = replicas(3)
    for identity in ("replica-a", "replica-b"):
        group.start(identity, 2)
    group.wait_held(2, {"replica-a", "replica-b"})
    names = names_covering(cluster.namespace, 3)
    create(cluster, names, GATED)
    deliver(cluster, names)
    for name in names:
        cluster.wait_for_phase(name, "Paused", timeout=90)
    before = {name: cluster.status(name) for name in names}
    # As the chart's Recreate strategy does: the old replicas go, then the new ones come.
    for process in list(group.processes.values()):
        process.stop()
    for identity in ("replica-c", "replica-d", "replica-e"):
        group.start(identity, 3)
    group.wait_held(3, {"replica-c", "replica-d", "replica-e"})

    def relabelled() -> bool:
        return all(cluster.rollout(name)["metadata"]["labels"].get(SHARDS_LABEL) == "3" for name in names)

    cluster.wait_for("every rollout labelled for 3 shards", relabelled, timeout=60)
    for name in names:
        status = cluster.wait_for_phase(name, "Paused", timeout=60)
        assert status["currentStepIndex"] == before[name]["currentStepIndex"], name
        promote(cluster, name)
    for name in names:
        assert cluster.wait_for_phase(name, "Succeeded", timeout=90)["stableVersion"] == "2.0.0"
    assert_each_step_once(cluster, names, GATED)
