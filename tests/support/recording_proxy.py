"""A reverse proxy in front of an API server that records every request one client makes, and can
fail a share of them as a flaky or overloaded API server would.

The operator's kubeconfig points at it, so the requests it records (and the faults it injects) are
exactly the operator's, not the test's own or the kubelet's. Watch streams are passed through as
they arrive. Faults use the emulator's rules (:class:`modelrollout_devkit.emulator.faults.FaultInjector`:
status, share, verbs, resources, namespaces, limit), so a fault test reads the same on the
emulator and on a real API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

from modelrollout_devkit.emulator.faults import FaultInjector
from modelrollout_devkit.emulator.server import _verb, parse_api_path


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: str


class RecordingProxy:
    def __init__(self, upstream: str, *, ca_file: Path | None = None, token: str | None = None):
        self.upstream = upstream.rstrip("/")
        self._ca_file = ca_file
        #: the token the clients of the proxy authenticate with upstream (written into the kubeconfig)
        self._token = token
        self.faults = FaultInjector()
        self.seen: set[Seen] = set()
        self.authorizations: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="recording-proxy")

    def start(self) -> RecordingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            # Open watch streams keep handlers alive; the proxy is only for the test, so it just
            # stops its loop (a daemon thread) instead of waiting for them to drain.
            with contextlib.suppress(TimeoutError):
                asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(2)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def write_kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "proxy", "user": {"token": self._token} if self._token else {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        connector = None
        if self._ca_file is not None:
            connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(self._ca_file)))
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None), connector=connector)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.seen.add(Seen(request.method, request.path, request.query_string))
        if "Authorization" in request.headers:
            self.authorizations.add(request.headers["Authorization"])
        fault = self._fault_for(request)
        if fault is not None:
            return fault
        assert self._session is not None
        headers = {
            key: value for key, value in request.headers.items() if key.lower() not in ("host", "content-length")
        }
        body = await request.read()
        # No body, no data: aiohttp would label an empty one application/octet-stream, which a real
        # API server answers 415 Unsupported Media Type.
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "content-encoding"):
                    response.headers[key] = value
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    def _fault_for(self, request: web.Request) -> web.Response | None:
        path = parse_api_path(request.path)
        if path is None or not self.faults.rules:
            return None
        verb = _verb(request.method, path, dict(urllib.parse.parse_qsl(request.query_string)))
        error = self.faults.pick(verb, request.method, (path.plural, path.group, path.subresource), path.namespace)
        if error is None:
            return None
        return web.Response(
            status=error.code, text=json.dumps(error.status()), content_type="application/json", headers=error.headers
        )
