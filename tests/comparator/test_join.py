"""The comparator's join: answers reduced to classes, scores and digests; bounded in ids and in time."""

from __future__ import annotations

import pytest

from modelrollout.comparator.join import MAX_CLASS_CHARS, Answer, JoinStore, compare, reduce_answer
from modelrollout.comparator.series import CLASS_PAIRS_TOTAL, MAX_CLASSES, PAIRS_TOTAL, Identity, Series


def answer(klass: str | None, score: float | None = None, latency: float = 0.01) -> Answer:
    body = {"prediction": klass, "score": score, "version": "x"}
    return reduce_answer(body, latency_seconds=latency)


def test_an_answer_keeps_only_class_score_and_digest() -> None:
    reduced = reduce_answer(
        {"prediction": "benign", "score": 0.25, "echo": "Jane Doe, 1970-01-01"}, latency_seconds=0.02
    )
    (item,) = reduced.instances
    assert (item.klass, item.score, len(item.digest)) == ("benign", 0.25, 16)
    assert "Jane" not in repr(reduced)


def test_a_batch_is_compared_instance_by_instance() -> None:
    stable = reduce_answer(
        {"predictions": [{"prediction": "a", "score": 0.9}, {"prediction": "b", "score": 0.2}]}, latency_seconds=0.01
    )
    candidate = reduce_answer(
        {"predictions": [{"prediction": "a", "score": 0.8}, {"prediction": "a", "score": 0.6}]}, latency_seconds=0.03
    )
    pair = compare(stable, candidate)
    assert [item.agree for item in pair.instances] == [True, False]
    assert pair.instances[0].abs_difference == pytest.approx(0.1)
    assert pair.instances[1].rel_difference == pytest.approx(2.0)
    assert pair.latency_difference_seconds == pytest.approx(0.02)


def test_regression_answers_compare_by_value_and_odd_ones_by_digest() -> None:
    assert compare(reduce_answer(1.5, latency_seconds=0), reduce_answer(1.5, latency_seconds=0)).instances[0].agree
    assert not compare(reduce_answer(1.5, latency_seconds=0), reduce_answer(1.6, latency_seconds=0)).instances[0].agree
    same = compare(reduce_answer({"text": "x"}, latency_seconds=0), reduce_answer({"text": "x"}, latency_seconds=0))
    assert same.instances[0].agree


def test_errors_and_mismatched_batches_are_not_compared() -> None:
    pair = compare(answer("a"), reduce_answer(None, latency_seconds=0.1, error=True))
    assert pair.candidate_error and not pair.instances
    batch = reduce_answer({"predictions": [{"prediction": "a"}, {"prediction": "a"}]}, latency_seconds=0)
    assert compare(answer("a"), batch).mismatched


def test_a_class_is_cut_to_a_label() -> None:
    (item,) = answer("x" * 1000).instances
    assert item.klass is not None and len(item.klass) == MAX_CLASS_CHARS


def test_the_join_pairs_by_request_id_and_forgets_the_id() -> None:
    store = JoinStore(max_pending=10, ttl_seconds=5)
    assert store.add("r1", "candidate", answer("a"), now=0.0) is None
    assert store.add("r2", "stable", answer("b"), now=0.1) is None
    pair = store.add("r1", "stable", answer("b"), now=0.2)
    assert pair is not None and not pair.instances[0].agree
    assert len(store) == 1


def test_an_id_left_alone_expires_after_the_ttl() -> None:
    store = JoinStore(max_pending=10, ttl_seconds=5)
    store.add("r1", "candidate", answer("a"), now=0.0)
    store.add("r2", "candidate", answer("a"), now=3.0)
    assert store.expire(now=4.9) == []
    gone = store.expire(now=5.0)
    assert [(u.request_id, u.had, u.why) for u in gone] == [("r1", "candidate", "expired")]
    assert len(store) == 1
    # A late answer for an expired id starts a new wait; it never pairs with the forgotten one.
    assert store.add("r1", "stable", answer("a"), now=5.1) is None


def test_the_join_never_holds_more_than_max_pending_ids() -> None:
    store = JoinStore(max_pending=3, ttl_seconds=60)
    for index in range(10):
        store.add(f"r{index}", "candidate", answer("a"), now=float(index))
        assert len(store) <= 3
    gone = store.expire(now=10.0)
    assert [u.request_id for u in gone] == [f"r{index}" for index in range(7)]
    assert {u.why for u in gone} == {"evicted"}


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_pending"):
        JoinStore(max_pending=0)
    with pytest.raises(ValueError, match="ttl_seconds"):
        JoinStore(ttl_seconds=0)


def _value(series: Series, name: str, **labels: str) -> float:
    value = series.registry.get_sample_value(name, {**series.identity.labels(), **labels})
    return 0.0 if value is None else value


def test_series_count_agreement_and_bound_the_classes() -> None:
    series = Series(Identity("fraud", "scorer", "1", "2"))
    assert _value(series, PAIRS_TOTAL, outcome="agree") == 0.0  # exported at 0 from the start
    for index in range(MAX_CLASSES + 10):
        series.record_pair(compare(answer(f"c{index}"), answer(f"c{index}")))
    series.record_pair(compare(answer("c0"), answer("c1")))
    assert _value(series, PAIRS_TOTAL, outcome="agree") == MAX_CLASSES + 10
    assert _value(series, PAIRS_TOTAL, outcome="disagree") == 1
    assert _value(series, CLASS_PAIRS_TOTAL, stable_class="other", candidate_class="other") == 10
    classes = {
        sample.labels["stable_class"]
        for metric in series.registry.collect()
        for sample in metric.samples
        if sample.name == CLASS_PAIRS_TOTAL
    }
    assert len(classes) == MAX_CLASSES + 1
