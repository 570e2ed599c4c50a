"""What the tests on the real API server share: kubectl as the admin, a namespace per test, and the
CRDs of other projects that the chart and the examples write objects of (tests/realapi/crds/).

Every test here takes ``real_control_plane`` (tests/support/control_plane.py): it is skipped when
no control-plane binaries are found, and fails when MODELROLLOUT_REQUIRE_CONTROL_PLANE=1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.rest import ApiException

from tests.support.control_plane import RealControlPlane, wait_until
from tests.support.deadline import Deadline

ROOT = Path(__file__).resolve().parents[2]
THIRD_PARTY_CRDS = Path(__file__).resolve().parent / "crds"

Document = dict[str, Any]


def documents(text: str) -> list[Document]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass
class Kubectl:
    """kubectl (the user's client, not ours) against the real API server, as its admin."""

    kubeconfig: Path

    def command(self) -> list[str]:
        # The discovery cache of this control plane alone (kubectl's default one is per host:port).
        return ["kubectl", f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.kubeconfig.parent / 'kubectl'}"]

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command(), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        """Run kubectl; fail the test with its output unless it exits 0. Returns stdout."""
        done = self(*args, stdin=stdin)
        assert done.returncode == 0, f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}"
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))


@pytest.fixture
def kubectl(real_control_plane: RealControlPlane) -> Kubectl:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH (the Debian/Kubernetes package `kubectl`)")
    return Kubectl(real_control_plane.admin_kubeconfig)


@pytest.fixture
def admin(real_control_plane: RealControlPlane) -> Iterator[kubernetes.client.ApiClient]:
    client = kubernetes.config.new_client_from_config(config_file=str(real_control_plane.admin_kubeconfig))
    try:
        yield client
    finally:
        client.close()


def delete_namespace(core: kubernetes.client.CoreV1Api, name: str) -> None:
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


@pytest.fixture
def make_namespace(admin: kubernetes.client.ApiClient) -> Iterator[Callable[[str], str]]:
    """Create namespaces (a name, or a fresh one for ``""``); all are deleted after the test."""
    core = kubernetes.client.CoreV1Api(admin)
    made: list[str] = []

    def make(name: str = "") -> str:
        name = name or f"realapi-{uuid.uuid4().hex[:8]}"
        try:
            core.create_namespace({"metadata": {"name": name}})
        except ApiException as error:
            if error.status != 409:
                raise
            return name  # there before the test (the session's own): not ours to delete
        made.append(name)
        return name

    yield make
    for name in made:
        delete_namespace(core, name)


@pytest.fixture
def namespace(make_namespace: Callable[[str], str]) -> str:
    """A fresh namespace for this test alone."""
    return make_namespace("")


def crd_established(extensions: kubernetes.client.ApiextensionsV1Api, name: str) -> bool:
    conditions = extensions.read_custom_resource_definition(name).status.conditions or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def install_crds(admin: kubernetes.client.ApiClient, crds: list[Document]) -> list[str]:
    """Create CRDs that are not there yet and wait until they are served; returns the names created."""
    extensions = kubernetes.client.ApiextensionsV1Api(admin)
    created = []
    for crd in crds:
        try:
            extensions.create_custom_resource_definition(crd)
        except ApiException as error:
            if error.status != 409:
                raise
            continue
        created.append(crd["metadata"]["name"])
    for name in created:
        wait_until(f"CRD {name} to be Established", lambda name=name: crd_established(extensions, name))
    return created


def remove_crds(admin: kubernetes.client.ApiClient, names: list[str]) -> None:
    """Delete CRDs (and with them their objects) and wait until they are gone."""
    extensions = kubernetes.client.ApiextensionsV1Api(admin)
    for name in names:
        try:
            extensions.delete_custom_resource_definition(name)
        except ApiException as error:
            if error.status != 404:
                raise

    def gone(name: str) -> bool:
        try:
            extensions.read_custom_resource_definition(name)
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    for name in names:
        wait_until(f"CRD {name} to be deleted", lambda name=name: gone(name))


@pytest.fixture(scope="module")
def third_party_crds(control_plane: RealControlPlane | None) -> Iterator[list[str]]:
    """The HTTPRoute, VirtualService, ServiceMonitor and PrometheusRule CRDs of tests/realapi/crds/,
    installed for one test module and removed after it (other suites on this control plane install
    their own HTTPRoute and VirtualService CRDs and must not find ours). A CRD of the same name
    already there is left as it is and used."""
    if control_plane is None:
        pytest.skip("no control plane binaries")
    admin = kubernetes.config.new_client_from_config(config_file=str(control_plane.admin_kubeconfig))
    try:
        crds = [doc for path in sorted(THIRD_PARTY_CRDS.glob("*.yaml")) for doc in documents(path.read_text())]
        created = install_crds(admin, crds)
        try:
            yield [crd["metadata"]["name"] for crd in crds]
        finally:
            remove_crds(admin, created)
    finally:
        admin.close()


def server_warnings(stderr: str) -> list[str]:
    """The API server's warnings in kubectl's stderr (a dropped unknown field, a deprecated API...),
    less kubectl's own note on applying to an object that was created without `kubectl apply`."""
    return [
        line
        for line in stderr.splitlines()
        if line.startswith("Warning:") and "last-applied-configuration annotation" not in line
    ]


def in_namespace(doc: Document, namespace: str) -> Document:
    """The object, moved into ``namespace`` (examples say `namespace: default`)."""
    moved = json.loads(json.dumps(doc))
    moved["metadata"]["namespace"] = namespace
    return moved


def is_subset(sent: Any, stored: Any, path: str = "") -> list[str]:
    """The paths where ``stored`` lost or changed something of ``sent`` (defaults added are fine)."""
    if isinstance(sent, dict):
        if not isinstance(stored, dict):
            return [f"{path or '.'}: sent an object, stored {stored!r}"]
        lost = []
        for key, value in sent.items():
            if key not in stored:
                lost.append(f"{path}.{key}: pruned")
            else:
                lost.extend(is_subset(value, stored[key], f"{path}.{key}"))
        return lost
    if isinstance(sent, list):
        if not isinstance(stored, list) or len(stored) != len(sent):
            return [f"{path}: sent {sent!r}, stored {stored!r}"]
        return [problem for i, item in enumerate(sent) for problem in is_subset(item, stored[i], f"{path}[{i}]")]
    if sent != stored:
        return [f"{path}: sent {sent!r}, stored {stored!r}"]
    return []


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``probe`` until it returns something truthy; return that."""
    deadline = Deadline(timeout)
    while True:
        value = probe()
        if value:
            return value
        if deadline.expired():
            raise AssertionError(f"timed out after {deadline.describe()} waiting for {what}")
        time.sleep(0.1)
