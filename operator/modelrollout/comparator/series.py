"""The comparator's Prometheus series: bounded in cardinality, no answer content.

Every series carries `rollout`, `model`, `stable` and `candidate` (the two versions); `namespace` comes
from the scrape target, as for the model servers. The only label that comes from answers is the class
pair of `modelrollout_shadow_class_pairs_total`, limited to `MAX_CLASSES` distinct classes (more are
counted as `other`), so a model that answers free text cannot blow up Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelrollout.comparator.join import Pair, Unjoined

PAIRS_TOTAL = "modelrollout_shadow_pairs_total"
CLASS_PAIRS_TOTAL = "modelrollout_shadow_class_pairs_total"
REQUESTS_TOTAL = "modelrollout_shadow_requests_total"
SCORE_DIFFERENCE = "modelrollout_shadow_score_difference"
SCORE_RELATIVE_DIFFERENCE = "modelrollout_shadow_score_relative_difference"
LATENCY_DIFFERENCE = "modelrollout_shadow_latency_difference_seconds"
PENDING = "modelrollout_shadow_pending"

COMMON = ("rollout", "model", "stable", "candidate")
#: Distinct class names the class-pair counter keeps apart; the rest are `other`.
MAX_CLASSES = 32
OTHER = "other"
NONE = "none"

#: Outcomes of one mirrored request (`modelrollout_shadow_requests_total{result}`).
RESULTS = ("joined", "unjoined", "stable_error", "candidate_error", "mismatched", "dropped")

SCORE_BUCKETS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
RELATIVE_BUCKETS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
LATENCY_BUCKETS = (-1.0, -0.25, -0.1, -0.05, -0.025, -0.01, -0.005, 0.0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass(frozen=True)
class Identity:
    """Which rollout and versions this comparator compares (one comparator per rollout's candidate)."""

    rollout: str
    model: str
    stable: str
    candidate: str

    def labels(self) -> dict[str, str]:
        return {"rollout": self.rollout, "model": self.model, "stable": self.stable, "candidate": self.candidate}


class Series:
    def __init__(self, identity: Identity, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.identity = identity
        self._labels = identity.labels()
        self._classes: set[str] = set()
        self.pairs = Counter(
            PAIRS_TOTAL.removesuffix("_total"),
            "Instances of mirrored requests answered by both versions, by whether the candidate's class (or "
            "value) agreed with stable's.",
            [*COMMON, "outcome"],
            registry=self.registry,
        )
        self.class_pairs = Counter(
            CLASS_PAIRS_TOTAL.removesuffix("_total"),
            f"Compared instances by (stable's class, candidate's class); at most {MAX_CLASSES} classes, more are "
            f"'{OTHER}'.",
            [*COMMON, "stable_class", "candidate_class"],
            registry=self.registry,
        )
        self.requests = Counter(
            REQUESTS_TOTAL.removesuffix("_total"),
            "Mirrored requests by what became of them: joined (both answers compared), unjoined (one answer did "
            "not come in time), stable_error / candidate_error, mismatched (different numbers of predictions), "
            "dropped (too many in flight).",
            [*COMMON, "result"],
            registry=self.registry,
        )
        self.score_difference = Histogram(
            SCORE_DIFFERENCE,
            "|candidate score - stable score| per compared instance.",
            COMMON,
            buckets=SCORE_BUCKETS,
            registry=self.registry,
        )
        self.relative_difference = Histogram(
            SCORE_RELATIVE_DIFFERENCE,
            "|candidate score - stable score| / |stable score| per compared instance.",
            COMMON,
            buckets=RELATIVE_BUCKETS,
            registry=self.registry,
        )
        self.latency_difference = Histogram(
            LATENCY_DIFFERENCE,
            "Candidate's latency minus stable's for the same request (negative: the candidate was faster).",
            COMMON,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pending = Gauge(
            PENDING,
            "Requests waiting for their other answer (bounded by the join's size).",
            COMMON,
            registry=self.registry,
        )
        # Every outcome at 0 from the start: `increase()` over a window sees the first one.
        for outcome in ("agree", "disagree"):
            self.pairs.labels(**self._labels, outcome=outcome)
        for result in RESULTS:
            self.requests.labels(**self._labels, result=result)

    def _class(self, name: str | None) -> str:
        if name is None:
            return NONE
        if name in self._classes:
            return name
        if len(self._classes) < MAX_CLASSES:
            self._classes.add(name)
            return name
        return OTHER

    def record_pair(self, pair: Pair) -> None:
        labels = self._labels
        self.latency_difference.labels(**labels).observe(pair.latency_difference_seconds)
        if pair.stable_error or pair.candidate_error:
            self.requests.labels(**labels, result="stable_error" if pair.stable_error else "candidate_error").inc()
            return
        if pair.mismatched:
            self.requests.labels(**labels, result="mismatched").inc()
            return
        self.requests.labels(**labels, result="joined").inc()
        for item in pair.instances:
            self.pairs.labels(**labels, outcome="agree" if item.agree else "disagree").inc()
            self.class_pairs.labels(
                **labels, stable_class=self._class(item.stable_class), candidate_class=self._class(item.candidate_class)
            ).inc()
            if item.abs_difference is not None:
                self.score_difference.labels(**labels).observe(item.abs_difference)
            if item.rel_difference is not None:
                self.relative_difference.labels(**labels).observe(item.rel_difference)

    def record_unjoined(self, gone: list[Unjoined]) -> None:
        if gone:
            self.requests.labels(**self._labels, result="unjoined").inc(len(gone))

    def record_dropped(self) -> None:
        self.requests.labels(**self._labels, result="dropped").inc()

    def set_pending(self, count: int) -> None:
        self.pending.labels(**self._labels).set(count)
