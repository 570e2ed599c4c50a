"""The CLI as a person meets it: never a traceback for an ordinary failure (one line saying what
failed and what to check, and a documented exit code, docs/troubleshooting.md), and `status
--watch` that works into a pipe. The API server cases run against the real control plane: its TLS,
its authentication and its RBAC."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import kubernetes
import pytest
import yaml
from tests.support.control_plane import RealControlPlane

from modelrollout.client_errors import EXIT_API, EXIT_UNREACHABLE, EXIT_USAGE


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelrollout.cli", *args], capture_output=True, text=True, timeout=120
    )


def _kubeconfig(path: Path, server: str, token: str, ca: bytes | None = None, context: bool = True) -> Path:
    cluster: dict[str, object] = {"server": server}
    if ca is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    config: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    }
    if context:
        config["current-context"] = "x"
    path.write_text(yaml.safe_dump(config))
    return path


def _one_line_failure(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", [["status", "x"], ["promote", "x"]])
def test_an_unreachable_api_server(tmp_path: Path, command: list[str]) -> None:
    config = _kubeconfig(tmp_path / "k", "https://127.0.0.1:1", "t")
    result = _cli(*command, "--kubeconfig", str(config))
    _one_line_failure(result, EXIT_UNREACHABLE, "cannot reach the API server at 127.0.0.1:1", str(config))


def test_a_file_that_is_not_a_kubeconfig(tmp_path: Path) -> None:
    config = tmp_path / "k"
    config.write_text("clusters: [")
    _one_line_failure(_cli("status", "x", "--kubeconfig", str(config)), EXIT_USAGE, "is not a kubeconfig")


def test_a_kubeconfig_that_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    _one_line_failure(_cli("abort", "x", "--kubeconfig", str(missing)), EXIT_USAGE, "no such file", str(missing))


def test_a_kubeconfig_with_no_current_context(tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "k", "https://127.0.0.1:1", "t", context=False)
    _one_line_failure(_cli("status", "x", "--kubeconfig", str(config)), EXIT_USAGE, "current-context", "--context")


def test_a_certificate_that_does_not_verify(tmp_path: Path, real_control_plane: RealControlPlane) -> None:
    plane = real_control_plane.plane
    config = _kubeconfig(tmp_path / "k", plane.server, plane.admin_token)  # no CA: the system's do not sign it
    _one_line_failure(_cli("status", "x", "--kubeconfig", str(config)), EXIT_UNREACHABLE, "TLS", "certificate")


def test_credentials_the_api_server_refuses(tmp_path: Path, real_control_plane: RealControlPlane) -> None:
    plane = real_control_plane.plane
    config = _kubeconfig(tmp_path / "k", plane.server, "not-a-token", plane.ca_file.read_bytes())
    _one_line_failure(_cli("promote", "x", "--kubeconfig", str(config)), EXIT_API, "401 Unauthorized", "token")


def test_a_permission_that_is_missing_names_the_verb(tmp_path: Path, real_control_plane: RealControlPlane) -> None:
    plane = real_control_plane.plane
    admin = kubernetes.config.new_client_from_config(config_file=str(plane.admin_kubeconfig))
    with admin:
        kubernetes.client.CoreV1Api(admin).create_namespaced_service_account(
            "default", {"metadata": {"name": "nobody-in-particular"}}
        )
    config = plane.service_account_kubeconfig(tmp_path / "k", "default", "nobody-in-particular")
    line = _one_line_failure(_cli("status", "x", "--kubeconfig", str(config)), EXIT_API, "403 Forbidden")
    assert 'cannot get resource "modelrollouts"' in line, line
    line = _one_line_failure(_cli("promote", "x", "--kubeconfig", str(config)), EXIT_API, "403 Forbidden")
    assert 'cannot patch resource "modelrollouts"' in line, line


def test_status_watch_into_a_pipe_prints_a_line_per_change(
    tmp_path: Path, real_control_plane: RealControlPlane
) -> None:
    """No terminal, no screen to redraw: `status --watch | tee log` gets one line per change."""
    from tests.support.cluster import test_cluster

    with test_cluster(tmp_path, real_control_plane) as cluster:
        spec = {
            "model": {"name": "m", "version": "1.0.0"},
            "template": {"spec": {"containers": [{"name": "s", "image": "x"}]}},
        }
        cluster.create_rollout("piped", spec)
        kube = ["-n", cluster.namespace, "--kubeconfig", str(cluster.kubeconfig)]
        watch = subprocess.Popen(
            [sys.executable, "-m", "modelrollout.cli", "status", "piped", "--watch", *kube],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert watch.stdout is not None
            first = watch.stdout.readline()
            assert f"{cluster.namespace}/piped phase=Pending" in first, first
            status = {"phase": "Progressing", "currentStepIndex": 0, "weights": {"stable": 100, "mirror": 20}}
            cluster.custom.patch_namespaced_custom_object_status(
                "modelrollout.io", "v1alpha1", cluster.namespace, "modelrollouts", "piped", {"status": status}
            )
            second = watch.stdout.readline()
            assert "phase=Progressing step=0" in second and "mirror=20" in second, second
        finally:
            watch.kill()
            watch.wait(timeout=10)
