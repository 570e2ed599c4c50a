"""The sandbox supervisor: the API server, the operator, the workloads, the data plane and Prometheus.

The Kubernetes API is, in this order of preference: the API server a ``--kubeconfig`` names; a real
control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) the sandbox starts from
``--control-plane DIR`` or ``$KUBEBUILDER_ASSETS``; else the built-in emulator. On a real control plane
the real controllers make ReplicaSets, Pods and EndpointSlices, and the sandbox only plays the kubelet
(:mod:`modelrollout_devkit.sandbox.kubelet`); on the emulator its workload simulator plays the controllers too.

:class:`Sandbox` starts them all in one process (the emulator, the kubelet or simulator and the data plane
share its event loop; the control plane, the operator, Prometheus and the model servers are its child
processes) and stops them in order. It is an async context manager, and a sync one that runs the same loop in a
background thread (for synchronous tests and scripts)::

    with Sandbox(tmp_path / "sandbox", dataplane_port=0, prometheus_port=0) as sandbox:
        sandbox.kubeconfig, sandbox.dataplane_url, sandbox.prometheus_url, sandbox.stats()

``python -m modelrollout_devkit.sandbox.supervisor --dir D ...`` is the process ``modelrollout sandbox up``
starts in the background; it writes ``D/state.json`` (pids, ports, URLs, ``status``) for the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar

import aiohttp
import yaml

from modelrollout import GROUP, PLURAL, rbac
from modelrollout.api.crd import render_crds
from modelrollout.kube.api import CRDS, NAMESPACES, ApiError, KubeApi, Resource
from modelrollout_devkit.emulator.server import EmulatorServer
from modelrollout_devkit.sandbox import procs
from modelrollout_devkit.sandbox.arguments import add_up_arguments
from modelrollout_devkit.sandbox.control_plane import (
    NODE_SELECTOR_ANNOTATION,
    ControlPlane,
    ControlPlaneError,
    find_assets,
)
from modelrollout_devkit.sandbox.dataplane import DataPlane
from modelrollout_devkit.sandbox.kubelet import SandboxKubelet
from modelrollout_devkit.sandbox.prometheus import (
    DATAPLANE_JOB,
    OPERATOR_JOB,
    PrometheusMissing,
    SandboxPrometheus,
    find_prometheus,
)
from modelrollout_devkit.sandbox.registry import PodRegistry
from modelrollout_devkit.sandbox.routes import default_resolvers, route_crd_documents
from modelrollout_devkit.sandbox.workloads import SimulatorOptions, WorkloadSimulator

log = logging.getLogger("modelrollout_devkit.sandbox")
T = TypeVar("T")

EXIT_FAILED = 1
EXIT_PORT_TAKEN = 2
EXIT_PROMETHEUS_MISSING = 3
EXIT_ALREADY_RUNNING = 4

STATE_FILE = "state.json"
LOCK_FILE = "supervisor.lock"
KUBECONFIG_FILE = "kubeconfig"


class SandboxError(Exception):
    """A sandbox that cannot start; ``exit_code`` is what the CLI exits with."""

    exit_code = EXIT_FAILED


class PortTaken(SandboxError):
    exit_code = EXIT_PORT_TAKEN


class PrometheusNotInstalled(SandboxError):
    exit_code = EXIT_PROMETHEUS_MISSING


class AlreadyRunning(SandboxError):
    exit_code = EXIT_ALREADY_RUNNING


@dataclass(frozen=True)
class SandboxConfig:
    """Everything ``sandbox up`` takes. Port 0: pick a free one."""

    dir: Path
    kubeconfig: Path | None = None
    api_port: int = 0
    dataplane_port: int = 8000
    prometheus_port: int = 9090
    scrape_interval: float = 1.0
    operator: bool = True
    prometheus_binary: str | None = None
    resync_seconds: float = 10.0
    operator_args: tuple[str, ...] = ()
    simulator: SimulatorOptions = field(default_factory=SimulatorOptions)
    #: The control-plane binaries (envtest convention) to start a real control plane from, when no
    #: --kubeconfig is given; None: $KUBEBUILDER_ASSETS, and the emulator when that is unset too.
    control_plane: Path | None = None
    #: Never start a real control plane (the emulator), whatever $KUBEBUILDER_ASSETS says.
    emulator: bool = False
    #: The identity the operator runs as on an API server the sandbox did not start (e.g. the Helm
    #: chart's ServiceAccount); None: the --kubeconfig's own.
    operator_kubeconfig: Path | None = None
    #: The namespaces (patterns, as `modelrollout run --namespace`) this sandbox owns: its operator and
    #: kubelet act only there, so sandboxes sharing an API server leave each other alone. Empty: all.
    namespaces: tuple[str, ...] = ()
    #: The Node its kubelet registers (default: one named after the sandbox directory).
    node: str | None = None

    def to_argv(self) -> list[str]:
        """The supervisor command-line flags that recreate this config (for the daemon)."""
        argv = [
            "--dir",
            str(self.dir),
            "--api-port",
            str(self.api_port),
            "--dataplane-port",
            str(self.dataplane_port),
            "--prometheus-port",
            str(self.prometheus_port),
            "--scrape-interval",
            f"{self.scrape_interval}s",
            "--operator" if self.operator else "--no-operator",
        ]
        if self.kubeconfig is not None:
            argv += ["--kubeconfig", str(self.kubeconfig)]
        if self.control_plane is not None:
            argv += ["--control-plane", str(self.control_plane)]
        if self.emulator:
            argv.append("--emulator")
        for pattern in self.namespaces:
            argv += ["--namespace", pattern]
        return argv

    def assets(self) -> Path | None:
        """The control-plane binaries this sandbox starts a real control plane from (None: it will not)."""
        if self.kubeconfig is not None or self.emulator:
            return None
        return find_assets(self.control_plane)

    @property
    def node_name(self) -> str:
        # Named after the directory: stable across restarts of one sandbox, distinct between sandboxes.
        return self.node or f"sandbox-{hashlib.sha256(str(self.dir.resolve()).encode()).hexdigest()[:8]}"


# --- preflight -----------------------------------------------------------------------------------


def read_state(directory: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state


def recorded_process_alive(entry: dict[str, Any] | None) -> bool:
    """Whether the process a state entry names (pid + start time) still runs."""
    if not entry or not entry.get("pid"):
        return False
    pid = int(entry["pid"])
    return procs.pid_alive(pid) and procs.process_start_time(pid) == entry.get("start_time")


def running_supervisor(directory: Path) -> dict[str, Any] | None:
    """The state of the sandbox running from this directory, if one does."""
    state = read_state(directory)
    if state is not None and recorded_process_alive(state.get("supervisor")):
        return state
    return None


def preflight(config: SandboxConfig) -> None:
    """Check what can be checked before anything starts: nothing is left half-started by these."""
    if running_supervisor(config.dir) is not None or _lock_held(config.dir):
        raise AlreadyRunning(
            f"a sandbox is already running from {config.dir}; stop it with "
            f"`modelrollout sandbox down --dir {config.dir}` (or use another --dir)"
        )
    try:
        find_prometheus(config.prometheus_binary)
    except PrometheusMissing as error:
        raise PrometheusNotInstalled(f"cannot start the sandbox: {error}") from None
    ports = [(config.dataplane_port, "--dataplane-port"), (config.prometheus_port, "--prometheus-port")]
    if config.kubeconfig is None:
        ports.append((config.api_port, "--api-port"))
    for port, flag in ports:
        if port and procs.port_in_use(port):
            raise PortTaken(f"port {port} on 127.0.0.1 is taken; choose another with {flag} PORT (0: any free port)")
    if config.kubeconfig is not None and not config.kubeconfig.is_file():
        raise SandboxError(f"--kubeconfig {config.kubeconfig}: no such file")
    try:
        config.assets()
    except ControlPlaneError as error:
        raise SandboxError(str(error)) from None


def _lock_held(directory: Path) -> bool:
    path = directory / LOCK_FILE
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


# --- the operator --------------------------------------------------------------------------------


class OperatorHandle:
    """``modelrollout run`` as a child process; ``restart()``/``kill()`` for tests of resilience.

    Its methods are synchronous and thread-safe enough to call from a test while the sandbox loop runs
    in another thread.
    """

    def __init__(
        self,
        kubeconfig: Path,
        prometheus_url: str,
        log_path: Path,
        *,
        resync_seconds: float = 10.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.prometheus_url = prometheus_url
        self.log_path = log_path
        self.resync_seconds = resync_seconds
        self.extra_args = list(extra_args)
        self.metrics_port = procs.free_port()
        self.health_port = procs.free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._lock = threading.Lock()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "modelrollout.cli",
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            "--prometheus-url",
            self.prometheus_url,
            "--metrics-port",
            str(self.metrics_port),
            "--metrics-host",
            "127.0.0.1",
            "--health-endpoint",
            self.health_url,
            "--resync-seconds",
            f"{self.resync_seconds:g}",
            # The sandbox's analyses run every second or so: a minute's quiet measurements held
            # back would leave `modelrollout status` far behind them.
            "--quiet-write-seconds",
            "5",
            *self.extra_args,
        ]

    def start(self) -> None:
        with self._lock:
            if self.alive:
                return
            self.starts += 1
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as log_file:
                log_file.write(f"\n===== operator start #{self.starts} =====\n".encode())
                log_file.flush()
                env = {**os.environ, "PYTHONUNBUFFERED": "1"}
                env.pop("KUBECONFIG", None)  # --kubeconfig says which API server, nothing else
                self.process = subprocess.Popen(
                    self.command(),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                    preexec_fn=procs._die_with_parent,
                )

    def stop(self, grace: float = 15.0) -> None:
        with self._lock:
            process, self.process = self.process, None
            if process is None or process.poll() is not None:
                return
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL: no clean-up, as when a node dies."""
        with self._lock:
            process, self.process = self.process, None
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    def restart(self, wait: bool = True, timeout: float = 60.0) -> None:
        self.kill()
        self.start()
        if wait:
            self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise SandboxError(f"the operator exited during start-up; log {self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.health_url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise SandboxError(f"the operator was not healthy after {timeout:g}s; log {self.log_path}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


# --- the sandbox ---------------------------------------------------------------------------------


class Sandbox:
    """Every piece of the sandbox, started and stopped together."""

    def __init__(self, dir: str | Path, *, config: SandboxConfig | None = None, **options: Any) -> None:
        self.config = config or SandboxConfig(dir=Path(dir), **options)
        self.dir = self.config.dir.resolve()
        self.registry = PodRegistry()
        self.emulator: EmulatorServer | None = None
        self.control_plane: ControlPlane | None = None
        self.simulator: WorkloadSimulator | SandboxKubelet | None = None
        #: True once started on a real API server (a started control plane or a --kubeconfig's)
        self.real_api = False
        #: "service-account <ns>/<name>" (the chart's permissions) or "kubeconfig" (whatever it grants)
        self.operator_identity = ""
        self.dataplane: DataPlane | None = None
        self.prometheus: SandboxPrometheus | None = None
        self.operator: OperatorHandle | None = None
        self.kubeconfig: Path = self.dir / KUBECONFIG_FILE
        self.started_at: float | None = None
        self.ready_after_s: float | None = None
        self._lock_handle: IO[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._thread_stop: asyncio.Event | None = None
        self._state_extra: dict[str, Any] = {}
        self.daemon = False

    # --- addresses --------------------------------------------------------------------------------

    @property
    def emulated(self) -> bool:
        return self.emulator is not None

    @property
    def kubelet(self) -> SandboxKubelet | None:
        """The simulated kubelet, on a real control plane (None on the emulator)."""
        return self.simulator if isinstance(self.simulator, SandboxKubelet) else None

    @property
    def api_url(self) -> str | None:
        if self.control_plane is not None:
            return self.control_plane.server
        return self.emulator.url if self.emulator is not None else None

    @property
    def dataplane_url(self) -> str:
        assert self.dataplane is not None, "the sandbox is not running"
        return self.dataplane.url

    @property
    def prometheus_url(self) -> str:
        assert self.prometheus is not None, "the sandbox is not running"
        return self.prometheus.url

    def namespace_annotations(self) -> dict[str, str]:
        """What a namespace of this sandbox is created with: on a real control plane, the annotation
        that pins its pods to this sandbox's Node (another sandbox's, or a test's, Node never gets them)."""
        if self.kubelet is None:
            return {}
        return {NODE_SELECTOR_ANNOTATION: f"kubernetes.io/hostname={self.config.node_name}"}

    def service_url(self, namespace: str, service: str, path: str = "") -> str:
        """The data plane's URL of a Service, e.g. ``service_url("demo", "scorer", "/predict")``."""
        return f"{self.dataplane_url}/{namespace}/{service}{path}"

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start everything; on any failure, stop what was started and raise."""
        self.started_at = time.monotonic()
        preflight(self.config)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        self.ready_after_s = time.monotonic() - self.started_at
        self.write_state("ready")

    async def _start(self) -> None:
        cfg = self.config
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        prometheus_port = cfg.prometheus_port or procs.free_port()
        self.write_state("starting")
        assets = cfg.assets()
        operator_kubeconfig: Path | None = None
        if cfg.kubeconfig is not None:
            self.kubeconfig = cfg.kubeconfig.resolve()
            self.real_api = not await _is_emulator(str(self.kubeconfig))
            await install_crds(str(self.kubeconfig))
            await install_route_crds(str(self.kubeconfig))
            operator_kubeconfig = cfg.operator_kubeconfig
        elif assets is not None:
            await self._start_control_plane(assets)
            operator_kubeconfig = await self._operator_identity()
            self.real_api = True
        else:
            crds = [yaml.safe_load(text) for text in render_crds().values()]
            # HTTPRoute and VirtualService too, so that routes can be applied and the data plane honours them.
            self.emulator = EmulatorServer(port=cfg.api_port, crds=[*crds, *route_crd_documents()])
            await self.emulator.__aenter__()
            self.emulator.write_kubeconfig(self.kubeconfig)
        if self.real_api:
            # The real controller manager makes the ReplicaSets, Pods and EndpointSlices: play only the kubelet.
            self.simulator = SandboxKubelet(
                self.kubeconfig,
                self.registry,
                self.dir,
                cfg.simulator,
                node=cfg.node_name,
                namespaces=cfg.namespaces,
            )
        else:
            self.simulator = WorkloadSimulator(self.kubeconfig, self.registry, self.dir, cfg.simulator)
        await self.simulator.start()
        self.dataplane = DataPlane(
            str(self.kubeconfig),
            self.registry,
            port=cfg.dataplane_port,
            resolvers=default_resolvers(),
            endpoint_slices=self.real_api,
        )
        await self.dataplane.start()
        if isinstance(self.simulator, SandboxKubelet):
            self.simulator.dataplane_url = self.dataplane.url  # comparator pods reach Services through it
        prometheus_url = f"http://127.0.0.1:{prometheus_port}"
        if cfg.operator:
            if operator_kubeconfig is None and cfg.operator_kubeconfig is not None:
                operator_kubeconfig = cfg.operator_kubeconfig
            if not self.operator_identity:
                self.operator_identity = "kubeconfig" if operator_kubeconfig is None else "service-account"
            namespace_args = [arg for pattern in cfg.namespaces for arg in ("--namespace", pattern)]
            self.operator = OperatorHandle(
                operator_kubeconfig or self.kubeconfig,
                prometheus_url,
                self.dir / "logs" / "operator.log",
                resync_seconds=cfg.resync_seconds,
                extra_args=[*namespace_args, *cfg.operator_args],
            )
            self.operator.start()
        static_jobs = {DATAPLANE_JOB: [f"127.0.0.1:{self.dataplane.port}"]}
        if self.operator is not None:
            static_jobs[OPERATOR_JOB] = [f"127.0.0.1:{self.operator.metrics_port}"]
        self.prometheus = SandboxPrometheus(
            self.dir / "prometheus",
            port=prometheus_port,
            scrape_interval=cfg.scrape_interval,
            static_jobs=static_jobs,
            binary=cfg.prometheus_binary,
        )
        self.prometheus.set_pods(self.registry.all())
        self.registry.subscribe(self._registry_changed)
        await self.prometheus.start()
        if self.operator is not None:
            await asyncio.to_thread(self.operator.wait_healthy)
        await self.simulator.wait_cache()

    async def _start_control_plane(self, assets: Path) -> None:
        """etcd, the API server, the controller manager and the scheduler, under ``dir/control-plane``;
        the user's kubeconfig is the admin's (kubectl gets the real server: validation, explain, watch)."""
        directory = self.dir / "control-plane"
        try:
            self.control_plane = await asyncio.to_thread(ControlPlane.start_in, directory, assets)
        except ControlPlaneError as error:
            raise SandboxError(f"the control plane did not start: {error}") from None
        self.kubeconfig.write_bytes(self.control_plane.admin_kubeconfig.read_bytes())
        self.kubeconfig.chmod(0o600)
        await install_crds(str(self.kubeconfig))
        await install_route_crds(str(self.kubeconfig))

    async def _operator_identity(self) -> Path:
        """A ServiceAccount bound to a ClusterRole of exactly the rules the Helm chart grants
        (:mod:`modelrollout.rbac`, which the chart's tests hold the chart to), and a kubeconfig with
        its token: RBAC is enforced on the sandbox's operator as in a cluster."""
        assert self.control_plane is not None
        namespace, name = OPERATOR_NAMESPACE, OPERATOR_ACCOUNT
        api = await KubeApi.connect(str(self.kubeconfig))
        try:
            await api.create_or_get(NAMESPACES, None, {"metadata": {"name": namespace}})
            await api.create_or_get(SERVICE_ACCOUNTS, namespace, {"metadata": {"name": name}})
            await api.create_or_get(CLUSTER_ROLES, None, operator_cluster_role(name))
            binding = {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            }
            await api.create_or_get(CLUSTER_ROLE_BINDINGS, None, binding)
        finally:
            await api.close()
        path = self.dir / "operator.kubeconfig"
        await asyncio.to_thread(self.control_plane.service_account_kubeconfig, path, namespace, name)
        self.operator_identity = f"service-account {namespace}/{name}"
        return path

    async def stop(self) -> None:
        """Stop in dependency order: the operator first (so it does not react to pods going away)."""
        self.write_state("stopping")
        self.registry.unsubscribe(self._registry_changed)
        if self.operator is not None:
            await asyncio.to_thread(self.operator.stop)
        if self.simulator is not None:
            await _quietly(self.simulator.stop())
        if self.dataplane is not None:
            await _quietly(self.dataplane.stop())
        if self.prometheus is not None:
            await _quietly(self.prometheus.stop())
        if self.emulator is not None:
            await _quietly(self.emulator.__aexit__(None, None, None))
        if self.control_plane is not None:
            await _quietly(asyncio.to_thread(self.control_plane.stop))
        with contextlib.suppress(OSError):
            (self.dir / STATE_FILE).unlink()
        self._release_lock()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # Synchronous use: the same loop, in a thread of its own.

    def __enter__(self) -> Self:
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._thread_stop = asyncio.Event()
            try:
                await self.start()
            except BaseException as error:
                failure.append(error)
                ready.set()
                return
            ready.set()
            await self._thread_stop.wait()
            await self.stop()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="modelrollout-sandbox", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop is not None and self._thread_stop is not None:
            self._loop.call_soon_threadsafe(self._thread_stop.set)
        if self._thread is not None:
            self._thread.join(timeout=60)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn()`` in the sandbox's loop (its state is not thread-safe); direct when already there."""
        loop = self._loop
        if loop is None or _running_loop() is loop:
            return fn()

        async def invoke() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(invoke(), loop).result(timeout)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300.0) -> T:
        """Run a coroutine in the sandbox's loop from another thread (sync use only)."""
        assert self._loop is not None, "run() is for the sync context manager"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- what runs --------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The data plane's counters (as ``GET /_dataplane/stats`` returns them)."""
        dataplane = self.dataplane
        assert dataplane is not None, "the sandbox is not running"
        return self.call(dataplane.stats.to_dict)

    def pods(self) -> list[dict[str, Any]]:
        return self.call(lambda: [pod.to_dict() for pod in self.registry.all()])

    def state(self, status: str) -> dict[str, Any]:
        def entry(pid: int | None, **extra: Any) -> dict[str, Any] | None:
            if pid is None:
                return None
            return {"pid": pid, "start_time": procs.process_start_time(pid), **extra}

        return {
            "status": status,
            "dir": str(self.dir),
            "mode": "daemon" if self.daemon else "in-process",
            "emulated": self.emulated,
            "real_api": self.real_api,
            "node": self.config.node_name if self.kubelet is not None else None,
            "namespaces": list(self.config.namespaces),
            "operator_identity": self.operator_identity,
            "control_plane": [
                entry(component.process.pid, name=component.name, log=str(component.log_path))
                for component in self.control_plane.components
            ]
            if self.control_plane is not None
            else [],
            "supervisor": entry(os.getpid()),
            "kubeconfig": str(self.kubeconfig),
            "api_url": self.api_url,
            "dataplane_url": self.dataplane.url if self.dataplane is not None and self.dataplane._port else None,
            "prometheus_url": self.prometheus.url if self.prometheus is not None else None,
            "operator": entry(
                self.operator.pid,
                metrics_url=self.operator.metrics_url,
                health_url=self.operator.health_url,
                log=str(self.operator.log_path),
            )
            if self.operator is not None
            else None,
            "prometheus": entry(self.prometheus.pid) if self.prometheus is not None else None,
            "pods": [
                {**pod.to_dict(), "start_time": procs.process_start_time(pod.pid) if pod.pid else None}
                for pod in self.registry.all()
            ],
            "ready_after_s": self.ready_after_s,
            "updated_at": time.time(),
            **self._state_extra,
        }

    def write_state(self, status: str, **extra: Any) -> None:
        self._state_extra.update(extra)
        path = self.dir / STATE_FILE
        if not self.dir.exists():
            return
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.state(status), indent=2))
        os.replace(temporary, path)

    def _registry_changed(self) -> None:
        if self.prometheus is not None:
            self.prometheus.set_pods(self.registry.all())
        self.write_state("ready" if self.ready_after_s is not None else "starting")

    def _take_lock(self) -> None:
        handle = (self.dir / LOCK_FILE).open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise AlreadyRunning(
                f"a sandbox is already running from {self.dir}; stop it with "
                f"`modelrollout sandbox down --dir {self.dir}`"
            ) from None
        self._lock_handle = handle

    def _release_lock(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _quietly(step: Coroutine[Any, Any, Any]) -> None:
    """Shutdown goes on past a piece that fails to stop: the others must still be stopped."""
    try:
        await step
    except Exception:
        log.exception("while stopping the sandbox")


OPERATOR_NAMESPACE = "modelrollout-system"
OPERATOR_ACCOUNT = "modelrollout-sandbox-operator"
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts")
CLUSTER_ROLES = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", namespaced=False)
CLUSTER_ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False)


def operator_cluster_role(name: str) -> dict[str, Any]:
    """The chart's ClusterRole for an operator watching every namespace without peering (the sandbox's
    operator is standalone), made from the same rules the chart is tested against."""
    rules: dict[tuple[str, str], list[str]] = {}
    for rule in rbac.rules(cluster_wide=True, peering=False):
        verbs = rules.setdefault((rule.api_group, rule.resource), [])
        verbs += [verb for verb in rule.verbs if verb not in verbs]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [
            {"apiGroups": [group], "resources": [resource], "verbs": verbs}
            for (group, resource), verbs in sorted(rules.items())
        ],
    }


async def _is_emulator(kubeconfig: str) -> bool:
    """Whether the API server is our emulator (its /version says so): it has no controllers, so the
    workload simulator must play them; any other server is taken to run the real ones."""
    api = await KubeApi.connect(kubeconfig)
    try:
        version = await api.request("GET", "/version")
    except (ApiError, aiohttp.ClientError) as error:
        raise SandboxError(f"cannot reach the API server of {kubeconfig}: {error}") from None
    finally:
        await api.close()
    return "emulator" in str(version.get("gitVersion", ""))


async def _create_crd(api: Any, document: dict[str, Any]) -> dict[str, Any]:
    """Create a CRD unless it is there: GET first, since a real server validates a create before it
    reports a conflict (a CRD it would refuse answers 422, not 409, even when one exists); on a 409 or
    422 from a create that raced another sandbox's, the one that is there now stands."""
    name = document["metadata"]["name"]
    existing: dict[str, Any] | None = await api.get(CRDS, None, name)
    if existing is not None:
        return existing
    try:
        created: dict[str, Any] = await api.create(CRDS, None, document)
        log.info("installed CRD %s", name)
        return created
    except ApiError as error:
        if error.status not in (409, 422):
            raise
        existing = await api.get(CRDS, None, name)
        if existing is None:
            raise
        return existing


async def install_crds(kubeconfig: str, timeout: float = 30.0) -> None:
    """Create the CRDs on a given API server (or accept the ones there) and wait until Established."""
    api = await KubeApi.connect(kubeconfig)
    try:
        for text in render_crds().values():
            document = yaml.safe_load(text)
            name = document["metadata"]["name"]
            existing = await api.get(CRDS, None, name)
            if existing is None:
                await _create_crd(api, document)
            else:
                served = {v.get("name") for v in (existing.get("spec") or {}).get("versions", [])}
                wanted = {v.get("name") for v in document["spec"]["versions"]}
                if not wanted <= served:
                    raise SandboxError(
                        f"CRD {name} on the API server serves {sorted(served)}, this operator needs {sorted(wanted)}: "
                        f"update it with `modelrollout crd | kubectl apply -f -`"
                    )
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            crd = await api.get(CRDS, None, f"{PLURAL}.{GROUP}") or {}
            conditions = (crd.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise SandboxError(f"CRD {PLURAL}.{GROUP} not Established after {timeout:g}s")
            await asyncio.sleep(0.2)
    except ApiError as error:
        raise SandboxError(f"installing the CRDs: {error}") from None
    except aiohttp.ClientError as error:
        raise SandboxError(f"cannot reach the API server of {kubeconfig}: {error}") from None
    finally:
        await api.close()


async def install_route_crds(kubeconfig: str, timeout: float = 30.0) -> None:
    """Create the sandbox's HTTPRoute and VirtualService CRDs where none exist, and wait until Established.

    An existing CRD is left alone whatever it serves: it is the real Gateway API's or Istio's (or an
    earlier sandbox's), and the cluster's own is the one routes must be written against.
    """
    api = await KubeApi.connect(kubeconfig)
    try:
        names = []
        for document in route_crd_documents():
            name = document["metadata"]["name"]
            names.append(name)
            await _create_crd(api, document)
        deadline = asyncio.get_running_loop().time() + timeout
        for name in names:
            while True:
                crd = await api.get(CRDS, None, name) or {}
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                    break
                if asyncio.get_running_loop().time() > deadline:
                    raise SandboxError(f"CRD {name} not Established after {timeout:g}s")
                await asyncio.sleep(0.2)
    except ApiError as error:
        raise SandboxError(f"installing the route CRDs: {error}") from None
    except aiohttp.ClientError as error:
        raise SandboxError(f"cannot reach the API server of {kubeconfig}: {error}") from None
    finally:
        await api.close()


# --- the supervisor process ----------------------------------------------------------------------


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    return SandboxConfig(
        dir=args.dir.resolve(),
        kubeconfig=args.kubeconfig.resolve() if args.kubeconfig else None,
        control_plane=args.control_plane.resolve() if args.control_plane else None,
        emulator=args.emulator,
        namespaces=tuple(args.namespace or ()),
        api_port=args.api_port,
        dataplane_port=args.dataplane_port,
        prometheus_port=args.prometheus_port,
        scrape_interval=args.scrape_interval,
        operator=args.operator,
    )


async def supervise(config: SandboxConfig, *, daemon: bool, on_ready: Callable[[Sandbox], None] | None = None) -> int:
    """Run the sandbox until SIGTERM/SIGINT; the exit code."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    sandbox = Sandbox(config.dir, config=config)
    sandbox.daemon = daemon
    try:
        await sandbox.start()
    except SandboxError as error:
        _report_failure(config.dir, str(error), error.exit_code)
        return error.exit_code
    except Exception as error:
        log.exception("the sandbox failed to start")
        _report_failure(config.dir, f"{error.__class__.__name__}: {error}", EXIT_FAILED)
        return EXIT_FAILED
    if on_ready is not None:
        on_ready(sandbox)
    await stopping.wait()
    log.info("stopping the sandbox")
    await sandbox.stop()
    return 0


def _report_failure(directory: Path, message: str, code: int) -> None:
    """Leave the reason where ``sandbox up`` (our parent, waiting) reads it."""
    with contextlib.suppress(OSError):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "failure.json").write_text(json.dumps({"pid": os.getpid(), "error": message, "exit_code": code}))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelrollout_devkit.sandbox.supervisor")
    add_up_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_access_logs()
    return asyncio.run(supervise(config_from_args(args), daemon=True))


def quiet_access_logs() -> None:
    """The emulator's and the data plane's per-request lines would drown the supervisor's log."""
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
