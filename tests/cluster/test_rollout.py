"""A ModelRollout on a real cluster: first version, then a canary to a new version, as a user sees it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from modelrollout import GROUP, PLURAL, VERSION

# The reference model server, loaded into kind by hack/kind-e2e.sh (the tag examples/ uses).
MODEL_SERVER_IMAGE = os.environ.get(
    "MODELROLLOUT_MODEL_SERVER_IMAGE", "ghcr.io/modelrollout/reference-model-server:0.1.0"
)
NAME = "e2e-scorer"
TIMEOUT = float(os.environ.get("MODELROLLOUT_CLUSTER_TIMEOUT", "300"))


def rollout_manifest(version: str) -> dict[str, Any]:
    # Short pauses and no metric analysis: this suite checks the operator against a real API
    # server (watches, status subresource, Deployments becoming ready, garbage collection);
    # judging real traffic is hack/kind-e2e.sh's canary of examples/canary.yaml.
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelRollout",
        "metadata": {"name": NAME},
        "spec": {
            "replicas": 2,
            "model": {"name": NAME, "version": version},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": MODEL_SERVER_IMAGE,
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                        }
                    ]
                }
            },
            "service": {"port": 80, "targetPort": 8080},
            "automation": "auto",
            "progressDeadlineSeconds": 180,
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "5s"}}]}},
        },
    }


def wait_for(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


@pytest.fixture
def custom(api_client: Any) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(api_client)


def _status(custom: Any, namespace: str) -> dict[str, Any]:
    body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME)
    status: dict[str, Any] = body.get("status") or {}
    observed = status.get("observedGeneration")
    return status if observed is not None and observed >= body["metadata"]["generation"] else {}


def _settled(custom: Any, namespace: str, version: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        status = _status(custom, namespace)
        if status.get("phase") in ("RolledBack", "Failed"):
            pytest.fail(f"rollout ended {status['phase']}: {status.get('message')}")
        done = status.get("phase") == "Succeeded" and status.get("stableVersion") == version
        return status if done else None

    return check


def test_rollout_delivers_a_new_version(api_client: Any, custom: Any, namespace: str) -> None:
    from kubernetes import client

    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)

    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, rollout_manifest("1.0.0"))
    status = wait_for("1.0.0 to be Succeeded", _settled(custom, namespace, "1.0.0"))
    assert status["weights"]["stable"] == 100
    assert core.read_namespaced_service(NAME, namespace).spec.ports[0].port == 80

    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, NAME, {"spec": {"model": {"version": "1.1.0"}}}
    )
    wait_for("1.1.0 to become the candidate", lambda: _status(custom, namespace).get("candidateVersion") == "1.1.0")
    status = wait_for("1.1.0 to be the stable version", _settled(custom, namespace, "1.1.0"))
    assert status["weights"]["stable"] == 100

    # The old version's Deployment goes; the new one serves every replica.
    def only_new() -> bool:
        deployments = apps.list_namespaced_deployment(namespace, label_selector=f"{GROUP}/rollout={NAME}").items
        versions = {d.metadata.labels.get(f"{GROUP}/version") for d in deployments if (d.spec.replicas or 0) > 0}
        ready = sum(d.status.ready_replicas or 0 for d in deployments)
        return versions == {"1.1.0"} and ready == 2

    wait_for("only 1.1.0 to run", only_new)


def test_kubectl_get_shows_the_rollout_columns(custom: Any, namespace: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, rollout_manifest("2.0.0"))
    wait_for("2.0.0 to be Succeeded", _settled(custom, namespace, "2.0.0"))
    # `kubectl get mro` prints the CRD's additionalPrinterColumns, rendered by the API server.
    result = subprocess.run(
        [kubectl, "--kubeconfig", os.environ["MODELROLLOUT_CLUSTER_KUBECONFIG"], "-n", namespace, "get", "mro", NAME],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    header, row = result.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "PHASE", "STABLE", "CANDIDATE", "WEIGHT", "AGE"]
    cells = row.split()
    assert cells[:3] == [NAME, "Succeeded", "2.0.0"]
