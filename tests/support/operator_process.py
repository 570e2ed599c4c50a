"""The operator as users run it: `modelrollout run` in its own process, against a kubeconfig."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.deadline import Deadline


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        prometheus_url: str | None,
        log_path: Path,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ):
        self.extra_args = list(extra_args)  # more flags (peering, verbose, ...)
        self.env = dict(env or {})  # more environment (a pod id, ...)
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.prometheus_url = prometheus_url
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def command(self) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "modelrollout.cli",
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            "--namespace",
            self.namespace,
            "--metrics-port",
            "0",
            "--health-endpoint",
            "",
            "--resync-seconds",
            "10",
        ]
        if self.prometheus_url:
            command += ["--prometheus-url", self.prometheus_url]
        return command + self.extra_args

    def start(self) -> OperatorProcess:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start #{self.starts} =====\n".encode())
        log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self._process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        return self

    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye, as when a node dies."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)
            self._process = None

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)
        self._process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = Deadline(timeout)
        while not deadline.expired():
            if text in self.logs():
                return
            time.sleep(0.2)
        raise AssertionError(f"operator never logged {text!r}; log tail:\n{self.logs()[-3000:]}")
