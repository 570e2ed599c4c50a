"""ModelMonitor: series, labels, outcomes, inputs and outputs, read back from the exposition text."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from modelrollout_sdk import FeatureEdges, InvalidInputError, ModelMonitor, current_request, names
from tests.sdk.sdk_scrape import Series

Scrape = Callable[[ModelMonitor], Series]
COMMON = {"rollout": "fraud", "version": "2.1.0", "model": "scorer"}


def make_monitor(**kwargs: object) -> ModelMonitor:
    return ModelMonitor(rollout="fraud", version="2.1.0", model="scorer", **kwargs)  # type: ignore[arg-type]


def test_from_env_reads_labels_and_explicit_arguments_win(scrape: Scrape) -> None:
    env = {"ROLLOUT_NAME": "r1", "MODEL_VERSION": "v7", "MODEL_NAME": "m"}
    assert ModelMonitor.from_env(environ=env).labels == {"rollout": "r1", "version": "v7", "model": "m"}
    assert ModelMonitor.from_env(environ=env, version="v8").labels["version"] == "v8"
    assert ModelMonitor.from_env(environ={}).labels == {"rollout": "unknown", "version": "unknown", "model": "unknown"}


def test_series_exist_at_zero_before_any_request(scrape: Scrape) -> None:
    m = make_monitor(feature_edges={"a": [1.0, 2.0]}, classes=["yes", "no"])
    s = scrape(m)
    for outcome in names.OUTCOMES:
        assert s.value("model_requests_total", outcome=outcome, **COMMON) == 0
    assert s.value("model_null_predictions_total", **COMMON) == 0
    assert s.value("model_input_missing_total", feature="a", **COMMON) == 0
    assert s.value("model_predictions_total", **{"class": "yes"}, **COMMON) == 0
    assert s.value("model_input_feature_value_count", feature="a", **COMMON) == 0


def test_request_success_error_and_invalid_input(scrape: Scrape) -> None:
    m = make_monitor()
    with m.observe_request():
        pass
    with pytest.raises(RuntimeError), m.observe_request():
        raise RuntimeError("model exploded")
    with pytest.raises(InvalidInputError), m.observe_request():
        raise InvalidInputError("bad payload")
    with m.observe_request() as req:
        req.mark_invalid_input()
    s = scrape(m)
    assert s.value("model_requests_total", outcome="success", **COMMON) == 1
    assert s.value("model_requests_total", outcome="error", **COMMON) == 1
    assert s.value("model_requests_total", outcome="invalid_input", **COMMON) == 2
    assert s.value("model_request_duration_seconds_count", **COMMON) == 4
    les = [lab["le"] for lab, _ in s.find("model_request_duration_seconds_bucket", **COMMON)]
    assert les[0] == "0.005" and "10.0" in les and les[-1] == "+Inf"


def test_duration_is_measured(scrape: Scrape) -> None:
    m = make_monitor()
    with m.observe_request():
        import time

        time.sleep(0.03)
    s = scrape(m)
    assert 0.03 <= s.value("model_request_duration_seconds_sum", **COMMON) < 0.5
    assert s.value("model_request_duration_seconds_bucket", le="0.025", **COMMON) == 0
    assert s.value("model_request_duration_seconds_bucket", le="0.05", **COMMON) == 1


def test_feature_edges_from_saved_file_become_le_labels(tmp_path: Path, scrape: Scrape) -> None:
    data = load_breast_cancer()
    edges = FeatureEdges.from_training_data(data.data, list(data.feature_names), source="test")
    path = edges.save(tmp_path / "edges.json")
    loaded = FeatureEdges.load(path)
    assert loaded == edges
    m = make_monitor(feature_edges=path)
    expected = loaded.edges("mean radius")
    assert len(expected) == 9
    deciles = np.quantile(data.data[:, 0], [0.1, 0.5, 0.9])
    assert expected[0] == pytest.approx(deciles[0], rel=1e-5)
    assert expected[4] == pytest.approx(deciles[1], rel=1e-5)

    # Every training row of the column, then the live histogram must equal the saved reference.
    for row in data.data:
        m.record_input(dict(zip(data.feature_names, (float(v) for v in row), strict=True)))
    s = scrape(m)
    buckets = s.find("model_input_feature_value_bucket", feature="mean radius", **COMMON)
    assert [float(lab["le"]) for lab, _ in buckets[:-1]] == list(expected)
    assert buckets[-1][0]["le"] == "+Inf"
    cumulative = [v for _, v in buckets]
    reference = loaded.numeric["mean radius"].reference_counts
    assert reference is not None
    assert [b - a for a, b in zip([0.0, *cumulative], cumulative, strict=False)] == list(reference)
    assert s.value("model_input_feature_value_count", feature="mean radius", **COMMON) == len(data.data)
    assert s.value("model_input_feature_value_sum", feature="mean radius", **COMMON) == pytest.approx(
        data.data[:, 0].sum()
    )
    # Deciles: each bin holds about a tenth of the training rows.
    assert all(40 <= c <= 75 for c in reference)


def test_bucket_boundaries_follow_le_semantics(scrape: Scrape) -> None:
    m = make_monitor(feature_edges={"x": [1.0, 2.0, 3.0]})
    for v in (1.0, 1.5, 2.0, 3.5, -10):
        m.record_input({"x": v})
    s = scrape(m)
    got = {lab["le"]: v for lab, v in s.find("model_input_feature_value_bucket", feature="x")}
    assert got == {"1.0": 2, "2.0": 4, "3.0": 4, "+Inf": 5}


def test_missing_values_and_input_size(scrape: Scrape) -> None:
    m = make_monitor(feature_edges={"a": [0.0], "b": [0.0], "c": [0.0]})
    m.record_input({"a": 1.0, "b": None})  # c absent, b null
    m.record_input({"a": math.nan, "b": 2.0, "c": math.inf})  # NaN and inf are missing too
    m.record_input({"a": 1.0, "b": 1.0, "c": 1.0, "unexpected": 5.0})
    s = scrape(m)
    assert s.value("model_input_missing_total", feature="a", **COMMON) == 1
    assert s.value("model_input_missing_total", feature="b", **COMMON) == 1
    assert s.value("model_input_missing_total", feature="c", **COMMON) == 2
    assert not s.find("model_input_missing_total", feature="unexpected")
    assert s.value("model_input_size_count", **COMMON) == 3
    assert s.value("model_input_size_sum", **COMMON) == 1 + 1 + 4
    assert s.value("model_input_size_bucket", le="1.0", **COMMON) == 2


def test_categorical_features_are_counted_and_capped(scrape: Scrape) -> None:
    m = make_monitor(max_categories=2)
    for cat in ("fr", "de", "fr", "it", "es"):
        m.record_input({"country": cat, "vip": True})
    s = scrape(m)
    assert s.value("model_input_category_total", feature="country", category="fr", **COMMON) == 2
    assert s.value("model_input_category_total", feature="country", category="de", **COMMON) == 1
    assert s.value("model_input_category_total", feature="country", category="__other__", **COMMON) == 2
    assert s.value("model_input_category_total", feature="vip", category="true", **COMMON) == 5


def test_known_categories_from_edges_file(tmp_path: Path, scrape: Scrape) -> None:
    edges = FeatureEdges.from_training_data({"x": [1.0, 2.0]}, categorical={"color": ["red", "blue", "red"]})
    m = make_monitor(feature_edges=FeatureEdges.load(edges.save(tmp_path / "e.json")))
    m.record_input({"x": 1.0, "color": "green"})
    s = scrape(m)
    assert s.value("model_input_category_total", feature="color", category="red", **COMMON) == 0
    assert s.value("model_input_category_total", feature="color", category="__other__", **COMMON) == 1


def test_outputs_classes_scores_and_null_predictions(scrape: Scrape) -> None:
    m = make_monitor()
    with m.observe_request() as req:
        req.record_output("benign", 0.95)
        req.record_output("malignant", 0.05)
        req.record_output("benign", 0.15)
        req.record_output(None, None)
        req.record_output("benign", math.nan)
        req.record_output("benign", 1.5)
        req.record_null_prediction()
        req.record_output(1)  # label only, no score
    s = scrape(m)
    assert s.value("model_predictions_total", **{"class": "benign"}, **COMMON) == 2
    assert s.value("model_predictions_total", **{"class": "malignant"}, **COMMON) == 1
    assert s.value("model_predictions_total", **{"class": "1"}, **COMMON) == 1
    assert s.value("model_null_predictions_total", **COMMON) == 4
    assert s.value("model_prediction_score_count", **COMMON) == 3
    les = [lab["le"] for lab, _ in s.find("model_prediction_score_bucket", **COMMON)]
    assert les == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0", "+Inf"]
    assert s.value("model_prediction_score_bucket", le="0.1", **COMMON) == 1
    assert s.value("model_prediction_score_bucket", le="0.2", **COMMON) == 2


def test_decorator_sync_records_inputs_outputs_and_errors(scrape: Scrape) -> None:
    m = make_monitor(feature_edges={"x": [0.5]})

    @m.instrument(features=lambda row: {"x": row}, output=lambda r: ("pos" if r > 0.5 else "neg", r))
    def predict(row: float) -> float:
        if row < 0:
            raise InvalidInputError("negative")
        if row > 10:
            raise RuntimeError("boom")
        return row

    assert predict(0.9) == 0.9
    assert predict(0.1) == 0.1
    with pytest.raises(InvalidInputError):
        predict(-1)
    with pytest.raises(RuntimeError):
        predict(11)
    s = scrape(m)
    assert s.value("model_requests_total", outcome="success") == 2
    assert s.value("model_requests_total", outcome="invalid_input") == 1
    assert s.value("model_requests_total", outcome="error") == 1
    assert s.value("model_predictions_total", **{"class": "pos"}) == 1
    assert s.value("model_input_feature_value_count", feature="x") == 4


async def test_decorator_async_and_bare(scrape: Scrape) -> None:
    m = make_monitor()

    @m.instrument
    async def predict(x: int) -> int:
        req = current_request()
        assert req is not None
        req.record_output("c", 0.5)
        await asyncio.sleep(0)
        return x

    assert await predict(3) == 3
    assert current_request() is None
    s = scrape(m)
    assert s.value("model_requests_total", outcome="success") == 1
    assert s.value("model_predictions_total", **{"class": "c"}) == 1


def test_private_registries_do_not_collide(scrape: Scrape) -> None:
    a, b = make_monitor(), make_monitor()
    with a.observe_request():
        pass
    assert scrape(a).value("model_requests_total", outcome="success") == 1
    assert scrape(b).value("model_requests_total", outcome="success") == 0


def test_histogram_is_a_normal_prometheus_histogram(scrape: Scrape) -> None:
    """The exposition declares one histogram family; each feature series has its own `le` set."""
    m = make_monitor(feature_edges={"a": [1.0, 2.0], "b": [10.0, 20.0, 30.0]})
    m.record_input({"a": 1.5, "b": 25.0})
    s = scrape(m)
    assert "# TYPE model_input_feature_value histogram" in s.text
    a = s.find("model_input_feature_value_bucket", feature="a")
    b = s.find("model_input_feature_value_bucket", feature="b")
    assert [lab["le"] for lab, _ in a] == ["1.0", "2.0", "+Inf"]
    assert [lab["le"] for lab, _ in b] == ["10.0", "20.0", "30.0", "+Inf"]
    assert all(lab["rollout"] == "fraud" and lab["version"] == "2.1.0" for lab, _ in a + b)


def test_openmetrics_exposition_parses() -> None:
    """Prometheus negotiates OpenMetrics; the custom per-feature histogram must survive that encoder too."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    m = make_monitor(feature_edges={"a": [1.0, 2.0]})
    m.record_input({"a": 1.5})
    body, content_type = m.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}  # type: ignore[no-untyped-call]
    assert families["model_input_feature_value"].type == "histogram"
    assert families["model_requests"].type == "counter"
    buckets = [s for s in families["model_input_feature_value"].samples if s.name.endswith("_bucket")]
    assert [(s.labels["le"], s.value) for s in buckets] == [("1.0", 0.0), ("2.0", 1.0), ("+Inf", 1.0)]
