"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

The binaries come from a folder in the envtest convention (controller-runtime's ``KUBEBUILDER_ASSETS``:
``kube-apiserver`` and ``etcd``, here also ``kube-controller-manager`` and ``kube-scheduler``), so a user
with ``setup-envtest`` binaries, or the Kubernetes release binaries, gets the same. Everything listens
on free loopback ports and lives in one directory, removed on :meth:`ControlPlane.stop`.

The API server authorises with RBAC and authenticates static tokens (an admin in ``system:masters``)
and ServiceAccount tokens it signs itself, so a component can run as a ServiceAccount with exactly the
permissions its ClusterRole grants (:meth:`ControlPlane.service_account_kubeconfig`). There is no
kubelet: Nodes and pods are played by :mod:`modelrollout_devkit.sandbox.kubelet`.

Usage::

    with ControlPlane.start_in(tmp_path, find_assets()) as plane:
        plane.admin_kubeconfig  # a kubeconfig file for the admin
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from modelrollout_devkit.sandbox import procs

log = logging.getLogger("modelrollout_devkit.sandbox.control_plane")

ASSETS_ENV = "KUBEBUILDER_ASSETS"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
#: Pods get addresses from here; they exist only in the API (see :mod:`modelrollout_devkit.sandbox.kubelet`).
POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
#: The namespace annotation (admission plugin PodNodeSelector) that binds a namespace's pods to Nodes.
NODE_SELECTOR_ANNOTATION = "scheduler.alpha.kubernetes.io/node-selector"
ADMIN_USER = "admin"
HOW_TO_GET_BINARIES = (
    "set KUBEBUILDER_ASSETS (or --control-plane DIR) to a folder with etcd, kube-apiserver, "
    "kube-controller-manager and kube-scheduler: `apt-get install -y etcd-server` and "
    "`export KUBEBUILDER_ASSETS=$(../shared/envtest/unpack)`, or `setup-envtest use -p path` plus the "
    "controller manager and scheduler of the same Kubernetes release"
)


class ControlPlaneError(RuntimeError):
    """The control plane could not start; the message says which component and where its log is."""


def missing_binaries(assets: Path) -> list[str]:
    return [name for name in BINARIES if not os.access(assets / name, os.X_OK)]


def find_assets(explicit: str | Path | None = None) -> Path | None:
    """The control-plane binaries' folder: ``explicit``, else ``$KUBEBUILDER_ASSETS``; None when neither
    names a folder. A folder that lacks a binary is an error (the user asked for it)."""
    given = explicit if explicit is not None else os.environ.get(ASSETS_ENV)
    if not given:
        return None
    assets = Path(given).expanduser().resolve()
    missing = missing_binaries(assets)
    if missing:
        raise ControlPlaneError(f"{assets} lacks {', '.join(missing)}; {HOW_TO_GET_BINARIES}")
    return assets


@dataclass
class _Component:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _write_kubeconfig(path: Path, server: str, ca_file: Path, user: str, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "control-plane",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_file.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "control-plane", "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


@dataclass
class ControlPlane:
    """A running control plane; build it with :meth:`start_in`."""

    assets: Path
    dir: Path
    api_port: int
    admin_token: str
    components: list[_Component] = field(default_factory=list)
    remove_dir: bool = True
    #: more command-line flags per component (by binary name), after the ones set here
    extra_args: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def ca_file(self) -> Path:
        # The API server's self-signed serving certificate, followed by the CA that signed it.
        return self.dir / "certs" / "apiserver.crt"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    # --- lifecycle --------------------------------------------------------------------------------

    @classmethod
    def start_in(
        cls,
        directory: Path,
        assets: Path,
        *,
        timeout: float = 120.0,
        remove_dir: bool = True,
        extra_args: Mapping[str, Sequence[str]] | None = None,
    ) -> Self:
        """Start etcd, the API server, the controller manager and the scheduler; return once the API
        server is ready and both controllers answer their health checks. On failure nothing is left running.
        ``extra_args`` adds flags per component, e.g. ``{"kube-controller-manager": ["--kube-api-qps=200"]}``
        (a benchmark sizing the controllers as a large cluster would)."""
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        plane = cls(
            assets,
            directory,
            procs.free_port(),
            secrets.token_hex(16),
            remove_dir=remove_dir,
            extra_args=extra_args or {},
        )
        try:
            plane._start(timeout)
        except BaseException:
            plane.stop()
            raise
        return plane

    def _start(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for sub in ("certs", "etcd", "logs"):
            (self.dir / sub).mkdir(exist_ok=True)
        self._make_service_account_keys()
        (self.dir / "tokens.csv").write_text(f"{self.admin_token},{ADMIN_USER},{ADMIN_USER},system:masters\n")
        etcd_port, etcd_peer = procs.free_port(), procs.free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                "--data-dir",
                str(self.dir / "etcd"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync",  # a throw-away store: durability is not worth the disk waits
            ],
        )
        self._wait(deadline, "etcd", lambda: _http_ok(f"{etcd_url}/health"))
        keys = self.dir / "certs"
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={keys}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={keys / 'sa.pub'}",
                f"--service-account-signing-key-file={keys / 'sa.key'}",
                f"--token-auth-file={self.dir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                # A namespace's `scheduler.alpha.kubernetes.io/node-selector` annotation pins its pods
                # to a Node: each sandbox sharing this server pins its namespaces to its own kubelet.
                "--enable-admission-plugins=PodNodeSelector",
            ],
        )
        self._wait(deadline, "kube-apiserver", lambda: self.ca_file.exists() and self._api_ok("/readyz"))
        _write_kubeconfig(self.admin_kubeconfig, self.server, self.ca_file, ADMIN_USER, self.admin_token)
        kubeconfig = str(self.admin_kubeconfig)
        manager_port, scheduler_port = procs.free_port(), procs.free_port()
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--service-account-private-key-file={keys / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={manager_port}",
                "--controllers=*,-nodeipam,-nodelifecycle,-persistentvolume-binder,-attachdetach,"
                "-persistentvolume-expander,-cloud-node-lifecycle,-ttl",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={scheduler_port}",
            ],
        )
        self._wait(deadline, "kube-controller-manager", lambda: _https_ok(f"https://127.0.0.1:{manager_port}/healthz"))
        self._wait(deadline, "kube-scheduler", lambda: _https_ok(f"https://127.0.0.1:{scheduler_port}/healthz"))
        # Pods need their namespace's `default` ServiceAccount; the controller manager makes it soon
        # after start. Waiting here keeps "serviceaccount default not found" out of the first test.
        self._wait(
            deadline,
            "the default ServiceAccount",
            lambda: self._api_ok("/api/v1/namespaces/default/serviceaccounts/default"),
        )
        log.info("control plane ready at %s (%s)", self.server, self.dir)

    def stop(self) -> None:
        """Stop every component (newest first) and remove the directory."""
        for component in reversed(self.components):
            process = component.process
            if process.poll() is None:
                process.terminate()
        for component in reversed(self.components):
            try:
                # A throw-away cluster: its API server's graceful drain of open watches is not worth waiting for.
                component.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                component.process.kill()
                component.process.wait(timeout=5)
        self.components.clear()
        if self.remove_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pids(self) -> dict[str, int]:
        """The running components' process ids, by binary name (for measuring their CPU and memory)."""
        return {c.name: c.process.pid for c in self.components if c.process.poll() is None}

    @property
    def alive(self) -> bool:
        return bool(self.components) and all(c.process.poll() is None for c in self.components)

    # --- identities -------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """One API call as the admin (or ``token``); the decoded JSON answer. Raises urllib's HTTPError."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token or self.admin_token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=self._ssl_context(), timeout=30) as response:
            return json.loads(response.read() or b"null")

    def service_account_token(self, namespace: str, name: str, seconds: int = 24 * 3600) -> str:
        """A token for an existing ServiceAccount (the TokenRequest API, as `kubectl create token`)."""
        answer = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": seconds}},
        )
        token: str = answer["status"]["token"]
        return token

    def service_account_kubeconfig(self, path: Path, namespace: str, name: str) -> Path:
        """A kubeconfig that authenticates as ServiceAccount ``namespace/name`` (which must exist):
        RBAC then allows exactly what that account is bound to."""
        user = f"system:serviceaccount:{namespace}:{name}"
        return _write_kubeconfig(path, self.server, self.ca_file, user, self.service_account_token(namespace, name))

    # --- internals --------------------------------------------------------------------------------

    def _make_service_account_keys(self) -> None:
        keys = self.dir / "certs"
        if (keys / "sa.key").exists():
            return
        subprocess.run(["openssl", "genrsa", "-out", str(keys / "sa.key"), "2048"], check=True, capture_output=True)
        subprocess.run(
            ["openssl", "rsa", "-in", str(keys / "sa.key"), "-pubout", "-out", str(keys / "sa.pub")],
            check=True,
            capture_output=True,
        )

    def _spawn(self, name: str, args: Sequence[str]) -> None:
        log_path = self.dir / "logs" / f"{name}.log"
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [str(self.assets / name), *args, *self.extra_args.get(name, ())],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,
                preexec_fn=procs._die_with_parent,
            )
        self.components.append(_Component(name, process, log_path))

    def _wait(self, deadline: float, what: str, ready: Callable[[], bool]) -> None:
        while True:
            for component in self.components:
                if component.process.poll() is not None:
                    raise ControlPlaneError(
                        f"{component.name} exited with {component.process.returncode} while waiting for {what}; "
                        f"log {component.log_path}:\n{component.log_tail()}"
                    )
            with contextlib.suppress(OSError, ValueError):
                if ready():
                    return
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {c.name} ({c.log_path})\n{c.log_tail(10)}" for c in self.components)
                raise ControlPlaneError(f"timed out waiting for {what}\n{logs}")
            time.sleep(0.2)

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _api_ok(self, path: str) -> bool:
        try:
            self.request("GET", path)
        except urllib.error.HTTPError:
            return False
        except json.JSONDecodeError:
            return True  # /readyz answers "ok", not JSON
        return True


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _https_ok(url: str) -> bool:
    """A component's own /healthz, on its self-signed certificate (no secret is sent)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
