"""The operator's own Prometheus metrics (prometheus-client), documented in docs/operator-metrics.md."""

from __future__ import annotations

import contextlib
import gc
import time
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from modelrollout.api.models import ModelRolloutStatus, Phase
from modelrollout.engine.machine import timestamp
from modelrollout.engine.types import Decision

ROLLBACK_REASONS = {"AnalysisFailed", "AnalysisError", "ProgressDeadlineExceeded", "Aborted"}


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.phase = Gauge(
            "modelrollout_rollout_phase",
            "1 for the phase each ModelRollout is in, 0 for the others.",
            ["namespace", "name", "phase"],
            registry=self.registry,
        )
        self.weight = Gauge(
            "modelrollout_rollout_weight_percent",
            "Percent of traffic on each version of a ModelRollout.",
            ["namespace", "name", "role"],
            registry=self.registry,
        )
        self.measurements = Counter(
            "modelrollout_analysis_measurements",
            "Measurements taken, by metric and verdict.",
            ["namespace", "name", "metric", "verdict"],
            registry=self.registry,
        )
        self.rollbacks = Counter(
            "modelrollout_rollbacks",
            "Rollbacks, by reason.",
            ["namespace", "name", "reason"],
            registry=self.registry,
        )
        self.drifted = Gauge(
            "modelrollout_model_drifted",
            "1 while the promoted model of a ModelRollout with spec.monitoring is in a drift episode.",
            ["namespace", "name"],
            registry=self.registry,
        )
        self.passes = Counter(
            "modelrollout_rollout_passes",
            "Reconcile passes over each ModelRollout that completed: that the operator has looked at a "
            "rollout since some moment, whether or not anything changed.",
            ["namespace", "name"],
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "modelrollout_reconcile_duration_seconds",
            "Time of one reconcile pass (read, decide, act, record).",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.pass_lateness = Histogram(
            "modelrollout_pass_lateness_seconds",
            "How late a pass started after the deadline it was set for: kind=urgent (a pause ending, a gate, "
            "a progress deadline) or routine (a background measurement, which waits for a slot when the "
            "operator is busy).",
            ["kind"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
        )
        self.api_answers = Histogram(
            "modelrollout_api_answer_seconds",
            "How long the API server took to answer the operator's requests, lists and watches aside, "
            "timed in the operator (so its own loop's delay is in it too); the pass limit follows it.",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1, 2.5, 5, 10, 60),
        )
        self.pass_slots = Gauge(
            "modelrollout_pass_slots",
            "How many passes that are not routine may run at once: it follows the API server's answer "
            "times (modelrollout.runtime.pacing.AnswerTimeLimit).",
            registry=self.registry,
        )
        self.pass_slot_changes = Counter(
            "modelrollout_pass_slot_changes",
            "Changes of modelrollout_pass_slots, by direction (up: passes waited while the API server "
            "answered in time; down: it answered slowly or said it was overloaded).",
            ["direction"],
            registry=self.registry,
        )
        self.gc_pause = Histogram(
            "modelrollout_gc_pause_seconds",
            "How long Python's cyclic garbage collector stopped the operator, by generation (2: a full "
            "collection, whose time grows with the number of objects the operator holds).",
            ["generation"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
        )
        self._gc_started: float | None = None
        self.gc_frozen = Gauge(
            "modelrollout_gc_frozen_objects",
            "Objects the garbage collector skips until the next thaw (see modelrollout.runtime.gc_policy).",
            registry=self.registry,
        )
        self.gc_frozen.set_function(gc.get_freeze_count)
        self.reconcile_errors = Counter(
            "modelrollout_reconcile_errors",
            "Reconcile passes that failed, by kind (api: the API server answered an error; internal: a bug).",
            ["kind"],
            registry=self.registry,
        )

    def observe_pass(self, namespace: str, name: str, decision: Decision, now: datetime, seconds: float) -> None:
        status: ModelRolloutStatus = decision.status
        self.reconcile_duration.observe(seconds)
        self.passes.labels(namespace, name).inc()
        for phase in Phase:
            self.phase.labels(namespace, name, phase.value).set(1 if status.phase == phase else 0)
        self.weight.labels(namespace, name, "stable").set(status.weights.stable)
        self.weight.labels(namespace, name, "candidate").set(status.weights.candidate)
        self.weight.labels(namespace, name, "mirror").set(status.weights.mirror)
        if status.monitoring is not None:
            self.drifted.labels(namespace, name).set(1 if status.monitoring.drifted_since else 0)
        at = timestamp(now)
        for analysis in (status.background_analysis, status.step_analysis):
            for result in analysis.metrics if analysis is not None else []:
                for measurement in result.measurements:
                    if measurement.at == at:
                        self.measurements.labels(namespace, name, result.name, measurement.phase.value).inc()
        if status.phase == Phase.ROLLED_BACK:
            # Only events of the pass that rolled back count (a first deployment that misses its
            # deadline reports the same reason without rolling anything back).
            for event in decision.events:
                if event.reason in ROLLBACK_REASONS:
                    self.rollbacks.labels(namespace, name, event.reason).inc()

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted rollout's gauges (counters stay: they are totals over the operator's life)."""
        for phase in Phase:
            with contextlib.suppress(KeyError):
                self.phase.remove(namespace, name, phase.value)
        for role in ("stable", "candidate", "mirror"):
            with contextlib.suppress(KeyError):
                self.weight.remove(namespace, name, role)
        with contextlib.suppress(KeyError):
            self.drifted.remove(namespace, name)

    def watch_gc(self) -> None:
        """Time every garbage collection (gc.callbacks run in the collecting thread, around it)."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self.gc_pause.labels(generation=str(info["generation"])).observe(time.perf_counter() - self._gc_started)
            self._gc_started = None

    def serve(self, port: int, host: str) -> None:
        start_http_server(port, addr=host, registry=self.registry)


OPERATOR_METRICS = OperatorMetrics()
