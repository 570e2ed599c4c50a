"""Issue 3's end-to-end tests: the real operator delivers the reference model server in the sandbox,
judged on real metrics scraped by a real Prometheus, under real traffic from the load generator.

Every test has its own namespace and rollout; one sandbox serves the module. Short intervals: scrape
1 s, analysis 1 s, rate windows 10 s. Timings (breach -> rollback decision -> last request served by
the candidate) are printed, and summed up at the end of the module.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from modelrollout_devkit.sandbox.dataplane import count_for
from modelrollout_devkit.sandbox.supervisor import Sandbox
from tests.e2e.conftest import close_namespace, open_namespace
from tests.support.cluster import Cluster
from tests.support.deadline import Deadline
from tests.support.operator_passes import passes, wait_for_passes

pytestmark = pytest.mark.timeout(120)

SELECTOR = 'rollout="{{name}}",version="{{candidate}}"'
ERROR_RATE = (
    f'sum(rate(model_requests_total{{{SELECTOR},outcome="error"}}[10s]))'
    f" / sum(rate(model_requests_total{{{SELECTOR}}}[10s]))"
)
P99_LATENCY = f"histogram_quantile(0.99, sum by (le) (rate(model_request_duration_seconds_bucket{{{SELECTOR}}}[10s])))"
ERROR_RATE_MAX = 0.05
P99_MAX_S = 0.2
#: 25 % to the candidate, then a pause long enough for Prometheus to pick the new pod up (its target
#: list reloads every 5 s), then an analysis step, then 50 %.
STEPS: list[dict[str, Any]] = [
    {"setWeight": 25},
    {"pause": {"duration": "8s"}},
    {"analysis": {"metrics": ["error-rate", "p99-latency"], "count": 3, "interval": "1s"}},
    {"setWeight": 50},
    {"pause": {"duration": "2s"}},
]
LOAD_RATE = 20.0


def rollout_spec(version: str, env: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "replicas": 4,
        "model": {"name": "breast-cancer", "version": version},
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "server",
                        "image": "reference-model-server",
                        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                    }
                ]
            }
        },
        "strategy": {"canary": {"steps": STEPS}},
        "analysis": {
            "interval": "1s",
            # The first ~7 s of a candidate have no samples yet (target pick-up, two scrapes for rate()).
            "inconclusiveLimit": 12,
            "metrics": [
                {"name": "error-rate", "prometheus": {"query": ERROR_RATE}, "threshold": {"max": ERROR_RATE_MAX}},
                {"name": "p99-latency", "prometheus": {"query": P99_LATENCY}, "threshold": {"max": P99_MAX_S}},
            ],
        },
        **extra,
    }


@dataclass
class Scenario:
    """One test's namespace and rollout in the shared sandbox."""

    sandbox: Sandbox
    cluster: Cluster
    name: str
    load: subprocess.Popen[bytes] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.cluster.namespace

    def served(self, version: str) -> int:
        return count_for(self.sandbox.stats(), self.namespace, self.name, version)

    def last_served_at(self, version: str) -> float:
        entry = self.sandbox.stats()["by_version"].get(f"{self.namespace}/{self.name}/{version}") or {}
        return float(entry.get("last_at", 0.0))

    def query(self, promql: str) -> float | None:
        """The single value of a query, None for no data."""
        url = f"{self.sandbox.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as answer:
            result = json.load(answer)["data"]["result"]
        if len(result) != 1:
            return None
        value = float(result[0]["value"][1])
        return None if value != value else value  # NaN: no data either

    def deploy_stable(self, version: str = "1.0.0") -> None:
        self.cluster.create_rollout(self.name, rollout_spec(version))
        status = self.cluster.wait_for_phase(self.name, "Succeeded", timeout=60)
        assert status["stableVersion"] == version

    def deliver(self, version: str, env: dict[str, str] | None = None, **extra: Any) -> None:
        spec = rollout_spec(version, env, **extra)
        self.cluster.patch_spec(self.name, {k: spec[k] for k in ("model", "template", *extra)})
        self.cluster.wait_for(
            f"{version} to become the candidate",
            lambda: self.cluster.status(self.name).get("candidateVersion") == version,
        )

    def watch_rollback(self, version: str, promql: str, limit: float, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for the rollback, noting when Prometheus first showed the breach and when the
        operator decided; returns the final status."""
        query = promql.replace("{{name}}", self.name).replace("{{candidate}}", version)
        breach: float | None = None
        deadline = Deadline(timeout)
        while not deadline.expired():
            if breach is None:
                value = self.query(query)
                if value is not None and value > limit:
                    breach = time.time()
            status = self.cluster.status(self.name)
            if status.get("phase") == "RolledBack":
                decided = decision_time(status) or time.time()
                self.notes.update(breach=breach, decided=decided)
                return status
            time.sleep(0.2)
        raise AssertionError(f"{self.name} was not rolled back in {timeout:g}s: {self.cluster.status(self.name)}")

    def assert_no_more_traffic_to(self, version: str, answers: int = 20) -> None:
        """The failed version is out of the data plane (the scale-down reaches it through a watch):
        while the load goes on, the stable version answers `answers` more requests and it none."""
        before_stable = self.served("1.0.0")

        def out() -> bool:
            frozen, start = self.served(version), self.served("1.0.0")
            self.cluster.wait_for(
                "the stable version to answer more", lambda: self.served("1.0.0") >= start + answers, timeout=30
            )
            return self.served(version) == frozen

        self.cluster.wait_for(f"{version} to get no more requests", out, timeout=60)
        assert self.served("1.0.0") > before_stable, "the stable version stopped serving"
        self.notes["last_candidate_request"] = self.last_served_at(version)

    def wait_for_another_pass(self) -> None:
        """Until the operator has looked at the rollout again (at the latest its resync), so that a
        check of "nothing more happened" follows a pass that could have done it."""
        url = self.sandbox.operator.metrics_url
        wait_for_passes(url, {self.name: (passes(url) or {}).get(self.name, 0)})

    def record_timings(self, label: str) -> None:
        breach, decided, last = (self.notes.get(k) for k in ("breach", "decided", "last_candidate_request"))
        row = {
            "case": label,
            "breach_to_decision_s": None if breach is None else round(decided - breach, 2),
            "breach_to_zero_traffic_s": None if breach is None or not last else round(last - breach, 2),
            "decision_to_zero_traffic_s": None if not last else round(last - decided, 2),
        }
        print(f"\n{label}: {row}")


def decision_time(status: dict[str, Any]) -> float | None:
    """When the operator rolled back: the Degraded condition's transition (millisecond precision)."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Degraded" and condition.get("status") == "True":
            return datetime.fromisoformat(condition["lastTransitionTime"]).timestamp()
    return None


@contextmanager
def scenario(sandbox: Sandbox, prefix: str) -> Iterator[Scenario]:
    cluster = open_namespace(sandbox, prefix)
    made = Scenario(sandbox, cluster, f"{prefix}-{uuid.uuid4().hex[:4]}")
    try:
        yield made
    finally:
        if made.load is not None:
            stop_load(made)
        operator = sandbox.operator
        if operator is not None and sys.exc_info()[0] is not None:
            print(f"--- operator log ---\n{operator.logs()[-6000:]}")
        close_namespace(sandbox, cluster)


def start_load(made: Scenario) -> None:
    """The load generator as its own process (its own GIL), at a fixed rate through the data plane."""
    made.load = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelrollout_devkit.sandbox.loadgen",
            "--url",
            made.sandbox.service_url(made.namespace, made.name),
            "--rate",
            str(LOAD_RATE),
            "--duration",
            "300",
            "--seed",
            "3",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_load(made: Scenario) -> None:
    if made.load is not None:
        made.load.send_signal(signal.SIGTERM)
        try:
            made.load.wait(10)
        except subprocess.TimeoutExpired:
            made.load.kill()
            made.load.wait(5)
        made.load = None


def test_good_candidate_is_promoted(sandbox: Sandbox) -> None:
    with scenario(sandbox, "good") as made:
        made.deploy_stable()
        start_load(made)
        made.deliver("2.0.0")
        status = made.cluster.wait_for_phase(made.name, "Succeeded", timeout=90)
        assert status["stableVersion"] == "2.0.0"
        assert (status["weights"]["stable"], status["weights"]["candidate"]) == (100, 0)
        assert made.cluster.replicas_by_version() == {"2.0.0": 4}
        assert made.served("2.0.0") > 0
        reasons = made.cluster.event_reasons(made.name)
        assert "AnalysisSucceeded" in reasons and "Promoted" in reasons
        # Judged on real numbers: the step analysis measured the candidate's error rate and latency.
        step = status.get("stepAnalysis") or {}
        background = status.get("backgroundAnalysis") or {}
        measured = [m for r in [*step.get("metrics", []), *background.get("metrics", [])] for m in r["measurements"]]
        assert any(m["phase"] == "Successful" for m in measured) or "AnalysisSucceeded" in reasons


def test_erroring_candidate_is_rolled_back_and_gets_no_more_traffic(sandbox: Sandbox) -> None:
    with scenario(sandbox, "erroring") as made:
        made.deploy_stable()
        start_load(made)
        made.deliver("2.0.0-err", {"FAULT_ERROR_RATE": "0.3", "FAULT_SEED": "5"})
        status = made.watch_rollback("2.0.0-err", ERROR_RATE, ERROR_RATE_MAX)
        assert "error-rate" in status["message"], status["message"]
        assert status["stableVersion"] == "1.0.0"
        assert (status["weights"]["stable"], status["weights"]["candidate"]) == (100, 0)
        assert made.served("2.0.0-err") > 0, "the candidate was judged on traffic it really got"
        made.assert_no_more_traffic_to("2.0.0-err")
        made.cluster.wait_for(
            "the candidate scaled to 0", lambda: made.cluster.replicas_by_version().get("2.0.0-err") == 0
        )
        made.record_timings("erroring")


def test_slow_candidate_is_rolled_back(sandbox: Sandbox) -> None:
    with scenario(sandbox, "slow") as made:
        made.deploy_stable()
        start_load(made)
        made.deliver("2.0.0-slow", {"FAULT_LATENCY_MS": "400"})
        status = made.watch_rollback("2.0.0-slow", P99_LATENCY, P99_MAX_S)
        assert "p99-latency" in status["message"], status["message"]
        assert status["stableVersion"] == "1.0.0"
        made.assert_no_more_traffic_to("2.0.0-slow")
        made.record_timings("slow")


def test_crash_looping_candidate_is_rolled_back_on_the_progress_deadline(sandbox: Sandbox) -> None:
    with scenario(sandbox, "crashing") as made:
        made.deploy_stable()
        start_load(made)
        made.deliver("2.0.0-crash", {"FAULT_CRASH_ON_START": "true"}, progressDeadlineSeconds=8)
        status = made.cluster.wait_for_phase(made.name, "RolledBack", timeout=60)
        assert "progressDeadlineSeconds 8" in status["message"], status["message"]
        assert "ProgressDeadlineExceeded" in made.cluster.event_reasons(made.name)
        crashed = [p for p in sandbox.pods() if p["namespace"] == made.namespace and p["version"] == "2.0.0-crash"]
        assert all(not p["ready"] for p in crashed)
        assert made.served("2.0.0-crash") == 0, "a version that never became ready got traffic"
        assert made.served("1.0.0") > 0


def test_candidate_without_traffic_is_not_promoted_on_empty_queries(sandbox: Sandbox) -> None:
    with scenario(sandbox, "idle") as made:
        made.deploy_stable()
        made.deliver("2.0.0")  # and no load at all
        status = made.cluster.wait_for_phase(made.name, "Paused", timeout=60)
        assert status["pauseReason"] == "Inconclusive", status
        assert status.get("stableVersion") == "1.0.0" and status.get("candidateVersion") == "2.0.0"
        assert "AnalysisInconclusive" in made.cluster.event_reasons(made.name)
        # Not for want of scraping: Prometheus has the candidate's series, at zero requests.
        served = made.query(f'sum(model_requests_total{{rollout="{made.name}",version="2.0.0"}})')
        assert served == 0.0, served
        made.wait_for_another_pass()
        assert made.cluster.status(made.name)["phase"] == "Paused"
        assert made.cluster.replicas_by_version().get("2.0.0") != 4
