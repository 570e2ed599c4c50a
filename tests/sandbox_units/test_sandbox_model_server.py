"""The reference model server, run as a real subprocess: endpoints, metrics and every fault knob."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from modelrollout_devkit.sandbox.model_server import (
    FEATURE_NAMES,
    REFERENCE_PATH,
    BadRequest,
    build_feature_edges,
    load_dataset,
    load_or_train,
    parse_payload,
    train_model,
)
from modelrollout_sdk import FeatureEdges
from tests.sandbox_units.sandbox_helpers import ServerProcess, http_status

DATASET = load_dataset()


def row_features(i: int) -> dict[str, float]:
    return {n: float(v) for n, v in zip(FEATURE_NAMES, DATASET.X[i], strict=True)}


async def post_many(url: str, payloads: list[Any], concurrency: int = 20) -> list[tuple[int, Any, float]]:
    """POST each payload to /predict; (status, JSON body, seconds) in order."""
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one(payload: Any) -> tuple[int, Any, float]:
            async with sem:
                t0 = time.monotonic()
                kwargs: dict[str, Any] = {"data": payload} if isinstance(payload, bytes) else {"json": payload}
                async with session.post(url + "/predict", **kwargs) as resp:
                    body = await resp.json(content_type=None)
                    return resp.status, body, time.monotonic() - t0

        return list(await asyncio.gather(*(one(p) for p in payloads)))


# -- in-process checks of the pieces ------------------------------------------------------------------


def test_feature_names_and_data_match_scikit_learn() -> None:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    assert tuple(str(n) for n in bunch.feature_names) == FEATURE_NAMES
    assert np.array_equal(bunch.data, DATASET.X) and np.array_equal(bunch.target, DATASET.y)


def test_shipped_reference_file_is_current() -> None:
    """The drift reference in sandbox/data is what the training data gives (regenerate: --write-reference)."""
    shipped = FeatureEdges.load(REFERENCE_PATH)
    assert shipped == build_feature_edges(DATASET)
    assert set(shipped.numeric) == set(FEATURE_NAMES)
    assert REFERENCE_PATH.stat().st_size < 20_000


def test_numpy_inference_equals_the_scikit_learn_pipeline() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(DATASET.X, DATASET.y)
    model = train_model("baseline", DATASET)
    assert np.allclose(model.proba_class1(DATASET.X), pipe.predict_proba(DATASET.X)[:, 1], atol=1e-9)


def test_payload_validation() -> None:
    assert parse_payload({"features": {"mean radius": 1, "worst area": None}}) == (
        [{"mean radius": 1.0, "worst area": None}],
        False,
    )
    assert len(parse_payload({"instances": [list(DATASET.X[0]), {"mean radius": 3}]})[0]) == 2
    bad: object
    for bad in (
        [],
        {"features": {"nope": 1}},
        {"features": {"mean radius": "12"}},
        {"features": {}},
        {"features": {"mean radius": None}},
        {"instances": []},
        {"instances": [[1, 2]]},
        {"features": {"mean radius": True}},
    ):
        with pytest.raises(BadRequest):
            parse_payload(bad)


def test_cold_start_trains_caches_and_becomes_ready(tmp_path: Path) -> None:
    """No cache: the server binds at once (live), trains, then becomes ready and writes the cache."""
    proc = ServerProcess({"MODEL_VERSION": "cold", "MODEL_CACHE_DIR": str(tmp_path / "c")}, tmp_path, "cold")
    try:
        seconds = proc.wait_ready(timeout=30)
        assert (tmp_path / "c" / "model-baseline-v1.json").is_file()
        print(f"cold start to ready: {seconds:.2f}s")
        assert seconds < 15
    finally:
        assert proc.stop() == 0


# -- the running servers ------------------------------------------------------------------------------


def test_probes_and_warm_start(servers: dict[str, ServerProcess]) -> None:
    base = servers["baseline"]
    assert http_status(base.url + "/healthz") == 200
    assert http_status(base.url + "/ready") == 200
    assert http_status(base.url + "/metrics") == 200
    assert base.ready_after_s is not None
    print({name: round(p.ready_after_s or -1, 2) for name, p in servers.items()})


async def test_predictions_move_the_metrics(servers: dict[str, ServerProcess]) -> None:
    base = servers["baseline"]
    before = base.metrics()
    labels = {"rollout": "demo", "version": "1.0.0", "model": "bc"}
    n = 60
    payloads: list[Any] = [{"features": row_features(i)} for i in range(n)]
    payloads.append({"features": {"mean radius": 14.0, "worst area": None}})  # 29 absent, 1 null
    payloads.append({"instances": [row_features(100), list(DATASET.X[101])]})
    payloads += [b"not json", {"features": {"bogus": 1.0}}, {"rows": []}]
    results = await post_many(base.url, payloads)

    statuses = [s for s, _, _ in results]
    assert statuses == [200] * (n + 2) + [400, 400, 400]
    first = results[0][1]
    assert first["version"] == "1.0.0" and first["prediction"] in ("malignant", "benign")
    assert 0.0 <= first["score"] <= 1.0
    assert len(results[n + 1][1]["predictions"]) == 2
    # Most training rows are predicted right: the model is real.
    correct = sum(r[1]["prediction"] == ("benign" if DATASET.y[i] else "malignant") for i, r in enumerate(results[:n]))
    assert correct >= 0.9 * n

    after = base.metrics()

    def delta(name: str, **lab: str) -> float:
        return float(after.total(name, **labels, **lab) - before.total(name, **labels, **lab))

    assert delta("model_requests_total", outcome="success") == n + 2
    assert delta("model_requests_total", outcome="invalid_input") == 3
    assert delta("model_requests_total", outcome="error") == 0
    assert delta("model_request_duration_seconds_count") == n + 5
    assert delta("model_predictions_total") == n + 3
    assert delta("model_prediction_score_count") == n + 3
    assert delta("model_input_feature_value_count", feature="mean radius") == n + 3
    assert delta("model_input_feature_value_count", feature="worst area") == n + 2
    assert delta("model_input_missing_total", feature="worst area") == 1
    assert delta("model_input_missing_total", feature="mean texture") == 1
    assert delta("model_input_size_sum") == 30 * (n + 2) + 1
    # The feature histogram uses the shipped decile edges as `le`.
    edges = FeatureEdges.load(REFERENCE_PATH).edges("mean radius")
    les = list(after.buckets("model_input_feature_value", feature="mean radius", **labels))
    assert [float(x) for x in les[:-1]] == list(edges) and les[-1] == "+Inf"


async def test_latency_fault_is_added(servers: dict[str, ServerProcess]) -> None:
    payloads = [{"features": row_features(i)} for i in range(20)]
    fast = await post_many(servers["baseline"].url, payloads, concurrency=5)
    slow = await post_many(servers["slow"].url, payloads, concurrency=5)
    fast_median = statistics.median(t for _, _, t in fast)
    slow_median = statistics.median(t for _, _, t in slow)
    assert slow_median - fast_median >= 0.13, (fast_median, slow_median)
    m = servers["slow"].metrics()
    assert m.value("model_request_duration_seconds_bucket", le="0.1", version="1.1.0-slow") == 0
    assert m.value("model_request_duration_seconds_bucket", le="0.2", version="1.1.0-slow") >= 20


async def test_error_rate_fault(servers: dict[str, ServerProcess]) -> None:
    n = 200
    m0 = servers["erroring"].metrics()
    results = await post_many(servers["erroring"].url, [{"features": row_features(i)} for i in range(n)])
    errors = sum(s == 500 for s, _, _ in results)
    assert {s for s, _, _ in results} <= {200, 500}
    assert abs(errors / n - 0.3) < 0.1, errors
    m = servers["erroring"].metrics()

    def delta(outcome: str) -> float:
        name = "model_requests_total"
        return float(m.value(name, outcome=outcome) - m0.value(name, outcome=outcome))

    assert delta("error") == errors and delta("success") == n - errors


async def test_null_rate_fault(servers: dict[str, ServerProcess]) -> None:
    n = 200
    m0 = servers["nulls"].metrics()
    results = await post_many(servers["nulls"].url, [{"features": row_features(i)} for i in range(n)])
    assert all(s == 200 for s, _, _ in results)
    nulls = sum(b["prediction"] is None for _, b, _ in results)
    assert abs(nulls / n - 0.25) < 0.1, nulls
    m = servers["nulls"].metrics()
    assert m.value("model_null_predictions_total") - m0.value("model_null_predictions_total") == nulls
    assert m.total("model_predictions_total") - m0.total("model_predictions_total") == n - nulls


async def test_drifted_variant_predicts_a_different_class_mix(servers: dict[str, ServerProcess]) -> None:
    """Same inputs (every row of the data set) to both variants: the malignant share differs clearly."""
    batch = {"instances": [list(map(float, row)) for row in DATASET.X]}
    before = servers["drifted"].metrics().value("model_predictions_total", **{"class": "malignant"})
    ((s1, base, _),) = await post_many(servers["baseline"].url, [batch])
    ((s2, drift, _),) = await post_many(servers["drifted"].url, [batch])
    assert s1 == s2 == 200
    share_base = np.mean([p["prediction"] == "malignant" for p in base["predictions"]])
    share_drift = np.mean([p["prediction"] == "malignant" for p in drift["predictions"]])
    disagree = np.mean(
        [a["prediction"] != b["prediction"] for a, b in zip(base["predictions"], drift["predictions"], strict=True)]
    )
    print(f"malignant share: baseline {share_base:.3f}, drifted {share_drift:.3f}; disagreement {disagree:.3f}")
    assert share_drift - share_base > 0.25
    after = servers["drifted"].metrics().value("model_predictions_total", **{"class": "malignant"}, version="2.0.0")
    assert after - before == round(share_drift * len(DATASET.X))


async def test_disagree_rate_answers_the_other_class_with_the_same_profile(servers: dict[str, ServerProcess]) -> None:
    """The same rows to baseline and the disagreeing server: about 30 % of the classes differ, each flipped
    one with score 1 - score, and nothing fails."""
    rows = [{"features": row_features(i)} for i in range(300)]
    base = await post_many(servers["baseline"].url, rows)
    other = await post_many(servers["disagreeing"].url, rows)
    assert all(status == 200 for status, _, _ in base + other)
    flipped = [(a, b) for (_, a, _), (_, b, _) in zip(base, other, strict=True) if a["prediction"] != b["prediction"]]
    assert abs(len(flipped) / len(rows) - 0.3) < 0.08, len(flipped)
    assert all(abs(a["score"] + b["score"] - 1.0) < 1e-5 for a, b in flipped)


def test_crash_on_start_exits_non_zero_and_never_ready(tmp_path: Path, model_cache: Path) -> None:
    proc = ServerProcess({"FAULT_CRASH_ON_START": "true", "MODEL_CACHE_DIR": str(model_cache)}, tmp_path, "crash")
    seen_ready = False
    deadline = time.monotonic() + 15
    while proc.proc.poll() is None and time.monotonic() < deadline:
        seen_ready |= http_status(proc.url + "/ready", timeout=0.5) == 200
        time.sleep(0.02)
    code = proc.stop()
    assert code not in (0, None) and not seen_ready, proc.log()
    assert code == 3


def test_startup_delay_keeps_it_live_but_not_ready(tmp_path: Path, model_cache: Path) -> None:
    proc = ServerProcess({"FAULT_STARTUP_DELAY_S": "1.5", "MODEL_CACHE_DIR": str(model_cache)}, tmp_path, "slowstart")
    try:
        deadline = time.monotonic() + 10
        while http_status(proc.url + "/healthz", timeout=0.5) != 200:
            assert time.monotonic() < deadline, proc.log()
            time.sleep(0.02)
        assert http_status(proc.url + "/ready") == 503
        status = 0
        req = json.dumps({"features": row_features(0)}).encode()
        import urllib.request

        try:
            urllib.request.urlopen(urllib.request.Request(proc.url + "/predict", data=req), timeout=2)
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == 503
        assert proc.wait_ready(timeout=10) >= 1.5
    finally:
        assert proc.stop() == 0


def test_bad_configuration_exits_with_status_2(tmp_path: Path) -> None:
    proc = ServerProcess({"FAULT_ERROR_RATE": "1.5"}, tmp_path, "badconf")
    assert proc.proc.wait(15) == 2
    proc.stop()
    assert "FAULT_ERROR_RATE" in proc.log()


def test_cache_round_trip(tmp_path: Path) -> None:
    trained, cached = load_or_train("drifted", tmp_path)
    again, cached_again = load_or_train("drifted", tmp_path)
    assert (cached, cached_again) == (False, True)
    assert np.allclose(trained.proba_class1(DATASET.X), again.proba_class1(DATASET.X))
