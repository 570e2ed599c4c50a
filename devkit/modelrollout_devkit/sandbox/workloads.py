"""The workload simulator: the Deployment controller and the kubelet for the sandbox's model servers,
for the emulator (which has no controllers). On a real control plane the real controller manager makes
ReplicaSets and Pods and :mod:`modelrollout_devkit.sandbox.kubelet` plays only the kubelet; both run each pod
with :class:`PodRunner` (process, restarts with back-off, readiness probe) and host the pods as a
:class:`LocalPodHost`, both defined here.

For every Deployment labelled ``app.kubernetes.io/managed-by=modelrollout`` (all namespaces) it runs
``spec.replicas`` processes of the reference model server, one per replica, each on its own loopback
port, and writes the Deployment's status through the ``/status`` subresource the way the real
controllers would: ``readyReplicas`` counts the processes that answer their readiness probe, so a
slow-to-load or crash-looping version is seen exactly as in a cluster.

What a pod gets: the env of the pod template's first container (``value`` entries; ``valueFrom`` is
not resolved), plus ``PORT``/``HOST`` (the loopback port) and ``MODEL_CACHE_DIR``. The container's
image and command are ignored: every pod runs ``python -m modelrollout_devkit.sandbox.model_server``.

Semantics kept from Kubernetes, and where it is simpler:

* scale up starts pods, scale down stops the newest first (taken out of the endpoints first, then
  SIGTERM, then SIGKILL after the grace period);
* a process that exits is restarted in place after an exponential back-off (CrashLoopBackOff: base
  1 s doubling to 20 s here, reset after 10 s of running), and is unready meanwhile;
* readiness is the template's ``readinessProbe.httpGet.path`` (default ``/ready``) answering 200,
  polled every 0.5 s; a process that exits is unready at once;
* a changed pod template replaces every pod at once (like ``strategy: Recreate``): the operator makes
  a Deployment per revision, so its templates do not change in place.

It only uses list/watch and merge patches on ``/status``, so it works against any API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from kubernetes_asyncio import client

from modelrollout.kube.api import DEPLOYMENTS, KubeApi
from modelrollout.vocabulary.names import MANAGED_BY, MANAGED_BY_LABEL
from modelrollout_devkit.sandbox import procs
from modelrollout_devkit.sandbox.kube import Informer, Obj, cancel_and_wait, connect, key_of
from modelrollout_devkit.sandbox.registry import Pod, PodRegistry
from modelrollout_devkit.sandbox.status_writer import CoalescingStatusWriter, ObjectKey, with_transition_times

log = logging.getLogger("modelrollout_devkit.sandbox.workloads")

MODEL_SERVER_MODULE = "modelrollout_devkit.sandbox.model_server"
DEFAULT_READINESS_PATH = "/ready"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"


@dataclass(frozen=True)
class SimulatorOptions:
    """Timings of the simulated kubelet; the defaults favour a quick sandbox over fidelity."""

    python: str = sys.executable
    probe_interval: float = 0.5
    probe_timeout: float = 1.0
    backoff_base: float = 1.0
    backoff_cap: float = 20.0
    #: A process that ran this long before exiting starts again from the base back-off.
    backoff_reset_after: float = 10.0
    #: Between leaving the endpoints and SIGTERM, so that the data plane stops picking the pod first.
    drain_delay: float = 0.1
    termination_grace: float = 5.0
    host: str = "127.0.0.1"


def _template_hash(template: dict[str, Any]) -> str:
    """Like pod-template-hash: names the pods of one template."""
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _first_container(template: dict[str, Any]) -> dict[str, Any]:
    containers = (template.get("spec") or {}).get("containers") or [{}]
    first: dict[str, Any] = containers[0] or {}
    return first


def readiness_path(container: dict[str, Any]) -> str:
    """The path the readiness probe polls: the container's ``readinessProbe.httpGet.path``."""
    return str(((container.get("readinessProbe") or {}).get("httpGet") or {}).get("path") or DEFAULT_READINESS_PATH)


def _max_unavailable(spec: dict[str, Any], desired: int) -> int:
    """strategy.rollingUpdate.maxUnavailable (default 25%, rounded down), 0 for Recreate."""
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0
    raw = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(raw, str) and raw.endswith("%"):
        try:
            return int(desired * int(raw[:-1]) / 100)
        except ValueError:
            return 0
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


class PodHost(Protocol):
    """What a :class:`PodRunner` needs from whoever runs it (the simulator or the kubelet)."""

    options: SimulatorOptions
    cache_ready: asyncio.Event

    @property
    def http(self) -> aiohttp.ClientSession: ...

    def pod_changed(self, pod: Pod) -> None: ...


async def warm_model_cache(python: str, env: dict[str, str], log_path: Path) -> None:
    """Train the model variants once, so that every pod starts in well under a second."""
    started = time.monotonic()
    process = await procs.spawn([python, "-m", MODEL_SERVER_MODULE, "--warm-cache"], env=env, log_path=log_path)
    try:
        code = await process.wait()
    except asyncio.CancelledError:
        await procs.terminate(process, 2.0)
        raise
    if code != 0:
        log.warning("warming the model cache failed (exit %s): each pod trains its own model", code)
    else:
        log.info("model cache warm in %.1fs", time.monotonic() - started)


@dataclass
class PodRunner:
    """One pod's lifecycle: its process, restarts with back-off, and the readiness probe.

    ``restart_policy`` as a pod's: ``Always`` (a Deployment's pods) restarts every exit, ``OnFailure``
    only non-zero ones, ``Never`` none; a process that is not restarted leaves ``pod.state`` ``exited``.
    """

    pod: Pod
    env: dict[str, str]
    readiness_path: str
    sim: PodHost
    restart_policy: str = "Always"
    #: Arguments after ``python -m <model server>`` (a Job's container's ``args``, e.g. ``--evaluate``).
    args: tuple[str, ...] = ()
    #: What the pod runs: the reference model server, or (a shadow comparator's pod) the comparator.
    module: str = MODEL_SERVER_MODULE
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    created: float = field(default_factory=time.monotonic)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"pod {self.pod.namespace}/{self.pod.name}")

    async def stop(self) -> None:
        """Leave the endpoints, then terminate the process and wait for the runner to end."""
        if not self.stopping.is_set():
            self.stopping.set()
            self._set(ready=False, state="terminating")
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def _set(self, *, ready: bool | None = None, state: str | None = None) -> None:
        changed = False
        if ready is not None and ready != self.pod.ready:
            self.pod.ready = ready
            changed = True
        if state is not None and state != self.pod.state:
            self.pod.state = state
            changed = True
        if changed:
            self.sim.pod_changed(self.pod)

    async def _run(self) -> None:
        opts = self.sim.options
        crashes = 0
        try:
            await self.sim.cache_ready.wait()
            while not self.stopping.is_set():
                if crashes:
                    delay = min(opts.backoff_cap, opts.backoff_base * 2 ** (crashes - 1))
                    self.pod.backoffs.append(delay)
                    self._set(state="backoff")
                    log.info(
                        "pod %s/%s: back-off %.1fs (restart %d)",
                        self.pod.namespace,
                        self.pod.name,
                        delay,
                        self.pod.restarts,
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), delay)
                    if self.stopping.is_set():
                        break
                started = time.monotonic()
                exit_code = await self._run_once()
                if exit_code is None:  # stopped on purpose
                    break
                ran = time.monotonic() - started
                self.pod.last_exit_code = exit_code
                self.pod.pid = None
                if self.restart_policy == "Never" or (self.restart_policy == "OnFailure" and exit_code == 0):
                    self._set(ready=False, state="exited")
                    self.sim.pod_changed(self.pod)
                    break
                crashes = 1 if ran >= opts.backoff_reset_after else crashes + 1
                self.pod.restarts += 1
                self._set(ready=False, state="backoff")
                log.info("pod %s/%s exited with %s after %.1fs", self.pod.namespace, self.pod.name, exit_code, ran)
        finally:
            if self.process is not None and self.process.returncode is None:
                await procs.terminate(self.process, opts.termination_grace)
            self.pod.pid = None

    async def _run_once(self) -> int | None:
        """Run the process until it exits (its code) or the pod is stopped (None)."""
        opts = self.sim.options
        env = {**self.env, "PORT": str(self.pod.port), "HOST": self.pod.host}
        self.process = await procs.spawn(
            [opts.python, "-m", self.module, *self.args], env=env, log_path=Path(self.pod.log_path)
        )
        self.pod.pid = self.process.pid
        self.pod.started_at = time.time()
        self._set(state="running")
        self.sim.pod_changed(self.pod)
        exited = asyncio.create_task(self.process.wait())
        stop = asyncio.create_task(self.stopping.wait())
        probe = asyncio.create_task(self._probe_loop())
        try:
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe
        if exited.done():
            stop.cancel()
            return exited.result()
        exited.cancel()
        # Stopped on purpose: out of the endpoints already; let in-flight requests finish.
        await asyncio.sleep(opts.drain_delay)
        await procs.terminate(self.process, opts.termination_grace)
        return None

    async def _probe_loop(self) -> None:
        opts = self.sim.options
        url = f"http://{self.pod.host}:{self.pod.port}{self.readiness_path}"
        timeout = aiohttp.ClientTimeout(total=opts.probe_timeout)
        while True:
            ok = False
            try:
                async with self.sim.http.get(url, timeout=timeout) as response:
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError, OSError):
                ok = False
            if not self.stopping.is_set():
                self._set(ready=ok)
            await asyncio.sleep(opts.probe_interval)


class LocalPodHost:
    """What the workload simulator and the kubelet share as hosts of :class:`PodRunner`: the two play
    different controllers, but run their pods the same way. So they share where the pods' logs and the
    model cache go, the env every pod starts from, warming the cache, the HTTP session the readiness
    probes use, the API connection, and the tasks that outlive the event that started them (stopping a
    pod, confirming a deletion), which :meth:`_finish_background` waits for so that none is cut short."""

    def __init__(
        self,
        kubeconfig: str | Path,
        registry: PodRegistry,
        workdir: str | Path,
        options: SimulatorOptions | None = None,
    ) -> None:
        self.kubeconfig = str(kubeconfig)
        self.registry = registry
        self.workdir = Path(workdir)
        self.options = options or SimulatorOptions()
        self.cache_dir = self.workdir / "model-cache"
        self.log_dir = self.workdir / "logs" / "pods"
        self.cache_ready = asyncio.Event()
        self.status_writes = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._api: KubeApi | None = None
        self._raw: client.ApiClient | None = None  # the informers' watches
        self._http: aiohttp.ClientSession | None = None
        self._informer: Informer | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, f"the {type(self).__name__} is not started"
        return self._http

    def base_env(self) -> dict[str, str]:
        return {**procs.base_env(), "MODEL_CACHE_DIR": str(self.cache_dir), "PYTHONUNBUFFERED": "1"}

    def container_env(self, container: dict[str, Any]) -> dict[str, str]:
        """A pod's env: :meth:`base_env` and the container's ``value`` entries (``valueFrom`` is not
        resolved: the sandbox has no Secrets or ConfigMaps to take values from)."""
        env = self.base_env()
        for item in container.get("env") or []:
            if "name" in item and "value" in item:
                env[str(item["name"])] = str(item["value"])
        return env

    async def wait_cache(self, timeout: float = 120.0) -> None:
        await asyncio.wait_for(self.cache_ready.wait(), timeout)

    async def _warm_cache(self) -> None:
        try:
            await warm_model_cache(self.options.python, self.base_env(), self.workdir / "logs" / "warm-cache.log")
        finally:
            self.cache_ready.set()

    async def _connect(self) -> client.ApiClient:
        """Open the API connection and the probes' HTTP session; the raw client is for the informer."""
        self._api, self._raw = await connect(self.kubeconfig)
        self._http = aiohttp.ClientSession()
        return self._raw

    async def _run(self, informer: Informer, status_writer: CoalescingStatusWriter, what: str, timeout: float) -> None:
        """Warm the cache, watch with ``informer`` and write status, in the background; return once the
        informer has listed (every existing ``what`` has been seen)."""
        self._informer = informer
        self._tasks = [
            asyncio.create_task(self._warm_cache(), name="warm model cache"),
            asyncio.create_task(informer.run(), name=f"{what} informer"),
            asyncio.create_task(status_writer.run(), name=f"{what} status writer"),
        ]
        await asyncio.wait_for(informer.synced.wait(), timeout)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` in the background; :meth:`_finish_background` waits for it."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _finish_background(self) -> None:
        """Wait for every background task, and for any that those spawn while they run."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _close(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._api is not None:
            await self._api.close()
        if self._raw is not None:
            await self._raw.close()


@dataclass
class _DeploymentState:
    namespace: str
    name: str
    uid: str = ""
    generation: int = 0
    desired: int = 0
    template_hash: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    pods: list[PodRunner] = field(default_factory=list)
    last_written: dict[str, Any] | None = None
    conditions_since: dict[str, tuple[str, str]] = field(default_factory=dict)


class WorkloadSimulator(LocalPodHost):
    """Runs the model-server pods of managed Deployments and reports their status.

    ``await start()`` returns once the first list is done; ``await stop()`` stops every pod.
    """

    def __init__(
        self,
        kubeconfig: str | Path,
        registry: PodRegistry,
        workdir: str | Path,
        options: SimulatorOptions | None = None,
    ) -> None:
        super().__init__(kubeconfig, registry, workdir, options)
        self._deployments: dict[tuple[str, str], _DeploymentState] = {}
        self._status_writer = CoalescingStatusWriter(self._write_status, log)

    async def start(self, timeout: float = 30.0) -> None:
        raw = await self._connect()
        assert self._api is not None
        informer = Informer(
            self._api, raw, DEPLOYMENTS, self._on_event, label_selector=MANAGED_SELECTOR, name="deployments"
        )
        await self._run(informer, self._status_writer, "deployment", timeout)

    async def stop(self) -> None:
        """Stop watching first (no new pods), then every pod, including those already stopping."""
        await cancel_and_wait(self._tasks)
        for state in self._deployments.values():
            for runner in state.pods:
                self._stop_later(runner)
        self._deployments.clear()
        await self._finish_background()
        await self._close()

    # --- the controller ---------------------------------------------------------------------------

    async def _on_event(self, kind: str, obj: Obj) -> None:
        key = key_of(obj)
        if kind == "DELETED":
            state = self._deployments.pop(key, None)
            if state is not None:
                log.info("deployment %s/%s deleted: stopping %d pods", *key, len(state.pods))
                for runner in state.pods:
                    self._stop_later(runner)
            return
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        state = self._deployments.get(key)
        uid = str(meta.get("uid") or "")
        if state is not None and state.uid != uid:
            # Deleted and made again under the same name while we were not looking: a new object.
            for runner in state.pods:
                self._stop_later(runner)
            state = None
        if state is None:
            state = self._deployments[key] = _DeploymentState(key[0], key[1], uid=uid)
        state.generation = int(meta.get("generation") or 0)
        state.spec = spec
        state.desired = max(0, int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1))
        state.template_hash = _template_hash(spec.get("template") or {})
        self._reconcile(state)
        self._status_writer.mark(key)

    def _reconcile(self, state: _DeploymentState) -> None:
        """Make the pods match the spec: replace outdated ones, then scale."""
        for runner in [r for r in state.pods if r.pod.template_hash != state.template_hash]:
            state.pods.remove(runner)
            self._stop_later(runner)
        while len(state.pods) < state.desired:
            state.pods.append(self._new_pod(state))
        while len(state.pods) > state.desired:
            runner = max(state.pods, key=lambda r: r.created)  # newest first, as the ReplicaSet does
            state.pods.remove(runner)
            self._stop_later(runner)

    def _new_pod(self, state: _DeploymentState) -> PodRunner:
        template = state.spec.get("template") or {}
        selector = ((state.spec.get("selector") or {}).get("matchLabels")) or {}
        labels = {**((template.get("metadata") or {}).get("labels") or {}), **selector}
        container = _first_container(template)
        name = f"{state.name}-{state.template_hash}-{secrets.token_hex(3)[:5]}"
        pod = Pod(
            namespace=state.namespace,
            deployment=state.name,
            name=name,
            labels={str(k): str(v) for k, v in labels.items()},
            host=self.options.host,
            port=procs.free_port(self.options.host),
            template_hash=state.template_hash,
            log_path=str(self.log_dir / f"{state.namespace}_{name}.log"),
        )
        runner = PodRunner(
            pod=pod, env=self.container_env(container), readiness_path=readiness_path(container), sim=self
        )
        self.registry.add(pod)
        runner.start()
        log.info("pod %s/%s started for %s (port %d)", pod.namespace, pod.name, state.name, pod.port)
        return runner

    def _stop_later(self, runner: PodRunner) -> None:
        self._spawn(self._stop_pod(runner), f"stop {runner.pod.name}")

    async def _stop_pod(self, runner: PodRunner) -> None:
        try:
            await runner.stop()
        finally:
            self.registry.remove(runner.pod)
            self._status_writer.mark((runner.pod.namespace, runner.pod.deployment))

    def pod_changed(self, pod: Pod) -> None:
        self.registry.changed()
        self._status_writer.mark((pod.namespace, pod.deployment))

    # --- status -----------------------------------------------------------------------------------

    def compute_status(self, state: _DeploymentState) -> dict[str, Any]:
        """The status the Deployment controller would report for these pods (without timestamps)."""
        pods = [r.pod for r in state.pods]
        updated = sum(1 for pod in pods if pod.template_hash == state.template_hash)
        ready = sum(1 for pod in pods if pod.ready)
        desired = state.desired
        available_ok = ready >= desired - _max_unavailable(state.spec, desired)
        complete = updated == desired and ready == desired and len(pods) == desired
        rs_name = f"{state.name}-{state.template_hash}"
        return {
            "observedGeneration": state.generation,
            "replicas": len(pods),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(desired - ready, 0),
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available_ok else "False",
                    "reason": "MinimumReplicasAvailable" if available_ok else "MinimumReplicasUnavailable",
                    "message": "Deployment has minimum availability."
                    if available_ok
                    else "Deployment does not have minimum availability.",
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                    "message": f'ReplicaSet "{rs_name}" has successfully progressed.'
                    if complete
                    else f'ReplicaSet "{rs_name}" is progressing.',
                },
            ],
        }

    async def _write_status(self, key: ObjectKey) -> None:
        state = self._deployments.get(key)
        if state is None:
            return
        status = self.compute_status(state)
        if status == state.last_written:
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conditions = with_transition_times(status["conditions"], state.conditions_since, now)
        body = {**status, "conditions": [{**condition, "lastUpdateTime": now} for condition in conditions]}
        assert self._api is not None
        await self._api.merge_patch(DEPLOYMENTS, state.namespace, state.name, {"status": body}, subresource="status")
        state.last_written = status
        self.status_writes += 1

    # --- for tests and the CLI --------------------------------------------------------------------

    def deployments(self) -> dict[tuple[str, str], int]:
        """(namespace, name) -> desired replicas, as the simulator sees them."""
        return {key: state.desired for key, state in self._deployments.items()}
