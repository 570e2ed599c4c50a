"""Sharded operators (issue 20): two and three replicas, each acting on its own share of the rollouts.

Every replica runs as its own `modelrollout run --shards N` process with the permissions the chart
grants for `shards: N`. What is checked is what a user would: every rollout finishes, no step is taken
twice (each step's Event once), a replica killed mid-rollout has its shard taken over, and going from
2 to 3 shards loses nothing.
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from tests.operator.test_canary import rollout_spec
from tests.support.cluster import Cluster, DeploymentController
from tests.support.control_plane import OPERATOR_NAMESPACE, RealControlPlane, chart_identity
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import PrometheusServer
from tests.support.recording_proxy import RecordingProxy

from modelrollout.cli import main as cli
from modelrollout.sharding.labeler import children_selector
from modelrollout.sharding.plan import (
    SHARD_LABEL,
    SHARDS_LABEL,
    shard_lease_name,
    shard_of,
    shard_selector,
    unsharded_selector,
)

pytestmark = pytest.mark.timeout(300)

LEASE_SECONDS = 10
TIMED: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "2s"}}, {"setWeight": 100}]
GATED: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]


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

    def start(self, identity: str, shards: int, proxy: RecordingProxy | None = None) -> OperatorProcess:
        """Start a replica; with `proxy`, its requests go through it (and are recorded)."""
        kubeconfig = self.kubeconfig
        if proxy is not None:
            kubeconfig = proxy.write_kubeconfig(self.tmp_path / f"{identity}-via-proxy.kubeconfig")
        flags = [
            "--shards", str(shards),
            "--shard-identity", identity,
            "--shard-lease-prefix", self.prefix,
            "--shard-lease-seconds", str(LEASE_SECONDS),
            "--operator-namespace", OPERATOR_NAMESPACE,
        ]  # fmt: skip
        log = self.tmp_path / f"operator-{identity}.log"
        process = OperatorProcess(kubeconfig, self.cluster.namespace, self.prometheus.address, log, flags)
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

    def proxy(self, control_plane: RealControlPlane | None) -> RecordingProxy:
        """A recording proxy in front of the API server, as this group's identity."""
        if control_plane is None:
            return RecordingProxy(str(self.cluster.api_client.configuration.host))
        token = yaml.safe_load(self.kubeconfig.read_text())["users"][0]["user"]["token"]
        return RecordingProxy(control_plane.plane.server, ca_file=control_plane.plane.ca_file, token=token)

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


def wait_promoted(cluster: Cluster, names: list[str]) -> None:
    """Every rollout Succeeded on 2.0.0 (not the Succeeded of 1.0.0 from before the delivery)."""
    for name in names:

        def promoted(name: str = name) -> bool:
            status = cluster.status(name)
            return status.get("phase") == "Succeeded" and status.get("stableVersion") == "2.0.0"

        cluster.wait_for(f"{name} promoted to 2.0.0", promoted, timeout=90)


def promote(cluster: Cluster, name: str) -> None:
    assert cli(["promote", name, "--kubeconfig", str(cluster.kubeconfig), "-n", cluster.namespace, "--no-wait"]) == 0


def watched_selectors(proxy: RecordingProxy) -> dict[str, set[str]]:
    """The label selectors of the watches a replica opened, by resource (empty: no selector)."""
    watched: dict[str, set[str]] = {}
    for seen in proxy.seen:
        query = urllib.parse.parse_qs(seen.query)
        if query.get("watch", [""])[0] in ("true", "1"):
            resource = seen.path.rstrip("/").rsplit("/", 1)[1]
            watched.setdefault(resource, set()).add(query.get("labelSelector", [""])[0])
    return watched


def test_two_replicas_share_the_rollouts_and_act_on_each_once(
    cluster: Cluster,
    deployment_controller: DeploymentController,
    replicas: Callable[[int], Replicas],
    control_plane: RealControlPlane | None,
) -> None:
    group = replicas(2)
    proxy = group.proxy(control_plane).start()
    try:
        # replica-b first, holding both shards; replica-a then gets only the one handed over to it.
        group.start("replica-b", 2)
        group.wait_held(2, {"replica-b"})
        group.start("replica-a", 2, proxy=proxy)
        held = group.wait_held(2, {"replica-a", "replica-b"})
        assert held[0] != held[1]
        names = names_covering(cluster.namespace, 2, per_shard=2)
        create(cluster, names, TIMED)
        # The watch work shrinks with the shards: replica-a watches only its shard's objects (and,
        # holding shard 0, what still needs shard labels), each through a server-side selector.
        own = next(shard for shard, holder in held.items() if holder == "replica-a")
        allowed = {shard_selector(own, 2)}
        watched = watched_selectors(proxy)
        for resource in ("modelrollouts", "deployments", "services"):
            unlabelled = unsharded_selector(2) if resource == "modelrollouts" else children_selector(2)
            extra = {unlabelled} if own == 0 else set()
            assert watched.get(resource) and watched[resource] <= allowed | extra, (resource, watched)
        for name in names:
            labels = cluster.rollout(name)["metadata"]["labels"]
            assert labels[SHARD_LABEL] == str(shard_of(cluster.namespace, name, 2)), labels
            assert labels[SHARDS_LABEL] == "2", labels
        for deployment in cluster.deployments().values():
            labels = deployment.metadata.labels
            assert labels[SHARD_LABEL] == str(shard_of(cluster.namespace, labels["modelrollout.io/rollout"], 2))
        deliver(cluster, names)
        wait_promoted(cluster, names)
        assert_each_step_once(cluster, names, TIMED)
    finally:
        group.processes["replica-a"].stop()  # before its proxy: replica-b takes its shard over
        proxy.stop()


def test_labelling_new_rollouts_lists_no_children_per_rollout(
    cluster: Cluster,
    deployment_controller: DeploymentController,
    replicas: Callable[[int], Replicas],
    control_plane: RealControlPlane | None,
) -> None:
    """A label-selected list costs the API server a scan of the namespace: one per new rollout made
    labelling 10,000 of them quadratic (the 10,000-rollout benchmark's start wave). New rollouts have
    no children to label, so the labeler lists none for them."""
    group = replicas(2)
    proxy = group.proxy(control_plane).start()
    try:
        group.start("replica-a", 2, proxy=proxy)  # alone: it holds shard 0, so it labels
        group.wait_held(2, {"replica-a"})
        names = names_covering(cluster.namespace, 2, per_shard=3)
        create(cluster, names, TIMED)
        per_rollout = [
            seen
            for seen in proxy.seen
            if seen.method == "GET"
            and "watch" not in urllib.parse.parse_qs(seen.query)
            and "modelrollout.io/rollout=" in urllib.parse.parse_qs(seen.query).get("labelSelector", [""])[0]
        ]
        assert not per_rollout, per_rollout
        for name in names:
            labels = cluster.rollout(name)["metadata"]["labels"]
            assert labels[SHARD_LABEL] == str(shard_of(cluster.namespace, name, 2)), labels
    finally:
        group.processes["replica-a"].stop()
        proxy.stop()


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
    wait_promoted(cluster, names)
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
    wait_promoted(cluster, names)
    assert_each_step_once(cluster, names, GATED)
