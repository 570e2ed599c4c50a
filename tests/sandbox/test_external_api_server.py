"""`sandbox up --kubeconfig FILE`: the sandbox on an API server it did not start.

The server here is the emulator run as a separate process: the same path an envtest-style
control plane takes (no nodes, no controller-manager), where the sandbox's workload simulator plays
the Deployment controller and the kubelet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import kubernetes

from tests.support.cluster import REPO, TEST_KUBECONFIG_ENV, Cluster
from tests.support.prometheus import prometheus_binary


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelrollout.cli", *args], capture_output=True, text=True, timeout=180, cwd=REPO
    )


def test_sandbox_up_uses_the_api_server_a_kubeconfig_names(tmp_path: Path) -> None:
    prometheus_binary()
    kubeconfig = tmp_path / "external-kubeconfig"
    server = subprocess.Popen(
        [sys.executable, "-m", "modelrollout_devkit.emulator", "--port", "0", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        text=True,
    )
    sandbox_dir = tmp_path / "sandbox"
    try:
        assert server.stdout is not None and server.stdout.readline().startswith("http://127.0.0.1:")
        up = _cli(
            "sandbox",
            "up",
            "--dir",
            str(sandbox_dir),
            "--kubeconfig",
            str(kubeconfig),
            "--dataplane-port",
            "0",
            "--prometheus-port",
            "0",
        )
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((sandbox_dir / "state.json").read_text())
        assert state["emulated"] is False
        cluster = Cluster(kubeconfig, "sbx-external", emulated=False)
        crds = {crd.metadata.name for crd in cluster.extensions.list_custom_resource_definition().items}
        assert "modelrollouts.modelrollout.io" in crds  # installed over the API by `sandbox up`
        cluster.core.create_namespace({"metadata": {"name": cluster.namespace}})
        spec = {
            "replicas": 2,
            "model": {"name": "scorer", "version": "1.0.0"},
            "template": {"spec": {"containers": [{"name": "server", "image": "reference-model-server"}]}},
        }
        cluster.create_rollout("scorer", spec)
        # Ready replicas come from real model-server processes that the simulator started.
        status = cluster.wait_for_phase("scorer", "Succeeded", timeout=90)
        assert status["stableVersion"] == "1.0.0"
        request = urllib.request.Request(
            f"{state['dataplane_url']}/{cluster.namespace}/scorer/predict",
            data=json.dumps({"features": {"mean radius": 14.0}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.load(answer)["version"] == "1.0.0"
        cluster.delete_all_rollouts()
        cluster.api_client.close()
    finally:
        down = _cli("sandbox", "down", "--dir", str(sandbox_dir))
        try:
            assert down.returncode == 0, down.stdout + down.stderr
            # `down` stops what the sandbox started and nothing else: the API server still answers.
            assert server.poll() is None
            client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
            with client:
                kubernetes.client.CoreV1Api(client).list_namespace()
        finally:
            server.terminate()
            server.wait(timeout=10)


def test_the_e2e_suite_takes_the_same_option(tmp_path: Path) -> None:
    """One end-to-end test run with MODELROLLOUT_TEST_KUBECONFIG pointing at a separate API server."""
    prometheus_binary()
    kubeconfig = tmp_path / "kubeconfig"
    server = subprocess.Popen(
        [sys.executable, "-m", "modelrollout_devkit.emulator", "--port", "0", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().startswith("http://")
        env = {**os.environ, TEST_KUBECONFIG_ENV: str(kubeconfig)}
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/e2e/test_sandbox_canary.py",
                "-k",
                "erroring",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert "1 passed" in run.stdout
        client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        with client:
            namespaces = [ns.metadata.name for ns in kubernetes.client.CoreV1Api(client).list_namespace().items]
        assert not [name for name in namespaces if name.startswith("e2e-")], namespaces
    finally:
        server.terminate()
        server.wait(timeout=10)
