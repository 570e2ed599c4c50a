"""Run the reference model server as a real subprocess and read its /metrics, for the sandbox unit tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str, timeout: float = 2.0) -> int:
    """The status of a GET, or 0 if nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


class ServerProcess:
    """``python -m modelrollout_devkit.sandbox.model_server`` on a free loopback port."""

    def __init__(self, env: Mapping[str, str], log_dir: Path, name: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        full_env = {
            **os.environ,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "ROLLOUT_NAME": "demo",
            "MODEL_NAME": "bc",
            **env,
        }
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelrollout_devkit.sandbox.model_server"],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.ready_after_s: float | None = None

    def wait_ready(self, timeout: float = 20.0) -> float:
        """Seconds from spawn to the first 200 on /ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log()}")
            if http_status(self.url + "/ready", timeout=0.5) == 200:
                self.ready_after_s = time.monotonic() - self.started_at
                return self.ready_after_s
            time.sleep(0.02)
        raise TimeoutError(f"{self.name} not ready after {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> Metrics:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            return Metrics(resp.read().decode())

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)


class Metrics:
    """One scrape: samples looked up by name and a subset of labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [
            (s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def find(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [(lab, v) for n, lab, v in self.samples if n == name and all(lab.get(k) == x for k, x in labels.items())]

    def value(self, name: str, **labels: str) -> float:
        found = self.find(name, **labels)
        assert len(found) == 1, f"expected one {name}{labels}, found {found}"
        return found[0][1]

    def total(self, name: str, **labels: str) -> float:
        return sum(v for _, v in self.find(name, **labels))

    def buckets(self, name: str, **labels: str) -> dict[str, float]:
        """Cumulative bucket counts by `le`."""
        return {lab["le"]: v for lab, v in self.find(name + "_bucket", **labels)}
