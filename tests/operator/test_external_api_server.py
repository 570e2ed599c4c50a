"""MODELROLLOUT_TEST_KUBECONFIG: the operator suite against an API server it did not start.

Here that server is the emulator run as a separate process, which takes exactly the code path a
real kube-apiserver (envtest-style, or kind) takes: CRDs installed over the API, a fresh namespace
per test, deleted afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kubernetes
from tests.support.cluster import REPO, TEST_KUBECONFIG_ENV


def test_operator_suite_runs_against_an_external_api_server(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    server = subprocess.Popen(
        [sys.executable, "-m", "modelrollout_devkit.emulator", "--port", "0", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        env = {**os.environ, TEST_KUBECONFIG_ENV: str(kubeconfig)}
        selection = "first_version or invalid_spec or breaches"
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/operator/test_canary.py",
                "-k",
                selection,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
        assert "3 passed" in run.stdout
        client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        with client:
            # The suite installed the CRD over the API, and cleaned up every namespace it made.
            names = [
                crd.metadata.name
                for crd in kubernetes.client.ApiextensionsV1Api(client).list_custom_resource_definition().items
            ]
            assert "modelrollouts.modelrollout.io" in names
            namespaces = [ns.metadata.name for ns in kubernetes.client.CoreV1Api(client).list_namespace().items]
            assert not [name for name in namespaces if name.startswith("mro-")]
    finally:
        server.terminate()
        server.wait(timeout=10)
