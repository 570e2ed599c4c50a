"""The sandbox's Prometheus: Debian's real ``prometheus`` binary, scraping the sandbox's processes.

Jobs: ``model-servers`` (every pod of the registry, through a file_sd file rewritten atomically on each
change, with the target labels ``namespace``, ``pod`` and ``deployment``, as Kubernetes service
discovery would add them), ``sandbox-dataplane`` and ``modelrollout-operator`` (static).

Facts that shape it (Prometheus 2.42, measured here): it is ready in ~0.1 s but applies target changes
on a 5 s tick, so a new pod is first scraped up to ~5 s after it appears; the storage lives under the
sandbox directory, so a restart keeps the history.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from modelrollout_devkit.sandbox import procs
from modelrollout_devkit.sandbox.registry import Pod

INSTALL_HINT = "install it with `sudo apt-get install -y prometheus` (Debian/Ubuntu)"
MODEL_SERVERS_JOB = "model-servers"
DATAPLANE_JOB = "sandbox-dataplane"
OPERATOR_JOB = "modelrollout-operator"


class PrometheusMissing(RuntimeError):
    """No ``prometheus`` binary on PATH."""


class PrometheusFailed(RuntimeError):
    """Prometheus exited or did not become ready."""


def find_prometheus(binary: str | None = None) -> str:
    """The path of the binary to run, or :class:`PrometheusMissing` with the way to install it."""
    found = shutil.which(binary or "prometheus")
    if found is None:
        raise PrometheusMissing(f"the `prometheus` binary is not on PATH; {INSTALL_HINT}")
    return found


def format_interval(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


class SandboxPrometheus:
    """One Prometheus process with its config, file_sd targets and storage under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int,
        scrape_interval: float = 1.0,
        static_jobs: Mapping[str, Iterable[str]] | None = None,
        binary: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.host = host
        self.scrape_interval = scrape_interval
        self.static_jobs = {job: list(targets) for job, targets in (static_jobs or {}).items()}
        self.binary = find_prometheus(binary)
        self.config_file = workdir / "prometheus.yml"
        self.targets_file = workdir / "pods.json"
        self.storage = workdir / "data"
        self.log_file = workdir / "prometheus.log"
        self.process: asyncio.subprocess.Process | None = None
        self._last_targets: list[dict[str, Any]] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self, timeout: float = 30.0) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if self._last_targets is None:
            self.set_pods([])
        self.process = await procs.spawn(
            [
                self.binary,
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.storage}",
                f"--web.listen-address={self.host}:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
            ],
            env=procs.base_env(),
            log_path=self.log_file,
        )
        await self._wait_ready(timeout)

    async def stop(self) -> None:
        if self.process is not None:
            await procs.terminate(self.process, grace=10.0)
            self.process = None

    def set_pods(self, pods: Iterable[Pod]) -> None:
        """Scrape these pods (every pod with a process, ready or not: an unready pod's metrics count)."""
        groups = [
            {
                "targets": [pod.address],
                "labels": {"namespace": pod.namespace, "pod": pod.name, "deployment": pod.deployment},
            }
            for pod in sorted(pods, key=lambda p: (p.namespace, p.name))
            if pod.state != "terminating"
        ]
        if groups == self._last_targets:
            return
        self._last_targets = groups
        self.workdir.mkdir(parents=True, exist_ok=True)
        temporary = self.targets_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(groups, indent=1))
        os.replace(temporary, self.targets_file)  # atomic: Prometheus never reads half a file

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def target_health(self) -> dict[tuple[str, str], str]:
        """(job, instance) -> "up" | "down" | "unknown" of the active targets."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/api/v1/targets?state=active", timeout=aiohttp.ClientTimeout(total=3)) as resp,
        ):
            payload = await resp.json()
        return {
            (t["labels"].get("job", ""), t["labels"].get("instance", "")): t.get("health", "unknown")
            for t in payload.get("data", {}).get("activeTargets", [])
        }

    async def _wait_ready(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline:
                if self.process is None or self.process.returncode is not None:
                    raise PrometheusFailed(f"prometheus exited during start-up:\n{self.log_tail()}")
                try:
                    async with session.get(f"{self.url}/-/ready", timeout=aiohttp.ClientTimeout(total=1)) as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass
                await asyncio.sleep(0.05)
        await self.stop()
        raise PrometheusFailed(f"prometheus not ready after {timeout:g}s:\n{self.log_tail()}")

    def _write_config(self) -> None:
        interval = format_interval(self.scrape_interval)
        scrape_configs: list[dict[str, Any]] = [
            {
                "job_name": MODEL_SERVERS_JOB,
                "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
            }
        ]
        scrape_configs += [
            {"job_name": job, "metrics_path": path, "static_configs": [{"targets": targets}]}
            for job, targets in self.static_jobs.items()
            for path in [_metrics_path(job)]
            if targets
        ]
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "scrape_configs": scrape_configs,
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        # JSON is YAML.
        self.config_file.write_text(json.dumps(config, indent=2))


def _metrics_path(job: str) -> str:
    return "/_dataplane/metrics" if job == DATAPLANE_JOB else "/metrics"
