"""Rollback latency in the sandbox: first breaching sample -> rollback decision -> zero candidate traffic.

    python bench/rollback_latency.py [--runs N] [--scrape-interval 1s] [--analysis-interval 1s] [--rate 25]

One sandbox (emulated API, the real operator as a child process, real model-server processes, the
data plane, a real Prometheus). One rollout, ``bench/scorer``: 1.0.0 is deployed as stable, the load
generator sends ``--rate`` requests/s through the data plane, then N bad candidates are delivered one
after the other on the same rollout, alternating an erroring one (FAULT_ERROR_RATE=0.3) and a slow one
(FAULT_LATENCY_MS=400). Each goes to 25 % and then pauses for long enough that only the *background*
analysis (every ``--analysis-interval``, failureLimit 0) can roll it back.

Definitions (all wall-clock Unix times on this machine; every process shares the clock):

* **first breaching sample** (B): the earliest instant at which a metric's query, evaluated by
  Prometheus over the data it holds at the end of the run, crosses its threshold: a range query at
  100 ms steps from the delivery to the end of the run; the earliest step over both metrics. The
  query is the operator's own (same text, same [10s] windows). A breach can only begin at a sample's
  timestamp, so B is within 100 ms after the scrape that produced the breaching sample; that scrape's
  timestamp is reported too.
* **rollback decision** (D): the Degraded condition's ``lastTransitionTime``: the operator's clock at
  the start of the pass that decided (``reconcile()`` reads the clock before it queries).
* **zero candidate traffic** (Z): the data plane's ``last_at`` for the candidate: when the last
  response from a candidate pod was counted (after that, its count stops growing while load goes on).

Per run it also records, to explain where the time goes: the operator's background measurements of
the candidate (``status.backgroundAnalysis.metrics[].measurements``: time and value), the operator's
queries as Prometheus logged them (a ``query_log_file`` is switched on through a config reload of the
sandbox's Prometheus: evaluation time, completion time), the candidate pods' scrape timestamps and
durations, when the candidate pods became ready and left the endpoints, and, for every operator query,
what the same instant query returns at the same evaluation time now that all data is in (a value the
operator missed because a sample was not yet there shows up as a difference).

The target (issue 3): the decision within 2 scrape intervals + 1 s of the breach.
Raw data goes to ``--json`` (default: ``rollback_latency.json`` in the sandbox directory).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import kubernetes
from rich.console import Console
from rich.table import Table

from modelrollout import GROUP, PLURAL, VERSION
from modelrollout.api.durations import parse_duration
from modelrollout_devkit.sandbox.supervisor import Sandbox

NAMESPACE = "bench"
NAME = "scorer"
SELECTOR = 'rollout="{{name}}",version="{{candidate}}"'
QUERIES = {
    "error-rate": (
        f'sum(rate(model_requests_total{{{SELECTOR},outcome="error"}}[10s]))'
        f" / sum(rate(model_requests_total{{{SELECTOR}}}[10s]))"
    ),
    "p99-latency": (
        f"histogram_quantile(0.99, sum by (le) (rate(model_request_duration_seconds_bucket{{{SELECTOR}}}[10s])))"
    ),
}
THRESHOLDS = {"error-rate": 0.05, "p99-latency": 0.25}
FAULTS = [
    ("erroring", {"FAULT_ERROR_RATE": "0.3", "FAULT_SEED": "5"}),
    ("slow", {"FAULT_LATENCY_MS": "400"}),
]
STEP_S = 0.1  # the range query's resolution


def rollout_spec(version: str, env: dict[str, str], analysis_interval: str) -> dict[str, Any]:
    return {
        "replicas": 4,
        "model": {"name": NAME, "version": version},
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "server",
                        "image": "reference-model-server",
                        "env": [{"name": k, "value": v} for k, v in env.items()],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                    }
                ]
            }
        },
        # 25 %, then a pause no run reaches the end of: only the background analysis decides.
        "strategy": {"canary": {"steps": [{"setWeight": 25}, {"pause": {"duration": "10m"}}]}},
        "analysis": {
            "interval": analysis_interval,
            # The first seconds of a candidate have no samples (target pick-up, two scrapes for rate()).
            "inconclusiveLimit": 200,
            "metrics": [
                {"name": name, "prometheus": {"query": query}, "threshold": {"max": THRESHOLDS[name]}}
                for name, query in QUERIES.items()
            ],
        },
    }


def render(metric: str, version: str) -> str:
    return QUERIES[metric].replace("{{name}}", NAME).replace("{{candidate}}", version)


def parse_ts(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- Prometheus -----------------------------------------------------------------------------------


class Prom:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: Any) -> Any:
        full = f"{self.url}{path}?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(full, timeout=20) as answer:
            return json.load(answer)["data"]

    def instant(self, query: str, at: float) -> float | None:
        result = self.get("/api/v1/query", query=query, time=f"{at:.3f}")["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def series(self, query: str, start: float, end: float, step: float = STEP_S) -> list[tuple[float, float]]:
        """One series of a range query: (time, value) with NaN dropped."""
        result = self.get("/api/v1/query_range", query=query, start=f"{start:.3f}", end=f"{end:.3f}", step=step)[
            "result"
        ]
        points = [(float(t), float(v)) for s in result for t, v in s["values"]]
        return sorted((t, v) for t, v in points if not math.isnan(v))

    def raw(self, selector: str, end: float, window_s: int) -> dict[str, list[tuple[float, float]]]:
        """Raw samples (scrape timestamps) of a selector, by pod."""
        result = self.get("/api/v1/query", query=f"{selector}[{window_s}s]", time=f"{end:.3f}")["result"]
        return {s["metric"].get("pod", "?"): [(float(t), float(v)) for t, v in s["values"]] for s in result}

    def enable_query_log(self, config_file: Path, log_file: Path) -> None:
        """Switch on Prometheus's query log (a config reload; the sandbox enables the lifecycle API)."""
        config = json.loads(config_file.read_text())
        config.setdefault("global", {})["query_log_file"] = str(log_file)
        config_file.write_text(json.dumps(config, indent=2))
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200


def read_query_log(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    entries = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return entries, offset + end


# --- watching a run -------------------------------------------------------------------------------


@dataclass
class Watch:
    """What a 50 ms poller sees during a run: candidate pods' readiness, the status turning RolledBack."""

    version: str
    ready_at: dict[str, float] = field(default_factory=dict)
    gone_at: dict[str, float] = field(default_factory=dict)
    rolled_back_seen_at: float | None = None
    api_ready_at: float | None = None  # the candidate Deployment's readyReplicas >= 1, as the API serves it
    live_breach_at: dict[str, float] = field(default_factory=dict)  # a live instant query first crossed


class Poller(threading.Thread):
    def __init__(self, sandbox: Sandbox, custom: Any, apps: Any) -> None:
        super().__init__(daemon=True, name="bench-poller")
        self.sandbox = sandbox
        self.custom = custom
        self.apps = apps
        self.watch: Watch | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            watch = self.watch
            if watch is not None:
                now = time.time()
                try:
                    pods = self.sandbox.pods()
                    for pod in pods:
                        if pod["namespace"] != NAMESPACE or pod["version"] != watch.version:
                            continue
                        name = pod["name"]
                        if pod["ready"] and name not in watch.ready_at:
                            watch.ready_at[name] = now
                        if name in watch.ready_at and not pod["ready"] and name not in watch.gone_at:
                            watch.gone_at[name] = now
                    present = {p["name"] for p in pods if p["namespace"] == NAMESPACE}
                    for name in watch.ready_at:
                        if name not in present and name not in watch.gone_at:
                            watch.gone_at[name] = now
                    if watch.api_ready_at is None:
                        listed = self.apps.list_namespaced_deployment(
                            NAMESPACE, label_selector=f"{GROUP}/version={watch.version}"
                        )
                        if any((d.status.ready_replicas or 0) >= 1 for d in listed.items):
                            watch.api_ready_at = now
                    if watch.rolled_back_seen_at is None:
                        body = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)
                        status = body.get("status") or {}
                        if status.get("phase") == "RolledBack" and status.get("candidateVersion") == watch.version:
                            watch.rolled_back_seen_at = now
                except Exception:  # a poll that fails is retried on the next tick
                    pass
            self.stopping.wait(0.05)


class LiveProbe(threading.Thread):
    """Instant queries every 50 ms, as the operator would see the metric if it asked at that moment."""

    def __init__(self, prom: Prom) -> None:
        super().__init__(daemon=True, name="bench-probe")
        self.prom = prom
        self.watch: Watch | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            watch = self.watch
            if watch is not None:
                for metric in QUERIES:
                    if metric in watch.live_breach_at:
                        continue
                    asked = time.time()
                    try:
                        # In parentheses: the same value, but not the operator's text in the query log.
                        value = self.prom.instant(f"({render(metric, watch.version)})", asked)
                    except Exception:
                        continue
                    if value is not None and value > THRESHOLDS[metric]:
                        watch.live_breach_at[metric] = asked
            self.stopping.wait(0.05)


# --- the benchmark --------------------------------------------------------------------------------


@dataclass
class Run:
    index: int
    kind: str
    version: str
    env: dict[str, str]
    applied_at: float
    candidate_seen_at: float | None = None
    background_started_at: float | None = None
    decided_at: float | None = None
    rolled_back_seen_at: float | None = None
    message: str = ""
    first_data: dict[str, float | None] = field(default_factory=dict)
    breach_by_metric: dict[str, float | None] = field(default_factory=dict)
    breach_at: float | None = None
    breach_metric: str | None = None
    breach_scrape_at: float | None = None
    live_breach_at: float | None = None
    api_ready_at: float | None = None
    last_candidate_at: float | None = None
    zero_at: float | None = None
    candidate_served: int = 0
    pods_ready_at: dict[str, float] = field(default_factory=dict)
    pods_gone_at: dict[str, float] = field(default_factory=dict)
    first_scrape_at: dict[str, float] = field(default_factory=dict)
    scrapes: dict[str, list[float]] = field(default_factory=dict)
    scrape_durations: list[float] = field(default_factory=list)
    measurements: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    operator_queries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def to_decision(self) -> float | None:
        if self.breach_at is None or self.decided_at is None:
            return None
        return self.decided_at - self.breach_at

    @property
    def to_zero(self) -> float | None:
        if self.breach_at is None or self.zero_at is None:
            return None
        return self.zero_at - self.breach_at


class Bench:
    def __init__(self, sandbox: Sandbox, args: argparse.Namespace, console: Console) -> None:
        self.sandbox = sandbox
        self.args = args
        self.console = console
        client = kubernetes.config.new_client_from_config(config_file=str(sandbox.kubeconfig))  # type: ignore[no-untyped-call]
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)
        poll_client = kubernetes.config.new_client_from_config(config_file=str(sandbox.kubeconfig))  # type: ignore[no-untyped-call]
        self.poller = Poller(
            sandbox, kubernetes.client.CustomObjectsApi(poll_client), kubernetes.client.AppsV1Api(poll_client)
        )
        self.prom = Prom(sandbox.prometheus_url)
        self.probe = LiveProbe(self.prom)
        self.query_log = sandbox.dir / "prometheus" / "queries.log"
        self.query_log_offset = 0
        self.load: subprocess.Popen[bytes] | None = None

    def status(self) -> dict[str, Any]:
        body = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)
        assert isinstance(body, dict)
        return dict(body.get("status") or {})

    def wait(self, what: str, done: Any, timeout: float, every: float = 0.1) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if done(status):
                return status
            time.sleep(every)
        raise SystemExit(f"{what} did not happen within {timeout:g}s; status: {self.status().get('message')}")

    def stats(self, version: str) -> dict[str, Any]:
        return self.sandbox.stats()["by_version"].get(f"{NAMESPACE}/{NAME}/{version}") or {}

    def setup(self) -> None:
        self.prom.enable_query_log(self.sandbox.prometheus.config_file, self.query_log)  # type: ignore[union-attr]
        self.core.create_namespace(
            kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=NAMESPACE))
        )
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelRollout",
            "metadata": {"name": NAME},
            "spec": rollout_spec("1.0.0", {}, self.args.analysis_interval),
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
        self.wait("1.0.0 becoming stable", lambda s: s.get("phase") == "Succeeded", 90, 0.25)
        self.load = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelrollout_devkit.sandbox.loadgen",
                "--url",
                self.sandbox.service_url(NAMESPACE, NAME),
                "--rate",
                str(self.args.rate),
                "--duration",
                "3600",
                "--seed",
                "11",
            ],
            stdout=(self.sandbox.dir / "logs" / "loadgen.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.poller.start()
        self.probe.start()
        time.sleep(3)  # stable under load, scraped a few times

    def teardown(self) -> None:
        self.poller.stopping.set()
        self.probe.stopping.set()
        if self.load is not None:
            self.load.terminate()
            try:
                self.load.wait(10)
            except subprocess.TimeoutExpired:
                self.load.kill()

    def one(self, index: int) -> Run:
        kind, env = FAULTS[index % len(FAULTS)]
        version = f"2.{index}.0-{kind}"
        _, self.query_log_offset = read_query_log(self.query_log, self.query_log_offset)  # skip earlier entries
        self.poller.watch = self.probe.watch = watch = Watch(version)
        spec = rollout_spec(version, env, self.args.analysis_interval)
        applied = time.time()
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, NAME, {"spec": {"model": spec["model"], "template": spec["template"]}}
        )
        run = Run(index=index, kind=kind, version=version, env=env, applied_at=applied)
        self.wait(f"{version} to become the candidate", lambda s: s.get("candidateVersion") == version, 30, 0.05)
        run.candidate_seen_at = time.time()
        final = self.wait(
            f"{version} to be rolled back",
            lambda s: s.get("candidateVersion") == version and s.get("phase") in ("RolledBack", "Succeeded"),
            120,
            0.05,
        )
        if final.get("phase") != "RolledBack":
            raise SystemExit(f"{version} was not rolled back: {final.get('message')}")
        # Let the scale-down reach the data plane and in-flight requests finish; then the count is final.
        frozen_deadline = time.monotonic() + 15
        previous = -1
        time.sleep(1.0)
        while time.monotonic() < frozen_deadline:
            count = int(self.stats(version).get("count", 0))
            if count == previous:
                break
            previous = count
            time.sleep(1.0)
        time.sleep(max(0.0, 2.0 * self.args.scrape_s))  # Prometheus scrapes the last samples
        self.poller.watch = self.probe.watch = None
        end = time.time()
        entry = self.stats(version)
        run.last_candidate_at = float(entry.get("last_at") or 0) or None
        run.candidate_served = int(entry.get("count", 0))
        run.rolled_back_seen_at = watch.rolled_back_seen_at
        run.api_ready_at = watch.api_ready_at
        run.live_breach_at = min(watch.live_breach_at.values(), default=None)
        # Zero traffic: the candidate's pods are out of the endpoints (no new request) and its last
        # answer was counted (no request in flight): the later of the two.
        gone = max(watch.gone_at.values(), default=None)
        if gone is not None and run.last_candidate_at is not None:
            run.zero_at = max(gone, run.last_candidate_at)
        run.pods_ready_at, run.pods_gone_at = dict(watch.ready_at), dict(watch.gone_at)
        run.message = final.get("message", "")
        for condition in final.get("conditions") or []:
            if condition.get("type") == "Degraded" and condition.get("status") == "True":
                run.decided_at = parse_ts(condition.get("lastTransitionTime"))
        background = final.get("backgroundAnalysis") or {}
        run.background_started_at = parse_ts(background.get("startedAt"))
        for result in background.get("metrics") or []:
            run.measurements[result["name"]] = [
                {"at": parse_ts(m["at"]), "value": m.get("value"), "phase": m["phase"]}
                for m in result.get("measurements") or []
            ]
        self.collect_queries(run)
        self.collect_prometheus(run, end)
        return run

    def collect_queries(self, run: Run) -> None:
        """The operator's queries for this candidate, as Prometheus logged them (before we add our own)."""
        entries, self.query_log_offset = read_query_log(self.query_log, self.query_log_offset)
        texts = {render(metric, run.version): metric for metric in QUERIES}
        for entry in entries:
            params = entry.get("params") or {}
            metric = texts.get(params.get("query", ""))
            if metric is None or params.get("step", 0) not in (0, "0"):
                continue
            evaluated = parse_ts(params.get("start"))
            timings = (entry.get("stats") or {}).get("timings") or {}
            run.operator_queries.append(
                {
                    "metric": metric,
                    "evaluated_at": evaluated,
                    "logged_at": parse_ts(entry.get("ts")),
                    "exec_total_s": timings.get("execTotalTime"),
                }
            )
        run.operator_queries.sort(key=lambda q: q["evaluated_at"] or 0)

    def collect_prometheus(self, run: Run, end: float) -> None:
        start = run.applied_at
        for metric in QUERIES:
            points = self.prom.series(render(metric, run.version), start, end)
            run.first_data[metric] = points[0][0] if points else None
            run.breach_by_metric[metric] = next((t for t, v in points if v > THRESHOLDS[metric]), None)
        breaches = [(t, m) for m, t in run.breach_by_metric.items() if t is not None]
        if breaches:
            run.breach_at, run.breach_metric = min(breaches)
        window = int(end - start) + 5
        pods = "|".join(sorted(run.pods_ready_at)) or "none"
        ups = self.prom.raw(f'up{{namespace="{NAMESPACE}",pod=~"{pods}"}}', end, window)
        run.scrapes = {pod: [t for t, _ in samples] for pod, samples in ups.items()}
        run.first_scrape_at = {pod: times[0] for pod, times in run.scrapes.items() if times}
        durations = self.prom.raw(f'scrape_duration_seconds{{namespace="{NAMESPACE}",pod=~"{pods}"}}', end, window)
        run.scrape_durations = [v for samples in durations.values() for _, v in samples]
        if run.breach_at is not None:
            scrapes = [t for times in run.scrapes.values() for t in times if t <= run.breach_at + 1e-6]
            run.breach_scrape_at = max(scrapes) if scrapes else None
        # What each operator query would have returned with all data in (same evaluation time).
        by_metric = {m: [x for x in run.measurements.get(m, []) if x["at"] is not None] for m in QUERIES}
        for query in run.operator_queries:
            at = query["evaluated_at"]
            query["value_now"] = self.prom.instant(render(query["metric"], run.version), at) if at else None
            earlier = [x for x in by_metric[query["metric"]] if x["at"] <= at + 1e-3]
            if earlier:
                query["measured_at"] = earlier[-1]["at"]
                query["operator_value"] = earlier[-1]["value"]
                query["operator_phase"] = earlier[-1]["phase"]


# --- the report -----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float]) -> tuple[str, str, str]:
    if not values:
        return "-", "-", "-"
    return f"{statistics.median(values):.2f}", f"{percentile(values, 0.95):.2f}", f"{max(values):.2f}"


def explain(run: Run, interval: float) -> dict[str, Any]:
    """Where the time from breach to decision went, for one run."""
    out: dict[str, Any] = {}
    if run.breach_at is None or run.decided_at is None:
        return out
    ats = sorted({x["at"] for ms in run.measurements.values() for x in ms if x["at"]})
    gaps = [b - a for a, b in itertools.pairwise(ats)]
    out["measurements"] = len(ats)
    out["measurement_gap_median_s"] = statistics.median(gaps) if gaps else None
    out["first_measurement_at_minus_bg_start_s"] = (
        (ats[0] - run.background_started_at) if ats and run.background_started_at else None
    )
    # Operator queries evaluated after the breach that did not (yet) see it.
    after = [q for q in run.operator_queries if q["evaluated_at"] and q["evaluated_at"] >= run.breach_at]
    missed = [
        q
        for q in after
        if q.get("operator_phase") != "Failed"
        and q.get("value_now") is not None
        and q["value_now"] > THRESHOLDS[q["metric"]]
    ]
    out["queries_after_breach_that_missed_it"] = len(missed)
    decisive = [q for q in run.operator_queries if q.get("operator_phase") == "Failed"]
    if decisive:
        q = decisive[0]
        out["query_eval_after_pass_start_s"] = q["evaluated_at"] - q.get("measured_at", q["evaluated_at"])
        out["query_done_after_pass_start_s"] = (q["logged_at"] or 0) - q.get("measured_at", 0)
    if run.live_breach_at is not None:
        out["breach_to_live_visible_s"] = run.live_breach_at - run.breach_at
    if run.rolled_back_seen_at is not None:
        out["decision_to_status_seen_s"] = run.rolled_back_seen_at - run.decided_at
    if run.zero_at is not None:
        out["decision_to_zero_s"] = run.zero_at - run.decided_at
    if run.breach_scrape_at is not None:
        out["breach_minus_breaching_scrape_s"] = run.breach_at - run.breach_scrape_at
    if run.first_scrape_at and run.pods_ready_at:
        delays = [
            run.first_scrape_at[pod] - ready for pod, ready in run.pods_ready_at.items() if pod in run.first_scrape_at
        ]
        out["pod_ready_to_first_scrape_s"] = max(delays) if delays else None
    if run.background_started_at is not None:
        out["breach_minus_bg_start_s"] = run.breach_at - run.background_started_at
        if run.api_ready_at is not None:
            out["api_ready_to_bg_start_s"] = run.background_started_at - run.api_ready_at
    # What it would be if the analysis began when the API showed the candidate ready, measured at once
    # and then every interval: the first such measurement at or after the breach was visible live.
    visible = run.live_breach_at if run.live_breach_at is not None else run.breach_at
    if run.api_ready_at is not None:
        k = max(0, math.ceil((visible - run.api_ready_at) / interval - 1e-9))
        out["counterfactual_breach_to_decision_s"] = run.api_ready_at + k * interval - run.breach_at
    return out


def fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(console: Console, runs: list[Run], args: argparse.Namespace) -> dict[str, Any]:
    target = 2 * args.scrape_s + 1.0
    decisions = [r.to_decision for r in runs if r.to_decision is not None]
    zeros = [r.to_zero for r in runs if r.to_zero is not None]
    met = bool(decisions) and max(decisions) <= target and len(decisions) == len(runs)
    table = Table(title=f"Rollback latency in the sandbox ({len(runs)} bad candidates, load {args.rate:g} req/s)")
    for column in (
        "scrape",
        "analysis",
        "breach->decision med / p95 / max (s)",
        "breach->zero traffic med / p95 / max (s)",
        "target",
        "met",
    ):
        table.add_column(column)
    d, z = summary(decisions), summary(zeros)
    table.add_row(
        args.scrape_interval,
        args.analysis_interval,
        " / ".join(d),
        " / ".join(z),
        f"decision <= {target:g} s",
        "[green]yes[/green]" if met else "[red]no[/red]",
    )
    console.print(table)

    detail = Table(title="Per run (seconds; B = first breaching sample, D = decision, Z = zero traffic)")
    for column in (
        "#",
        "kind",
        "B-D",
        "B-Z",
        "D-Z",
        "B-live",
        "ready-bg",
        "bg-1st",
        "B-bg",
        "meas",
        "miss",
        "q.eval",
        "q.done",
        "D-seen",
        "ready-scrape",
        "if on time",
    ):
        detail.add_column(column, justify="right")
    explained = []
    interval = parse_duration(args.analysis_interval)
    for run in runs:
        e = explain(run, interval)
        explained.append(e)
        detail.add_row(
            str(run.index),
            run.kind,
            fmt(run.to_decision),
            fmt(run.to_zero),
            fmt(e.get("decision_to_zero_s")),
            fmt(e.get("breach_to_live_visible_s")),
            fmt(e.get("api_ready_to_bg_start_s")),
            fmt(e.get("first_measurement_at_minus_bg_start_s")),
            fmt(e.get("breach_minus_bg_start_s")),
            str(e.get("measurements", "-")),
            str(e.get("queries_after_breach_that_missed_it", "-")),
            fmt(e.get("query_eval_after_pass_start_s")),
            fmt(e.get("query_done_after_pass_start_s")),
            fmt(e.get("decision_to_status_seen_s")),
            fmt(e.get("pod_ready_to_first_scrape_s")),
            fmt(e.get("counterfactual_breach_to_decision_s")),
        )
    console.print(detail)
    console.print(
        "B-live: breach to a live instant query (every 50 ms) first crossing; ready-bg: the candidate Deployment "
        "ready in the API to the background analysis's startedAt; bg-1st: startedAt to the first measurement; "
        "B-bg: breach minus startedAt (negative: the breach came first); meas: background measurements taken; "
        "miss: operator queries evaluated after the breach that did not fail although the same query at the same "
        "time fails now; q.eval/q.done: the decisive query evaluated/finished in Prometheus, after the pass "
        "began; D-seen: decision to the RolledBack status seen by a 50 ms poll; ready-scrape: candidate pod "
        "ready to its first scrape; if on time: B-D had the analysis started when the API showed the candidate "
        "ready and measured at once, then every interval."
    )
    counterfactual = [
        e["counterfactual_breach_to_decision_s"] for e in explained if "counterfactual_breach_to_decision_s" in e
    ]
    return {
        "scrape_interval": args.scrape_interval,
        "analysis_interval": args.analysis_interval,
        "rate": args.rate,
        "target_s": target,
        "met": met,
        "breach_to_decision_s": dict(zip(("median", "p95", "max"), d, strict=True)),
        "breach_to_zero_traffic_s": dict(zip(("median", "p95", "max"), z, strict=True)),
        "if_on_time_breach_to_decision_s": dict(zip(("median", "p95", "max"), summary(counterfactual), strict=True)),
        "explained": explained,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--scrape-interval", default="1s")
    parser.add_argument("--analysis-interval", default="1s")
    parser.add_argument("--rate", type=float, default=25.0, help="load, requests per second")
    parser.add_argument("--dir", default=None, help="the sandbox's directory (default: a new temporary one)")
    parser.add_argument("--json", default=None, help="write the raw per-run data here")
    args = parser.parse_args(argv)
    args.scrape_s = parse_duration(args.scrape_interval)
    parse_duration(args.analysis_interval)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="modelrollout-bench-"))
    console.print(f"sandbox in {directory} (scrape {args.scrape_interval}, analysis {args.analysis_interval})")
    runs: list[Run] = []
    with Sandbox(directory, dataplane_port=0, prometheus_port=0, api_port=0, scrape_interval=args.scrape_s) as box:
        bench = Bench(box, args, console)
        try:
            bench.setup()
            for index in range(args.runs):
                run = bench.one(index)
                runs.append(run)
                console.print(
                    f"run {index} {run.kind:8} breach->decision "
                    f"{'-' if run.to_decision is None else f'{run.to_decision:.2f}s'}  breach->zero "
                    f"{'-' if run.to_zero is None else f'{run.to_zero:.2f}s'}  ({run.message[:90]})"
                )
        finally:
            bench.teardown()
    summary_ = report(console, runs, args)
    out = Path(args.json) if args.json else directory / "rollback_latency.json"
    out.write_text(json.dumps({"summary": summary_, "runs": [asdict(r) for r in runs]}, indent=1))
    console.print(f"raw data: {out}")
    return 0 if summary_["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
