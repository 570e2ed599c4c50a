"""The Prometheus backend, on prometheus-api-client.

prometheus-api-client is synchronous (requests), so every call runs in a worker thread with a
hard deadline. Three things it does not do are added here:

* a bound on the size of an answer (it reads whatever comes, into memory): `_BoundedSession`
  reads the body itself and stops at `max_body_bytes`;
* fast failure: its default Retry waits 0 + 2 + 4 s on a refused connection and retries HTTP 5xx,
  so an outage would take seconds per measurement; we retry a failed connect once, at once;
* a person-readable message for every failure, which becomes a measurement's status message.

`custom_query` returns only `data.result`, dropping `resultType`; the result's shape tells the
types apart (scalar and string: `[ts, "v"]`; vector: `[{metric, value}]`; matrix: `[{metric, values}]`).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.exceptions import ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

from modelrollout.metrics.base import QueryOutcome, QueryStatus, Sample, VectorOutcome

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
_SNIPPET = 200
_SERIES_SHOWN = 3


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to Prometheus. Secrets are kept out of repr, logs and messages."""

    bearer_token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.bearer_token is not None and self.username is not None:
            raise ValueError("use either a bearer token or basic auth, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both a username and a password")


class _ResponseTooLarge(requests.RequestException):
    pass


class _DeadlineExceeded(requests.RequestException):
    pass


class _BoundedSession(requests.Session):
    """A Session that reads answers itself, to bound their size and the total time spent on them.

    requests' own timeout applies per socket operation, so a server trickling bytes could hold a
    worker thread forever; the deadline here covers the whole answer.
    """

    def __init__(self, max_body_bytes: int, deadline_seconds: float) -> None:
        super().__init__()
        self.max_body_bytes = max_body_bytes
        self.deadline_seconds = deadline_seconds
        # The client raises on non-200 with only a repr of the body; the worker thread that made
        # the request reads the real response from here (one query per thread at a time).
        self._local = threading.local()

    def last_response(self) -> requests.Response | None:
        response: requests.Response | None = getattr(self._local, "response", None)
        return response

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self._local.response = None
        kwargs["stream"] = True
        started = time.monotonic()
        response = super().request(method, url, *args, **kwargs)
        try:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                raise _ResponseTooLarge(int(declared))
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise _ResponseTooLarge(size)
                if time.monotonic() - started > self.deadline_seconds:
                    raise _DeadlineExceeded()
                chunks.append(chunk)
        except BaseException:
            response.close()
            raise
        response._content = b"".join(chunks)
        self._local.response = response
        return response


def _display_address(address: str) -> str:
    """The address as shown to people: without user:password@, which may hold a secret."""
    parts = urlsplit(address)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _normalise_address(address: str) -> str:
    return address.strip().rstrip("/")


def _address_problem(address: str) -> str | None:
    if not address:
        return "no Prometheus address is configured (set spec.analysis.prometheus.address or --prometheus-url)"
    try:
        parts = urlsplit(address)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"invalid Prometheus address {_display_address(address)!r}: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return (
            f"invalid Prometheus address {_display_address(address)!r}: expected http://host:port or https://host:port"
        )
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (requests and urllib3 nest errors in args and .reason)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = (getattr(current, "reason", None), current.__cause__, current.__context__, *current.args)
        for inner in wrapped:
            if isinstance(inner, BaseException):
                pending.append(inner)


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET else flat[:_SNIPPET] + "..."


def _format_labels(labels: dict[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()) if key != "__name__")
    return f"{name}{{{rest}}}"


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:g}"


def _parse_value(raw: Any) -> float:
    # Prometheus sends sample values as strings ("0.5", "NaN", "+Inf"), which float() all accepts.
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        raise ValueError(f"sample value {raw!r} is not a number")
    return float(raw)


class _BadAnswer(Exception):
    """The answer was not the shape of a Prometheus query result."""


@dataclass(frozen=True)
class _Parsed:
    kind: str  # "scalar", "vector" or "matrix"
    samples: tuple[Sample, ...]


def _parse_result(result: Any) -> _Parsed:
    if isinstance(result, list) and len(result) == 2 and not any(isinstance(item, dict) for item in result):
        try:
            value = _parse_value(result[1])
        except ValueError:
            shown = _snippet(str(result[1]))
            raise _BadAnswer(f"query returned a string ({shown!r}), not a number") from None
        return _Parsed("scalar", (Sample({}, value),))
    if not isinstance(result, list) or not all(isinstance(item, dict) for item in result):
        raise _BadAnswer(f"unexpected result shape: {_snippet(json.dumps(result)[:1000])}")
    if any("values" in item for item in result):
        return _Parsed("matrix", ())
    samples: list[Sample] = []
    for item in result:
        metric = item.get("metric", {})
        if "histogram" in item:
            raise _BadAnswer("query returned a native histogram; use classic bucket series (..._bucket)")
        pair = item.get("value")
        if not isinstance(metric, dict) or not isinstance(pair, list) or len(pair) != 2:
            raise _BadAnswer(f"unexpected series shape: {_snippet(json.dumps(item)[:1000])}")
        try:
            value = _parse_value(pair[1])
        except ValueError as exc:
            raise _BadAnswer(str(exc)) from None
        samples.append(Sample({str(key): str(label) for key, label in metric.items()}, value))
    return _Parsed("vector", tuple(samples))


class PrometheusBackend:
    """`MetricBackend` for Prometheus (and its API-compatible peers: Thanos, Mimir, VictoriaMetrics).

    One client, with its connection pool, per address; clients live as long as the backend.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        credentials: Credentials | None = None,
        verify_tls: bool | str = True,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        """`verify_tls`: False to skip certificate checks, or a path to a CA bundle."""
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self._credentials = credentials
        self._verify_tls = verify_tls
        self._clients: dict[str, tuple[PrometheusConnect, _BoundedSession]] = {}

    # -- public API ------------------------------------------------------------------------------

    async def query_scalar(self, address: str, query: str, at: datetime | None = None) -> QueryOutcome:
        outcome = await self._run(address, query, at)
        if isinstance(outcome, str):
            return QueryOutcome.error(outcome)
        if outcome.kind == "matrix":
            return QueryOutcome.error(
                "query returned a range vector; expected one number: wrap it in a function such as "
                "rate(...) or avg_over_time(...)"
            )
        samples = outcome.samples
        if not samples:
            return QueryOutcome.empty("query returned no series")
        if len(samples) > 1:
            shown = ", ".join(_format_labels(dict(sample.labels)) for sample in samples[:_SERIES_SHOWN])
            more = ", ..." if len(samples) > _SERIES_SHOWN else ""
            return QueryOutcome.error(
                f"query returned {len(samples)} series; expected exactly one, aggregate it (e.g. sum(...)); "
                f"got {shown}{more}"
            )
        value = samples[0].value
        note = "" if math.isfinite(value) else f"query returned {_format_value(value)}"
        return QueryOutcome.of_value(value, note)

    async def query_vector(self, address: str, query: str, at: datetime | None = None) -> VectorOutcome:
        outcome = await self._run(address, query, at)
        if isinstance(outcome, str):
            return VectorOutcome.error(outcome)
        if outcome.kind == "matrix":
            return VectorOutcome.error(
                "query returned a range vector; expected an instant vector: drop the [range] or wrap it "
                "in a function such as rate(...)"
            )
        if not outcome.samples:
            return VectorOutcome(QueryStatus.EMPTY, (), "query returned no series")
        return VectorOutcome(QueryStatus.VALUE, outcome.samples, "")

    async def is_online(self, address: str) -> bool:
        # Like Flagger's IsOnline: evaluate a constant, which proves the query API itself works
        # (a proxy in front of Prometheus may answer /-/ready while queries fail).
        outcome = await self.query_scalar(address, "vector(1)")
        return outcome.status is QueryStatus.VALUE and outcome.value == 1.0

    def close(self) -> None:
        """Release every connection pool; the backend can still be used (clients are re-created)."""
        clients, self._clients = self._clients, {}
        for client, _ in clients.values():
            client.close()

    # -- internals -------------------------------------------------------------------------------

    def _client(self, address: str) -> tuple[PrometheusConnect, _BoundedSession]:
        existing = self._clients.get(address)
        if existing is not None:
            return existing
        session = _BoundedSession(self.max_body_bytes, self.timeout)
        # requests reads the proxy variables, the CA-bundle variables and ~/.netrc again for every
        # request when trust_env is on (7 % of the operator's busy time at 1,000 rollouts): read
        # them once per address instead, with the same meaning.
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(address)
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        session.verify = bundle if self._verify_tls and bundle else self._verify_tls
        headers: dict[str, str] | None = None
        auth: tuple[str, str] | None = None
        if self._credentials is not None:
            if self._credentials.bearer_token is not None:
                headers = {"Authorization": f"Bearer {self._credentials.bearer_token}"}
            elif self._credentials.username is not None and self._credentials.password is not None:
                auth = (self._credentials.username, self._credentials.password)
        client = PrometheusConnect(
            url=address,
            headers=headers,
            auth=auth,
            session=session,
            timeout=self.timeout,  # annotated int, but passed to requests, which takes a float
            # One immediate retry of a failed connect only: reads and HTTP statuses are not retried,
            # so an outage or a slow query costs one timeout, not several with back-off.
            retry=Retry(total=1, connect=1, read=0, status=0, other=0, redirect=0, backoff_factor=0),
        )
        self._clients[address] = (client, session)
        return client, session

    async def _run(self, address: str, query: str, at: datetime | None) -> _Parsed | str:
        """The parsed result, or the message of an error."""
        address = _normalise_address(address)
        problem = _address_problem(address)
        if problem is not None:
            return problem
        if not query.strip():
            return "bad query: the query is empty"
        params = {"timeout": f"{self.timeout:g}"}  # so Prometheus stops evaluating when we stop waiting
        if at is not None:
            moment = at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # naive means UTC
            params["time"] = f"{moment.timestamp():.3f}"
        client, session = self._client(address)
        shown = _display_address(address)
        log.debug("querying Prometheus at %s: %s", shown, query)
        try:
            # The worker enforces its own deadline; this one only guarantees the caller is never
            # held much longer than the timeout, whatever the thread is stuck in.
            return await asyncio.wait_for(
                asyncio.to_thread(self._query_sync, client, session, shown, query, params),
                timeout=self.timeout + 1.0,
            )
        except TimeoutError:
            return f"Prometheus at {shown} did not answer within {self.timeout:g}s"

    def _query_sync(
        self,
        client: PrometheusConnect,
        session: _BoundedSession,
        shown: str,
        query: str,
        params: dict[str, str],
    ) -> _Parsed | str:
        try:
            result = client.custom_query(query, params=params)
        except PrometheusApiClientException:
            return self._http_error_message(session.last_response(), shown)
        except requests.exceptions.JSONDecodeError as exc:
            return f"Prometheus at {shown} answered something that is not JSON: {_snippet(exc.doc)!r}"
        except requests.RequestException as exc:
            return self._request_error_message(exc, shown)
        except (KeyError, TypeError, IndexError):
            return f"Prometheus at {shown} answered JSON that is not a Prometheus query result"
        try:
            return _parse_result(result)
        except _BadAnswer as exc:
            return f"Prometheus at {shown} gave an unexpected answer: {exc}"

    def _request_error_message(self, exc: requests.RequestException, shown: str) -> str:
        prefix = f"Prometheus at {shown}"
        if isinstance(exc, _ResponseTooLarge):
            limit = f"{self.max_body_bytes / (1024 * 1024):g} MiB"
            return f"{prefix} answered more than {limit}; refusing to read it (narrow the query)"
        if isinstance(exc, _DeadlineExceeded | requests.exceptions.ReadTimeout):
            return f"{prefix} did not answer within {self.timeout:g}s"
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return f"{prefix} unreachable: connection timed out after {self.timeout:g}s"
        if isinstance(exc, requests.exceptions.SSLError):
            return f"{prefix}: TLS error: {self._root_reason(exc)}"
        if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
            return f"invalid Prometheus address {shown!r}"
        if isinstance(exc, requests.exceptions.ConnectionError):
            causes = list(_causes(exc))
            if any(isinstance(cause, ReadTimeoutError | TimeoutError) for cause in causes):
                return f"{prefix} did not answer within {self.timeout:g}s"
            return f"{prefix} unreachable: {self._root_reason(exc)}"
        return f"{prefix}: request failed: {self._root_reason(exc)}"

    @staticmethod
    def _root_reason(exc: BaseException) -> str:
        causes = list(_causes(exc))
        for cause in causes:
            if isinstance(cause, socket.gaierror):
                return "cannot resolve the host name"
            if isinstance(cause, ConnectionRefusedError):
                return "connection refused"
            if isinstance(cause, ConnectionResetError):
                return "connection reset"
            if isinstance(cause, OSError) and cause.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                return "no route to host"
        for cause in causes:
            if isinstance(cause, ProtocolError):
                return "connection closed without an answer"
        # Fall back to the innermost message; urllib3 messages carry host, port and URL, no secrets
        # (headers and auth never appear in them), but may carry the query, which is harmless.
        innermost = causes[-1] if causes else exc
        return _snippet(str(innermost)) or type(innermost).__name__

    def _http_error_message(self, response: requests.Response | None, shown: str) -> str:
        if response is None:
            return f"Prometheus at {shown} answered with an error"
        code = response.status_code
        body = response.content.decode("utf-8", errors="replace")
        error = ""
        error_type = ""
        try:
            payload = json.loads(body)
            if isinstance(payload, dict):
                error = str(payload.get("error", ""))
                error_type = str(payload.get("errorType", ""))
        except ValueError:
            pass
        detail = _snippet(error or body)
        if code == 400 and error_type == "bad_data":
            return f"bad query: {detail}"
        if code == 422:
            return f"query failed in Prometheus: {detail}"
        if code in (401, 403):
            return f"Prometheus at {shown} refused access (HTTP {code}); check the credentials" + (
                f": {detail}" if detail else ""
            )
        if code == 404:
            return f"no Prometheus query API at {shown} (HTTP 404 for /api/v1/query); check the address"
        if code == 503 and error_type in ("timeout", "canceled"):
            return f"Prometheus at {shown} could not finish the query in time ({error_type}): {detail}"
        kind = f" {error_type}" if error_type else ""
        return f"Prometheus at {shown} answered HTTP {code}{kind}" + (f": {detail}" if detail else "")
