"""From Prometheus samples (cumulative `le` buckets, counters by label) to aligned count vectors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelrollout.analysis.histograms import (
    EdgeMismatchError,
    Histogram,
    HistogramError,
    align_categories,
    category_counts,
    category_counts_by,
    check_same_edges,
    format_edges,
    histogram_from_cumulative,
    histogram_from_samples,
    histograms_by_label,
    parse_le,
    training_reference,
)
from modelrollout.vocabulary.samples import Sample
from modelrollout_sdk import FeatureEdges, bin_index

EDGES_FILE = Path(__file__).parents[2] / "devkit/modelrollout_devkit/sandbox/data/breast_cancer_feature_edges.json"


def buckets(feature: str, pairs: list[tuple[str, float]]) -> list[Sample]:
    return [Sample({"feature": feature, "le": le}, value) for le, value in pairs]


def test_cumulative_buckets_become_bin_counts() -> None:
    samples = buckets("mean radius", [("10", 4), ("20", 10), ("30", 15), ("+Inf", 17)])
    hist = histograms_by_label(samples)["mean radius"]
    assert hist.edges == (10.0, 20.0, 30.0)
    assert hist.counts == (4.0, 6.0, 5.0, 2.0)
    assert hist.total == 17
    assert hist.notes == ()


def test_order_of_samples_does_not_matter() -> None:
    samples = buckets("f", [("+Inf", 17), ("30", 15), ("10", 4), ("20", 10)])
    assert histograms_by_label(samples)["f"].counts == (4.0, 6.0, 5.0, 2.0)


def test_features_are_separated_and_other_labels_summed() -> None:
    samples = [
        Sample({"feature": "a", "le": "1", "pod": "p1"}, 1.0),
        Sample({"feature": "a", "le": "+Inf", "pod": "p1"}, 2.0),
        Sample({"feature": "a", "le": "1", "pod": "p2"}, 3.0),
        Sample({"feature": "a", "le": "+Inf", "pod": "p2"}, 5.0),
        Sample({"feature": "b", "le": "0.5", "pod": "p1"}, 7.0),
        Sample({"feature": "b", "le": "+Inf", "pod": "p1"}, 7.0),
    ]
    result = histograms_by_label(samples)
    assert result["a"].counts == (4.0, 3.0)
    assert result["b"] == Histogram((0.5,), (7.0, 0.0))


def test_plain_label_value_pairs_are_accepted() -> None:
    hist = histogram_from_samples([({"le": "0.1"}, 3.0), ({"le": "+Inf"}, 4.0)], name="score")
    assert hist.counts == (3.0, 1.0)


def test_negative_differences_are_clamped_with_a_note() -> None:
    # 9.9999 after 10: increase() extrapolation / float noise; the next bin is not inflated by the dip.
    hist = histogram_from_cumulative([(1.0, 10.0), (2.0, 9.9999), (3.0, 12.0), (math.inf, 12.0)], name="f")
    assert hist.counts == pytest.approx((10.0, 0.0, 2.0, 0.0))
    assert len(hist.notes) == 1
    assert "clamped" in hist.notes[0] and "le=2" in hist.notes[0]


def test_missing_inf_bucket_counts_the_overflow_as_zero_with_a_note() -> None:
    hist = histogram_from_cumulative([(1.0, 2.0), (2.0, 5.0)], name="feature 'x'")
    assert hist.edges == (1.0, 2.0)
    assert hist.counts == (2.0, 3.0, 0.0)
    assert any("+Inf" in note for note in hist.notes)


def test_le_values_in_prometheus_formats_parse() -> None:
    assert parse_le("+Inf") == math.inf
    assert parse_le("1e+06") == 1e6
    assert parse_le("0.25") == 0.25
    with pytest.raises(HistogramError, match="not a number"):
        parse_le("abc")
    with pytest.raises(HistogramError):
        parse_le("NaN")


@pytest.mark.parametrize(
    ("samples", "match"),
    [
        ([Sample({"feature": "a"}, 1.0)], "without an `le` label"),
        ([Sample({"le": "1"}, 1.0)], "without a 'feature' label"),
        ([Sample({"feature": "a", "le": "1"}, math.nan)], "not a finite number"),
        ([Sample({"feature": "a", "le": "+Inf"}, 3.0)], "only the \\+Inf bucket"),
    ],
)
def test_unreadable_samples_are_refused(samples: list[Sample], match: str) -> None:
    with pytest.raises(HistogramError, match=match):
        histograms_by_label(samples)


def test_no_samples_is_no_histogram() -> None:
    assert histograms_by_label([]) == {}
    with pytest.raises(HistogramError, match="no buckets"):
        histogram_from_samples([], name="score")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=-50, max_value=50, allow_nan=False), min_size=0, max_size=300))
def test_round_trip_with_the_sdks_binning(values: list[float]) -> None:
    """Values binned as the SDK does, exposed as Prometheus would (count of v <= le), read back."""
    edges = (-10.0, -1.0, 0.0, 2.5, 20.0)
    expected = [0.0] * (len(edges) + 1)
    for value in values:
        expected[bin_index(edges, value)] += 1
    samples = [({"le": f"{le:g}"}, float(sum(v <= le for v in values))) for le in edges]
    samples.append(({"le": "+Inf"}, float(len(values))))
    hist = histogram_from_samples(samples)
    assert hist.edges == edges
    assert list(hist.counts) == expected


def test_categorical_counts_are_aligned_over_the_union() -> None:
    candidate = category_counts([Sample({"class": "benign"}, 30.0), Sample({"class": "__other__"}, 1.0)])
    reference = category_counts([({"class": "malignant"}, 12.0), ({"class": "benign"}, 40.0)])
    aligned = align_categories(candidate, reference)
    assert aligned.categories == ("benign", "malignant", "__other__")
    assert aligned.candidate == (30.0, 0.0, 1.0)
    assert aligned.reference == (40.0, 12.0, 0.0)


def test_category_counts_by_feature() -> None:
    samples = [
        Sample({"feature": "country", "category": "de"}, 3.0),
        Sample({"feature": "country", "category": "fr"}, 4.0),
        Sample({"feature": "device", "category": "ios"}, 5.0),
        Sample({"feature": "device", "category": "ios", "pod": "b"}, 1.0),
    ]
    assert category_counts_by(samples) == {"country": {"de": 3.0, "fr": 4.0}, "device": {"ios": 6.0}}
    with pytest.raises(HistogramError, match="without a 'class' label"):
        category_counts([Sample({"outcome": "x"}, 1.0)])


def test_identical_edges_pass_the_check() -> None:
    check_same_edges("f", [0.1, 0.2, 1e6], [0.1, 0.2, 1000000.0])
    # The last digits of a float printed by Go and read back are not a different bin.
    check_same_edges("f", [0.1 + 0.2], [0.3])


def test_mismatched_edges_name_the_feature_and_both_shortened_lists() -> None:
    candidate = [float(i) for i in range(20)]
    reference = [float(i) + 0.5 for i in range(20)]
    with pytest.raises(EdgeMismatchError) as raised:
        check_same_edges("mean radius", candidate, reference)
    message = str(raised.value)
    assert "'mean radius'" in message
    assert "[0, 1, 2, 3, ..., 16, 17, 18, 19] (20 edges)" in message
    assert "[0.5, 1.5, 2.5, 3.5, ..., 16.5, 17.5, 18.5, 19.5] (20 edges)" in message
    assert raised.value.feature == "mean radius"
    with pytest.raises(EdgeMismatchError, match=r"\[1, 2\].*\[1, 2, 3\]"):
        check_same_edges("x", [1, 2], [1, 2, 3])


def test_format_edges_keeps_short_lists_whole() -> None:
    assert format_edges([1, 2.5, 10]) == "[1, 2.5, 10]"


def test_training_reference_from_the_sdk_edges_file() -> None:
    loaded = FeatureEdges.load(EDGES_FILE)
    reference = training_reference(loaded)
    raw = json.loads(EDGES_FILE.read_text())
    assert set(reference.numeric) == set(raw["features"])
    radius = reference.numeric["mean radius"]
    assert radius.edges == tuple(raw["features"]["mean radius"]["edges"])
    assert radius.counts == tuple(float(c) for c in raw["features"]["mean radius"]["reference_counts"])
    assert radius.total == raw["features"]["mean radius"]["count"]
    # The parsed JSON document is accepted as well.
    assert training_reference(raw).numeric == reference.numeric


def test_training_reference_with_categories_and_missing_counts() -> None:
    data: dict[str, Any] = {
        "format": "modelrollout.feature-edges/v1",
        "features": {"x": {"edges": [1.0, 2.0], "reference_counts": [1, 2, 3]}},
        "categorical": {"country": {"categories": ["de", "fr", "it"], "reference_counts": {"de": 10, "fr": 31}}},
    }
    reference = training_reference(data)
    assert reference.categorical["country"] == {"de": 10.0, "fr": 31.0, "it": 0.0}
    del data["features"]["x"]["reference_counts"]
    with pytest.raises(HistogramError, match="'x' has no reference_counts"):
        training_reference(data)


def test_histogram_invariants() -> None:
    with pytest.raises(HistogramError, match="needs 3 counts"):
        Histogram((1.0, 2.0), (1.0, 2.0))
    with pytest.raises(HistogramError, match="strictly increasing"):
        Histogram((2.0, 1.0), (1.0, 2.0, 3.0))
    with pytest.raises(HistogramError, match="non-negative"):
        Histogram((1.0,), (1.0, -2.0))
    assert Histogram.empty([1.0, 2.0]).counts == (0.0, 0.0, 0.0)
    assert np.isclose(Histogram((1.0,), (0.1, 0.2)).total, 0.3)
