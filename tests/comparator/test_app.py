"""The comparator over real HTTP: two model servers stand-ins (aiohttp), the app served by uvicorn."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import uvicorn
from aiohttp import web

from modelrollout.comparator.app import ANSWERS_PATH, SHADOW_HEADER, Comparator, ComparatorConfig, build_app
from modelrollout.comparator.series import PAIRS_TOTAL, REQUESTS_TOTAL, Identity
from modelrollout.comparator.serve import ConfigError, config_from_env


@dataclass
class Backend:
    klass: str
    seen: list[dict[str, str]] = field(default_factory=list)
    url: str = ""


async def _start_backend(backend: Backend) -> web.AppRunner:
    async def predict(request: web.Request) -> web.Response:
        backend.seen.append(dict(request.headers))
        await request.json()
        return web.json_response({"prediction": backend.klass, "score": 0.5})

    app = web.Application()
    app.router.add_post("/predict", predict)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    backend.url = f"http://127.0.0.1:{port}"
    return runner


@dataclass
class Running:
    url: str
    comparator: Comparator
    stable: Backend
    candidate: Backend


async def _serve(config: ComparatorConfig, stable: Backend, candidate: Backend) -> AsyncIterator[Running]:
    comparator = Comparator(config)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    server = uvicorn.Server(uvicorn.Config(build_app(comparator), log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"{url}/ready") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        yield Running(url, comparator, stable, candidate)
    finally:
        server.should_exit = True
        await task
        await comparator.close()


@pytest.fixture
async def backends() -> AsyncIterator[tuple[Backend, Backend]]:
    stable, candidate = Backend("benign"), Backend("malignant")
    runners = [await _start_backend(stable), await _start_backend(candidate)]
    yield stable, candidate
    for runner in runners:
        await runner.cleanup()


def _config(stable: Backend, candidate: Backend, **extra: Any) -> ComparatorConfig:
    return ComparatorConfig(Identity("fraud", "scorer", "1.0", "2.0"), stable.url, candidate.url, **extra)


def _sample(comparator: Comparator, name: str, **labels: str) -> float:
    value = comparator.series.registry.get_sample_value(name, {**comparator.config.identity.labels(), **labels})
    return value or 0.0


async def test_a_mirrored_request_is_asked_of_both_and_compared(backends: tuple[Backend, Backend]) -> None:
    stable, candidate = backends
    async for running in _serve(_config(stable, candidate), stable, candidate):
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.post(f"{running.url}/predict", json={"features": {"x": 1}}) as response:
                    assert response.status == 202
                    body = await response.json()
                    assert "malignant" not in str(body)  # nothing of the candidate's answer comes back
            async with http.get(f"{running.url}/metrics") as response:
                text = await response.text()
        assert _sample(running.comparator, PAIRS_TOTAL, outcome="disagree") == 3
        assert _sample(running.comparator, REQUESTS_TOTAL, result="joined") == 3
        assert (
            f'{PAIRS_TOTAL}{{candidate="2.0",model="scorer",outcome="disagree",rollout="fraud",stable="1.0"}} 3.0'
            in text
        )
        assert all(seen.get(SHADOW_HEADER) == "comparator" for seen in stable.seen + candidate.seen)


async def test_its_own_requests_coming_back_are_refused(backends: tuple[Backend, Backend]) -> None:
    stable, candidate = backends
    async for running in _serve(_config(stable, candidate), stable, candidate):
        headers = {SHADOW_HEADER: "comparator"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{running.url}/predict", json={}, headers=headers) as response,
        ):
            assert response.status == 421
        assert not stable.seen and not candidate.seen


async def test_reported_stable_answers_join_by_request_id(backends: tuple[Backend, Backend]) -> None:
    stable, candidate = backends
    config = _config(stable, candidate, stable_source="report", join_ttl_seconds=0.2)
    async for running in _serve(config, stable, candidate):
        async with aiohttp.ClientSession() as http:
            report = {"requestId": "r-1", "answer": {"prediction": "malignant", "score": 0.5}, "latencySeconds": 0.01}
            async with http.post(f"{running.url}{ANSWERS_PATH}", json=report) as response:
                assert response.status == 202
            async with http.post(f"{running.url}/predict", json={}, headers={"x-request-id": "r-1"}) as response:
                assert response.status == 202
            async with http.post(f"{running.url}/predict", json={}, headers={"x-request-id": "r-2"}) as response:
                assert response.status == 202
            async with http.post(f"{running.url}{ANSWERS_PATH}", json={"answer": {}}) as response:
                assert response.status == 400
                assert "requestId" in (await response.json())["error"]
            await asyncio.sleep(0.3)  # past the join's TTL: r-2 never got stable's answer
            async with http.get(f"{running.url}/metrics") as response:
                assert response.status == 200
        assert not stable.seen  # report mode never asks stable again
        assert _sample(running.comparator, PAIRS_TOTAL, outcome="agree") == 1
        assert _sample(running.comparator, REQUESTS_TOTAL, result="unjoined") == 1


def test_a_bad_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="COMPARATOR_STABLE_URL"):
        config_from_env({"COMPARATOR_CANDIDATE_URL": "http://c"})
    with pytest.raises(ConfigError, match="COMPARATOR_JOIN_TTL_SECONDS='soon' is not a number"):
        config_from_env(
            {
                "COMPARATOR_STABLE_URL": "http://s",
                "COMPARATOR_CANDIDATE_URL": "http://c",
                "COMPARATOR_JOIN_TTL_SECONDS": "soon",
            }
        )
    config, host, port = config_from_env({"COMPARATOR_STABLE_URL": "http://s", "COMPARATOR_CANDIDATE_URL": "http://c"})
    assert (config.stable_source, config.join_ttl_seconds, host, port) == ("reask", 30.0, "0.0.0.0", 8080)


def test_modelrollout_comparator_refuses_a_bad_environment_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelrollout.cli import main

    monkeypatch.delenv("COMPARATOR_STABLE_URL", raising=False)
    monkeypatch.setenv("COMPARATOR_CANDIDATE_URL", "http://scorer-canary.ml.svc:80")
    assert main(["comparator"]) == 2
    assert capsys.readouterr().err == (
        "modelrollout comparator: COMPARATOR_STABLE_URL='': required, an http(s) URL of the Service\n"
    )


async def test_the_sdks_reporter_feeds_report_mode(backends: tuple[Backend, Backend]) -> None:
    from modelrollout_sdk import ShadowReporter

    stable, candidate = backends
    config = _config(stable, candidate, stable_source="report", join_ttl_seconds=5)
    async for running in _serve(config, stable, candidate):
        reporter = ShadowReporter(running.url)
        reporter.report("r-7", [("malignant", 0.5)], latency_seconds=0.002)
        reporter.report(None, [("benign", 0.1)], latency_seconds=0.002)  # no id: nothing to join, not sent
        await asyncio.get_running_loop().run_in_executor(None, reporter.close)
        assert (reporter.sent, reporter.dropped) == (1, 0)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{running.url}/predict", json={}, headers={"x-request-id": "r-7"}) as response,
        ):
            assert response.status == 202
        assert _sample(running.comparator, PAIRS_TOTAL, outcome="agree") == 1
