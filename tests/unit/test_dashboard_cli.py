"""`modelrollout dashboard`'s ordinary failures are one line and an exit code, and it listens where told."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from modelrollout import cli
from modelrollout.client_errors import EXIT_USAGE
from modelrollout.dashboard.serve import allowed_hosts

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


def test_a_taken_port_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert cli.main(["dashboard", "--kubeconfig", str(kubeconfig), "--port", str(port)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"modelrollout dashboard: cannot listen on 127.0.0.1:{port}: ")


def test_a_missing_kubeconfig_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dashboard", "--kubeconfig", str(tmp_path / "nowhere")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err


def test_on_loopback_only_loopback_host_names_are_served() -> None:
    assert allowed_hosts("127.0.0.1") == allowed_hosts("::1") == allowed_hosts("localhost")
    assert "localhost" in allowed_hosts("127.0.0.1") and "*" not in allowed_hosts("127.0.0.1")
    assert allowed_hosts("0.0.0.0") == ["*"]  # a chosen address: any name that reaches it
