"""The comparator's HTTP app (Starlette): the mirror target of a shadow step with agreement.

* any request but the ones below is a **mirrored copy** of a live request: the comparator sends it on to
  the candidate's Service and (``stable_source="reask"``, the default) to the stable Service, reduces
  both answers (`join.reduce_answer`) and joins them by request id; its own answer carries nothing of
  either (the proxy drops it anyway, and a route sent here by mistake must not leak the candidate's);
* ``POST /_comparator/answers`` (``stable_source="report"``): stable's answer to a request, reported by
  whoever saw it (``{"requestId", "answer": {"predictions": [{"prediction", "score"}]}, "latencySeconds",
  "error"}``, as `modelrollout_sdk.ShadowReporter` sends it), joined with the candidate's;
* ``GET /metrics`` (the series of `series.py`), ``GET /healthz``, ``GET /ready``.

Requests it sends carry ``X-Modelrollout-Shadow: comparator``; a request that arrives with it is refused
(421), so a route that mirrors the comparator's own calls cannot loop.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelrollout.comparator.join import Answer, JoinStore, Side, reduce_answer
from modelrollout.comparator.series import Identity, Series
from modelrollout.vocabulary.names import HOP_BY_HOP, SHADOW_HEADER

__all__ = ["ANSWERS_PATH", "SHADOW_HEADER", "Comparator", "ComparatorConfig", "build_app"]

ANSWERS_PATH = "/_comparator/answers"


@dataclass(frozen=True)
class ComparatorConfig:
    identity: Identity
    stable_url: str
    candidate_url: str
    stable_source: Literal["reask", "report"] = "reask"
    request_id_header: str = "x-request-id"
    class_field: str = "prediction"
    score_field: str = "score"
    batch_field: str = "predictions"
    join_ttl_seconds: float = 30.0
    max_pending: int = 10_000
    max_in_flight: int = 64
    timeout_seconds: float = 10.0


class Comparator:
    """The state behind the app: the join, the series, the outbound session."""

    def __init__(self, config: ComparatorConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.store = JoinStore(max_pending=config.max_pending, ttl_seconds=config.join_ttl_seconds)
        self.series = Series(config.identity)
        self.in_flight = 0
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
                connector=aiohttp.TCPConnector(limit=2 * self.config.max_in_flight),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _reduce(self, body: Any, latency: float, error: bool) -> Answer:
        cfg = self.config
        return reduce_answer(
            body,
            latency_seconds=latency,
            error=error,
            class_field=cfg.class_field,
            score_field=cfg.score_field,
            batch_field=cfg.batch_field,
        )

    def add(self, request_id: str, side: Side, answer: Answer) -> None:
        now = self.clock()
        pair = self.store.add(request_id, side, answer, now)
        if pair is not None:
            self.series.record_pair(pair)
        self.tidy()

    def tidy(self) -> None:
        self.series.record_unjoined(self.store.expire(self.clock()))
        self.series.set_pending(len(self.store))

    async def ask(self, base: str, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Answer:
        """Send the copy to one Service; only the reduced answer comes back."""
        url = base.rstrip("/") + path + (f"?{query}" if query else "")
        started = time.perf_counter()
        try:
            async with self.session().request(method, url, headers=headers, data=body) as response:
                raw = await response.read()
                latency = time.perf_counter() - started
                if response.status >= 400:
                    return self._reduce(None, latency, True)
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = raw.decode(errors="replace")  # only its digest is kept
                return self._reduce(parsed, latency, False)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return self._reduce(None, time.perf_counter() - started, True)

    async def mirrored(self, request: Request) -> Response:
        if request.headers.get(SHADOW_HEADER):
            return JSONResponse({"error": "a comparator's own request came back to it; not compared"}, 421)
        cfg = self.config
        if self.in_flight >= cfg.max_in_flight:
            self.series.record_dropped()
            return JSONResponse({"error": "too many mirrored requests in flight"}, 503)
        self.in_flight += 1
        try:
            body = await request.body()
            request_id = request.headers.get(cfg.request_id_header) or uuid.uuid4().hex
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            headers[SHADOW_HEADER] = "comparator"
            path, query = request.url.path, request.url.query
            asks = [self.ask(cfg.candidate_url, request.method, path, query, headers, body)]
            if cfg.stable_source == "reask":
                asks.append(self.ask(cfg.stable_url, request.method, path, query, headers, body))
            answers = await asyncio.gather(*asks)
            self.add(request_id, "candidate", answers[0])
            if cfg.stable_source == "reask":
                self.add(request_id, "stable", answers[1])
        finally:
            self.in_flight -= 1
        return JSONResponse({"compared": True}, 202)

    async def reported(self, request: Request) -> Response:
        try:
            report = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, 400)
        if not isinstance(report, dict) or not isinstance(report.get("requestId"), str) or not report["requestId"]:
            return JSONResponse({"error": "requestId: required, a non-empty string"}, 400)
        latency = report.get("latencySeconds", 0.0)
        if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
            return JSONResponse({"error": "latencySeconds: a number of seconds of at least 0"}, 400)
        # A report's shape is the comparator's own protocol (what `modelrollout_sdk.ShadowReporter` sends):
        # `prediction` and `score`, in `predictions` for a batch, whatever the model's answers call them.
        answer = reduce_answer(report.get("answer"), latency_seconds=float(latency), error=bool(report.get("error")))
        self.add(report["requestId"], "stable", answer)
        return JSONResponse({"joined": True}, 202)

    async def metrics(self, request: Request) -> Response:
        self.tidy()
        return Response(generate_latest(self.series.registry), media_type=CONTENT_TYPE_LATEST)


async def _ok(request: Request) -> Response:
    return JSONResponse({"ok": True})


def build_app(comparator: Comparator) -> Starlette:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            Route("/healthz", _ok, methods=["GET"]),
            Route("/ready", _ok, methods=["GET"]),
            Route("/metrics", comparator.metrics, methods=["GET"]),
            Route(ANSWERS_PATH, comparator.reported, methods=["POST"]),
            Route("/{path:path}", comparator.mirrored, methods=methods),
        ]
    )
