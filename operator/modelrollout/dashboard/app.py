"""The dashboard's ASGI app (Starlette): two pages, their JSON, a server-sent event stream, the commands.

The pages are static files; the browser draws them (and the charts, with the vendored Chart.js)
from the JSON served here. Every request to the API server is made as the kubeconfig's identity, so
the page shows what that identity may see, and a refusal is said as a message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from modelrollout.command_client import command_patch, new_command
from modelrollout.dashboard.store import RolloutStore
from modelrollout.dashboard.view import ACTIONS_BY_PHASE, detail
from modelrollout.engine.types import CommandAction
from modelrollout.kube.api import MODELROLLOUTS, ApiError, KubeApi, Resource

STATIC = Path(__file__).parent / "static"
EVENTS = Resource("", "v1", "events")
#: A comment line on an idle stream, so that proxies and the browser keep it open.
KEEPALIVE_SECONDS = 15.0
#: Sent by the page's own script with every command: a custom header makes a cross-site form or
#: fetch need a CORS preflight, which this server never grants.
COMMAND_HEADER = "x-modelrollout-dashboard"


def _forbidden_hint(verb: str, what: str) -> str:
    return f"your identity may not {verb} {what}; docs/dashboard.md lists the RBAC the dashboard needs"


def _api_failure(error: ApiError, verb: str, what: str) -> JSONResponse:
    if error.status == 403:
        text = f"403 Forbidden: {_forbidden_hint(verb, what)} ({error.message})"
    elif error.status == 404:
        text = f"404 Not Found: {what}: {error.message}"
    else:
        text = f"{error.status} {error.reason}: {error.message}"
    return JSONResponse({"error": text}, status_code=error.status if 400 <= error.status < 600 else 502)


def build_app(
    api: KubeApi, store: RolloutStore, *, read_only: bool, allowed_hosts: list[str] | None = None
) -> Starlette:
    async def list_page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def rollout_page(request: Request) -> Response:
        return FileResponse(STATIC / "rollout.html")

    async def config(request: Request) -> Response:
        return JSONResponse({"readOnly": read_only, "namespaces": store.namespaces, "watchingSince": store.started_at})

    async def rollouts(request: Request) -> Response:
        await store.synced.wait()
        return JSONResponse({"rows": store.rows(), "error": store.error(), "watchingSince": store.started_at})

    async def stream(request: Request) -> Response:
        async def events() -> AsyncIterator[str]:
            with store.listen() as queue:
                await store.synced.wait()
                snapshot = {"type": "snapshot", "rows": store.rows(), "error": store.error()}
                yield f"data: {json.dumps(snapshot)}\n\n"
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"data: {json.dumps(message)}\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    async def rollout_detail(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        what = f"modelrollout {namespace}/{name}"
        try:
            rollout = await api.get(MODELROLLOUTS, namespace, name)
        except ApiError as error:
            return _api_failure(error, "get", what)
        except (aiohttp.ClientError, TimeoutError) as error:
            return JSONResponse({"error": f"the API server did not answer: {error}"}, status_code=502)
        if rollout is None:
            return JSONResponse({"error": f"{what} does not exist (or was deleted)"}, status_code=404)
        events: list[dict[str, Any]] = []
        events_error = None
        try:
            query = {"fieldSelector": f"involvedObject.name={name},involvedObject.kind=ModelRollout"}
            answer = await api.request("GET", EVENTS.path(namespace), query=query)
            events = answer.get("items") or []
        except ApiError as error:
            events_error = (
                f"403 Forbidden: {_forbidden_hint('list', f'events in {namespace}')}"
                if error.status == 403
                else f"the Events could not be read: {error}"
            )
        traffic = store.traffic.get((namespace, name), [])
        shown = detail(rollout, events, traffic, store.clock(), read_only)
        shown["eventsError"] = events_error
        shown["watchingSince"] = store.started_at
        return JSONResponse(shown)

    async def send(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        if read_only:
            return JSONResponse({"error": "the dashboard runs with --read-only: it sends no commands"}, status_code=403)
        if request.headers.get(COMMAND_HEADER) != "1":
            return JSONResponse({"error": f"a command needs the header {COMMAND_HEADER}: 1"}, status_code=400)
        try:
            body = await request.json()
            action = CommandAction(body["action"])
        except (ValueError, KeyError, TypeError):
            allowed = ", ".join(a.value for a in CommandAction)
            return JSONResponse({"error": f'expected JSON {{"action": one of {allowed}}}'}, status_code=400)
        if not any(action in actions for actions in ACTIONS_BY_PHASE.values()):
            return JSONResponse({"error": f"{action.value} is not sent from the dashboard"}, status_code=400)
        command = new_command(action)
        try:
            await api.merge_patch(MODELROLLOUTS, namespace, name, command_patch(command))
        except ApiError as error:
            return _api_failure(error, "patch", f"modelrollout {namespace}/{name}")
        except (aiohttp.ClientError, TimeoutError) as error:
            return JSONResponse({"error": f"the API server did not answer: {error}"}, status_code=502)
        return JSONResponse({"command": command})

    routes = [
        Route("/", list_page),
        Route("/rollouts/{namespace}/{name}", rollout_page),
        Route("/api/config", config),
        Route("/api/rollouts", rollouts),
        Route("/api/stream", stream),
        Route("/api/rollouts/{namespace}/{name}", rollout_detail),
        Route("/api/rollouts/{namespace}/{name}/commands", send, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    # Only the host names it is reached by: a page of another site cannot reach it through DNS rebinding.
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["*"])]
    return Starlette(routes=routes, middleware=middleware)
