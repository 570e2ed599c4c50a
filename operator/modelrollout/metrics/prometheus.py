"""The Prometheus backend: Prometheus's HTTP query API (`GET /api/v1/query`) on aiohttp.

Queries run in the event loop, on one aiohttp `ClientSession` (with its connection pool) per
address. It used to be prometheus-api-client, which is synchronous (requests), each query in a
worker thread: at 10,000 rollouts that path measured about a third of the operator's busy CPU
(requests/urllib3 per request, the CA path checked per request, thread hand-offs, GIL
contention). aiohttp is already a dependency, through kopf. What is done here on top of it:

* a deadline on the whole answer (connect, headers and body), so a server trickling bytes
  cannot hold a measurement longer than `timeout`;
* a bound on the size of an answer: more than `max_body_bytes` declared, or read (after
  decompression), and reading stops;
* fast failure: a failed connect is retried once, at once; reads and HTTP statuses never are
  (aiohttp itself resends an idempotent request once when the server closed the connection
  before answering, the case of a pooled connection the server had just dropped);
* the environment read once per address, with requests' meaning: HTTP(S)_PROXY, ALL_PROXY and
  NO_PROXY (with CIDR entries), and REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE when `verify_tls` is True;
* a person-readable message for every failure, which becomes a measurement's status message.

The result's shape tells the types apart (scalar and string: `[ts, "v"]`; vector:
`[{metric, value}]`; matrix: `[{metric, values}]`), as when prometheus-api-client returned only
`data.result`.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import ipaddress
import json
import logging
import math
import os
import re
import socket
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from modelrollout.metrics.base import QueryOutcome, QueryStatus, VectorOutcome
from modelrollout.metrics.batching import combine, new_tokens, self_contained, split
from modelrollout.vocabulary.samples import Sample

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
_SNIPPET = 200
_SERIES_SHOWN = 3
_QUERY_PATH = "/api/v1/query"
_MAX_REDIRECTS = 30  # as requests
DEFAULT_MAX_BATCH = 64
_MAX_BATCH_CHARACTERS = 256 * 1024
_ALONE_REMEMBERED = 10_000  # queries known not to fit in a batch (scalar answers, errors), per address
# The deadline is one asyncio.timeout around the whole answer: no aiohttp timer of its own (its
# default is 5 minutes in total, and it rounds deadlines over 5 s up to the next second).
_NO_AIOHTTP_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)


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


class _ResponseTooLarge(Exception):
    pass


class _Unusable(Exception):
    """The address cannot be queried as configured; the message says why."""


_USERINFO = re.compile(r"^([^:/?#]*://)[^/?#]*@")


def _display_address(address: str) -> str:
    """The address as shown to people: without user:password@, which may hold a secret."""
    try:
        parts = urlsplit(address)
    except ValueError:  # e.g. "http://[::1": show it as written, less any user:password@
        return _USERINFO.sub(r"\1", address)
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


def _basic_authorization(username: str, password: str) -> str:
    """An Authorization header for basic auth, encoded as requests does (latin-1 where it can).

    A header rather than aiohttp.BasicAuth, which aiohttp 3.14 deprecates (and whose successor,
    aiohttp.encode_basic_auth, refuses a ':' in the username, which requests sent)."""
    joined = f"{username}:{password}"
    try:
        raw = joined.encode("latin-1")
    except UnicodeEncodeError:
        raw = joined.encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _bypasses_proxy(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether NO_PROXY exempts this host, as requests' `should_bypass_proxies` decides."""
    entries = [entry for entry in no_proxy.replace(" ", "").split(",") if entry]
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        with_port = f"{host}:{port}" if port else host
        if any(host.endswith(entry) or with_port.endswith(entry) for entry in entries):
            return True
    else:
        for entry in entries:
            if "/" in entry:
                try:
                    network = ipaddress.IPv4Network(entry, strict=False)
                except ValueError:
                    continue
                if network.prefixlen >= 1 and ip in network:
                    return True
            elif entry == host:
                return True
    # "*", ".domain" and the rest, as urllib reads NO_PROXY (requests asks it too).
    return bool(urllib.request.proxy_bypass(host))


def _environment_proxy(scheme: str, host: str, port: int | None) -> str | None:
    """The proxy the environment names for this address (requests' `get_environ_proxies` and
    `select_proxy`), or None."""
    proxies = urllib.request.getproxies()
    if not proxies or _bypasses_proxy(host, port, proxies.get("no", "")):
        return None
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"  # requests assumes http:// too


def _ssl_context(bundle: str) -> ssl.SSLContext:
    """A verifying context that trusts the CAs of this file or directory only (as requests does)."""
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


def _text_encoding(response: aiohttp.ClientResponse) -> str:
    """The encoding requests would decode this answer with: the charset the answer names, else
    latin-1 for text/*, else UTF-8 (the JSON default)."""
    charset = response.charset
    if charset:
        return charset
    return "iso-8859-1" if "text" in response.content_type else "utf-8"


@dataclass(frozen=True)
class _Failure:
    """A query that got no result, and why: "unreachable" (no answer could be had: connect, TLS,
    address), "late" (the server said it is overloaded: HTTP 429 or 503), "timeout" (no answer
    before the request's deadline) or "answered" (another HTTP error or a bad answer: the same query alone may fare
    otherwise)."""

    message: str
    why: Literal["unreachable", "late", "timeout", "answered"]


@dataclass(frozen=True)
class _Waiting:
    """A query waiting for its share of a batch, and when its own measurement stops waiting for it."""

    query: str
    future: asyncio.Future[_Parsed | str]
    deadline: float  # in the loop's time


@dataclass(eq=False)
class _Pending:
    """The queries of one failure domain waiting for the next batch, and the timer that sends them."""

    items: list[_Waiting] = field(default_factory=list)
    characters: int = 0
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Client:
    """One address: what it needs from the environment, read once, and its session.

    The session is made on first use, in the running loop (a ClientSession belongs to one loop)."""

    shown: str
    query_url: str  # the query endpoint, encoded and without user:password@, ending in "?"
    headers: dict[str, str] = field(repr=False)  # Authorization: a secret
    proxy: str | None = field(repr=False)  # may hold user:password@
    tls: ssl.SSLContext | bool  # aiohttp's ssl=
    batch_limit: int = DEFAULT_MAX_BATCH  # shrinks when a batch fails as a whole, grows back after
    session: aiohttp.ClientSession | None = field(default=None, repr=False)
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    # Batching: per failure domain, the queries waiting for the next batch; batches in flight.
    pending: dict[str, _Pending] = field(default_factory=dict, repr=False)
    waiting_loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    in_flight: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    alone: set[str] = field(default_factory=set, repr=False)

    def session_here(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self.session
        if session is not None and self.loop is loop and not session.closed:
            return session
        self.close_now()  # made in another loop (e.g. an earlier test's), which may be gone
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.tls),
            headers=self.headers,
            timeout=_NO_AIOHTTP_TIMEOUT,
            trust_env=False,  # the environment was read once, into proxy and tls
        )
        self.session, self.loop = session, loop
        return session

    async def aclose(self) -> None:
        self.drop_batches()
        session, loop = self.session, self.loop
        if session is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is running:
            self.session = self.loop = None
            await session.close()
        else:
            self.close_now()

    def close_now(self) -> None:
        """Close the session's connections without waiting for them to finish closing.

        aiohttp closes a session by awaiting it; this does the synchronous part of that (close
        every transport), which is all there is to do when its loop is not running, and enough
        when it is (the transports finish closing in that loop)."""
        session, loop = self.session, self.loop
        self.session = self.loop = None
        if session is None or loop is None:
            return
        connector = session.connector
        if connector is None or connector.closed:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop.is_running() and loop is not running:
            loop.call_soon_threadsafe(connector._close)  # its loop runs in another thread
        else:
            connector._close()  # the public close() is the same, plus an awaitable to wait on

    def drop_batches(self) -> None:
        """Give up the queries waiting for a batch and the batches in flight (closing): their
        callers see the cancellation, as they would of a request cut short."""
        loop, pending, tasks = self.waiting_loop, list(self.pending.values()), list(self.in_flight)
        self.pending, self.waiting_loop, self.in_flight = {}, None, set()

        def cancel() -> None:
            for queue in pending:
                if queue.timer is not None:
                    queue.timer.cancel()
                for waiting in queue.items:
                    waiting.future.cancel()
            for task in tasks:
                task.cancel()

        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and loop.is_running() and loop is not running:
            loop.call_soon_threadsafe(cancel)
        elif loop is not None and not loop.is_closed():
            cancel()


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (in args, .reason, __cause__ and __context__)."""
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


def _fits_a_batch(outcome: _Parsed | _Failure) -> bool:
    return isinstance(outcome, _Parsed) and outcome.kind == "vector"


class PrometheusBackend:
    """`MetricBackend` for Prometheus (and its API-compatible peers: Thanos, Mimir, VictoriaMetrics).

    One client, with its session and connection pool, per address; clients live as long as the
    backend. Close it with `await aclose()` (or `close()` outside the event loop).
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        credentials: Credentials | None = None,
        verify_tls: bool | str = True,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        batch_seconds: float = 0.0,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        """`verify_tls`: False to skip certificate checks, or a path to a CA bundle.

        `batch_seconds`: how long a query may wait for others to the same address to be sent with
        them as one request (see `modelrollout.metrics.batching`), at most `max_batch` at a time;
        0 sends each query alone."""
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if batch_seconds < 0 or max_batch < 1:
            raise ValueError(f"batch_seconds must be >= 0 and max_batch >= 1, got {batch_seconds}, {max_batch}")
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.batch_seconds = batch_seconds
        self.max_batch = max_batch
        self._credentials = credentials
        self._verify_tls = verify_tls
        self._clients: dict[str, _Client] = {}

    # -- public API ------------------------------------------------------------------------------

    async def query_scalar(
        self, address: str, query: str, at: datetime | None = None, *, domain: str = ""
    ) -> QueryOutcome:
        outcome = await self._run(address, query, at, domain)
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

    async def query_vector(
        self, address: str, query: str, at: datetime | None = None, *, domain: str = ""
    ) -> VectorOutcome:
        outcome = await self._run(address, query, at, domain)
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

    async def aclose(self) -> None:
        """Close every session and wait for its connections to close; the backend can still be
        used (clients are made again)."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    def close(self) -> None:
        """Close every connection now, without waiting for them to finish closing: for code outside
        the event loop (e.g. once it has stopped). In the loop, `await aclose()` instead. The
        backend can still be used."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            client.drop_batches()
            client.close_now()

    # -- internals -------------------------------------------------------------------------------

    def _client(self, address: str) -> _Client:
        """The client for a normalised, valid address; raises _Unusable with the reason if none can be made."""
        existing = self._clients.get(address)
        if existing is not None:
            return existing
        client = self._new_client(address)
        self._clients[address] = client
        return client

    def _new_client(self, address: str) -> _Client:
        shown = _display_address(address)
        parts = urlsplit(address)
        host = parts.hostname or ""
        # requests refused these as invalid URLs; aiohttp would try to resolve them.
        if host.startswith(("*", ".")) or any(char.isspace() or ord(char) < 32 for char in host):
            raise _Unusable(f"invalid Prometheus address {shown!r}")
        try:
            endpoint = URL(
                urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path + _QUERY_PATH, "", ""))
            )
        except (ValueError, UnicodeError):
            raise _Unusable(f"invalid Prometheus address {shown!r}") from None
        headers: dict[str, str] = {}
        if parts.password is not None and parts.username is not None:
            # user:password@ in the address is basic auth, over a bearer token (as with requests);
            # it is taken out of the URL, so that no message can show it.
            headers["Authorization"] = _basic_authorization(unquote(parts.username), unquote(parts.password))
        if self._credentials is not None:
            if self._credentials.username is not None and self._credentials.password is not None:
                headers["Authorization"] = _basic_authorization(self._credentials.username, self._credentials.password)
            elif self._credentials.bearer_token is not None:
                headers.setdefault("Authorization", f"Bearer {self._credentials.bearer_token}")
        return _Client(
            shown=shown,
            query_url=str(endpoint) + "?",
            headers=headers,
            proxy=_environment_proxy(parts.scheme, host, parts.port),
            tls=self._tls(parts.scheme, shown),
            batch_limit=self.max_batch,
        )

    def _tls(self, scheme: str, shown: str) -> ssl.SSLContext | bool:
        """aiohttp's `ssl`: False (no checks), True (the system's CAs) or a context trusting a bundle.

        The bundle is the explicit path, else REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE. As with
        requests, it is read for https only (loading one takes tens of milliseconds)."""
        if self._verify_tls is False:
            return False
        bundle = self._verify_tls if isinstance(self._verify_tls, str) else None
        bundle = bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if not bundle or scheme != "https":
            return True
        try:
            return _ssl_context(bundle)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            reason = _snippet(str(exc)) or type(exc).__name__
            raise _Unusable(f"Prometheus at {shown}: TLS error: cannot use the CA bundle {bundle}: {reason}") from None

    async def _run(self, address: str, query: str, at: datetime | None, domain: str) -> _Parsed | str:
        """The parsed result, or the message of an error."""
        address = _normalise_address(address)
        problem = _address_problem(address)
        if problem is not None:
            return problem
        if not query.strip():
            return "bad query: the query is empty"
        try:
            client = self._client(address)
        except _Unusable as exc:
            return str(exc)
        if self.batch_seconds > 0 and at is None and query not in client.alone and self_contained(query):
            return await self._in_next_batch(client, query, domain)
        outcome = await self._ask(client, query, at)
        return outcome.message if isinstance(outcome, _Failure) else outcome

    async def _ask(
        self, client: _Client, query: str, at: datetime | None = None, timeout: float | None = None
    ) -> _Parsed | _Failure:
        """One request for one expression, answered within `timeout` (default: the backend's)."""
        budget = self.timeout if timeout is None else max(timeout, 0.001)
        # Prometheus is told a little more than we wait, so that it stops soon after we do, and a
        # query we stop waiting for ends as a timeout of ours, not sometimes as its 503.
        params = {"query": query, "timeout": f"{budget + 1:.3g}"}  # seconds
        if at is not None:
            moment = at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # naive means UTC
            params["time"] = f"{moment.timestamp():.3f}"
        shown = client.shown
        log.debug("querying Prometheus at %s: %s", shown, query)
        # A batch's expression is long: it goes as a form body (Prometheus takes POST for queries).
        form = len(query) > 2048
        url = URL(client.query_url[:-1] if form else client.query_url + urlencode(params), encoded=True)
        try:
            async with asyncio.timeout(budget):
                status, body, encoding = await self._fetch(client, url, params if form else None)
        except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            return _Failure(f"Prometheus at {shown} did not answer within {self.timeout:g}s", "timeout")
        except (aiohttp.ClientError, OSError, ValueError, RuntimeError, _ResponseTooLarge) as exc:
            message = self._request_error_message(exc, shown)
            if isinstance(exc, _ResponseTooLarge | aiohttp.ClientPayloadError):
                return _Failure(message, "answered")
            return _Failure(message, "unreachable")
        if status != 200:
            return _Failure(
                self._http_error_message(status, body, shown), "late" if status in (429, 503) else "answered"
            )
        try:
            text = body.decode(encoding, errors="replace")
        except LookupError:  # a charset Python does not know
            text = body.decode("utf-8", errors="replace")
        try:
            result = json.loads(text)["data"]["result"]
        except json.JSONDecodeError as exc:
            message = f"Prometheus at {shown} answered something that is not JSON: {_snippet(exc.doc)!r}"
            return _Failure(message, "answered")
        except (KeyError, TypeError, IndexError):
            return _Failure(f"Prometheus at {shown} answered JSON that is not a Prometheus query result", "answered")
        try:
            return _parse_result(result)
        except _BadAnswer as exc:
            return _Failure(f"Prometheus at {shown} gave an unexpected answer: {exc}", "answered")

    # -- batching (see modelrollout.metrics.batching) ---------------------------------------------

    async def _in_next_batch(self, client: _Client, query: str, domain: str) -> _Parsed | str:
        """Wait for the query's share of the next batch of its failure domain to this address."""
        loop = asyncio.get_running_loop()
        if client.waiting_loop is not loop:  # a backend used from another loop before (tests)
            client.drop_batches()
            client.waiting_loop = loop
        future: asyncio.Future[_Parsed | str] = loop.create_future()
        queue = client.pending.setdefault(domain, _Pending())
        queue.items.append(_Waiting(query, future, loop.time() + self.timeout))
        queue.characters += len(query)
        if len(queue.items) >= client.batch_limit or queue.characters >= _MAX_BATCH_CHARACTERS:
            self._send_waiting(client, domain)
        elif queue.timer is None:
            queue.timer = loop.call_later(self.batch_seconds, self._send_waiting, client, domain)
        return await future

    def _send_waiting(self, client: _Client, domain: str) -> None:
        queue = client.pending.pop(domain, None)
        if queue is None:
            return
        if queue.timer is not None:
            queue.timer.cancel()
        batch = [waiting for waiting in queue.items if not waiting.future.done()]
        if batch:
            task = asyncio.get_running_loop().create_task(self._answer(client, batch))
            client.in_flight.add(task)
            task.add_done_callback(client.in_flight.discard)

    async def _answer(self, client: _Client, batch: list[_Waiting]) -> None:
        try:
            if len(batch) == 1:
                outcomes = [await self._ask(client, batch[0].query, timeout=self._left(batch[0]))]
                if _fits_a_batch(outcomes[0]):  # a batch that shrank grows back, one query at a time
                    client.batch_limit = min(self.max_batch, client.batch_limit + 1)
            else:
                outcomes = await self._ask_together(client, batch)
        except Exception as exc:  # a bug here must not leave measurements waiting for ever
            log.exception("Prometheus batch to %s failed", client.shown)
            outcomes = [_Failure(f"Prometheus at {client.shown}: request failed: {exc!r}", "unreachable")] * len(batch)
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(outcome.message if isinstance(outcome, _Failure) else outcome)

    @staticmethod
    def _left(waiting: _Waiting) -> float:
        """What is left of a query's own deadline."""
        return waiting.deadline - asyncio.get_running_loop().time()

    async def _ask_together(self, client: _Client, batch: list[_Waiting]) -> list[_Parsed | _Failure]:
        """Every query's answer, from one request when the batch works as a whole."""
        queries = [waiting.query for waiting in batch]
        tokens = new_tokens(len(queries))
        # The batch may take half of what its most pressed query has left, so that each query can
        # still be asked alone, in its own time, if the batch as a whole is too slow.
        together = await self._ask(client, combine(queries, tokens), timeout=min(map(self._left, batch)) / 2)
        if isinstance(together, _Parsed) and together.kind == "vector":
            parts = split(together.samples, tokens)
            if parts is not None:
                client.batch_limit = min(self.max_batch, client.batch_limit * 2)
                return [_Parsed("vector", samples) for samples in parts]
        if isinstance(together, _Failure) and together.why in ("unreachable", "late"):
            # Unreachable or overloaded: the same for each query (asking each again would cost each
            # another timeout, or load an overloaded server more); a smaller batch next time unless
            # it was unreachable.
            if together.why == "late":
                client.batch_limit = max(1, len(queries) // 2)
            return [together] * len(queries)
        # The batch failed as a whole: too slow (one slow query holds back the rest), one query
        # does not parse, or its answer is not an instant vector (label_replace takes nothing
        # else). Ask each alone, within what is left of its own deadline, so that each gets its own
        # answer, and send alone from now on those that cannot be batched or are slow alone.
        alone = await asyncio.gather(
            *(self._ask(client, waiting.query, timeout=self._left(waiting)) for waiting in batch)
        )
        misfits = [q for q, outcome in zip(queries, alone, strict=True) if not _fits_a_batch(outcome)]
        if len(client.alone) + len(misfits) > _ALONE_REMEMBERED:
            client.alone.clear()
        client.alone.update(misfits)
        if not misfits or (isinstance(together, _Failure) and together.why == "timeout"):
            client.batch_limit = max(1, len(queries) // 2)  # the batch was too much for the server
        return list(alone)

    async def _fetch(self, client: _Client, url: URL, form: dict[str, str] | None = None) -> tuple[int, bytes, str]:
        """The status, the body and its text encoding, reading at most `max_body_bytes`."""
        session = client.session_here()
        method = "POST" if form is not None else "GET"

        async def send() -> aiohttp.ClientResponse:
            return await session.request(method, url, data=form, proxy=client.proxy, max_redirects=_MAX_REDIRECTS)

        try:
            response = await send()
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc, aiohttp.ClientSSLError):
                raise
            # One immediate retry of a failed connect (a restarting Prometheus, a lost SYN); nothing
            # else is retried, so an outage or a slow query costs one timeout, not several.
            log.debug("connecting to Prometheus at %s failed (%s); retrying once", client.shown, exc.os_error)
            response = await send()
        try:
            declared = response.content_length
            if declared is not None and declared > self.max_body_bytes:
                raise _ResponseTooLarge()
            chunks: list[bytes] = []
            size = 0
            content = response.content
            while chunk := await content.readany():
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise _ResponseTooLarge()
                chunks.append(chunk)
        except BaseException:
            response.close()
            raise
        response.release()
        return response.status, b"".join(chunks), _text_encoding(response)

    def _request_error_message(self, exc: BaseException, shown: str) -> str:
        prefix = f"Prometheus at {shown}"
        if isinstance(exc, _ResponseTooLarge):
            limit = f"{self.max_body_bytes / (1024 * 1024):g} MiB"
            return f"{prefix} answered more than {limit}; refusing to read it (narrow the query)"
        if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError | ssl.CertificateError):
            return f"{prefix}: TLS error: {self._root_reason(exc)}"
        if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
            return f"invalid Prometheus address {shown!r}"
        if isinstance(exc, aiohttp.TooManyRedirects):
            return f"{prefix}: request failed: Exceeded {_MAX_REDIRECTS} redirects."
        if isinstance(exc, aiohttp.ClientHttpProxyError):
            return f"{prefix} unreachable: Tunnel connection failed: {exc.status} {exc.message}"
        if isinstance(exc, aiohttp.ClientPayloadError):  # the answer broke off
            return f"{prefix}: request failed: {self._root_reason(exc)}"
        if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientResponseError | OSError):
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
            # The server closing the connection before answering was http.client's
            # RemoteDisconnected, a ConnectionResetError, for requests.
            if isinstance(cause, ConnectionResetError | aiohttp.ServerDisconnectedError):
                return "connection reset"
            if isinstance(cause, OSError) and cause.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                return "no route to host"
        for cause in causes:
            if isinstance(cause, aiohttp.ClientPayloadError | HttpProcessingError):
                return "connection closed without an answer"
        # Fall back to the innermost message; aiohttp's carry host, port and URL, never a secret
        # (the URL has no user:password@, headers never appear), but may carry the query, which is
        # harmless.
        innermost = causes[-1] if causes else exc
        return _snippet(str(innermost)) or type(innermost).__name__

    def _http_error_message(self, code: int, content: bytes, shown: str) -> str:
        body = content.decode("utf-8", errors="replace")
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
