"""A real Prometheus (Debian's `prometheus` binary) for tests, plus pytest fixtures.

What it does, and why:

* runs on 127.0.0.1 on a free port, with its config and TSDB in a temp directory, scraping every
  second and evaluating every second;
* scrapes static targets and the targets of a file_sd file that `add_targets` / `remove_targets`
  rewrite at run time (atomically, so Prometheus never reads half a file): one Prometheus can serve
  a whole session while the sandbox and tests come and go;
* `start()` waits until every target has been scraped successfully (health "up" in
  /api/v1/targets), not only for `/-/ready`: Prometheus 2.42 is ready within ~0.1 s but loads its
  scrape targets on a 5 s tick, so a query made at "ready" sees nothing (and after a restart the
  stored `up` series still says 1 from the previous run, so it cannot be trusted for this);
* `stop()` / `start()` keep the port and the storage, for "Prometheus down, then back" tests.

Using it from a conftest:

    from tests.support.prometheus import prometheus_session, shared_exporter  # noqa: F401

or, without fixtures:

    with running_prometheus(targets=[exporter.target]) as prometheus:
        prometheus.wait_for_value('model_error_ratio{version="2"}', lambda v: v == 0.01)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.deadline import Deadline
from tests.support.exporter import Exporter, free_port

JOB = "modelrollout-test"
REQUIRE_ENV = "MODELROLLOUT_REQUIRE_PROMETHEUS"
INSTALL_HINT = "install it with `apt-get install -y prometheus` (Debian/Ubuntu)"


class PrometheusError(RuntimeError):
    """Prometheus did not start, or did not reach the state a test waited for."""


def prometheus_binary() -> str:
    """The path of `prometheus`, or a pytest skip (a failure when MODELROLLOUT_REQUIRE_PROMETHEUS=1)."""
    found = shutil.which("prometheus")
    if found is None:
        message = f"the `prometheus` binary is not on PATH; {INSTALL_HINT}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def _get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


class PrometheusServer:
    """One Prometheus process (restartable) and its scrape targets."""

    def __init__(
        self,
        targets: Iterable[str] = (),
        *,
        scrape_interval: float = 1.0,
        workdir: Path | None = None,
        port: int | None = None,
        binary: str | None = None,
    ) -> None:
        """`targets`: `host:port` scraped from the static config; more can be added with `add_targets`."""
        self._binary = binary
        self._static_targets = list(targets)
        self._scrape_interval = scrape_interval
        self._fixed_port = port is not None
        self._port = port or free_port()
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="modelrollout-prometheus-")
            workdir = Path(self._tempdir.name)
        self.workdir = workdir
        self.storage = workdir / "data"
        self.config_file = workdir / "prometheus.yml"
        self.targets_file = workdir / "targets.json"
        self.log_file = workdir / "prometheus.log"
        self._file_targets: dict[str, dict[str, str]] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self.timings: dict[str, float] = {}
        """Seconds, from the last start: `ready` (/-/ready answers) and `targets_up` (every up == 1)."""

    # -- addresses -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        """The base URL, e.g. http://127.0.0.1:40123 (what a ModelRollout's prometheus.address holds)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def targets(self) -> list[str]:
        """Every target scraped now: static ones first, then the file_sd ones."""
        return [*self._static_targets, *self._file_targets]

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0, wait_for_targets: bool = True) -> PrometheusServer:
        """Start (or start again, on the same port and storage) and wait until it is usable."""
        if self.running:
            return self
        binary = self._binary or prometheus_binary()
        self.storage.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if not self.targets_file.exists():
            self._write_targets()
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            started = time.monotonic()
            self._spawn(binary)
            try:
                self._wait_ready(timeout)
                break
            except PrometheusError:
                # The free port was taken by someone else between probing and binding: try another.
                if attempt + 1 < attempts and "address already in use" in self.log_tail():
                    self._port = free_port()
                    continue
                raise
        self.timings = {"ready": time.monotonic() - started}
        if wait_for_targets and self.targets:
            self.wait_for_targets_up(timeout=timeout)
            self.timings["targets_up"] = time.monotonic() - started
        return self

    def stop(self, graceful: bool = True, timeout: float = 10.0) -> None:
        """Stop the process (SIGTERM; SIGKILL when `graceful` is False or it lingers)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)

    def close(self) -> None:
        """Stop and delete the temp directory (if this object made it)."""
        self.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- targets ---------------------------------------------------------------------------------

    def add_targets(
        self,
        targets: Iterable[str],
        labels: Mapping[str, str] | None = None,
        wait: bool = True,
        timeout: float = 30.0,
    ) -> None:
        """Scrape more `host:port` targets (with extra target labels); wait until they are up."""
        added = list(targets)
        for target in added:
            self._file_targets[target] = dict(labels or {})
        self._write_targets()
        if wait and added:
            self.wait_for_targets_up(added, timeout=timeout)

    def remove_targets(self, targets: Iterable[str], wait: bool = True, timeout: float = 30.0) -> None:
        """Stop scraping these targets; wait until Prometheus no longer lists them."""
        removed = [target for target in targets if self._file_targets.pop(target, None) is not None]
        self._write_targets()
        if wait and removed:
            self._wait(
                lambda: not (set(removed) & set(self._target_health())),
                timeout,
                lambda: f"targets {removed} still scraped",
            )

    def wait_for_targets_up(self, targets: Iterable[str] | None = None, timeout: float = 30.0) -> None:
        """Wait until each target (default: all) has been scraped successfully (`up == 1`)."""
        wanted = list(self.targets if targets is None else targets)

        def done() -> bool:
            health = self._target_health()
            return all(health.get(target) == "up" for target in wanted)

        self._wait(done, timeout, lambda: f"targets not up: {self._describe_up(wanted)}")

    # -- queries ---------------------------------------------------------------------------------

    def query(self, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The instant-vector `result` of a query (raises for an error answer)."""
        url = f"{self.address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        payload = _get_json(url, timeout=timeout)
        if payload.get("status") != "success":
            raise PrometheusError(f"query {promql!r} failed: {payload.get('error')}")
        data = payload["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, promql: str) -> list[float]:
        """The values of the series a query returns, in Prometheus's order."""
        return [float(item["value"][1]) for item in self.query(promql)]

    def wait_for_value(
        self,
        promql: str,
        predicate: Callable[[float], bool] = lambda value: True,
        timeout: float = 15.0,
    ) -> float:
        """Wait until `promql` returns exactly one series whose value satisfies `predicate`; return it."""
        seen: list[str] = []

        def done() -> bool:
            try:
                values = self.values(promql)
            except (OSError, PrometheusError, ValueError) as exc:
                seen[:] = [f"error: {exc}"]
                return False
            seen[:] = [f"values {values}"]
            return len(values) == 1 and not math.isnan(values[0]) and predicate(values[0])

        self._wait(done, timeout, lambda: f"{promql!r} never matched; last: {seen[0] if seen else 'nothing'}")
        return self.values(promql)[0]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- internals -------------------------------------------------------------------------------

    def _spawn(self, binary: str) -> None:
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.config_file}",
                    f"--storage.tsdb.path={self.storage}",
                    f"--web.listen-address=127.0.0.1:{self._port}",
                    "--web.enable-lifecycle",
                    "--storage.tsdb.retention.time=1d",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own process group, so Ctrl-C in pytest does not kill it before teardown runs.
                start_new_session=True,
            )

    def _wait_ready(self, timeout: float) -> None:
        deadline = Deadline(timeout)
        while not deadline.expired():
            if self._process is None or self._process.poll() is not None:
                self._process = None
                raise PrometheusError(f"prometheus exited during start-up:\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.address}/-/ready", timeout=1.0) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.02)
        self.stop(graceful=False)
        raise PrometheusError(f"prometheus not ready after {deadline.describe()}:\n{self.log_tail()}")

    def _wait(self, done: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> None:
        deadline = Deadline(timeout)
        while True:
            if not self.running:
                raise PrometheusError(f"prometheus is not running:\n{self.log_tail()}")
            if done():
                return
            if deadline.expired():
                raise PrometheusError(f"after {deadline.describe()}: {describe()}")
            time.sleep(0.05)

    def _target_health(self) -> dict[str, str]:
        """instance -> health ("up", "down", "unknown") of the active targets of our job.

        Read from /api/v1/targets, not from the `up` series: after a restart the TSDB still holds
        the last `up == 1` of the previous run, which a query returns for 5 minutes (lookback).
        """
        try:
            payload = _get_json(f"{self.address}/api/v1/targets?state=active")
        except (OSError, ValueError):
            return {}
        return {
            target["labels"].get("instance", ""): target.get("health", "unknown")
            for target in payload.get("data", {}).get("activeTargets", [])
            if target.get("labels", {}).get("job") == JOB
        }

    def _describe_up(self, wanted: list[str]) -> str:
        health = self._target_health()
        states = ", ".join(f"{target}: {health.get(target, 'not listed')}" for target in wanted)
        return f"{states} (prometheus log: {self.log_file})"

    def _write_config(self) -> None:
        interval = f"{max(1, round(self._scrape_interval * 1000))}ms"
        # JSON is valid YAML; writing it avoids a YAML dependency in the test support.
        config = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "static_configs": [{"targets": self._static_targets}] if self._static_targets else [],
                    "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
                }
            ],
        }
        self.config_file.write_text(json.dumps(config, indent=2))

    def _write_targets(self) -> None:
        groups = [{"targets": [target], "labels": labels} for target, labels in self._file_targets.items()]
        temporary = self.targets_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(groups))
        os.replace(temporary, self.targets_file)


@contextmanager
def running_prometheus(
    targets: Iterable[str] = (), *, scrape_interval: float = 1.0, timeout: float = 30.0
) -> Iterator[PrometheusServer]:
    """A started Prometheus scraping `targets`, stopped and deleted after the block."""
    server = PrometheusServer(targets, scrape_interval=scrape_interval)
    try:
        server.start(timeout=timeout)
        yield server
    finally:
        server.close()


# -- pytest fixtures ---------------------------------------------------------------------------
# Import them into a conftest. Each conftest that imports a session fixture gets its own
# instance; for one Prometheus across the whole suite, list this module in the root conftest's
# `pytest_plugins` instead.


@pytest.fixture(scope="session")
def prometheus_session() -> Iterator[PrometheusServer]:
    """One Prometheus for the session; add targets with `add_targets` (file_sd)."""
    server = PrometheusServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def shared_exporter(prometheus_session: PrometheusServer) -> Iterator[Exporter]:
    """An exporter already scraped by `prometheus_session`: set series with labels unique to a test,
    and nobody waits for a new target to be picked up (~5 s each)."""
    exporter = Exporter().start()
    try:
        prometheus_session.add_targets([exporter.target])
        yield exporter
    finally:
        exporter.stop()


@pytest.fixture
def scraped_exporter(prometheus_session: PrometheusServer) -> Iterator[Exporter]:
    """A fresh exporter of this test's own, scraped by `prometheus_session` (costs ~5 s to pick up)."""
    exporter = Exporter().start()
    try:
        prometheus_session.add_targets([exporter.target])
        yield exporter
    finally:
        prometheus_session.remove_targets([exporter.target], wait=False)
        exporter.stop()
