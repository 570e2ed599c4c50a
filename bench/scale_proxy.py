"""A counting reverse proxy (aiohttp) for the scale benchmark: counts requests by method and kind.

    python bench/scale_proxy.py --upstream http://127.0.0.1:PORT [--port 0]

Prints its URL on stdout once it listens (the readiness signal). ``GET /__scale_stats`` answers the
counts so far as JSON: ``{"METHOD kind": n}``, where kind is the resource plural (with ``/status``
for the status subresource, ``?watch`` for watches) or, for other URLs, the path itself
(``/api/v1/query`` for Prometheus). ``GET /__scale_step_writes?since=T`` answers, for each ModelRollout
status write that named a current step and was accepted, ``[answered at, name, step index]`` (wall
clock, from T on): when a step was in force on the API server, with no watch's delivery in it.
``GET /__scale_detail`` answers what some writes were, read from
their bodies (:func:`detail_of`): Events by reason (``event <reason>`` counts the POSTs, ``distinct
event <reason>`` the Event names, which a repost keeps), ModelRollout status writes by what they record,
so the benchmark can split the writes into per-step and per-rollout ones. Watch streams are relayed
chunk by chunk. With
``--log-writes FILE`` every non-GET request is also appended to FILE as a JSON line (method, path,
body): to see what a write was, not only how many there were. With ``--ca-file`` the upstream is
HTTPS (the real API server) verified with that CA; the clients' own ``Authorization`` header is
relayed, so the API server authenticates and authorises each client as itself.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import ssl
import sys
import time

import aiohttp
import aiohttp.web

# content-encoding is kept: bodies are relayed as they came (compressed or not).
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def kind_of(path: str, query: str) -> str:
    parts = [part for part in path.split("/") if part]
    rest: list[str] = []
    if len(parts) >= 3 and parts[0] == "api":
        rest = parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        rest = parts[3:]
    if not rest:
        return path
    if rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]
    kind = rest[0]
    if len(rest) > 2:
        kind += "/" + "/".join(rest[2:])
    if "watch=true" in query or "watch=1" in query:
        kind += "?watch"
    return kind


def detail_of(method: str, kind: str, body: bytes | None) -> str | None:
    """What a write was, for the writes whose count per step depends on it (None for the others):

    * ``POST events`` by reason: ``event StepCompleted`` (one per step), ``event RolloutStarted``, ...;
    * ``PATCH modelrollouts/status`` by what the patch records: ``status phase=<phase>`` when it
      changes the phase (the canary's start is ``Progressing``, its promotion ``Succeeded``),
      ``status step`` when it names a new current step, ``status other`` otherwise (measurements held
      for a quiet write, conditions).
    """
    if method not in ("POST", "PATCH", "PUT") or not body or kind not in ("events", "modelrollouts/status"):
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    if kind == "events":
        return f"event {document.get('reason')}"
    status = document.get("status") or {}
    if status.get("phase"):
        return f"status phase={status['phase']}"
    if status.get("currentStepIndex") is not None:
        return "status step"
    return "status other"


def step_named(kind: str, method: str, body: bytes | None) -> int | None:
    """The currentStepIndex a ModelRollout status write sets, if it sets one."""
    if kind != "modelrollouts/status" or method not in ("PATCH", "PUT") or not body or b"currentStepIndex" not in body:
        return None
    try:
        index = (json.loads(body).get("status") or {}).get("currentStepIndex")
    except (ValueError, AttributeError):
        return None
    return index if isinstance(index, int) else None


def event_named(detail: str, body: bytes | None) -> str | None:
    """namespace/name of a posted Event (the detail says it is one)."""
    if not detail.startswith("event ") or not body:
        return None
    metadata = json.loads(body).get("metadata") or {}
    name = metadata.get("name")
    return f"{metadata.get('namespace')}/{name}" if name else None


class Proxy:
    def __init__(self, upstream: str, log_writes: str | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.log_writes = open(log_writes, "a") if log_writes else None  # noqa: SIM115 (open for the run)
        self.counts: collections.Counter[str] = collections.Counter()
        self.details: collections.Counter[str] = collections.Counter()
        self.event_names: set[str] = set()  # namespace/name of every Event posted
        self.session: aiohttp.ClientSession | None = None
        # (arrival on the wall clock, seconds until the upstream's answer was read) of each request
        # that is not a watch: what the server side (this proxy and the API server) costs a caller
        self.timings: list[tuple[float, float]] = []
        # (answer read on the wall clock, rollout name, currentStepIndex) of each accepted status write naming a step
        self.step_writes: list[tuple[float, str, int]] = []

    async def handle(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if request.path == "/__scale_stats":
            return aiohttp.web.json_response(dict(self.counts))
        if request.path == "/__scale_detail":
            return aiohttp.web.json_response(dict(self.details))
        if request.path == "/__scale_step_writes":
            since = float(request.query.get("since", "0"))
            return aiohttp.web.json_response([list(entry) for entry in self.step_writes if entry[0] >= since])
        if request.path == "/__scale_timings":
            return aiohttp.web.json_response(self.timing_summary(float(request.query.get("since", "0"))))
        arrived, started = time.time(), time.monotonic()
        kind = kind_of(request.path, request.query_string)
        self.counts[f"{request.method} {kind}"] += 1
        assert self.session is not None
        body = await request.read() if request.can_read_body else None
        if (detail := detail_of(request.method, kind, body)) is not None:
            self.details[detail] += 1
            if (announced := event_named(detail, body)) is not None and announced not in self.event_names:
                # An Event posted again after a timeout or a 429 keeps its name (the API server then
                # answers 409): distinct names count announcements, the line above counts requests.
                self.event_names.add(announced)
                self.details[f"distinct {detail}"] += 1
        if self.log_writes is not None and request.method != "GET":
            text = (body or b"").decode(errors="replace")
            self.log_writes.write(json.dumps({"method": request.method, "path": request.path, "body": text}) + "\n")
            self.log_writes.flush()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        url = self.upstream + request.path_qs
        watch = "watch=true" in request.query_string or "watch=1" in request.query_string
        async with self.session.request(
            request.method, url, data=body, headers=headers, allow_redirects=False
        ) as upstream:
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP}
            if not watch:
                data = await upstream.read()
                self.timings.append((arrived, time.monotonic() - started))
                if upstream.status < 300 and (step := step_named(kind, request.method, body)) is not None:
                    self.step_writes.append((time.time(), request.path.rstrip("/").split("/")[-2], step))
                return aiohttp.web.Response(body=data, status=upstream.status, headers=out_headers)
            response = aiohttp.web.StreamResponse(status=upstream.status, headers=out_headers)
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (ConnectionResetError, aiohttp.ClientError, asyncio.CancelledError):
                pass
            return response

    def timing_summary(self, since: float) -> dict[str, float]:
        """Count, p50, p99 and max of the server-side seconds of requests that arrived after `since`."""
        seconds = sorted(took for at, took in self.timings if at >= since)
        if not seconds:
            return {"count": 0}

        def quantile(q: float) -> float:
            return seconds[min(len(seconds) - 1, int(q * len(seconds)))]

        return {"count": len(seconds), "p50": quantile(0.5), "p99": quantile(0.99), "max": seconds[-1]}


async def serve(args: argparse.Namespace) -> None:
    proxy = Proxy(args.upstream, args.log_writes)
    proxy.session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=0, force_close=False, ssl=ssl.create_default_context(cafile=args.ca_file) if args.ca_file else True
        ),
        timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        auto_decompress=False,
    )
    server = aiohttp.web.Server(proxy.handle, handler_cancellation=True)
    runner = aiohttp.web.ServerRunner(server)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = runner.addresses[0][1]
    print(f"http://127.0.0.1:{port}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    if args.stats_file:
        with open(args.stats_file, "w") as out:
            json.dump(dict(proxy.counts), out)
    await runner.cleanup()
    await proxy.session.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stats-file", default=None)
    parser.add_argument("--ca-file", default=None, help="the CA of an HTTPS upstream (the real API server)")
    parser.add_argument("--log-writes", default=None, help="append every non-GET request to this file")
    asyncio.run(serve(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
