"""The sandbox's pods: the processes that run, and what the data plane and Prometheus read.

On the emulator there are no Pod objects in the API: the workload simulator is the only one who knows
which processes run, so it keeps this registry, and the data plane reads endpoints from it. On a real
control plane the Pods are real API objects and the sandbox's kubelet keeps here what the API cannot
hold: each pod's address in the pod range (``ip``, only in the API) and the loopback ``host:port`` its
process really listens on. The data plane reads EndpointSlices and maps their addresses through
:meth:`PodRegistry.by_ip`; nothing ever connects to a pod-range address.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from modelrollout.vocabulary.names import VERSION_LABEL


@dataclass
class Pod:
    """One replica: a model-server process on a loopback port."""

    namespace: str
    deployment: str
    name: str
    labels: dict[str, str]
    host: str
    port: int
    ready: bool = False
    pid: int | None = None
    restarts: int = 0
    #: the back-off delays before each restart, as a kubelet's CrashLoopBackOff would wait
    backoffs: list[float] = field(default_factory=list)
    #: starting | running | backoff | terminating
    state: str = "starting"
    template_hash: str = ""
    log_path: str = ""
    version: str = field(default="")
    #: The pod's address in the API (real control plane only; never connected to).
    ip: str = ""
    uid: str = ""
    #: The last exit code of the process, for the pod's lastState (None: it has not exited).
    last_exit_code: int | None = None
    #: Wall-clock time the current process started (for the pod's state.running.startedAt).
    started_at: float | None = None

    def __post_init__(self) -> None:
        if not self.version:
            self.version = self.labels.get(VERSION_LABEL, "unknown")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def matches(self, namespace: str, selector: Mapping[str, str]) -> bool:
        """A Service's equality selector, as the endpoints controller applies it (empty selects nothing)."""
        if self.namespace != namespace or not selector:
            return False
        return all(self.labels.get(key) == value for key, value in selector.items())

    def to_dict(self) -> dict[str, object]:
        return {
            "namespace": self.namespace,
            "deployment": self.deployment,
            "name": self.name,
            "version": self.version,
            "address": self.address,
            "ip": self.ip,
            "ready": self.ready,
            "pid": self.pid,
            "restarts": self.restarts,
            "state": self.state,
            "log": self.log_path,
        }


Listener = Callable[[], None]


class PodRegistry:
    """Pods by (namespace, name), with change listeners called synchronously after each change."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], Pod] = {}
        self._by_ip: dict[str, Pod] = {}
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def changed(self) -> None:
        """Tell the listeners; called by the owner of a Pod after it mutated it."""
        for listener in list(self._listeners):
            listener()

    def add(self, pod: Pod) -> None:
        self._pods[(pod.namespace, pod.name)] = pod
        if pod.ip:
            self._by_ip[pod.ip] = pod
        self.changed()

    def remove(self, pod: Pod) -> None:
        if self._pods.pop((pod.namespace, pod.name), None) is not None:
            if pod.ip and self._by_ip.get(pod.ip) is pod:
                del self._by_ip[pod.ip]
            self.changed()

    def all(self) -> list[Pod]:
        return list(self._pods.values())

    def by_ip(self, ip: str) -> Pod | None:
        """The pod the API knows at ``ip`` (pod range), whose process listens on ``pod.address``."""
        return self._by_ip.get(ip)

    def of_deployment(self, namespace: str, deployment: str) -> list[Pod]:
        return [pod for pod in self._pods.values() if pod.namespace == namespace and pod.deployment == deployment]

    def ready_endpoints(self, namespace: str, selector: Mapping[str, str]) -> list[Pod]:
        """The ready pods a Service with this selector sends traffic to."""
        return [pod for pod in self._pods.values() if pod.ready and pod.matches(namespace, selector)]
