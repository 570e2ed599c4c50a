"""Batched queries against a real Prometheus: each query's answer is the one it gets alone.

`PrometheusBackend(batch_seconds=...)` sends queries to one address that arrive close together as
one request (`modelrollout.metrics.batching`). What a user sees must not change: the same value,
series, message, for every kind of query, including those that cannot be batched, and no query can
change another's answer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import ClientSession, web

from modelrollout.metrics import PrometheusBackend, QueryOutcome, QueryStatus, VectorOutcome
from modelrollout.metrics.batching import BATCH_LABEL, combine, self_contained, split
from modelrollout.vocabulary.samples import Sample
from tests.support.exporter import Exporter, free_port
from tests.support.prometheus import PrometheusServer


def unique() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def batched() -> AsyncIterator[PrometheusBackend]:
    backend = PrometheusBackend(timeout=5.0, batch_seconds=0.05)
    try:
        yield backend
    finally:
        await backend.aclose()


@pytest.fixture
def alone(backend: PrometheusBackend) -> PrometheusBackend:
    """The reference: the directory's backend, which sends every query alone."""
    return backend


class Requests:
    """Counts the HTTP requests a backend sends (a spy: each request still goes to Prometheus)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, backend: PrometheusBackend) -> None:
        self.count = 0
        fetch = backend._fetch

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await fetch(*args, **kwargs)

        monkeypatch.setattr(backend, "_fetch", counted)


def comparable(outcome: QueryOutcome | VectorOutcome) -> Any:
    """An outcome with its series in a fixed order (a batch may return them in another)."""
    if isinstance(outcome, VectorOutcome):
        series = sorted((sorted(sample.labels.items()), sample.value) for sample in outcome.samples)
        return (outcome.status, series, outcome.message)
    return outcome


@pytest.fixture
def published(prometheus_session: PrometheusServer, shared_exporter: Exporter) -> Callable[[], str]:
    """Gauges and a histogram for one fresh rollout name, scraped by Prometheus."""

    def publish() -> str:
        rollout = unique()
        shared_exporter.set("model_error_ratio", 0.25, rollout=rollout, version="1")
        shared_exporter.set("model_error_ratio", 0.5, rollout=rollout, version="2")
        shared_exporter.set("model_error_ratio", float("nan"), rollout=rollout, version="nan")
        shared_exporter.set_histogram("model_score", {0.1: 2, 0.5: 5, 1.0: 3}, rollout=rollout, version="2")
        prometheus_session.wait_for_value(f'count(model_error_ratio{{rollout="{rollout}"}})', lambda n: n == 3)
        prometheus_session.wait_for_value(f'count(model_score_bucket{{rollout="{rollout}"}})', lambda n: n == 4)
        return rollout

    return publish


def scalar_queries(rollout: str) -> list[str]:
    selector = f'rollout="{rollout}"'
    return [
        f'model_error_ratio{{{selector}, version="1"}}',  # one series
        f'sum(model_error_ratio{{{selector}, version=~"1|2"}})',  # aggregated: no labels
        f'model_error_ratio{{{selector}, version="3"}}',  # no series
        f'model_error_ratio{{{selector}, version="nan"}}',  # NaN
        f"model_error_ratio{{{selector}}}",  # three series: an error asking to aggregate
        f'model_error_ratio{{{selector}, version="2"}} # a comment that would swallow the rest of a line',
        f'model_error_ratio{{{selector}, version!=")("}} * 0 + 1',  # brackets inside a string
        "1 / 4",  # a scalar: cannot be batched, answered alone
        f"model_error_ratio{{{selector}}}[1m]",  # a range vector: an error, alone
        f"sum(model_error_ratio{{{selector}}}",  # does not parse: its own error, alone
    ]


def vector_queries(rollout: str) -> list[str]:
    return [
        f'sum by (le) (model_score_bucket{{rollout="{rollout}"}})',
        f'model_score_bucket{{rollout="{rollout}", le="0.5"}}',
        f'model_score_bucket{{rollout="{rollout}", version="9"}}',
    ]


async def test_every_query_gets_the_answer_it_gets_alone(
    prometheus_session: PrometheusServer,
    published: Callable[[], str],
    batched: PrometheusBackend,
    alone: PrometheusBackend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rollout = published()
    address = prometheus_session.address
    scalars, vectors = scalar_queries(rollout), vector_queries(rollout)
    expected = [await alone.query_scalar(address, q) for q in scalars]
    expected_vectors = [comparable(await alone.query_vector(address, q)) for q in vectors]
    requests = Requests(monkeypatch, batched)

    got = await asyncio.gather(
        *(batched.query_scalar(address, q) for q in scalars), *(batched.query_vector(address, q) for q in vectors)
    )

    assert list(got[: len(scalars)]) == expected
    assert [comparable(outcome) for outcome in got[len(scalars) :]] == expected_vectors
    assert expected[0].value == 0.25 and expected[1].value == 0.75  # the answers are real ones
    assert "expected exactly one" in expected[4].message and "bad query" in expected[9].message
    # One batch, which fails on the three queries that cannot be batched; each is asked alone then.
    assert requests.count == 1 + len(scalars) + len(vectors)

    # The next time, the queries that cannot be batched go alone at once, the rest together.
    requests.count = 0
    again = await asyncio.gather(*(batched.query_scalar(address, q) for q in scalars))
    assert list(again) == expected
    assert requests.count == 1 + 3


async def test_many_rollouts_in_one_request(
    prometheus_session: PrometheusServer,
    shared_exporter: Exporter,
    batched: PrometheusBackend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rollouts = {unique(): index / 100 for index in range(40)}
    for rollout, value in rollouts.items():
        shared_exporter.set("model_error_ratio", value, rollout=rollout)
    last = list(rollouts)[-1]
    prometheus_session.wait_for_value(f'model_error_ratio{{rollout="{last}"}}', lambda seen: seen == 0.39)
    requests = Requests(monkeypatch, batched)

    got = await asyncio.gather(
        *(
            batched.query_scalar(prometheus_session.address, f'sum(model_error_ratio{{rollout="{r}"}})')
            for r in rollouts
        )
    )

    assert [outcome.value for outcome in got] == list(rollouts.values())
    assert requests.count == 1


async def test_a_query_cannot_reach_into_its_neighbours(
    prometheus_session: PrometheusServer,
    published: Callable[[], str],
    batched: PrometheusBackend,
    alone: PrometheusBackend,
) -> None:
    """Queries written to escape their place in a batch and change the query after them: each runs
    alone, gets the answer it gets alone, and the victim's answer is its own."""
    rollout = published()
    victim = f'model_error_ratio{{rollout="{rollout}", version="1"}}'
    queries = [
        # Closes its label_replace(( early and opens a group that the query after the victim
        # closes, adding 1000 to everything between: the victim included, were they batched.
        'vector(0) < -1), "x", "y", "", "") or (label_replace((vector(0)',
        victim,
        'vector(0) < -1), "x", "y", "", "")) + 1000 or label_replace((vector(0)',
        # Names the batch label with a guessed token.
        f'label_replace(vector(7), "{BATCH_LABEL}", "0000000000000000", "", "")',
    ]
    expected = [await alone.query_scalar(prometheus_session.address, q) for q in queries]

    got = await asyncio.gather(*(batched.query_scalar(prometheus_session.address, q) for q in queries))

    assert list(got) == expected
    assert got[1] == QueryOutcome.of_value(0.25)


async def test_prometheus_down_fails_every_query_alike(batched: PrometheusBackend) -> None:
    address = f"http://127.0.0.1:{free_port()}"
    got = await asyncio.gather(*(batched.query_scalar(address, f'up{{job="{n}"}}') for n in range(5)))
    assert set(got) == {QueryOutcome.error(f"Prometheus at {address} unreachable: connection refused")}


async def test_a_closed_backend_stops_waiting_queries(prometheus_session: PrometheusServer) -> None:
    backend = PrometheusBackend(timeout=5.0, batch_seconds=30.0)
    waiting = asyncio.ensure_future(backend.query_scalar(prometheus_session.address, "vector(1)"))
    await asyncio.sleep(0.05)
    await backend.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # A closed backend can be used again, as without batching.
    again = PrometheusBackend(timeout=5.0, batch_seconds=0.01)
    try:
        assert (await again.query_scalar(prometheus_session.address, "vector(1)")).value == 1.0
    finally:
        await again.aclose()


@pytest.mark.parametrize(
    ("query", "contained"),
    [
        ('sum(rate(model_requests_total{rollout="a"}[5m]))', True),
        ('x{a=")"}', True),
        ("x{a=')'}", True),
        ("x{a=`)\\`}", True),  # raw strings have no escapes
        ('x{a="\\")"}', True),  # an escaped quote does not end the string
        ("x # )\n + y", True),  # a comment ends at the line's end
        ("sum(x", False),
        ("x)", False),
        ("(x]", False),
        ('x{a=")}', False),  # unterminated string
        ("x)) or ((y", False),  # balanced in count, not in order
        (f'label_replace(x, "{BATCH_LABEL}", "t", "", "")', False),
    ],
)
def test_self_contained(query: str, contained: bool) -> None:
    assert self_contained(query) is contained


def test_split_refuses_a_series_it_did_not_ask_for() -> None:
    tokens = ["aa", "bb"]
    assert "label_replace((\nx\n)" in combine(["x", "y"], tokens)
    ours = [Sample({BATCH_LABEL: "bb", "le": "1"}, 1.0), Sample({BATCH_LABEL: "aa"}, 2.0)]
    assert split(ours, tokens) == [(Sample({}, 2.0),), (Sample({"le": "1"}, 1.0),)]
    assert split([*ours, Sample({BATCH_LABEL: "cc"}, 3.0)], tokens) is None
    assert split([Sample({}, 3.0)], tokens) is None


async def test_an_overloaded_prometheus_is_not_asked_again_query_by_query(alone: PrometheusBackend) -> None:
    """HTTP 503 to a batch: every query gets the message it would get alone, from that one request
    (asking each again would load an overloaded server 64 times more); the next batches are smaller."""
    requests = 0

    async def overloaded(request: web.Request) -> web.Response:
        nonlocal requests
        requests += 1
        body = '{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}'
        return web.Response(status=503, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/api/v1/query", overloaded)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    address = f"http://127.0.0.1:{runner.addresses[0][1]}"
    batched = PrometheusBackend(timeout=5.0, batch_seconds=0.05, max_batch=8)
    try:
        expected = await alone.query_scalar(address, "up")
        requests = 0
        got = await asyncio.gather(*(batched.query_scalar(address, f'up{{job="{n}"}}') for n in range(8)))
        assert set(got) == {expected} and "could not finish the query in time" in expected.message
        assert requests == 1
        requests = 0
        await asyncio.gather(*(batched.query_scalar(address, f'up{{job="{n}"}}') for n in range(8)))
        assert requests == 2  # halved: two batches of 4
    finally:
        await batched.aclose()
        await runner.cleanup()


class SlowNeighbourProxy:
    """A proxy in front of the real Prometheus that holds back, until the client gives up, every
    request whose expression names `SLOW`: what a neighbour's query slower than the timeout does to
    a batch that carries it. It records each request's expression."""

    SLOW = "slow_neighbour_marker"

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.expressions: list[str] = []
        self._runner: web.AppRunner | None = None
        self.address = ""

    async def __aenter__(self) -> SlowNeighbourProxy:
        app = web.Application()
        app.router.add_route("*", "/api/v1/query", self._query)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.address = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _query(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query) | dict(await request.post())
        expression = str(params.get("query", ""))
        self.expressions.append(expression)
        if self.SLOW in expression:
            await asyncio.Event().wait()  # until the client closes the connection
        async with (
            ClientSession() as session,
            session.get(f"{self.upstream}/api/v1/query", params={"query": expression}) as answer,
        ):
            return web.Response(status=answer.status, body=await answer.read(), content_type="application/json")


def slow_neighbour_query() -> str:
    # Answers like any healthy query (one series) when it answers at all: only its slowness differs.
    return f"sum(up) * 0 + 1 # {SlowNeighbourProxy.SLOW}"


async def test_a_slow_neighbour_in_the_same_batch_costs_a_healthy_query_nothing(
    prometheus_session: PrometheusServer, shared_exporter: Exporter
) -> None:
    """A neighbour's query slower than the timeout, batched with a healthy one: the batch as a whole
    is too slow, so each query is asked again alone within its own deadline. The healthy query gets
    its value (no Error), only the slow one times out, and from then on it goes alone."""
    rollout = unique()
    shared_exporter.set("model_error_ratio", 0.125, rollout=rollout)
    healthy = f'sum(model_error_ratio{{rollout="{rollout}"}})'
    prometheus_session.wait_for_value(healthy, lambda value: value == 0.125)
    async with SlowNeighbourProxy(prometheus_session.address) as proxy:
        backend = PrometheusBackend(timeout=2.0, batch_seconds=0.05)
        try:
            first = await asyncio.gather(
                backend.query_scalar(proxy.address, healthy, domain="team-a"),
                backend.query_scalar(proxy.address, slow_neighbour_query(), domain="team-a"),
            )
            assert first[0] == QueryOutcome.of_value(0.125)
            assert first[1] == QueryOutcome.error(f"Prometheus at {proxy.address} did not answer within 2s")
            fused = [e for e in proxy.expressions if BATCH_LABEL in e]
            assert len(fused) == 1 and healthy in fused[0] and SlowNeighbourProxy.SLOW in fused[0]

            proxy.expressions.clear()
            again = await asyncio.gather(
                backend.query_scalar(proxy.address, healthy, domain="team-a"),
                backend.query_scalar(proxy.address, slow_neighbour_query(), domain="team-a"),
            )
            assert again == first
            # The slow query now goes alone: no request carries it with the healthy one.
            assert not [e for e in proxy.expressions if healthy in e and SlowNeighbourProxy.SLOW in e]
        finally:
            await backend.aclose()


async def test_queries_of_different_domains_never_share_a_request(
    prometheus_session: PrometheusServer, shared_exporter: Exporter
) -> None:
    """Two teams' rollouts: their queries are never fused, so a slow query of one team's never
    even reaches the other's request."""
    rollout = unique()
    shared_exporter.set("model_error_ratio", 0.25, rollout=rollout)
    healthy = f'sum(model_error_ratio{{rollout="{rollout}"}})'
    also_healthy = f'sum(model_error_ratio{{rollout="{rollout}"}}) * 2'
    prometheus_session.wait_for_value(healthy, lambda value: value == 0.25)
    async with SlowNeighbourProxy(prometheus_session.address) as proxy:
        backend = PrometheusBackend(timeout=2.0, batch_seconds=0.05)
        try:
            got = await asyncio.gather(
                backend.query_scalar(proxy.address, healthy, domain="team-a"),
                backend.query_scalar(proxy.address, also_healthy, domain="team-a"),
                backend.query_scalar(proxy.address, slow_neighbour_query(), domain="team-b"),
            )
            assert got[:2] == [QueryOutcome.of_value(0.25), QueryOutcome.of_value(0.5)]
            assert got[2].status is QueryStatus.ERROR
            # team-a's two queries in one request; team-b's alone; nothing asked twice.
            assert len(proxy.expressions) == 2
            assert [healthy in e and also_healthy in e for e in proxy.expressions].count(True) == 1
            assert not [e for e in proxy.expressions if healthy in e and SlowNeighbourProxy.SLOW in e]
        finally:
            await backend.aclose()
