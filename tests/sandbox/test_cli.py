"""`modelrollout sandbox up|status|down` as real processes, and the bad inputs of `up`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelrollout_devkit.sandbox import procs
from modelrollout_devkit.sandbox.supervisor import (
    EXIT_ALREADY_RUNNING,
    EXIT_PORT_TAKEN,
    EXIT_PROMETHEUS_MISSING,
    STATE_FILE,
)
from tests.support.prometheus import prometheus_binary

# Until `modelrollout sandbox` is wired into modelrollout.cli, the same commands run from here.
SANDBOX = [sys.executable, "-m", "modelrollout_devkit.sandbox.cli"]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SANDBOX, *args], capture_output=True, text=True, timeout=timeout, env=env)


def ports(count: int) -> list[int]:
    return [procs.free_port() for _ in range(count)]


def up_args(directory: Path, api: int, dataplane: int, prometheus: int) -> list[str]:
    return [
        "up",
        "--dir",
        str(directory),
        "--api-port",
        str(api),
        "--dataplane-port",
        str(dataplane),
        "--prometheus-port",
        str(prometheus),
    ]


def recorded_pids(state: dict[str, Any]) -> list[int]:
    entries = [state["supervisor"], state.get("operator"), state.get("prometheus"), *state.get("pods", [])]
    return [int(entry["pid"]) for entry in entries if entry and entry.get("pid")]


@pytest.fixture
def sandbox_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "sandbox"
    yield directory
    # Whatever a failed test left running, stopped by the command under test.
    if (directory / STATE_FILE).exists():
        run("down", "--dir", str(directory))


def test_up_status_down(sandbox_dir: Path) -> None:
    prometheus_binary()  # skip (or fail, when required) without Prometheus
    api, dataplane, prometheus = ports(3)
    started = time.monotonic()
    up = run(*up_args(sandbox_dir, api, dataplane, prometheus))
    took = time.monotonic() - started
    assert up.returncode == 0, up.stderr
    print(f"sandbox up ready in {took:.1f}s")
    assert f"export KUBECONFIG={sandbox_dir.resolve() / 'kubeconfig'}" in up.stdout
    assert f"http://127.0.0.1:{dataplane}" in up.stdout and f"http://127.0.0.1:{prometheus}" in up.stdout
    state = json.loads((sandbox_dir / STATE_FILE).read_text())
    assert state["status"] == "ready"
    if state["emulated"]:
        assert state["api_url"] == f"http://127.0.0.1:{api}"
    else:  # a real control plane from KUBEBUILDER_ASSETS: its API server picks its own port
        assert state["api_url"].startswith("https://127.0.0.1:")
    pids = recorded_pids(state)
    assert len(pids) == 3 and all(procs.pid_alive(pid) for pid in pids)

    # Everything answers: the API (through the kubeconfig), the data plane, Prometheus, the operator.
    import kubernetes

    client = kubernetes.config.new_client_from_config(config_file=str(sandbox_dir / "kubeconfig"))
    names = [ns.metadata.name for ns in kubernetes.client.CoreV1Api(client).list_namespace().items]
    assert "default" in names
    client.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{dataplane}/_dataplane/stats", timeout=5) as answer:
        assert json.load(answer)["requests"] == []
    with urllib.request.urlopen(f"http://127.0.0.1:{prometheus}/-/ready", timeout=5) as answer:
        assert answer.status == 200
    with urllib.request.urlopen(state["operator"]["health_url"], timeout=5) as answer:
        assert answer.status == 200

    status = run("status", "--dir", str(sandbox_dir))
    assert status.returncode == 0 and "sandbox ready" in status.stdout
    assert f"pid {state['operator']['pid']}" in status.stdout

    again = run(*up_args(sandbox_dir, *ports(3)))
    assert again.returncode == EXIT_ALREADY_RUNNING
    assert "already running" in again.stderr and "sandbox down" in again.stderr

    down = run("down", "--dir", str(sandbox_dir))
    assert down.returncode == 0, down.stderr
    assert not any(procs.pid_alive(pid) for pid in pids)
    assert not (sandbox_dir / STATE_FILE).exists()
    assert run("status", "--dir", str(sandbox_dir)).returncode == 1
    for port in (api, dataplane, prometheus):
        assert not procs.port_in_use(port)


def test_port_taken_is_refused_before_anything_starts(sandbox_dir: Path) -> None:
    prometheus_binary()
    api, dataplane, prometheus = ports(3)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", prometheus))
        squatter.listen()
        result = run(*up_args(sandbox_dir, api, dataplane, prometheus))
    assert result.returncode == EXIT_PORT_TAKEN
    assert f"port {prometheus}" in result.stderr and "--prometheus-port" in result.stderr
    assert not (sandbox_dir / STATE_FILE).exists()
    assert not procs.port_in_use(api) and not procs.port_in_use(dataplane)


def test_missing_prometheus_is_named_with_the_way_to_install_it(sandbox_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    result = run(*up_args(sandbox_dir, *ports(3)), env=env)
    assert result.returncode == EXIT_PROMETHEUS_MISSING
    assert "prometheus" in result.stderr and "apt-get install" in result.stderr
    assert not (sandbox_dir / STATE_FILE).exists()
