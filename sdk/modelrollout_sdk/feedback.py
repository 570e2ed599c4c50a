"""Ground truth that arrives later: join a prediction with its true label and publish accuracy series.

A model server (or any service that sees both the prediction and, later, the truth) remembers what it
predicted under a prediction id, and reports the true label (classification) or value (regression) for
that id when it is known::

    feedback = FeedbackRecorder(rollout="fraud", version="2.1.0", model="fraud", classes=("fraud", "ok"))
    feedback.remember(prediction_id, "fraud")            # when answering
    feedback.report(prediction_id, "ok")                 # minutes or days later

What is kept for the join, and for how long, is bounded: the prediction id and the predicted class (or
number) with the time it was made, in an LRU of at most ``max_entries`` entries, each forgotten after
``ttl_seconds`` or as soon as its label is joined. Never the inputs, never the label itself: a label only
moves counters (``docs/privacy.md``). The series (``docs/metrics.md``) carry the version that *made* the
prediction, so a label that arrives after a promotion still counts for the version it judges:

* ``model_feedback_total{outcome="correct"|"incorrect"}``: labelled predictions (classification);
* ``model_feedback_confusion_total{true_class, predicted_class}``: per-class counts, classes bounded by
  ``max_classes`` (the declared ones first; later ones fold into ``__other__``);
* ``model_feedback_absolute_error``: histogram of ``|predicted - true|`` (regression);
* ``model_feedback_delay_seconds``: histogram of the time from prediction to label;
* ``model_feedback_unmatched_total{reason="unknown"|"expired"}``: feedback with nothing to join.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

from modelrollout_sdk import names

#: Default bounds of the join store: enough for a day of 1 request/s, a few MiB at most.
DEFAULT_MAX_ENTRIES: Final = 100_000
DEFAULT_TTL_SECONDS: Final = 24 * 3600.0
#: Prediction ids longer than this are refused (an id is a key, not a payload).
MAX_ID_LENGTH: Final = 128


class Task(enum.StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class JoinResult(enum.StrEnum):
    """What became of one piece of feedback."""

    JOINED = "joined"
    UNKNOWN = "unknown"  # never remembered, evicted by the size bound, or already labelled
    EXPIRED = "expired"  # remembered, but older than the time bound


@dataclass(frozen=True)
class Kept:
    """All that is kept of a prediction until its label arrives."""

    predicted: str | float
    at: float


class PredictionStore:
    """An LRU with a TTL: prediction id -> what was predicted and when. Thread-safe, bounded in size and time."""

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        if not ttl_seconds > 0:
            raise ValueError(f"ttl_seconds must be more than 0, not {ttl_seconds}")
        self.max_entries = max_entries
        self.ttl_seconds = float(ttl_seconds)
        self._clock = clock
        self._entries: OrderedDict[str, Kept] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def remember(self, prediction_id: str, predicted: str | float) -> None:
        now = self._clock()
        with self._lock:
            self._entries.pop(prediction_id, None)
            self._entries[prediction_id] = Kept(predicted, now)
            self._expire(now)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def take(self, prediction_id: str) -> tuple[JoinResult, Kept | None]:
        """The prediction of an id, forgotten as it is returned: one label per prediction."""
        now = self._clock()
        with self._lock:
            kept = self._entries.pop(prediction_id, None)
            self._expire(now)
        if kept is None:
            return JoinResult.UNKNOWN, None
        if now - kept.at > self.ttl_seconds:
            return JoinResult.EXPIRED, None
        return JoinResult.JOINED, kept

    def _expire(self, now: float) -> None:
        # Oldest first: entries are in insertion order, and remember() moves a re-used id to the end.
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if now - oldest.at <= self.ttl_seconds:
                break
            self._entries.popitem(last=False)


class FeedbackError(ValueError):
    """A prediction id or a label that cannot be used (wrong type, too long, not a finite number)."""


def check_id(prediction_id: object) -> str:
    if not isinstance(prediction_id, str) or not prediction_id:
        raise FeedbackError("the prediction id must be a non-empty string")
    if len(prediction_id) > MAX_ID_LENGTH:
        raise FeedbackError(f"the prediction id is longer than {MAX_ID_LENGTH} characters")
    return prediction_id


class FeedbackRecorder:
    """The feedback series of one model server (one rollout, one version, one model) and its join store."""

    def __init__(
        self,
        *,
        rollout: str,
        version: str,
        model: str,
        task: Task | str = Task.CLASSIFICATION,
        classes: Collection[object] = (),
        max_classes: int = 20,
        registry: CollectorRegistry | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``classes``: the classes expected, whose series are created at zero (so that the first label of a
        version counts in ``increase()``); at most ``max_classes`` distinct classes are ever labels, the rest
        is ``__other__``. ``registry``: the model server's (e.g. ``ModelMonitor.registry``), so one
        ``/metrics`` serves both."""
        self.task = Task(task)
        self.store = PredictionStore(max_entries, ttl_seconds, clock)
        self._clock = clock
        self._common = (rollout, version, model)
        self._max_classes = max_classes
        self._classes: list[str] = []
        self._lock = threading.Lock()
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = list(names.COMMON_LABELS)
        self._outcomes = Counter(
            names.FEEDBACK_TOTAL.removesuffix("_total"),
            "Labelled predictions by outcome (correct, incorrect), for the version that made them.",
            [*labels, names.LABEL_OUTCOME],
            registry=self.registry,
        )
        self._confusion = Counter(
            names.FEEDBACK_CONFUSION_TOTAL.removesuffix("_total"),
            "Labelled predictions by true and predicted class (bounded; other classes are __other__).",
            [*labels, names.LABEL_TRUE_CLASS, names.LABEL_PREDICTED_CLASS],
            registry=self.registry,
        )
        self._error = Histogram(
            names.FEEDBACK_ABSOLUTE_ERROR,
            "Absolute error |predicted - true| of labelled predictions (regression).",
            labels,
            buckets=names.ABSOLUTE_ERROR_BUCKETS,
            registry=self.registry,
        )
        self._delay = Histogram(
            names.FEEDBACK_DELAY_SECONDS,
            "Time from a prediction to the arrival of its label, in seconds.",
            labels,
            buckets=names.FEEDBACK_DELAY_BUCKETS,
            registry=self.registry,
        )
        self._unmatched = Counter(
            names.FEEDBACK_UNMATCHED_TOTAL.removesuffix("_total"),
            "Feedback that could not be joined with a prediction, by reason (unknown, expired).",
            [*labels, names.LABEL_REASON],
            registry=self.registry,
        )
        common = self._common
        for reason in names.FEEDBACK_UNMATCHED_REASONS:
            self._unmatched.labels(*common, reason).inc(0)
        self._delay.labels(*common)
        if self.task == Task.CLASSIFICATION:
            for outcome in names.FEEDBACK_OUTCOMES:
                self._outcomes.labels(*common, outcome).inc(0)
            for declared in classes:
                self._class_label(str(declared))
        else:
            self._error.labels(*common)

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes that have their own label value (in the order first seen)."""
        with self._lock:
            return tuple(self._classes)

    def _class_label(self, value: str) -> str:
        with self._lock:
            if value in self._classes:
                return value
            if len(self._classes) >= self._max_classes:
                return names.OTHER
            self._classes.append(value)
            known = [*self._classes, names.OTHER]
        # A new class: its cells of the confusion table start at zero, both ways.
        for other in known:
            self._confusion.labels(*self._common, value, other).inc(0)
            self._confusion.labels(*self._common, other, value).inc(0)
        return value

    def remember(self, prediction_id: str, predicted: object) -> None:
        """Keep what was predicted under this id until its label arrives (or the bounds forget it)."""
        check_id(prediction_id)
        if self.task == Task.CLASSIFICATION:
            self.store.remember(prediction_id, str(predicted))
        else:
            self.store.remember(prediction_id, _number(predicted, "the prediction"))

    def report(self, prediction_id: str, truth: object, delay_seconds: float | None = None) -> JoinResult:
        """The true label (classification) or value (regression) of a prediction; counted once.

        ``delay_seconds``: how long after the prediction the truth was known, if the caller knows better
        than the time since ``remember`` (e.g. it batches its reports)."""
        check_id(prediction_id)
        if self.task == Task.REGRESSION:
            true_value = _number(truth, "the true value")
        result, kept = self.store.take(prediction_id)
        common = self._common
        if kept is None:
            self._unmatched.labels(*common, result.value).inc()
            return result
        delay = delay_seconds if delay_seconds is not None else self._clock() - kept.at
        self._delay.labels(*common).observe(max(0.0, float(delay)))
        if self.task == Task.REGRESSION:
            assert isinstance(kept.predicted, float)
            self._error.labels(*common).observe(abs(kept.predicted - true_value))
            return result
        predicted = str(kept.predicted)
        self._confusion.labels(*common, self._class_label(str(truth)), self._class_label(predicted)).inc()
        correct = str(truth) == predicted
        self._outcomes.labels(*common, names.OUTCOME_CORRECT if correct else names.OUTCOME_INCORRECT).inc()
        return result


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FeedbackError(f"{what} must be a number for a regression model")
    number = float(value)
    if not math.isfinite(number):
        raise FeedbackError(f"{what} must be a finite number")
    return number
