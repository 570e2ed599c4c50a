"""Fixtures for the fault-injection tests: an API server whose answers to the operator a test can
spoil (the real control plane behind a fault-injecting proxy, else an emulator with the same fault
rules), operators as their own processes (restartable, several at once), pods whose readiness a
test can hold back, and recorders of what the cluster went through."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.rest import ApiException

from modelrollout import GROUP
from modelrollout_devkit.emulator.server import EmulatorServer, ThreadedEmulator
from tests.support.cluster import Cluster, DeploymentController, PodKubelet, crd_documents, test_cluster
from tests.support.control_plane import RealControlPlane
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import PrometheusServer
from tests.support.recording_proxy import RecordingProxy

VERSION_LABEL = f"{GROUP}/version"
ROLLOUT_LABEL = f"{GROUP}/rollout"


def replicas_by_version(cluster: Cluster, rollout: str) -> dict[str, int]:
    """spec.replicas of one rollout's Deployments, by model version."""
    found: dict[str, int] = {}
    for deployment in cluster.deployments().values():
        labels = deployment.metadata.labels or {}
        if labels.get(ROLLOUT_LABEL) == rollout:
            version = labels.get(VERSION_LABEL, "")
            found[version] = found.get(version, 0) + (deployment.spec.replicas or 0)
    return found


@dataclass
class Faulty:
    """A namespace on an API server whose answers to the operator a test can spoil: the real control
    plane behind a proxy that injects the faults (only the operator's requests pass through it), or
    an emulator of this test's own that injects them itself (every client's requests)."""

    cluster: Cluster
    emulator: ThreadedEmulator | None = None
    proxy: RecordingProxy | None = None

    def inject(self, status: int, **kwargs: Any) -> None:
        if self.proxy is not None:
            self.proxy.faults.add(status, **kwargs)
        else:
            assert self.emulator is not None
            self.emulator.call(lambda server: server.inject_faults(status, **kwargs))

    def injected(self) -> dict[int, int]:
        """How many requests each fault status failed so far."""
        if self.proxy is not None:
            rules = [(rule.status, rule.injected) for rule in self.proxy.faults.rules]
        else:
            assert self.emulator is not None
            rules = self.emulator.call(
                lambda server: [(rule.status, rule.injected) for rule in server.emulator.faults.rules]
            )
        counts: dict[int, int] = {}
        for status, injected in rules:
            counts[status] = counts.get(status, 0) + injected
        return counts

    def clear_faults(self) -> None:
        if self.proxy is not None:
            self.proxy.faults.rules.clear()
        else:
            assert self.emulator is not None
            self.emulator.call(lambda server: server.clear_faults())

    def another_namespace(self) -> Cluster:
        """A second namespace on the same API server (the operator's requests there pass the same way)."""
        given = self.cluster
        other = Cluster(
            given.kubeconfig,
            f"mro-{uuid.uuid4().hex[:8]}",
            emulated=given.emulated,
            operator_kubeconfig=given.operator_kubeconfig,
            node=given.node,
        )
        other.core.create_namespace({"metadata": {"name": other.namespace}})
        return other


@pytest.fixture
def faulty(tmp_path: Path, control_plane: RealControlPlane | None) -> Iterator[Faulty]:
    if control_plane is not None:
        with test_cluster(tmp_path, control_plane) as cluster:
            token = yaml.safe_load(control_plane.operator_kubeconfig.read_text())["users"][0]["user"]["token"]
            proxy = RecordingProxy(control_plane.plane.server, ca_file=control_plane.plane.ca_file, token=token).start()
            try:
                cluster.operator_kubeconfig = proxy.write_kubeconfig(tmp_path / "operator-via-proxy.kubeconfig")
                yield Faulty(cluster, proxy=proxy)
            finally:
                proxy.stop()
        return
    emulator = ThreadedEmulator(EmulatorServer(crds=crd_documents(), history_size=20_000))
    emulator.start()
    try:
        kubeconfig = emulator.server.write_kubeconfig(tmp_path / "kubeconfig")
        cluster = Cluster(kubeconfig, f"mro-{uuid.uuid4().hex[:8]}", emulated=True)
        cluster.core.create_namespace({"metadata": {"name": cluster.namespace}})
        yield Faulty(cluster, emulator=emulator)
        cluster.api_client.close()
    finally:
        emulator.stop()


@pytest.fixture
def cluster(faulty: Faulty) -> Cluster:
    return faulty.cluster


class HeldDeploymentController(DeploymentController):
    """Like DeploymentController, but the versions in `held` get no more ready pods than they have
    (pods that take long to start) until released."""

    def __init__(self, cluster: Cluster, interval: float = 0.1):
        super().__init__(cluster, interval)
        self.held: set[str] = set()

    def ready_for(self, version: str, wanted: int, ready_now: int) -> int:
        return min(ready_now, wanted) if version in self.held else wanted


def pods_for(cluster: Cluster) -> HeldDeploymentController | PodKubelet:
    """What makes a namespace's pods ready: the kubelet on the real control plane (the real
    controllers count them), the stand-in Deployment controller on the emulator. Both have `held`."""
    return PodKubelet(cluster) if cluster.node else HeldDeploymentController(cluster)


@pytest.fixture
def deployment_controller(cluster: Cluster) -> Iterator[HeldDeploymentController | PodKubelet]:
    controller = pods_for(cluster)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@dataclass
class Operators:
    """Every operator process a test starts, stopped (and their logs shown on failure) at the end."""

    cluster: Cluster
    tmp_path: Path
    default_prometheus: str | None
    started: list[OperatorProcess] = field(default_factory=list)

    def new(
        self,
        name: str = "operator",
        *,
        prometheus_url: str | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> OperatorProcess:
        operator = OperatorProcess(
            self.cluster.operator_kubeconfig,
            self.cluster.namespace,
            prometheus_url or self.default_prometheus,
            self.tmp_path / f"{name}.log",
            extra_args or (),
            env,
        )
        self.started.append(operator)
        return operator


@pytest.fixture
def operators(
    cluster: Cluster, prometheus_session: PrometheusServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Operators]:
    made = Operators(cluster, tmp_path, prometheus_session.address)
    try:
        yield made
    finally:
        for operator in made.started:
            operator.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for operator in made.started:
                print(f"--- {operator.log_path.name} ---\n{operator.logs()[-6000:]}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


class Recorder:
    """Watches the namespace's Deployments and ModelRollouts from a thread and keeps every state
    seen: replica counts per model version, and status snapshots per rollout."""

    def __init__(self, cluster: Cluster):
        self._cluster = cluster
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.replicas: dict[tuple[str, str], list[int]] = {}  # (rollout, version) -> spec.replicas (-1: deleted)
        self.statuses: dict[str, list[dict[str, Any]]] = {}
        self._threads = [
            threading.Thread(target=self._watch_deployments, name="recorder-deployments", daemon=True),
            threading.Thread(target=self._watch_rollouts, name="recorder-rollouts", daemon=True),
        ]

    def start(self) -> Recorder:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _loop(self, list_call: Callable[..., Any], on_event: Callable[[str, Any], None]) -> None:
        resource_version: str | None = None
        while not self._stopping.is_set():
            watcher = kubernetes.watch.Watch()
            try:
                for event in watcher.stream(
                    list_call, self._cluster.namespace, resource_version=resource_version, timeout_seconds=1
                ):
                    obj = event["object"]
                    metadata = obj["metadata"] if isinstance(obj, dict) else obj.metadata
                    resource_version = (
                        metadata["resourceVersion"] if isinstance(metadata, dict) else metadata.resource_version
                    )
                    on_event(event["type"], obj)
                    if self._stopping.is_set():
                        watcher.stop()
            except ApiException as error:
                if error.status == 410:
                    resource_version = None
                time.sleep(0.05)
            except Exception:  # the connection dropped: watch again from where we were
                time.sleep(0.05)

    def _watch_deployments(self) -> None:
        def on_event(kind: str, deployment: Any) -> None:
            labels = deployment.metadata.labels or {}
            key = (labels.get(ROLLOUT_LABEL, ""), labels.get(VERSION_LABEL, ""))
            replicas = -1 if kind == "DELETED" else int(deployment.spec.replicas or 0)
            with self._lock:
                seen = self.replicas.setdefault(key, [])
                if not seen or seen[-1] != replicas:
                    seen.append(replicas)

        self._loop(self._cluster.apps.list_namespaced_deployment, on_event)

    def _watch_rollouts(self) -> None:
        def list_rollouts(namespace: str, **kwargs: Any) -> Any:
            return self._cluster.custom.list_namespaced_custom_object(
                GROUP, "v1alpha1", namespace, "modelrollouts", **kwargs
            )

        def on_event(kind: str, rollout: Any) -> None:
            if kind == "DELETED":
                return
            with self._lock:
                self.statuses.setdefault(rollout["metadata"]["name"], []).append(dict(rollout.get("status") or {}))

        self._loop(list_rollouts, on_event)

    def replicas_of(self, rollout: str, version: str) -> list[int]:
        """Every spec.replicas the rollout's Deployment of that version had, in order (-1: deleted)."""
        with self._lock:
            return list(self.replicas.get((rollout, version), []))

    def statuses_of(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.statuses.get(name, []))


@pytest.fixture
def recorder(cluster: Cluster) -> Iterator[Recorder]:
    made = Recorder(cluster).start()
    try:
        yield made
    finally:
        made.stop()
