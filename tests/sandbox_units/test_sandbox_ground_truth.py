"""Ground truth in the sandbox: the load generator's delayed labels reach the server that predicted, and
the knobs move accuracy (a confused candidate, a world whose concept shifts) but not the output mix."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from modelrollout_devkit.sandbox.ground_truth import Confuser, input_share
from modelrollout_devkit.sandbox.loadgen import LoadGenerator
from modelrollout_devkit.sandbox.model_server import ModelServer, ServerConfig, load_dataset

DATASET = load_dataset()
COMMON = {"rollout": "r", "version": "1.0.0", "model": "breast-cancer"}


def counts(server: ModelServer) -> dict[str, float]:
    reg = server.monitor.registry

    def get(name: str, **labels: str) -> float:
        return reg.get_sample_value(name, {**COMMON, **labels}) or 0.0

    return {
        "correct": get("model_feedback_total", outcome="correct"),
        "incorrect": get("model_feedback_total", outcome="incorrect"),
        "malignant": get("model_predictions_total", **{"class": "malignant"}),
        "benign": get("model_predictions_total", **{"class": "benign"}),
        "delays": get("model_feedback_delay_seconds_count"),
        "delay_sum": get("model_feedback_delay_seconds_sum"),
    }


async def run_with_feedback(tmp_path: Path, *, confuse: float = 0.0, concept: str = "baseline") -> dict[str, float]:
    config = ServerConfig(
        port=0, rollout_name="r", model_version="1.0.0", confuse=confuse, seed=1, cache_dir=tmp_path / "cache"
    )
    server = ModelServer(config)
    await server.start()
    try:
        for _ in range(600):
            if server.ready:
                break
            await asyncio.sleep(0.05)
        assert server.ready
        gen = LoadGenerator(
            f"http://127.0.0.1:{server.port}", rate=400, count=800, seed=5, feedback_delay=0.3, concept=concept
        )
        stats = await asyncio.wait_for(gen.run(), 60)
        assert stats.ok == 800
        # run() returns once the answers are in; the labels follow 0.3 s later.
        for _ in range(100):
            if counts(server)["delays"] >= 800:
                break
            await asyncio.sleep(0.1)
        return counts(server)
    finally:
        await server.stop()


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    path = tmp_path_factory.mktemp("gt")

    async def all_three() -> dict[str, dict[str, float]]:
        return {
            "baseline": await run_with_feedback(path),
            "confused": await run_with_feedback(path, confuse=0.5),
            "shifted": await run_with_feedback(path, concept="drifted"),
        }

    return asyncio.run(all_three())


def accuracy(c: dict[str, float]) -> float:
    return c["correct"] / (c["correct"] + c["incorrect"])


def test_every_label_is_joined_with_the_prediction_after_its_delay(measured: dict[str, dict[str, float]]) -> None:
    base = measured["baseline"]
    assert base["correct"] + base["incorrect"] == 800
    assert base["delay_sum"] / base["delays"] >= 0.3
    assert accuracy(base) > 0.9


def test_a_confused_candidate_is_less_accurate_with_the_same_output_mix(measured: dict[str, dict[str, float]]) -> None:
    base, confused = measured["baseline"], measured["confused"]
    assert accuracy(confused) < 0.75 < 0.9 < accuracy(base)
    share = [c["malignant"] / (c["malignant"] + c["benign"]) for c in (base, confused)]
    assert abs(share[0] - share[1]) < 0.06, share


def test_a_shifted_concept_lowers_the_accuracy_of_the_same_model(measured: dict[str, dict[str, float]]) -> None:
    base, shifted = measured["baseline"], measured["shifted"]
    assert accuracy(shifted) < 0.8 < accuracy(base)
    # Same inputs, same model: the same answers (the seed is the same), only the truth moved.
    assert shifted["malignant"] == base["malignant"]


def test_the_swap_is_fixed_by_the_input_and_balanced() -> None:
    confuser = Confuser.of(0.5, 0.37, "malignant", "benign")
    row = DATASET.X[0]
    assert confuser.answer("malignant", row) == confuser.answer("malignant", row.copy())
    shares = np.array([input_share(x) for x in DATASET.X])
    assert 0.4 < float(np.mean(shares < 0.5)) < 0.6
    assert confuser.to_positive == pytest.approx(0.5 * 0.37 / 0.63)


def test_feedback_endpoint_refuses_bad_bodies_with_a_reason(tmp_path: Path) -> None:
    async def go() -> list[tuple[int, str]]:
        server = ModelServer(ServerConfig(port=0, cache_dir=tmp_path))
        await server.start()
        try:
            url = f"http://127.0.0.1:{server.port}/feedback"
            out = []
            async with aiohttp.ClientSession() as session:
                for body in (
                    {"label": "x"},
                    {"feedback": "x"},
                    {"predictionId": "p", "label": "x", "delaySeconds": -1},
                ):
                    async with session.post(url, json=body) as resp:
                        out.append((resp.status, (await resp.json())["error"]))
                async with session.post(url, json={"predictionId": "nope", "label": "benign"}) as resp:
                    out.append((resp.status, str(await resp.json())))
            return out
        finally:
            await server.stop()

    answers = asyncio.run(go())
    assert answers[0] == (400, "each feedback item needs predictionId and label")
    assert answers[1][0] == 400 and "must be a list" in answers[1][1]
    assert answers[2][0] == 400 and "delaySeconds" in answers[2][1]
    assert answers[3] == (200, "{'joined': 0, 'unknown': 1, 'expired': 0}")
