"""The real control plane for the tests: one per test session (per xdist worker), from KUBEBUILDER_ASSETS.

What a session gets (fixture ``control_plane``; None when no binaries are found, a failure then when
MODELROLLOUT_REQUIRE_CONTROL_PLANE=1; None too when MODELROLLOUT_TEST_KUBECONFIG names another API
server for the suites):

* etcd, kube-apiserver, kube-controller-manager and kube-scheduler on loopback
  (:class:`modelrollout_devkit.sandbox.control_plane.ControlPlane`);
* the project's CRDs, applied as a user would (``crds/``), and Established;
* the Helm chart's ServiceAccount, ClusterRole and ClusterRoleBinding, rendered with the chart's
  defaults and applied, and a kubeconfig that authenticates as that ServiceAccount: the operator
  under test runs with exactly the permissions the chart grants, so a call the chart does not allow
  fails the test;
* one Node, ``mro-test-node``, Ready and untainted, for the scheduler to bind pods to (the
  pods' status is played by :class:`tests.support.cluster.PodKubelet`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.rest import ApiException

from modelrollout_devkit.sandbox.control_plane import HOW_TO_GET_BINARIES, ControlPlane, find_assets
from tests.support.deadline import Deadline

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelrollout-operator"
CRD_DIR = REPO / "crds"
REQUIRE_ENV = "MODELROLLOUT_REQUIRE_CONTROL_PLANE"
TEST_KUBECONFIG_ENV = "MODELROLLOUT_TEST_KUBECONFIG"
OPERATOR_NAMESPACE = "modelrollout-system"
RELEASE = "modelrollout"
NODE_NAME = "mro-test-node"


@dataclass
class RealControlPlane:
    """The running control plane and the identities the tests use on it."""

    plane: ControlPlane
    #: the chart's ServiceAccount: what `modelrollout run` is given in the tests
    operator_kubeconfig: Path
    node: str = NODE_NAME

    @property
    def admin_kubeconfig(self) -> Path:
        return self.plane.admin_kubeconfig


def control_plane_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def chart_rbac_objects(values: dict[str, Any] | None = None, release: str = RELEASE) -> list[dict[str, Any]]:
    """The chart's ServiceAccount and RBAC objects, rendered as `helm install` would."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values or {}, name=release, namespace=OPERATOR_NAMESPACE, is_install=True)
    wanted = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "FlowSchema"}
    return [
        document
        for path, text in sorted(manifests.items())
        if path.endswith((".yaml", ".yml"))
        for document in yaml.safe_load_all(text)
        if document and document.get("kind") in wanted
    ]


def apply_objects(api_client: kubernetes.client.ApiClient, objects: list[dict[str, Any]]) -> None:
    """Create each object (as `kubectl create -f`); one that exists is left as it is."""
    for document in objects:
        try:
            kubernetes.utils.create_from_dict(api_client, document)
        except kubernetes.utils.FailToCreateError as error:
            if any(getattr(cause, "status", None) != 409 for cause in error.api_exceptions):
                raise


def chart_identity(
    control_plane: RealControlPlane,
    api_client: kubernetes.client.ApiClient,
    path: Path,
    values: dict[str, Any],
    release: str,
) -> Path:
    """Install the chart's RBAC with these values as a release of its own, and return a kubeconfig
    of its ServiceAccount: the permissions a user installing the chart so would give the operator."""
    objects = chart_rbac_objects(values, release=release)
    apply_objects(api_client, objects)
    account = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
    return control_plane.plane.service_account_kubeconfig(path, OPERATOR_NAMESPACE, account)


def wait_until(what: str, probe: Any, timeout: float = 60.0) -> None:
    deadline = Deadline(timeout)
    while not probe():
        if deadline.expired():
            raise AssertionError(f"timed out after {deadline.describe()} waiting for {what}")
        time.sleep(0.1)


def install_crds(api_client: kubernetes.client.ApiClient) -> None:
    extensions = kubernetes.client.ApiextensionsV1Api(api_client)
    names = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        names.append(document["metadata"]["name"])
        try:
            extensions.create_custom_resource_definition(document)
        except ApiException as error:
            if error.status != 409:
                raise
    for name in names:

        def established(name: str = name) -> bool:
            conditions = extensions.read_custom_resource_definition(name).status.conditions or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        wait_until(f"CRD {name} to be Established", established)


def register_node(core: kubernetes.client.CoreV1Api, name: str = NODE_NAME) -> None:
    """A Node the scheduler will bind pods to: Ready, with room, and without the not-ready taint the
    API server gives every new Node (the node-lifecycle controller that would lift it is off)."""
    try:
        core.create_node(
            {
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
                "spec": {},
            }
        )
    except ApiException as error:
        if error.status != 409:
            raise
    core.patch_node(name, {"spec": {"taints": None}})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    capacity = {"cpu": "64", "memory": "256Gi", "pods": "1000"}
    core.patch_node_status(
        name,
        {
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "simulated by the tests",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "addresses": [{"type": "InternalIP", "address": "10.244.0.1"}],
            }
        },
    )


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealControlPlane | None]:
    if os.environ.get(TEST_KUBECONFIG_ENV):
        yield None  # the user named an API server for the suites: that one, not ours
        return
    try:
        assets = find_assets()
    except RuntimeError as error:
        pytest.fail(str(error))
    if assets is None:
        if control_plane_required():
            pytest.fail(f"{REQUIRE_ENV}=1 but no control plane binaries: {HOW_TO_GET_BINARIES}")
        yield None
        return
    directory = tmp_path_factory.mktemp("control-plane")
    plane = ControlPlane.start_in(directory, assets, remove_dir=False)
    try:
        admin = kubernetes.config.new_client_from_config(config_file=str(plane.admin_kubeconfig))
        try:
            install_crds(admin)
            core = kubernetes.client.CoreV1Api(admin)
            core.create_namespace({"metadata": {"name": OPERATOR_NAMESPACE}})
            apply_objects(admin, chart_rbac_objects())
            register_node(core)
        finally:
            admin.close()
        accounts = [o for o in chart_rbac_objects() if o["kind"] == "ServiceAccount"]
        operator_kubeconfig = plane.service_account_kubeconfig(
            directory / "operator.kubeconfig", OPERATOR_NAMESPACE, accounts[0]["metadata"]["name"]
        )
        yield RealControlPlane(plane, operator_kubeconfig)
    finally:
        plane.stop()


@pytest.fixture
def real_control_plane(control_plane: RealControlPlane | None) -> RealControlPlane:
    """For tests that mean the real API server and nothing else: skipped without the binaries."""
    if control_plane is None:
        pytest.skip(f"no control plane binaries: {HOW_TO_GET_BINARIES}")
    return control_plane
