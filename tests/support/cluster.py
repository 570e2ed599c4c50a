"""An API server for the operator tests: the emulator by default, any real one when asked.

Set MODELROLLOUT_TEST_KUBECONFIG to a kubeconfig to run the operator and end-to-end suites against
that API server (envtest-style control plane, kind, ...). Each test then gets a fresh namespace,
deleted afterwards; the CRDs are installed if missing. Unset, an emulator is started in-process.
Clients here are the official synchronous `kubernetes` package, as a user's tooling would be.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

import kubernetes
import kubernetes.watch
import urllib3
import yaml
from kubernetes.client.rest import ApiException

from modelrollout import GROUP, PLURAL, VERSION
from tests.support.control_plane import RealControlPlane
from tests.support.deadline import Deadline

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
TEST_KUBECONFIG_ENV = "MODELROLLOUT_TEST_KUBECONFIG"
T = TypeVar("T")


def crd_documents() -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted(CRD_DIR.glob("*.yaml"))]


def external_kubeconfig() -> str | None:
    return os.environ.get(TEST_KUBECONFIG_ENV) or None


class Cluster:
    """One namespace on an API server, with the clients a test needs."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        emulated: bool,
        api_url: str | None = None,
        operator_kubeconfig: Path | None = None,
        node: str | None = None,
    ):
        self.kubeconfig = kubeconfig
        #: what the operator under test is given: on the real control plane, the Helm chart's
        #: ServiceAccount (RBAC enforced); elsewhere the same as `kubeconfig`
        self.operator_kubeconfig = operator_kubeconfig or kubeconfig
        #: the Node pods are bound to, on the real control plane (None: no pods, no scheduler)
        self.node = node
        self.api_url = api_url
        self.namespace = namespace
        self.emulated = emulated
        self.api_client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self.apps = kubernetes.client.AppsV1Api(self.api_client)
        self.custom = kubernetes.client.CustomObjectsApi(self.api_client)
        self.extensions = kubernetes.client.ApiextensionsV1Api(self.api_client)

    # --- ModelRollouts --------------------------------------------------------------------------------

    def create_rollout(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout", "metadata": {"name": name}, "spec": spec}
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return result

    def rollout(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return result

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.rollout(name).get("status") or {})

    def patch_spec(self, name: str, spec_changes: dict[str, Any]) -> None:
        """A merge patch of the spec, as `kubectl patch --type merge` sends it."""
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec_changes})

    def delete_rollout(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def rollout_names(self) -> list[str]:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        return [item["metadata"]["name"] for item in listed["items"]]

    def delete_all_rollouts(self, wait: float = 15.0) -> None:
        """Delete every ModelRollout and wait for the operator to release its finalizer."""
        for name in self.rollout_names():
            try:
                self.delete_rollout(name)
            except ApiException as error:
                if error.status != 404:
                    raise
        deadline = Deadline(wait)
        while self.rollout_names() and not deadline.expired():
            time.sleep(0.2)

    def release_finalizers(self) -> None:
        """With no operator left to do it, drop the finalizers so the namespace can go."""
        for name in self.rollout_names():
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, {"metadata": {"finalizers": None}}
            )

    def events(self, name: str, settle: float = 20.0) -> list[kubernetes.client.CoreV1Event]:
        """A rollout's Events, once every Event its status has recorded is posted.

        The operator posts Events just after the status write that records them (status names them
        in `pendingEvents` until a later write), so a test that has just seen a status waits, as a
        user refreshing `kubectl get events` would, for the Events that status speaks of."""
        deadline = Deadline(settle)
        while True:
            listed = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}")
            posted = {event.metadata.name for event in listed.items}
            try:
                recorded = {event["name"] for event in self.status(name).get("pendingEvents") or []}
            except ApiException as error:
                if error.status != 404:
                    raise
                recorded = set()  # deleted: nothing more will be posted
            if recorded <= posted or deadline.expired():
                return sorted(listed.items, key=lambda event: event.metadata.creation_timestamp or 0)
            time.sleep(0.1)

    def event_reasons(self, name: str) -> list[str]:
        return [event.reason for event in self.events(name)]

    def deployments(self) -> dict[str, kubernetes.client.V1Deployment]:
        listed = self.apps.list_namespaced_deployment(self.namespace)
        return {item.metadata.name: item for item in listed.items}

    def replicas_by_version(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for deployment in self.deployments().values():
            version = deployment.metadata.labels.get(f"{GROUP}/version", "")
            found[version] = found.get(version, 0) + (deployment.spec.replicas or 0)
        return found

    @contextmanager
    def status_history(self, name: str) -> Iterator[list[dict[str, Any]]]:
        """Every status written to a rollout while the block runs, in order, from a watch.

        Polling can miss a status that lives for one pass (a step analysis's last measurement is
        written in the same pass that promotes and clears it); a watch sees every write."""
        history: list[dict[str, Any]] = []
        stopping = threading.Event()
        watch = kubernetes.watch.Watch()

        # Where the watch starts is fixed here, before the block runs: listed in the thread, it
        # could come after the block's first writes (a slow thread on a loaded machine), which the
        # history would then lack.
        start = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)["metadata"][
            "resourceVersion"
        ]

        def follow() -> None:
            version = start
            while not stopping.is_set():
                try:
                    for change in watch.stream(
                        self.custom.list_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        self.namespace,
                        PLURAL,
                        resource_version=version,
                        timeout_seconds=5,
                    ):
                        if change is None:
                            # The client yields None for a line it could not read (one cut short):
                            # watch again from the last version seen, which delivers that event again.
                            break
                        found = change["object"]
                        version = found["metadata"]["resourceVersion"]
                        if found["metadata"]["name"] == name and found.get("status"):
                            history.append(found["status"])
                        if stopping.is_set():
                            return
                except urllib3.exceptions.HTTPError:
                    continue  # the stream was cut short: watch again from the last version seen
                except ApiException:
                    time.sleep(0.2)  # e.g. 410 Gone: go on from the newest version listed
                    version = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)[
                        "metadata"
                    ]["resourceVersion"]

        follower = threading.Thread(target=follow, name=f"watch-{name}", daemon=True)
        follower.start()
        try:
            yield history
        finally:
            stopping.set()
            watch.stop()
            follower.join(timeout=10)

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2) -> T:
        """Poll until `probe` returns something truthy; fail naming what was awaited."""
        deadline = Deadline(timeout)
        last: Any = None
        while not deadline.expired():
            try:
                last = probe()
            except ApiException as error:
                last = error  # an API server under injected faults: ask again (an exception is truthy)
            else:
                if last:
                    return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {deadline.describe()} waiting for {what}; last seen: {last!r}")

    def wait_for_phase(self, name: str, phase: str, timeout: float = 60.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") == phase else None

        try:
            return self.wait_for(f"{name} to reach {phase}", probe, timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}\nstatus: {self.status(name)}") from None


class _Poller:
    """A thread that calls `sync()` every `interval` until stopped, shrugging off API errors (the
    next round sees the newer state)."""

    def __init__(self, cluster: Cluster, interval: float, name: str):
        self._cluster = cluster
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.sync()
            except (ApiException, urllib3.exceptions.HTTPError):
                continue

    def sync(self) -> None:
        raise NotImplementedError


class DeploymentController(_Poller):
    """Plays the Deployment controller and kubelet on a node-less API server: it reports every
    Deployment's requested replicas as ready, except for the revisions a test marks as broken
    (pods that never pass their readiness probe)."""

    def __init__(self, cluster: Cluster, interval: float = 0.1):
        super().__init__(cluster, interval, "deployment-controller")
        self.broken_versions: set[str] = set()

    def ready_for(self, version: str, wanted: int, ready_now: int) -> int:
        """How many of a Deployment's pods are ready: all, or none for a broken version."""
        return 0 if version in self.broken_versions else wanted

    def sync(self) -> None:
        for deployment in self._cluster.deployments().values():
            wanted = deployment.spec.replicas or 0
            version = deployment.metadata.labels.get(f"{GROUP}/version", "")
            current = deployment.status
            ready = self.ready_for(version, wanted, (current.ready_replicas or 0) if current is not None else 0)
            if (
                current is not None
                and (current.replicas or 0) == wanted
                and (current.ready_replicas or 0) == ready
                and current.observed_generation == deployment.metadata.generation
            ):
                continue
            status = {
                "observedGeneration": deployment.metadata.generation,
                "replicas": wanted,
                "updatedReplicas": wanted,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": wanted - ready,
            }
            self._cluster.apps.patch_namespaced_deployment_status(
                deployment.metadata.name, self._cluster.namespace, {"status": status}
            )


class PodKubelet(_Poller):
    """Plays the kubelet on the real control plane, for tests that need no model-server processes:
    the real controller manager makes ReplicaSets and Pods, the real scheduler binds them to the
    session's Node, and this reports each pod of the test's namespace Running, and Ready unless its
    version is in `broken_versions` (a readiness probe that never passes) or in `held` (pods that
    take long to start: not Ready until released). The Deployments' `readyReplicas` are then the
    real controllers' count. Same interface as DeploymentController."""

    def __init__(self, cluster: Cluster, interval: float = 0.1):
        assert cluster.node is not None, "PodKubelet needs the real control plane's Node"
        super().__init__(cluster, interval, "pod-kubelet")
        self.broken_versions: set[str] = set()
        self.held: set[str] = set()

    def sync(self) -> None:
        pods = self._cluster.core.list_namespaced_pod(
            self._cluster.namespace, field_selector=f"spec.nodeName={self._cluster.node}"
        )
        for pod in pods.items:
            if pod.metadata.deletion_timestamp is not None:
                # No containers to stop: the pod is gone as soon as the kubelet says so.
                with _ignore_not_found():
                    self._cluster.core.delete_namespaced_pod(
                        pod.metadata.name, self._cluster.namespace, grace_period_seconds=0
                    )
                continue
            version = (pod.metadata.labels or {}).get(f"{GROUP}/version", "")
            was_ready = _pod_ready(pod)
            if version in self.broken_versions:
                ready = False
            elif version in self.held:
                ready = was_ready
            else:
                ready = True
            if pod.status.phase == "Running" and was_ready == ready:
                continue
            with _ignore_not_found():
                self._cluster.core.patch_namespaced_pod_status(
                    pod.metadata.name, self._cluster.namespace, {"status": pod_status(pod, ready)}
                )


def pod_status(pod: Any, ready: bool) -> dict[str, Any]:
    """What a kubelet reports for a running pod whose containers are (not) ready."""
    return kubelet_pod_status(pod.metadata.uid, [(c.name, c.image) for c in pod.spec.containers], ready)


def kubelet_pod_status(uid: str, containers: list[tuple[str, str | None]], ready: bool) -> dict[str, Any]:
    """The status a kubelet reports for a running pod (`containers`: name and image), also the
    benchmark's stand-in kubelet's (bench/scale_kubelet.py)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    flag = "True" if ready else "False"
    # A stable, distinct address per pod, from the pod range: nothing routes to it.
    digest = int(uuid.UUID(uid)) % (250 * 250)
    statuses = [
        {
            "name": name,
            "image": image or "unknown",
            "imageID": "",
            "ready": ready,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": now}},
        }
        for name, image in containers
    ]
    return {
        "phase": "Running",
        "hostIP": "10.244.0.1",
        "podIP": f"10.244.{1 + digest // 250}.{1 + digest % 250}",
        "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
            {"type": "Ready", "status": flag, "lastTransitionTime": now},
        ],
        "containerStatuses": statuses,
    }


def _pod_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


@contextmanager
def _ignore_not_found() -> Iterator[None]:
    try:
        yield
    except ApiException as error:
        if error.status != 404:
            raise


@contextmanager
def test_cluster(tmp_path: Path, control_plane: RealControlPlane | None = None) -> Iterator[Cluster]:
    """A fresh namespace: on the session's real control plane when there is one, else on the API
    server MODELROLLOUT_TEST_KUBECONFIG names, else on an emulator of its own."""
    namespace = f"mro-{uuid.uuid4().hex[:8]}"
    given = external_kubeconfig()
    if control_plane is not None or given is not None:
        if control_plane is not None:
            cluster = Cluster(
                control_plane.admin_kubeconfig,
                namespace,
                emulated=False,
                operator_kubeconfig=control_plane.operator_kubeconfig,
                node=control_plane.node,
            )
        else:
            assert given is not None
            cluster = Cluster(Path(given), namespace, emulated=False)
            _install_crds(cluster)
        cluster.core.create_namespace({"metadata": {"name": namespace}})
        try:
            yield cluster
        finally:
            cluster.release_finalizers()
            cluster.core.delete_namespace(namespace)
            cluster.api_client.close()
        return
    from modelrollout_devkit.emulator.server import EmulatorServer, ThreadedEmulator

    emulator = ThreadedEmulator(EmulatorServer(crds=crd_documents()))
    emulator.start()
    try:
        kubeconfig = emulator.server.write_kubeconfig(tmp_path / "kubeconfig")
        cluster = Cluster(kubeconfig, namespace, emulated=True, api_url=emulator.url)
        cluster.core.create_namespace({"metadata": {"name": namespace}})
        yield cluster
        cluster.api_client.close()
    finally:
        emulator.stop()


def _install_crds(cluster: Cluster) -> None:
    for document in crd_documents():
        try:
            cluster.extensions.create_custom_resource_definition(document)
        except ApiException as error:
            if error.status != 409:
                raise
    cluster.wait_for(
        "the ModelRollout CRD to be established",
        lambda: any(
            condition.type == "Established" and condition.status == "True"
            for condition in (
                cluster.extensions.read_custom_resource_definition(f"{PLURAL}.{GROUP}").status.conditions or []
            )
        ),
    )


def release_namespace(cluster: Cluster) -> None:
    """On an API server the tests did not start, leave nothing behind: rollouts first (the operator,
    still running, releases its finalizer), then the namespace. An emulator of the test's own goes
    away whole; a real API server, or one MODELROLLOUT_TEST_KUBECONFIG names, outlives the test."""
    if cluster.emulated and external_kubeconfig() is None:
        return
    cluster.delete_all_rollouts()
    cluster.release_finalizers()
    cluster.core.delete_namespace(cluster.namespace)
