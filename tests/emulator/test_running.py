"""Ways to run the emulator: a separate process, a background thread; and real clients against it."""

from __future__ import annotations

import pathlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator

import kubernetes
import kubernetes_asyncio
import pytest
import yaml

from modelrollout_devkit.emulator import ThreadedEmulator, start_in_thread
from tests.emulator.conftest import GROUP, deployment, modelrollout, modelrollout_crd


@pytest.fixture
def threaded(tmp_path: pathlib.Path) -> Iterator[ThreadedEmulator]:
    emulator = start_in_thread(crds=[modelrollout_crd()], kubeconfig_path=tmp_path / "kubeconfig")
    yield emulator
    emulator.stop()


def test_separate_process_serves_the_sync_client_and_stops_on_sigterm(tmp_path: pathlib.Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    crd_file = tmp_path / "crd.yaml"
    crd_file.write_text(yaml.safe_dump(modelrollout_crd()))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelrollout_devkit.emulator",
            "--port",
            "0",
            "--kubeconfig",
            str(kubeconfig),
            "--crd",
            str(crd_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        client = kubernetes.config.new_client_from_config(str(kubeconfig), context="modelrollout-sandbox")
        with client:
            core = kubernetes.client.CoreV1Api(client)
            names = [ns.metadata.name for ns in core.list_namespace().items]
            assert "default" in names
            custom = kubernetes.client.CustomObjectsApi(client)
            created = custom.create_namespaced_custom_object(
                GROUP, "v1alpha1", "default", "modelrollouts", modelrollout("mr")
            )
            assert created["metadata"]["generation"] == 1  # a dict, which needs the 201
            for body, code in ((modelrollout("mr"), 409), (modelrollout("mr", replicas=-1), 422)):
                with pytest.raises(kubernetes.client.ApiException) as info:
                    custom.create_namespaced_custom_object(GROUP, "v1alpha1", "default", "modelrollouts", body)
                assert info.value.status == code
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_sync_client_typed_api_against_a_thread(threaded: ThreadedEmulator, tmp_path: pathlib.Path) -> None:
    client = kubernetes.config.new_client_from_config(str(tmp_path / "kubeconfig"))
    with client:
        apps = kubernetes.client.AppsV1Api(client)
        created = apps.create_namespaced_deployment("default", deployment("web"))
        assert created.metadata.generation == 1 and created.spec.strategy.type == "RollingUpdate"
        patched = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}})
        assert patched.spec.replicas == 3 and patched.metadata.generation == 2
        status = apps.patch_namespaced_deployment_status("web", "default", {"status": {"readyReplicas": 3}})
        assert status.status.ready_replicas == 3
        with pytest.raises(kubernetes.client.ApiException) as info:
            apps.read_namespaced_deployment("nope", "default")
        assert info.value.status == 404
        watch = kubernetes.watch.Watch()
        events = list(watch.stream(apps.list_namespaced_deployment, "default", timeout_seconds=1))
        assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "web")]
    assert threaded.call(lambda server: server.get_object("deployments.apps", "web", "default")) is not None


async def test_asyncio_client(threaded: ThreadedEmulator, tmp_path: pathlib.Path) -> None:
    await kubernetes_asyncio.config.load_kube_config(str(tmp_path / "kubeconfig"))
    async with kubernetes_asyncio.client.ApiClient() as client:
        custom = kubernetes_asyncio.client.CustomObjectsApi(client)
        created = await custom.create_namespaced_custom_object(
            GROUP, "v1alpha1", "default", "modelrollouts", modelrollout("mr")
        )
        assert created["spec"]["strategy"] == "canary"
        listing = await custom.list_namespaced_custom_object(GROUP, "v1alpha1", "default", "modelrollouts")
        assert listing["kind"] == "ModelRolloutList" and len(listing["items"]) == 1


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl(threaded: ThreadedEmulator, tmp_path: pathlib.Path) -> None:
    def kubectl(*args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(tmp_path / "kubeconfig"), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    # kubectl's generators ("kubectl create namespace") send protobuf, which the emulator does not speak.
    kubectl(
        "create",
        "--validate=false",
        "-f",
        "-",
        stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    )
    assert "team" in kubectl("get", "namespaces")
    manifest = deployment("web")
    manifest["metadata"]["namespace"] = "team"
    kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(manifest))
    manifest["spec"]["replicas"] = 2
    manifest["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
    kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(manifest))
    applied = yaml.safe_load(kubectl("get", "deployment", "web", "-n", "team", "-o", "yaml"))
    assert applied["spec"]["replicas"] == 2 and applied["metadata"]["generation"] == 2
    assert applied["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert "web" in kubectl("get", "deployments", "-A")
    kubectl("patch", "deployment", "web", "-n", "team", "-p", '{"spec": {"replicas": 3}}')
    kubectl("scale", "deployment", "web", "-n", "team", "--replicas=4")

    custom = modelrollout("mr")
    kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(custom))
    custom["spec"]["replicas"] = 5
    kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(custom))
    listed = kubectl("get", "mr")
    assert "mr" in listed and "5" in listed  # the printer column
    kubectl("patch", "modelrollout", "mr", "--type=merge", "-p", '{"spec": {"replicas": 6}}')
    assert yaml.safe_load(kubectl("get", "mr", "mr", "-o", "yaml"))["spec"]["replicas"] == 6
    kubectl("delete", "modelrollout", "mr")
    kubectl("delete", "namespace", "team", "--wait=true")
    assert "team" not in kubectl("get", "namespaces", "-o", "name")
