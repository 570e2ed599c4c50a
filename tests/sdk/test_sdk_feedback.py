"""FeedbackRecorder: the join of a prediction with its later label, its bounds, and the series it moves."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from modelrollout_sdk import FeedbackError, FeedbackRecorder, JoinResult, PredictionStore, names

COMMON = {"rollout": "fraud", "version": "2.1.0", "model": "scorer"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {**COMMON, **labels})


def recorder(clock: Clock, **kwargs: object) -> FeedbackRecorder:
    return FeedbackRecorder(rollout="fraud", version="2.1.0", model="scorer", clock=clock, **kwargs)  # type: ignore[arg-type]


def test_a_label_is_joined_with_its_prediction_and_counted_once() -> None:
    clock = Clock()
    fb = recorder(clock, classes=("fraud", "ok"))
    reg = fb.registry
    # Created at zero before any label, so that increase() counts the first one.
    assert value(reg, "model_feedback_total", outcome="correct") == 0
    assert value(reg, "model_feedback_confusion_total", true_class="ok", predicted_class="fraud") == 0
    fb.remember("a", "fraud")
    fb.remember("b", "ok")
    clock.now += 30
    assert fb.report("a", "fraud") == JoinResult.JOINED
    assert fb.report("b", "fraud") == JoinResult.JOINED
    assert fb.report("b", "fraud") == JoinResult.UNKNOWN  # one label per prediction
    assert value(reg, "model_feedback_total", outcome="correct") == 1
    assert value(reg, "model_feedback_total", outcome="incorrect") == 1
    assert value(reg, "model_feedback_confusion_total", true_class="fraud", predicted_class="ok") == 1
    assert value(reg, "model_feedback_confusion_total", true_class="fraud", predicted_class="fraud") == 1
    assert value(reg, "model_feedback_unmatched_total", reason="unknown") == 1
    assert value(reg, "model_feedback_delay_seconds_count") == 2
    assert value(reg, "model_feedback_delay_seconds_sum") == 60
    assert value(reg, "model_feedback_delay_seconds_bucket", le="15.0") == 0
    assert value(reg, "model_feedback_delay_seconds_bucket", le="60.0") == 2
    assert len(fb.store) == 0  # joined entries are forgotten at once


def test_the_store_is_bounded_in_size_least_recently_remembered_first() -> None:
    store = PredictionStore(max_entries=3, ttl_seconds=60, clock=Clock())
    for key in "abcd":
        store.remember(key, "x")
    assert len(store) == 3
    assert store.take("a") == (JoinResult.UNKNOWN, None)
    assert store.take("d")[0] == JoinResult.JOINED


def test_the_store_is_bounded_in_time() -> None:
    clock = Clock()
    fb = recorder(clock, ttl_seconds=60)
    fb.remember("old", "ok")
    clock.now += 61
    assert fb.report("old", "ok") == JoinResult.EXPIRED
    assert value(fb.registry, "model_feedback_unmatched_total", reason="expired") == 1
    fb.remember("a", "ok")
    clock.now += 59
    fb.remember("b", "ok")  # expires what is older than the TTL as it goes
    clock.now += 2
    fb.remember("c", "ok")
    assert len(fb.store) == 2


def test_classes_are_bounded_and_the_rest_is_other() -> None:
    clock = Clock()
    fb = recorder(clock, classes=("a", "b"), max_classes=2)
    fb.remember("1", "c")  # a third class: folded into __other__ in the series
    fb.remember("2", "a")
    assert fb.report("1", "c") == JoinResult.JOINED
    assert fb.report("2", "d") == JoinResult.JOINED
    reg = fb.registry
    # Compared on the real classes, labelled with bounded ones.
    assert value(reg, "model_feedback_total", outcome="correct") == 1
    assert value(reg, "model_feedback_total", outcome="incorrect") == 1
    assert value(reg, "model_feedback_confusion_total", true_class=names.OTHER, predicted_class=names.OTHER) == 1
    assert value(reg, "model_feedback_confusion_total", true_class=names.OTHER, predicted_class="a") == 1
    labels = {
        (s.labels["true_class"], s.labels["predicted_class"])
        for metric in reg.collect()
        if metric.name == "model_feedback_confusion"
        for s in metric.samples
    }
    assert labels <= {(t, p) for t in ("a", "b", names.OTHER) for p in ("a", "b", names.OTHER)}


def test_regression_feedback_is_an_absolute_error_histogram() -> None:
    clock = Clock()
    fb = recorder(clock, task="regression")
    fb.remember("1", 10.0)
    fb.remember("2", 3)
    assert fb.report("1", 12.5, delay_seconds=7) == JoinResult.JOINED
    assert fb.report("2", 3.0) == JoinResult.JOINED
    reg = fb.registry
    assert value(reg, "model_feedback_absolute_error_count") == 2
    assert value(reg, "model_feedback_absolute_error_sum") == 2.5
    assert value(reg, "model_feedback_delay_seconds_sum") == 7
    with pytest.raises(FeedbackError, match="number"):
        fb.remember("3", "high")
    with pytest.raises(FeedbackError, match="finite"):
        fb.report("1", float("nan"))


def test_bad_ids_are_refused_with_a_reason() -> None:
    fb = recorder(Clock())
    with pytest.raises(FeedbackError, match="non-empty string"):
        fb.remember("", "ok")
    with pytest.raises(FeedbackError, match="longer than 128"):
        fb.report("x" * 129, "ok")
    with pytest.raises(ValueError, match="max_entries"):
        PredictionStore(max_entries=0)


def test_nothing_of_a_label_or_an_input_is_kept() -> None:
    """Privacy: the store holds the predicted class and a time per id, never the label."""
    fb = recorder(Clock())
    fb.remember("p", "ok")
    kept = fb.store._entries["p"]
    assert (kept.predicted, type(kept.at)) == ("ok", float)
    fb.report("p", "secret-label-value")
    assert "secret-label-value" not in repr(fb.store._entries)
