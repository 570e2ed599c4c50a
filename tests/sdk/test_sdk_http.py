"""The WSGI and ASGI helpers, each around a tiny prediction app, driven in-process."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment
from wsgiref.util import setup_testing_defaults

import pytest

from modelrollout_sdk import ModelMetricsASGIMiddleware, ModelMetricsWSGIMiddleware, ModelMonitor, current_request
from modelrollout_sdk.asgi import Message, Scope
from modelrollout_sdk.wsgi import ENVIRON_KEY
from tests.sdk.sdk_scrape import Series

Scrape = Callable[[ModelMonitor], Series]


def make_monitor() -> ModelMonitor:
    return ModelMonitor(rollout="r", version="v1", model="m", feature_edges={"x": [0.0, 1.0]})


# -- WSGI -------------------------------------------------------------------------------------------


def wsgi_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    if path == "/crash":
        raise RuntimeError("unhandled")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    try:
        payload = json.loads(environ["wsgi.input"].read(length))
        x = float(payload["x"])
    except (ValueError, KeyError, TypeError):
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"bad input"]
    req = environ.get(ENVIRON_KEY)
    assert current_request() is req
    if req is not None:
        req.record_input({"x": x})
    if x > 100:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"overloaded"]
    if req is not None:
        req.record_output("pos" if x > 0.5 else "neg", min(max(x, 0.0), 1.0))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"y": x}).encode()]


def call_wsgi(app: Any, path: str, body: bytes = b"", method: str = "POST") -> tuple[str, bytes]:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(
        {"PATH_INFO": path, "REQUEST_METHOD": method, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    )
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(s)
        return lambda data: None

    result = app(environ, start_response)
    try:
        out = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return status[0], out


def test_wsgi_middleware_counts_outcomes_and_serves_metrics() -> None:
    monitor = make_monitor()
    app = ModelMetricsWSGIMiddleware(wsgi_app, monitor)
    assert call_wsgi(app, "/predict", b'{"x": 0.9}')[0].startswith("200")
    assert call_wsgi(app, "/predict", b'{"x": 0.2}')[0].startswith("200")
    assert call_wsgi(app, "/predict", b"not json")[0].startswith("400")
    assert call_wsgi(app, "/predict", b'{"x": 1000}')[0].startswith("503")
    with pytest.raises(RuntimeError):
        call_wsgi(app, "/crash")
    assert call_wsgi(app, "/healthz", method="GET")[0].startswith("200")
    status, body = call_wsgi(app, "/metrics", method="GET")
    assert status.startswith("200")
    s = Series(body.decode())
    assert s.value("model_requests_total", outcome="success", rollout="r", version="v1", model="m") == 2
    assert s.value("model_requests_total", outcome="invalid_input") == 1
    assert s.value("model_requests_total", outcome="error") == 2  # the 503 and the exception
    assert s.value("model_request_duration_seconds_count") == 5  # the probe is not a prediction
    assert s.value("model_predictions_total", **{"class": "pos"}) == 1
    assert s.value("model_input_feature_value_count", feature="x") == 3
    assert current_request() is None


def test_wsgi_include_paths_and_metrics_app() -> None:
    monitor = make_monitor()
    app = monitor.wsgi_middleware(wsgi_app, include_paths={"/v1/predict"}, metrics_path=None)
    call_wsgi(app, "/predict", b'{"x": 0.9}')  # not observed
    call_wsgi(app, "/v1/predict", b'{"x": 0.9}')
    # metrics_path=None leaves /metrics to the app, which answers it as a bad prediction.
    assert call_wsgi(app, "/metrics", method="GET")[0].startswith("400")
    status, body = call_wsgi(monitor.metrics_app(), "/metrics", method="GET")
    assert status.startswith("200")
    assert Series(body.decode()).value("model_requests_total", outcome="success") == 1


def test_wsgi_app_over_a_real_socket(scrape: Scrape) -> None:
    """Under wsgiref's server (its own thread), the body's close ends the observation."""
    import threading
    import urllib.request
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    monitor = make_monitor()
    server = make_server("127.0.0.1", 0, ModelMetricsWSGIMiddleware(wsgi_app, monitor), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        for _ in range(3):
            req = urllib.request.Request(base + "/predict", data=b'{"x": 0.7}', method="POST")
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert json.loads(resp.read()) == {"y": 0.7}
        with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
            s = Series(resp.read().decode())
    finally:
        server.shutdown()
        server.server_close()
    assert s.value("model_requests_total", outcome="success") == 3


# -- ASGI -------------------------------------------------------------------------------------------


async def asgi_app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        return
    if scope["path"] == "/crash":
        raise RuntimeError("unhandled")
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    req = current_request()
    assert req is not None and scope["modelrollout.request"] is req and scope["state"]["modelrollout"] is req
    try:
        x = float(json.loads(body)["x"])
    except (ValueError, KeyError, TypeError):
        status, out = 422, b"bad"
    else:
        req.record_input({"x": x})
        req.record_output("pos" if x > 0.5 else "neg", 0.9 if x > 0.5 else 0.1)
        status, out = 200, json.dumps({"y": x}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": out})


async def call_asgi(app: Any, path: str, body: bytes = b"", method: str = "POST") -> tuple[int, bytes]:
    scope: dict[str, Any] = {"type": "http", "path": path, "method": method, "headers": [], "query_string": b""}
    sent: list[Message] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def test_asgi_middleware_counts_outcomes_and_serves_metrics() -> None:
    monitor = make_monitor()
    app = ModelMetricsASGIMiddleware(asgi_app, monitor)
    assert (await call_asgi(app, "/predict", b'{"x": 0.9}'))[0] == 200
    assert (await call_asgi(app, "/predict", b"{}"))[0] == 422
    with pytest.raises(RuntimeError):
        await call_asgi(app, "/crash")
    status, body = await call_asgi(app, "/metrics", method="GET")
    assert status == 200
    s = Series(body.decode())
    assert s.value("model_requests_total", outcome="success", rollout="r", version="v1", model="m") == 1
    assert s.value("model_requests_total", outcome="invalid_input") == 1
    assert s.value("model_requests_total", outcome="error") == 1
    assert s.value("model_predictions_total", **{"class": "pos"}) == 1
    assert s.value("model_prediction_score_bucket", le="0.9") == 1
    # The metrics endpoint itself is not counted as a prediction.
    assert s.value("model_request_duration_seconds_count") == 3


async def test_asgi_lifespan_passes_through_and_metrics_asgi_app() -> None:
    monitor = make_monitor()
    app = monitor.asgi_middleware(asgi_app)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}]
    status, body = await call_asgi(monitor.metrics_asgi_app(), "/metrics", method="GET")
    assert status == 200 and b"model_requests_total" in body
