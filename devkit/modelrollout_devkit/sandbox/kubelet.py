"""A simulated kubelet for a real control plane (as kwok does), running each pod as a local process.

The real controller manager makes the ReplicaSets and Pods, the real scheduler binds them to the Node
this kubelet registers; the kubelet watches the pods bound to its Node and, for each:

* starts the reference model server on a free loopback port (:class:`~modelrollout_devkit.sandbox.workloads.PodRunner`:
  the first container's ``value`` env, restarts with back-off, the readiness probe's ``httpGet.path``);
* gives it an address from the pod range (``10.244.N.0/24``, one ``/24`` per Node), which exists only in
  the API: the API server refuses loopback addresses in EndpointSlices, and traffic must never leave the
  machine. :class:`~modelrollout_devkit.sandbox.registry.PodRegistry` maps each address to the loopback port;
* reports it through ``pods/status`` as a kubelet does: phase, ``podIP``/``hostIP``, the ``Ready`` and
  ``ContainersReady`` conditions from the readiness probe, ``containerStatuses`` with ``ready``,
  ``restartCount`` and ``waiting: CrashLoopBackOff`` while it backs off;
* when the pod has a ``deletionTimestamp``: stops the process (SIGTERM, SIGKILL after the grace period),
  then deletes the pod with grace 0, as a kubelet confirms a pod's termination;
* a Job's pod (owned by a Job) runs the model server with its first container's ``args`` (e.g.
  ``--evaluate``) under its ``restartPolicy``; once it exits, ``phase`` is ``Succeeded`` or ``Failed`` and the
  container's ``terminated`` state carries the termination message the process wrote to
  ``$TERMINATION_MESSAGE_PATH`` (a file standing for ``/dev/termination-log``), so the real Job controller
  completes the Job as in a cluster;
* a shadow comparator's pod (``app.kubernetes.io/component: comparator``, which the operator deploys for a
  mirror step with ``compare``) runs ``python -m modelrollout.comparator.serve`` instead, and the kubelet
  plays cluster DNS for it: an env value ``http://<service>.<namespace>.svc[.cluster.local][:port]`` becomes
  the data plane's ``<data plane>/<namespace>/<service>`` (:attr:`SandboxKubelet.dataplane_url`).

It serves only pods bound to its own Node and in the namespaces it was given (patterns, as
``modelrollout run --namespace``; none: all), so sandboxes sharing an API server leave each other's pods
alone. Its Node is deleted when it stops.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import ipaddress
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from modelrollout.kube.api import ApiError
from modelrollout.kube.comparator import COMPARATOR_LABEL, COMPONENT, COMPONENT_LABEL
from modelrollout_devkit.sandbox import procs
from modelrollout_devkit.sandbox.kube import NODES, PODS, Informer, Obj, cancel_and_wait, key_of
from modelrollout_devkit.sandbox.registry import Pod, PodRegistry
from modelrollout_devkit.sandbox.status_writer import CoalescingStatusWriter, ObjectKey, with_transition_times
from modelrollout_devkit.sandbox.workloads import (
    MODEL_SERVER_MODULE,
    LocalPodHost,
    PodRunner,
    SimulatorOptions,
    readiness_path,
)

log = logging.getLogger("modelrollout_devkit.sandbox.kubelet")

COMPARATOR_MODULE = "modelrollout.comparator.serve"
_SERVICE_URL = re.compile(r"^http://([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?(?::\d+)?(/.*)?$")


def is_comparator(labels: dict[str, str]) -> bool:
    return labels.get(COMPONENT_LABEL) == COMPONENT and COMPARATOR_LABEL in labels


def through_dataplane(env: dict[str, str], dataplane_url: str) -> dict[str, str]:
    """In-cluster Service URLs in a pod's env, sent through the data plane instead (the sandbox's DNS)."""
    if not dataplane_url:
        return env
    mapped = {}
    for name, value in env.items():
        match = _SERVICE_URL.match(value)
        mapped[name] = (
            f"{dataplane_url.rstrip('/')}/{match.group(2)}/{match.group(1)}{match.group(3) or ''}" if match else value
        )
    return mapped


POD_RANGE = ipaddress.ip_network("10.244.0.0/16")
NODE_LABEL = "modelrollout.io/sandbox-node"
#: What a Node offers the scheduler: room for every pod a sandbox may run.
CAPACITY = {"cpu": "64", "memory": "256Gi", "pods": "250"}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _stamp(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds if seconds is not None else time.time()))


#: As a kubelet: a termination message is cut at 4096 bytes.
TERMINATION_MESSAGE_BYTES = 4096
#: FallbackToLogsOnError: the last lines of the log, as a kubelet takes them.
FALLBACK_LOG_LINES = 80


def _termination_message(state: _PodState, log_path: str, exit_code: int | None) -> str:
    """The first container's termination message: its file, else (FallbackToLogsOnError, on failure) its log's tail."""
    if state.termination_log is None:
        return ""
    with contextlib.suppress(OSError):
        text = state.termination_log.read_bytes()[:TERMINATION_MESSAGE_BYTES].decode(errors="replace")
        if text:
            return text
    policy = (state.containers[0] or {}).get("terminationMessagePolicy") if state.containers else None
    if policy == "FallbackToLogsOnError" and exit_code not in (None, 0):
        with contextlib.suppress(OSError):
            lines = Path(log_path).read_text(errors="replace").splitlines()[-FALLBACK_LOG_LINES:]
            return "\n".join(lines)[-TERMINATION_MESSAGE_BYTES:]
    return ""


def node_subnet(node: str) -> ipaddress.IPv4Network:
    """The node's /24 of the pod range, from its name: sandboxes sharing a server rarely collide, and a
    collision is harmless (each sandbox maps only its own pods' addresses)."""
    index = 1 + int(hashlib.sha256(node.encode()).hexdigest(), 16) % 254
    return ipaddress.IPv4Network(f"10.244.{index}.0/24")


class AddressPool:
    """Pod addresses of one /24: .1 is the node's own (hostIP), pods get .2-.254 in turn. An address
    given back goes to the end of the line, so that it is not handed out again while EndpointSlices
    may still list it for the pod that had it."""

    def __init__(self, subnet: ipaddress.IPv4Network) -> None:
        hosts = list(subnet.hosts())
        self.host_ip = str(hosts[0])
        self._free = [str(address) for address in hosts[1:]]
        self._used: set[str] = set()

    def take(self, wanted: str = "") -> str | None:
        """A free address (``wanted`` when it is free: a pod keeps its address across our restarts)."""
        if wanted and wanted in self._free:
            self._free.remove(wanted)
            self._used.add(wanted)
            return wanted
        if not self._free:
            return None
        address = self._free.pop(0)
        self._used.add(address)
        return address

    def give_back(self, address: str) -> None:
        if address in self._used:
            self._used.discard(address)
            self._free.append(address)


@dataclass
class _PodState:
    runner: PodRunner
    uid: str
    containers: list[dict[str, Any]]
    #: condition type -> (status, lastTransitionTime): times move only when a status flips
    since: dict[str, tuple[str, str]] = field(default_factory=dict)
    start_time: str = field(default_factory=_now)
    last_written: dict[str, Any] | None = None
    deleting: bool = False
    #: A Job's pod: the local file standing for its first container's terminationMessagePath.
    termination_log: Path | None = None


class SandboxKubelet(LocalPodHost):
    """Registers ``node`` and runs the pods the scheduler binds to it. ``await start()`` returns once
    the Node is Ready and the pods are listed; ``await stop()`` stops every process and deletes the Node."""

    def __init__(
        self,
        kubeconfig: str | Path,
        registry: PodRegistry,
        workdir: str | Path,
        options: SimulatorOptions | None = None,
        *,
        node: str,
        namespaces: Sequence[str] = (),
    ) -> None:
        super().__init__(kubeconfig, registry, workdir, options)
        self.node = node
        self.namespaces = tuple(namespaces)
        self.addresses = AddressPool(node_subnet(node))
        self._pods: dict[tuple[str, str], _PodState] = {}
        #: Where the data plane listens, once it does (set by the sandbox): comparator pods call Services there.
        self.dataplane_url = ""
        self._status_writer = CoalescingStatusWriter(
            self._write_status, log, describe=lambda key: f"pod {key[0]}/{key[1]}"
        )

    def owns(self, namespace: str) -> bool:
        return not self.namespaces or any(fnmatch.fnmatchcase(namespace, pattern) for pattern in self.namespaces)

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self, timeout: float = 30.0) -> None:
        raw = await self._connect()
        assert self._api is not None
        await self.register_node()
        informer = Informer(
            self._api, raw, PODS, self._on_event, field_selector=f"spec.nodeName={self.node}", name="pods"
        )
        await self._run(informer, self._status_writer, "pod", timeout)

    async def stop(self) -> None:
        """Stop watching (no new pods), stop every process, then take the Node away: the scheduler
        must not bind pods to a node nobody plays."""
        await cancel_and_wait(self._tasks)
        for key in list(self._pods):
            self._stop_later(key, delete=False)
        await self._finish_background()
        if self._api is not None:
            with contextlib.suppress(ApiError, aiohttp.ClientError, OSError):
                await self._api.delete(NODES, None, self.node)
        await self._close()

    async def register_node(self) -> None:
        """Create the Node (or take over ours from an earlier run), lift the not-ready taint the API
        server gives every new Node (no node-lifecycle controller runs to lift it), report it Ready."""
        assert self._api is not None
        labels = {"kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux", NODE_LABEL: "true"}
        await self._api.create_or_get(NODES, None, {"metadata": {"name": self.node, "labels": labels}, "spec": {}})
        await self._api.merge_patch(NODES, None, self.node, {"spec": {"taints": None}})
        now = _now()
        status = {
            "capacity": CAPACITY,
            "allocatable": CAPACITY,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "simulated by the modelrollout sandbox",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.addresses.host_ip},
                {"type": "Hostname", "address": self.node},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.36.2-sandbox",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "sandbox://local-processes",
                "kernelVersion": "",
                "osImage": "modelrollout sandbox",
                "kubeProxyVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }
        await self._api.merge_patch(NODES, None, self.node, {"status": status}, subresource="status")

    # --- pods -------------------------------------------------------------------------------------

    async def _on_event(self, kind: str, obj: Obj) -> None:
        key = key_of(obj)
        namespace = key[0]
        if not self.owns(namespace):
            return  # another sandbox's (or nobody's) pod: not ours to run or to report
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        state = self._pods.get(key)
        if state is not None and state.uid != uid:
            # Deleted and made again under the same name while we were not looking: another pod.
            self._stop_later(key, delete=False)
            state = None
        if kind == "DELETED":
            if state is not None:
                self._stop_later(key, delete=False)
            return
        if meta.get("deletionTimestamp"):
            if state is None:
                self._delete_later(key, uid)  # never ran here (or we restarted): just confirm
            elif not state.deleting:
                self._stop_later(key, delete=True)
            return
        phase = (obj.get("status") or {}).get("phase")
        if state is None and phase not in ("Succeeded", "Failed"):
            self._start_pod(obj)

    def _start_pod(self, obj: Obj) -> None:
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        namespace, name = key_of(obj)
        containers = list(spec.get("containers") or [{}])
        first = containers[0] or {}
        address = self.addresses.take(str((obj.get("status") or {}).get("podIP") or ""))
        if address is None:
            log.error("pod %s/%s: no free address in %s", namespace, name, node_subnet(self.node))
            return
        labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        owners = meta.get("ownerReferences") or [{}]
        # The owner is the ReplicaSet `<deployment>-<pod-template-hash>`: the registry (and Prometheus's
        # `deployment` label) names the Deployment, as on the emulator.
        owner, template_hash = str(owners[0].get("name") or ""), labels.get("pod-template-hash", "")
        if template_hash and owner.endswith(f"-{template_hash}"):
            owner = owner[: -len(template_hash) - 1]
        pod = Pod(
            namespace=namespace,
            deployment=owner,
            name=name,
            labels=labels,
            host=self.options.host,
            port=procs.free_port(self.options.host),
            template_hash=template_hash,
            log_path=str(self.log_dir / f"{namespace}_{name}.log"),
            ip=address,
            uid=str(meta.get("uid") or ""),
        )
        env = self.container_env(first)
        args: tuple[str, ...] = ()
        termination_log = None
        if any(owner.get("kind") == "Job" for owner in owners):
            # A Job's pod runs to completion: the model server with the container's args (its entry
            # point, e.g. --evaluate), and its termination message from a file of its own.
            args = tuple(str(arg) for arg in first.get("args") or [])
            termination_log = self.log_dir / f"{namespace}_{name}.termination-log"
            termination_log.unlink(missing_ok=True)
            env["TERMINATION_MESSAGE_PATH"] = str(termination_log)
        module = MODEL_SERVER_MODULE
        if is_comparator(labels):
            module = COMPARATOR_MODULE
            env = through_dataplane(env, self.dataplane_url)
        runner = PodRunner(
            pod=pod,
            env=env,
            readiness_path=readiness_path(first),
            sim=self,
            restart_policy=str(spec.get("restartPolicy") or "Always"),
            args=args,
            module=module,
        )
        self._pods[(namespace, name)] = _PodState(runner, pod.uid, containers, termination_log=termination_log)
        self.registry.add(pod)
        runner.start()
        self._status_writer.mark((namespace, name))
        log.info("pod %s/%s started: %s -> %s", namespace, name, pod.ip, pod.address)

    def _stop_later(self, key: tuple[str, str], *, delete: bool) -> None:
        state = self._pods.get(key)
        if state is None:
            return
        state.deleting = True
        if not delete:
            self._pods.pop(key, None)
        self._spawn(self._stop_pod(key, state, delete), f"stop {key[1]}")

    async def _stop_pod(self, key: tuple[str, str], state: _PodState, delete: bool) -> None:
        try:
            await state.runner.stop()
        finally:
            self.registry.remove(state.runner.pod)
            self.addresses.give_back(state.runner.pod.ip)
        if delete:
            await self._confirm_deletion(key, state.uid)
            if self._pods.get(key) is state:
                del self._pods[key]

    def _delete_later(self, key: tuple[str, str], uid: str) -> None:
        self._spawn(self._confirm_deletion(key, uid), f"delete {key[1]}")

    async def _confirm_deletion(self, key: tuple[str, str], uid: str) -> None:
        """The kubelet's last word on a pod: its containers are gone, the object may go (grace 0)."""
        assert self._api is not None
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            await self._api.request("DELETE", PODS.path(key[0], key[1]), body)
        except ApiError as error:
            if error.status not in (404, 409):  # gone already, or another pod by that name now
                log.warning("deleting pod %s/%s: %s", *key, error)
        except (aiohttp.ClientError, OSError) as error:
            log.warning("deleting pod %s/%s: %s", *key, error)

    def pod_changed(self, pod: Pod) -> None:
        self.registry.changed()
        self._status_writer.mark((pod.namespace, pod.name))

    # --- status -----------------------------------------------------------------------------------

    def compute_status(self, state: _PodState) -> dict[str, Any]:
        """What a kubelet reports for this pod now (condition times are filled in when written)."""
        pod = state.runner.pod
        ready = pod.ready and pod.state == "running"
        if pod.state == "exited":
            phase = "Succeeded" if pod.last_exit_code == 0 else "Failed"
        elif pod.state == "starting":
            phase = "Pending"
        else:
            phase = "Running"
        last_state: dict[str, Any] = {}
        if pod.last_exit_code is not None:
            last_state = {
                "terminated": {
                    "exitCode": pod.last_exit_code,
                    "reason": "Completed" if pod.last_exit_code == 0 else "Error",
                }
            }
        if pod.state == "running":
            container_state: dict[str, Any] = {"running": {"startedAt": _stamp(pod.started_at)}}
        elif pod.state == "backoff":
            delay = pod.backoffs[-1] if pod.backoffs else 0
            container_state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay:g}s restarting failed container of pod {pod.namespace}/{pod.name}",
                }
            }
        elif pod.state == "exited":
            container_state, last_state = last_state, {}
            message = _termination_message(state, pod.log_path, pod.last_exit_code)
            if message:
                container_state["terminated"]["message"] = message
        else:
            container_state = {"waiting": {"reason": "ContainerCreating"}}
        statuses = [
            {
                "name": str(container.get("name") or f"container-{index}"),
                "image": str(container.get("image") or "reference-model-server"),
                "imageID": "",
                "containerID": f"sandbox://{pod.pid}" if pod.pid else "",
                "ready": ready,
                "started": pod.state == "running",
                "restartCount": pod.restarts,
                "state": container_state,
                "lastState": last_state,
            }
            for index, container in enumerate(state.containers)
        ]
        flag = "True" if ready else "False"
        conditions = [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": flag},
            {"type": "Ready", "status": flag},
        ]
        return {
            "phase": phase,
            "hostIP": self.addresses.host_ip,
            "hostIPs": [{"ip": self.addresses.host_ip}],
            "podIP": pod.ip,
            "podIPs": [{"ip": pod.ip}],
            "startTime": state.start_time,
            "conditions": conditions,
            "containerStatuses": statuses,
        }

    async def _write_status(self, key: ObjectKey) -> None:
        state = self._pods.get(key)
        if state is None or state.deleting:
            return  # a pod going away keeps its last status; the endpoints drop it on deletion
        status = self.compute_status(state)
        if status == state.last_written:
            return
        body = {**status, "conditions": with_transition_times(status["conditions"], state.since, _now())}
        assert self._api is not None
        # A merge patch replaces the lists whole: conditions and containerStatuses are always complete.
        await self._api.merge_patch(PODS, key[0], key[1], {"status": body}, subresource="status")
        state.last_written = status
        self.status_writes += 1

    # --- for tests and the CLI --------------------------------------------------------------------

    def pod(self, namespace: str, name: str) -> Pod | None:
        state = self._pods.get((namespace, name))
        return state.runner.pod if state is not None else None
