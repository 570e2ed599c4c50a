"""PrometheusBackend against a real Prometheus scraping a test exporter, and against bad servers.

Every test checks the message, since that is what a person reads in a measurement's status.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import gc
import math
import socket
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohappyeyeballs
import aiohttp
import pytest
from aiohttp import web

from modelrollout.metrics import (
    Credentials,
    MetricBackend,
    PrometheusBackend,
    QueryOutcome,
    QueryStatus,
)
from tests.support.exporter import Exporter
from tests.support.prometheus import PrometheusServer


def unique() -> str:
    """A label value no other test uses, so tests can share one exporter and one Prometheus."""
    return uuid.uuid4().hex[:12]


def publish(prometheus: PrometheusServer, exporter: Exporter, name: str, value: float, **labels: str) -> None:
    """Set a gauge and wait until Prometheus has scraped it."""
    exporter.set(name, value, **labels)
    selector = ",".join(f'{key}="{label}"' for key, label in labels.items())
    if math.isnan(value):
        prometheus.wait_for_value(f"count({name}{{{selector}}})", lambda count: count == 1)
    else:
        prometheus.wait_for_value(f"{name}{{{selector}}}", lambda seen: seen == value)


def test_backend_satisfies_the_protocol() -> None:
    assert isinstance(PrometheusBackend(), MetricBackend)


# -- answers from a healthy Prometheus ---------------------------------------------------------


async def test_scalar_result(prometheus_session: PrometheusServer, backend: PrometheusBackend) -> None:
    outcome = await backend.query_scalar(prometheus_session.address, "2 * 0.125")
    assert outcome == QueryOutcome(QueryStatus.VALUE, 0.25, "")


async def test_one_series_gives_its_value(
    prometheus_session: PrometheusServer, shared_exporter: Exporter, backend: PrometheusBackend
) -> None:
    rollout = unique()
    publish(prometheus_session, shared_exporter, "model_error_ratio", 0.01, rollout=rollout, version="2")

    outcome = await backend.query_scalar(
        prometheus_session.address, f'model_error_ratio{{rollout="{rollout}",version="2"}}'
    )

    assert outcome.status is QueryStatus.VALUE
    assert outcome.value == pytest.approx(0.01)
    assert outcome.message == ""


async def test_at_evaluates_in_the_past(
    prometheus_session: PrometheusServer, shared_exporter: Exporter, backend: PrometheusBackend
) -> None:
    rollout = unique()
    before = datetime.now(UTC) - timedelta(seconds=30)
    publish(prometheus_session, shared_exporter, "model_error_ratio", 0.5, rollout=rollout, version="2")
    query = f'model_error_ratio{{rollout="{rollout}"}}'

    then = await backend.query_scalar(prometheus_session.address, query, at=before)
    now = await backend.query_scalar(prometheus_session.address, query, at=datetime.now(UTC))

    assert (then.status, then.message) == (QueryStatus.EMPTY, "query returned no series")
    assert now.value == 0.5


async def test_no_series_is_empty_not_zero(prometheus_session: PrometheusServer, backend: PrometheusBackend) -> None:
    outcome = await backend.query_scalar(prometheus_session.address, f'model_error_ratio{{rollout="{unique()}"}}')
    assert outcome == QueryOutcome(QueryStatus.EMPTY, None, "query returned no series")


async def test_nan_series_is_empty(
    prometheus_session: PrometheusServer, shared_exporter: Exporter, backend: PrometheusBackend
) -> None:
    rollout = unique()
    publish(prometheus_session, shared_exporter, "model_error_ratio", math.nan, rollout=rollout, version="2")

    outcome = await backend.query_scalar(prometheus_session.address, f'model_error_ratio{{rollout="{rollout}"}}')

    assert outcome.status is QueryStatus.EMPTY
    assert outcome.value is None
    assert "NaN" in outcome.message


async def test_nan_scalar_from_zero_over_zero(prometheus_session: PrometheusServer, backend: PrometheusBackend) -> None:
    outcome = await backend.query_scalar(prometheus_session.address, "0 / 0")
    assert outcome.status is QueryStatus.EMPTY
    assert outcome.message == "query returned NaN (e.g. 0/0: no traffic in the window)"


async def test_infinity_is_a_value_and_said_so(
    prometheus_session: PrometheusServer, backend: PrometheusBackend
) -> None:
    outcome = await backend.query_scalar(prometheus_session.address, "1 / 0")
    assert outcome.status is QueryStatus.VALUE
    assert outcome.value == math.inf
    assert outcome.message == "query returned +Inf"


async def test_several_series_is_an_error_asking_to_aggregate(
    prometheus_session: PrometheusServer, shared_exporter: Exporter, backend: PrometheusBackend
) -> None:
    rollout = unique()
    for version in ("1", "2", "3"):
        shared_exporter.set("model_error_ratio", 0.1, rollout=rollout, version=version)
    prometheus_session.wait_for_value(f'count(model_error_ratio{{rollout="{rollout}"}})', lambda n: n == 3)

    outcome = await backend.query_scalar(prometheus_session.address, f'model_error_ratio{{rollout="{rollout}"}}')

    assert outcome.status is QueryStatus.ERROR
    assert outcome.value is None
    assert outcome.message.startswith(
        "query returned 3 series; expected exactly one, aggregate it (e.g. sum(...)); got model_error_ratio{"
    )
    assert 'version="1"' in outcome.message


async def test_syntax_error_carries_prometheus_message(
    prometheus_session: PrometheusServer, backend: PrometheusBackend
) -> None:
    outcome = await backend.query_scalar(prometheus_session.address, "sum(rate(model_requests_total[1m])")
    assert outcome.status is QueryStatus.ERROR
    assert outcome.message.startswith("bad query: ")
    assert "parse error" in outcome.message
    assert "unclosed left parenthesis" in outcome.message


async def test_range_vector_is_an_error_suggesting_a_function(
    prometheus_session: PrometheusServer, backend: PrometheusBackend
) -> None:
    outcome = await backend.query_scalar(prometheus_session.address, "up[1m]")
    assert outcome.status is QueryStatus.ERROR
    assert "range vector" in outcome.message
    assert "rate(...)" in outcome.message


async def test_histogram_buckets_as_label_sets(
    prometheus_session: PrometheusServer, shared_exporter: Exporter, backend: PrometheusBackend
) -> None:
    rollout = unique()
    shared_exporter.set_histogram("model_score", {0.1: 2, 0.5: 5, 1.0: 3}, rollout=rollout, version="2")
    shared_exporter.observe("model_latency_seconds", 0.2, count=4, buckets=(0.1, 0.25), rollout=rollout)
    prometheus_session.wait_for_value(f'count(model_score_bucket{{rollout="{rollout}"}})', lambda n: n == 4)
    prometheus_session.wait_for_value(f'count(model_latency_seconds_bucket{{rollout="{rollout}"}})', lambda n: n == 3)

    scores = await backend.query_vector(
        prometheus_session.address, f'sum by (le) (model_score_bucket{{rollout="{rollout}"}})'
    )
    latency = await backend.query_vector(
        prometheus_session.address, f'model_latency_seconds_bucket{{rollout="{rollout}"}}'
    )

    assert scores.status is QueryStatus.VALUE
    assert scores.message == ""
    assert {sample.labels["le"]: sample.value for sample in scores.samples} == {
        "0.1": 2.0,
        "0.5": 7.0,
        "1.0": 10.0,
        "+Inf": 10.0,
    }
    assert all(dict(sample.labels).keys() == {"le"} for sample in scores.samples)
    by_le = {sample.labels["le"]: sample for sample in latency.samples}
    assert {le: sample.value for le, sample in by_le.items()} == {"0.1": 0.0, "0.25": 4.0, "+Inf": 4.0}
    assert by_le["0.25"].labels["__name__"] == "model_latency_seconds_bucket"
    assert by_le["0.25"].labels["rollout"] == rollout


async def test_vector_of_nothing_is_empty(prometheus_session: PrometheusServer, backend: PrometheusBackend) -> None:
    outcome = await backend.query_vector(prometheus_session.address, f'model_score_bucket{{rollout="{unique()}"}}')
    assert (outcome.status, outcome.samples, outcome.message) == (QueryStatus.EMPTY, (), "query returned no series")


async def test_trailing_slash_and_one_client_per_address(
    prometheus_session: PrometheusServer, backend: PrometheusBackend
) -> None:
    first = await backend.query_scalar(prometheus_session.address + "/", "1")
    second = await backend.query_scalar(prometheus_session.address, "2")
    assert (first.value, second.value) == (1.0, 2.0)
    assert len(backend._clients) == 1
    (client,) = backend._clients.values()
    assert client.session is not None and not client.session.closed


async def test_is_online(prometheus_session: PrometheusServer, backend: PrometheusBackend) -> None:
    assert await backend.is_online(prometheus_session.address)
    assert not await backend.is_online(f"http://127.0.0.1:{_closed_port()}")


# -- Prometheus going away and coming back -------------------------------------------------------


async def test_prometheus_down_is_an_error_fast_then_values_come_back(
    prometheus_session: PrometheusServer, shared_exporter: Exporter, backend: PrometheusBackend
) -> None:
    rollout = unique()
    publish(prometheus_session, shared_exporter, "model_error_ratio", 0.2, rollout=rollout)
    query = f'model_error_ratio{{rollout="{rollout}"}}'
    assert (await backend.query_scalar(prometheus_session.address, query)).value == 0.2

    prometheus_session.stop()
    try:
        started = time.monotonic()
        down = await backend.query_scalar(prometheus_session.address, query)
        elapsed = time.monotonic() - started
        assert down == QueryOutcome.error(f"Prometheus at {prometheus_session.address} unreachable: connection refused")
        assert elapsed < 1.0
        assert not await backend.is_online(prometheus_session.address)
        shared_exporter.set("model_error_ratio", 0.3, rollout=rollout)
    finally:
        prometheus_session.start()

    prometheus_session.wait_for_value(query, lambda value: value == 0.3)
    back = await backend.query_scalar(prometheus_session.address, query)
    assert back == QueryOutcome(QueryStatus.VALUE, 0.3, "")
    assert await backend.is_online(prometheus_session.address)


# -- servers that are not (healthy) Prometheus ----------------------------------------------------


def _closed_port() -> int:
    from tests.support.exporter import free_port

    return free_port()


BIG = 11 * 1024 * 1024


async def _huge(request: web.Request) -> web.Response:
    return web.Response(body=b"[" * BIG, content_type="application/json")


async def _huge_chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    chunk = b'{"status":"success","data":{"resultType":"vector","result":[' + b" " * (1024 * 1024)
    for _ in range(12):
        await response.write(chunk)
    await response.write_eof()
    return response


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(30)
    return web.Response(text="too late")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _answer(status: int, body: str, content_type: str = "application/json") -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=body, content_type=content_type)

    return handler


@pytest.fixture
async def bad_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback server with one misbehaving Prometheus per path prefix, and the auth headers seen."""
    seen_auth: list[str] = []

    async def record_auth(request: web.Request) -> web.StreamResponse:
        seen_auth.append(request.headers.get("Authorization", ""))
        return web.Response(status=401, text="Unauthorized")

    routes: dict[str, Handler] = {
        "/garbage": _answer(200, "<html>hello</html>", "text/html"),
        "/wrong-json": _answer(200, '{"hello": "world"}'),
        "/wrong-result": _answer(200, '{"status":"success","data":{"resultType":"vector","result":"x"}}'),
        "/string": _answer(200, '{"status":"success","data":{"resultType":"string","result":[1,"abc"]}}'),
        "/http500": _answer(500, "upstream exploded", "text/plain"),
        "/http422": _answer(
            422, '{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}'
        ),
        "/http503": _answer(
            503, '{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}'
        ),
        "/auth": record_auth,
    }
    app = web.Application()
    for prefix, handler in routes.items():
        app.router.add_get(f"{prefix}/api/v1/query", handler)
    app.router.add_get("/huge/api/v1/query", _huge)
    app.router.add_get("/huge-chunked/api/v1/query", _huge_chunked)
    app.router.add_get("/slow/api/v1/query", _slow)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen_auth
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/garbage", "answered something that is not JSON: '<html>hello</html>'"),
        ("/wrong-json", "answered JSON that is not a Prometheus query result"),
        ("/wrong-result", "gave an unexpected answer: unexpected result shape"),
        ("/string", "gave an unexpected answer: query returned a string ('abc'), not a number"),
        ("/huge", "answered more than 10 MiB; refusing to read it (narrow the query)"),
        ("/huge-chunked", "answered more than 10 MiB; refusing to read it (narrow the query)"),
        ("/http500", "answered HTTP 500: upstream exploded"),
        ("/http503", "could not finish the query in time (timeout): query timed out in expression evaluation"),
        ("/nowhere", "(HTTP 404 for /api/v1/query); check the address"),
    ],
)
async def test_bad_answers_are_errors_with_a_reason(
    bad_server: tuple[str, list[str]], backend: PrometheusBackend, path: str, expected: str
) -> None:
    address = bad_server[0] + path
    outcome = await backend.query_scalar(address, "up")
    assert outcome.status is QueryStatus.ERROR
    assert expected in outcome.message
    assert address in outcome.message


async def test_execution_error_carries_prometheus_message(
    bad_server: tuple[str, list[str]], backend: PrometheusBackend
) -> None:
    outcome = await backend.query_scalar(bad_server[0] + "/http422", "up")
    assert outcome == QueryOutcome.error("query failed in Prometheus: many-to-many matching not allowed")


async def test_vector_query_reports_the_same_errors(
    bad_server: tuple[str, list[str]], backend: PrometheusBackend
) -> None:
    outcome = await backend.query_vector(bad_server[0] + "/huge", "up")
    assert outcome.status is QueryStatus.ERROR
    assert outcome.samples == ()
    assert "more than 10 MiB" in outcome.message


async def test_slow_server_times_out_within_the_timeout(bad_server: tuple[str, list[str]]) -> None:
    backend = PrometheusBackend(timeout=0.5)
    try:
        started = time.monotonic()
        outcome = await backend.query_scalar(bad_server[0] + "/slow", "up")
        elapsed = time.monotonic() - started
    finally:
        await backend.aclose()
    assert outcome == QueryOutcome.error(f"Prometheus at {bad_server[0]}/slow did not answer within 0.5s")
    assert elapsed < 1.5


async def test_secrets_are_sent_but_never_shown(bad_server: tuple[str, list[str]]) -> None:
    address, seen_auth = bad_server
    bearer = PrometheusBackend(credentials=Credentials(bearer_token="s3cr3t-token"))
    basic = PrometheusBackend(credentials=Credentials(username="alice", password="pa55word"))
    plain = PrometheusBackend()
    try:
        with_token = await bearer.query_scalar(address + "/auth", "up")
        with_password = await basic.query_scalar(address + "/auth", "up")
        in_url = await plain.query_scalar(address.replace("http://", "http://bob:hunter2@") + "/auth", "up")
    finally:
        await bearer.aclose()
        await basic.aclose()
        await plain.aclose()
    assert seen_auth[0] == "Bearer s3cr3t-token"
    assert seen_auth[1] == "Basic " + base64.b64encode(b"alice:pa55word").decode()
    assert seen_auth[2] == "Basic " + base64.b64encode(b"bob:hunter2").decode()
    for outcome in (with_token, with_password, in_url):
        assert outcome.status is QueryStatus.ERROR
        assert "refused access (HTTP 401); check the credentials" in outcome.message
        for secret in ("s3cr3t", "pa55word", "hunter2", "bob"):
            assert secret not in outcome.message
    assert "s3cr3t" not in repr(Credentials(bearer_token="s3cr3t-token"))
    for backend in (bearer, basic, plain):
        for client in backend._clients.values():
            assert all(secret not in repr(client) for secret in ("s3cr3t", "pa55word", "hunter2"))


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("", "no Prometheus address is configured"),
        ("prometheus:9090", "invalid Prometheus address 'prometheus:9090': expected http://host:port"),
        ("http://127.0.0.1:notaport", "invalid Prometheus address"),
        ("http://no-such-host.invalid:9090", "unreachable: cannot resolve the host name"),
    ],
)
async def test_bad_addresses(backend: PrometheusBackend, address: str, expected: str) -> None:
    outcome = await backend.query_scalar(address, "up")
    assert outcome.status is QueryStatus.ERROR
    assert expected in outcome.message


async def test_refused_connection_is_unreachable(backend: PrometheusBackend) -> None:
    address = f"http://127.0.0.1:{_closed_port()}"
    outcome = await backend.query_scalar(address, "up")
    assert outcome == QueryOutcome.error(f"Prometheus at {address} unreachable: connection refused")


async def test_empty_query_is_a_bad_query(backend: PrometheusBackend) -> None:
    outcome = await backend.query_scalar("http://127.0.0.1:9", "  ")
    assert outcome == QueryOutcome.error("bad query: the query is empty")


async def test_concurrent_queries_share_one_client(
    prometheus_session: PrometheusServer, backend: PrometheusBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[aiohttp.ClientSession] = []
    real = aiohttp.ClientSession

    def counting(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(aiohttp, "ClientSession", counting)
    outcomes = await asyncio.gather(
        *(backend.query_scalar(prometheus_session.address, f"{index} + 0") for index in range(20))
    )
    assert [outcome.value for outcome in outcomes] == [float(index) for index in range(20)]
    assert len(made) == 1
    assert [client.session for client in backend._clients.values()] == made


# -- retries, and closing -----------------------------------------------------------------------


class ConnectSpy:
    """Counts the TCP connects aiohttp starts; refuses the first `refuse` of them itself."""

    def __init__(self) -> None:
        self.refuse = 0
        self.attempts: list[str] = []


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> ConnectSpy:
    spy = ConnectSpy()
    real = aiohappyeyeballs.start_connection

    async def start_connection(*args: Any, **kwargs: Any) -> socket.socket:
        if len(spy.attempts) < spy.refuse:
            spy.attempts.append("refused")
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")
        spy.attempts.append("tried")
        return await real(*args, **kwargs)

    monkeypatch.setattr(aiohappyeyeballs, "start_connection", start_connection)
    return spy


async def test_a_refused_connect_is_retried_once_at_once(
    prometheus_session: PrometheusServer, backend: PrometheusBackend, connects: ConnectSpy
) -> None:
    connects.refuse = 1
    started = time.monotonic()
    outcome = await backend.query_scalar(prometheus_session.address, "7")
    assert outcome == QueryOutcome(QueryStatus.VALUE, 7.0, "")
    assert connects.attempts == ["refused", "tried"]
    assert time.monotonic() - started < 1.0


async def test_a_connect_refused_twice_is_an_error_after_two_attempts(
    backend: PrometheusBackend, connects: ConnectSpy
) -> None:
    address = f"http://127.0.0.1:{_closed_port()}"
    outcome = await backend.query_scalar(address, "up")
    assert outcome == QueryOutcome.error(f"Prometheus at {address} unreachable: connection refused")
    assert connects.attempts == ["tried", "tried"]


async def test_statuses_and_slow_answers_are_not_retried() -> None:
    seen: list[str] = []

    async def failing(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        if request.path.startswith("/slow"):
            await asyncio.sleep(5)
        return web.Response(status=503, text="try again later")

    app = web.Application()
    app.router.add_get("/{prefix}/api/v1/query", failing)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    address = f"http://127.0.0.1:{runner.addresses[0][1]}"
    backend = PrometheusBackend(timeout=0.5)
    try:
        unavailable = await backend.query_scalar(address + "/down", "up")
        slow = await backend.query_scalar(address + "/slow", "up")
    finally:
        await backend.aclose()
        await runner.cleanup()
    assert unavailable == QueryOutcome.error(f"Prometheus at {address}/down answered HTTP 503: try again later")
    assert slow == QueryOutcome.error(f"Prometheus at {address}/slow did not answer within 0.5s")
    assert seen == ["/down/api/v1/query", "/slow/api/v1/query"]


async def test_aclose_closes_every_session_and_the_backend_can_be_used_again(
    prometheus_session: PrometheusServer, backend: PrometheusBackend
) -> None:
    await backend.query_scalar(prometheus_session.address, "1")
    await backend.query_scalar(prometheus_session.address.replace("127.0.0.1", "localhost"), "1")
    sessions = [client.session for client in backend._clients.values()]
    assert len(sessions) == 2

    await backend.aclose()

    assert all(session is not None and session.closed for session in sessions)
    assert backend._clients == {}
    assert (await backend.query_scalar(prometheus_session.address, "3")).value == 3.0
    (client,) = backend._clients.values()
    session = client.session
    backend.close()  # in the loop: closes the connections without waiting for them
    assert session is not None and session.closed
    assert (await backend.query_scalar(prometheus_session.address, "4")).value == 4.0


def test_close_outside_the_loop_and_one_backend_across_loops(prometheus_session: PrometheusServer) -> None:
    backend = PrometheusBackend(timeout=2.0)
    address = prometheus_session.address
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(backend.query_scalar(address, "1")).value == 1.0
        # The first loop is gone: the next one gets a session of its own.
        assert asyncio.run(backend.query_scalar(address, "2")).value == 2.0
        (client,) = backend._clients.values()
        session = client.session
        backend.close()
        assert session is not None and session.closed
        del session, client
        gc.collect()
    assert not [warning for warning in caught if "Unclosed" in str(warning.message)]
