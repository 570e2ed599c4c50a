"""The load generator: rate kept, stops by itself, counts by status and version, shifts the inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator

import numpy as np
import pytest
from aiohttp import web

from modelrollout_devkit.sandbox.loadgen import PRESETS, FeatureSampler, LoadGenerator, parse_shift
from tests.sandbox_units.sandbox_helpers import ServerProcess, free_port


def test_parse_shift() -> None:
    assert parse_shift("mean radius=3, worst area=-1.5") == {"mean radius": 3.0, "worst area": -1.5}
    assert parse_shift("drifted") == dict(PRESETS["drifted"])
    assert parse_shift({"mean radius": 2}) == {"mean radius": 2.0}
    with pytest.raises(ValueError):
        parse_shift("mean radius")
    with pytest.raises(ValueError):
        FeatureSampler(shift={"no such feature": 1.0})
    with pytest.raises(ValueError):
        LoadGenerator("http://127.0.0.1:1", rate=10)  # neither duration nor count: would never stop


def test_sampler_shift_is_in_training_standard_deviations() -> None:
    plain = FeatureSampler(seed=1, noise=0.0)
    shifted = FeatureSampler(seed=1, noise=0.0, shift={"mean radius": 3.0})
    a = np.array([plain.sample_array() for _ in range(500)])
    b = np.array([shifted.sample_array() for _ in range(500)])
    std = plain.dataset.X[:, 0].std()
    assert np.allclose(b[:, 0] - a[:, 0], 3.0 * std)
    assert np.allclose(b[:, 1:], a[:, 1:])
    sample = FeatureSampler(seed=2, missing_rate=0.5).sample()
    assert 5 < sum(v is None for v in sample.values()) < 25


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A stand-in router: records request headers and answers as version a or b by a header."""
    seen: list[dict[str, str]] = []

    async def predict(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        await request.json()
        version = "b" if request.headers.get("X-Canary") == "always" else "a"
        return web.json_response({"prediction": "benign", "score": 0.1, "version": version})

    app = web.Application()
    app.add_routes([web.post("/predict", predict)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_rate_is_kept_and_run_stops_by_itself(echo_server: tuple[str, list[dict[str, str]]]) -> None:
    url, _ = echo_server
    stats = await LoadGenerator(url, rate=100, duration=2.0, seed=3).run()
    assert 190 <= stats.sent <= 201
    assert stats.completed == stats.sent and stats.by_status[200] == stats.sent
    # The rate over the whole run, including the wait for the last answers: a loaded machine
    # stretches that tail, not the sending (which `sent` above checks).
    assert 75 <= stats.achieved_rate <= 105
    assert stats.by_version["a"] == stats.sent
    stats = await LoadGenerator(url, rate=200, count=50).run()
    assert stats.sent == 50 and stats.elapsed_s < 1.0


async def test_headers_and_version_counting(echo_server: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = echo_server
    stats = await LoadGenerator(url, rate=200, count=20, headers={"X-Canary": "always"}).run()
    assert all(h.get("X-Canary") == "always" for h in seen)
    assert stats.by_version == {"b": 20} and stats.share("b") == 1.0
    assert stats.to_dict()["by_prediction"] == {"benign": 20}


async def test_start_and_stop_in_the_background(echo_server: tuple[str, list[dict[str, str]]]) -> None:
    import asyncio

    url, _ = echo_server
    gen = LoadGenerator(url, rate=100, duration=60)
    gen.start()
    await asyncio.sleep(0.5)
    assert gen.stats.sent > 20  # stats are live while it runs
    stats = await gen.stop()
    assert stats.elapsed_s < 2.0 and stats.completed == stats.sent


async def test_connection_errors_are_counted() -> None:
    stats = await LoadGenerator(f"http://127.0.0.1:{free_port()}", rate=100, count=5, timeout=2).run()
    assert stats.connection_errors == 5 and stats.by_status[0] == 5 and stats.completed == 0


async def test_shift_moves_the_input_histogram(servers: dict[str, ServerProcess]) -> None:
    """Read from /metrics: with 'mean radius' shifted by 3 sd, most values land above the top decile edge."""
    base = servers["baseline"]

    def above_top_share(before: dict[str, float], after: dict[str, float]) -> float:
        les = [k for k in after if k != "+Inf"]
        top_le = max(les, key=float)
        total = after["+Inf"] - before.get("+Inf", 0.0)
        above = total - (after[top_le] - before.get(top_le, 0.0))
        return above / total

    labels = {"feature": "mean radius", "version": "1.0.0"}
    m0 = base.metrics().buckets("model_input_feature_value", **labels)
    plain = await LoadGenerator(base.url, rate=200, count=200, seed=5).run()
    m1 = base.metrics().buckets("model_input_feature_value", **labels)
    shifted = await LoadGenerator(base.url, rate=200, count=200, seed=5, shift="mean radius=3").run()
    m2 = base.metrics().buckets("model_input_feature_value", **labels)
    assert plain.ok == shifted.ok == 200
    share_plain, share_shifted = above_top_share(m0, m1), above_top_share(m1, m2)
    print(f"share of 'mean radius' above the top decile edge: plain {share_plain:.2f}, shifted {share_shifted:.2f}")
    assert share_plain < 0.25 and share_shifted > 0.6


def test_cli_runs_and_prints_json_stats(servers: dict[str, ServerProcess]) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelrollout_devkit.sandbox.loadgen",
            "--url",
            servers["drifted"].url,
            "--rate",
            "100",
            "--count",
            "30",
            "--preset",
            "drifted",
            "--header",
            "X-Test: 1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    stats = json.loads(out.stdout)
    assert stats["sent"] == 30 and stats["by_status"] == {"200": 30} and stats["by_version"] == {"2.0.0": 30}
