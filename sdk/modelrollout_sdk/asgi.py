"""Plain ASGI middleware (works under Starlette/FastAPI, uvicorn, hypercorn; needs none of them).

Observes every HTTP request except probes and ``/metrics``, which it serves itself. The outcome comes
from the response status (5xx ``error``, 4xx ``invalid_input``, else ``success``) unless the app set
one; an exception escaping the app is an ``error``. The app reaches the observation through
``current_request()``, ``scope["modelrollout.request"]`` or, under Starlette, ``request.state.modelrollout``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any, Final, TypeAlias

from modelrollout_sdk._http import DEFAULT_EXCLUDED_PATHS, is_observed, outcome_for_status
from modelrollout_sdk.monitor import ModelMonitor

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_KEY: Final = "modelrollout.request"
STATE_KEY: Final = "modelrollout"


class ModelMetricsASGIMiddleware:
    """``app = ModelMetricsASGIMiddleware(app, monitor)``; same path options as the WSGI middleware."""

    def __init__(
        self,
        app: ASGIApp,
        monitor: ModelMonitor,
        *,
        metrics_path: str | None = "/metrics",
        include_paths: Collection[str] | None = None,
        exclude_paths: Collection[str] = DEFAULT_EXCLUDED_PATHS,
    ) -> None:
        self.app = app
        self.monitor = monitor
        self.metrics_path = metrics_path
        self.include_paths = include_paths
        self.exclude_paths = exclude_paths

    async def _serve_metrics(self, scope: Scope, send: Send) -> None:
        accept = ",".join(
            v.decode("latin-1") for k, v in scope.get("headers", []) if k.decode("latin-1").lower() == "accept"
        )
        body, content_type = self.monitor.exposition(accept)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":  # lifespan and websockets pass through untouched
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "/")
        if self.metrics_path is not None and path == self.metrics_path:
            await self._serve_metrics(scope, send)
            return
        if not is_observed(path, self.include_paths, self.exclude_paths):
            await self.app(scope, receive, send)
            return

        status: list[int] = []

        async def observing_send(message: Message) -> None:
            if message.get("type") == "http.response.start":
                status[:] = [int(message.get("status", 500))]
            await send(message)

        async with self.monitor.observe_request() as obs:
            scope[SCOPE_KEY] = obs
            state = scope.setdefault("state", {})
            if isinstance(state, MutableMapping):
                state[STATE_KEY] = obs
            await self.app(scope, receive, observing_send)
            if obs.outcome is None and status:
                obs.set_outcome(outcome_for_status(status[0]))
