"""bench/scale_kubelet.py on the real control plane: the benchmark's stand-in kubelet makes the real
controllers count a Deployment's pods ready, and confirms their deletion on a scale-down, so the
readiness the operator waits for in bench/scale.py --control-plane real is the real controllers' own."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.control_plane import RealControlPlane, wait_until

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "scale_kubelet.py"


@pytest.fixture
def stand_in_kubelet(real_control_plane: RealControlPlane, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """The stand-in kubelet for the test's namespace, in its own process; yields its stats file."""
    plane = real_control_plane.plane
    token = tmp_path / "token"
    token.write_text(plane.admin_token)
    stats = tmp_path / "kubelet-stats.json"
    process = subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            "--server",
            plane.server,
            "--ca-file",
            str(plane.ca_file),
            "--token-file",
            str(token),
            "--node",
            real_control_plane.node,
            "--namespace",
            namespace,
            "--workers",
            "4",
            "--stats-file",
            str(stats),
        ],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "kubelet.log").open("wb"),
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == b"ready"
        yield stats
    finally:
        process.terminate()
        process.wait(timeout=15)


def deployment(name: str, replicas: int) -> dict[str, object]:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "server", "image": "bench/model-server:1"}]},
            },
        },
    }


def test_the_real_controllers_count_the_stand_ins_pods_ready_and_see_them_go(
    namespace: str, stand_in_kubelet: Path, real_control_plane: RealControlPlane
) -> None:
    plane = real_control_plane.plane
    deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    plane.request("POST", deployments, deployment("scorer", 3))

    def ready_replicas() -> int:
        return int((plane.request("GET", f"{deployments}/scorer").get("status") or {}).get("readyReplicas") or 0)

    def pods() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = plane.request("GET", f"/api/v1/namespaces/{namespace}/pods")["items"]
        return items

    wait_until("3 ready replicas, counted by the real Deployment controller", lambda: ready_replicas() == 3)
    assert {pod["spec"]["nodeName"] for pod in pods()} == {real_control_plane.node}  # bound by the real scheduler
    assert {pod["status"]["phase"] for pod in pods()} == {"Running"}

    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "scorer", "namespace": namespace}}
    plane.request("PUT", f"{deployments}/scorer/scale", {**scale, "spec": {"replicas": 1}})
    # The ReplicaSet marks two pods for deletion; the stand-in confirms it, as a kubelet once the containers stop.
    wait_until("two pods gone", lambda: len(pods()) == 1)
    wait_until("1 ready replica", lambda: ready_replicas() == 1)
    # ControlPlane.pids names every running component: the benchmark samples each one's CPU and memory.
    assert set(plane.pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
