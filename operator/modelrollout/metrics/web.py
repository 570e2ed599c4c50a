"""The web backend: an HTTP GET or POST answering JSON, and a JSONPath to the number in it.

As Argo Rollouts' web metric provider. In the `MetricBackend` protocol the address is the URL and
the query is the JSONPath; method, headers, body and timeout are the metric's, bound when the
factory makes the backend for it (`metrics.factory`). Header values (from Secrets) never appear in a
message: a message names the method, the URL and what went wrong. Nor does the answer's body: it
may hold whatever the endpoint serves, and messages go to status.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from modelrollout.api.jsonpath import compile_path
from modelrollout.metrics.base import QueryOutcome, VectorOutcome

DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_ANSWER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class WebRequest:
    """How one web metric asks: the method, the headers (Secret values already read), the body."""

    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # repr: values may be secret
    body: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS


class WebSessions:
    """One aiohttp session for every web metric, made in the running loop on first use."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def here(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # trust_env: HTTP(S)_PROXY and NO_PROXY as for any HTTP client run in a cluster.
            self._session = aiohttp.ClientSession(trust_env=True)
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()


class WebBackend:
    """A `MetricBackend` for one web metric: `query_scalar(url, jsonPath)`; never raises for HTTP trouble."""

    def __init__(self, request: WebRequest | None = None, sessions: WebSessions | None = None) -> None:
        self.request = request or WebRequest()
        self._sessions = sessions or WebSessions()

    async def query_scalar(
        self, address: str, query: str, at: datetime | None = None, *, domain: str = ""
    ) -> QueryOutcome:
        request = self.request
        where = f"{request.method} {address}"
        try:
            path = compile_path(query)
        except ValueError as error:
            return QueryOutcome.error(str(error))
        if not address.startswith(("http://", "https://")):
            return QueryOutcome.error(f"{address!r} is not an http:// or https:// URL")
        headers = dict(request.headers)
        if request.body is not None:
            headers.setdefault("Content-Type", "application/json")
        try:
            async with self._sessions.here().request(
                request.method,
                address,
                headers=headers,
                data=request.body.encode() if request.body is not None else None,
                timeout=aiohttp.ClientTimeout(total=request.timeout),
            ) as answer:
                if not 200 <= answer.status < 300:
                    return QueryOutcome.error(f"{where}: HTTP {answer.status} {answer.reason or ''}".rstrip())
                raw = await answer.content.read(MAX_ANSWER_BYTES + 1)
        except TimeoutError:
            return QueryOutcome.error(f"{where}: no answer within {request.timeout:g}s (timeoutSeconds)")
        except aiohttp.InvalidURL:
            return QueryOutcome.error(f"{where}: not a valid URL")
        except ValueError:
            # aiohttp refuses a header that would break the request (a newline in a Secret's value).
            return QueryOutcome.error(f"{where}: a header name or value is not valid in HTTP (a newline?)")
        except (aiohttp.ClientError, OSError) as error:
            return QueryOutcome.error(f"{where}: unreachable ({type(error).__name__}: {error})")
        if len(raw) > MAX_ANSWER_BYTES:
            return QueryOutcome.error(f"{where}: the answer is larger than {MAX_ANSWER_BYTES} bytes")
        try:
            document = json.loads(raw)
        except ValueError:
            return QueryOutcome.error(f"{where}: the answer is not JSON")
        return value_at(document, query, path, where)

    async def query_vector(
        self, address: str, query: str, at: datetime | None = None, *, domain: str = ""
    ) -> VectorOutcome:
        return VectorOutcome.error("a web metric gives one number; drift needs prometheus")

    async def is_online(self, address: str) -> bool:
        """Whether the endpoint answers at all (any HTTP status) within the metric's timeout."""
        try:
            async with self._sessions.here().request(
                self.request.method, address, timeout=aiohttp.ClientTimeout(total=self.request.timeout)
            ):
                return True
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False


def value_at(document: Any, expression: str, path: Any, where: str) -> QueryOutcome:
    """The one number `path` finds in the answer: null is no data; nothing, several values, or a
    value that is not a number is an error (the path or the endpoint is wrong, not the model)."""
    matches = [match.value for match in path.find(document)]
    if not matches:
        return QueryOutcome.error(f"{where}: jsonPath {expression} matched nothing in the answer")
    if len(matches) > 1:
        return QueryOutcome.error(f"{where}: jsonPath {expression} matched {len(matches)} values; one is needed")
    return number_of(matches[0], f"{where}: jsonPath {expression}")


def number_of(value: Any, what: str) -> QueryOutcome:
    """A JSON value as a measurement: a number or a numeric string; null (or NaN) is no data."""
    if value is None:
        return QueryOutcome.empty(f"{what} is null: no data")
    if isinstance(value, bool):
        return QueryOutcome.error(f"{what} is a boolean ({str(value).lower()}), not a number")
    if isinstance(value, (int, float)):
        return QueryOutcome.of_value(float(value))
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return QueryOutcome.error(f"{what} is the string {value[:40]!r}, not a number")
        return QueryOutcome.of_value(number) if not math.isnan(number) else QueryOutcome.empty(f"{what} is NaN")
    return QueryOutcome.error(f"{what} is a {'list' if isinstance(value, list) else 'object'}, not a number")
