"""The web metric backend against a local HTTP server: numbers, no data, and every way an endpoint fails.

Also: Secret-held headers are sent and never shown, the factory chooses a metric's backend from its
spec, and the spec refuses what a web or job metric cannot be (with the field and what is allowed).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from modelrollout.api.models import Metric, WebHeader
from modelrollout.api.validation import InvalidSpec, parse_spec
from modelrollout.metrics.base import MetricBackend, QueryStatus
from modelrollout.metrics.factory import BackendFactory
from modelrollout.metrics.job import termination_value
from modelrollout.metrics.prometheus import PrometheusBackend
from modelrollout.metrics.web import WebBackend, WebRequest, WebSessions
from modelrollout.reconcile import web_headers

SECRET_TOKEN = "s3cr3t-web-token"


@dataclass
class Endpoint:
    server: TestServer
    seen: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    seen: list[dict[str, Any]] = []
    release = asyncio.Event()

    async def record(request: web.Request) -> None:
        seen.append({"method": request.method, "headers": dict(request.headers), "body": await request.text()})

    async def ok(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"data": {"errorRate": 0.004, "asText": "0.25", "none": None, "flag": True}})

    async def listed(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"items": [{"v": 1}, {"v": 2}]})

    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="patient 123 record failed")

    async def slow(request: web.Request) -> web.Response:
        await release.wait()  # never answers within the test's timeout; released at teardown
        return web.json_response({"value": 1})

    async def guarded(request: web.Request) -> web.Response:
        await record(request)
        if request.headers.get("Authorization") != f"Bearer {SECRET_TOKEN}":
            return web.Response(status=401)
        return web.json_response({"value": 0.97})

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_get("/listed", listed)
    app.router.add_get("/not-json", not_json)
    app.router.add_get("/broken", broken)
    app.router.add_get("/slow", slow)
    app.router.add_get("/guarded", guarded)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Endpoint(server, seen)
    finally:
        release.set()
        await server.close()


@pytest.fixture
async def sessions() -> AsyncIterator[WebSessions]:
    shared = WebSessions()
    try:
        yield shared
    finally:
        await shared.aclose()


def backend(sessions: WebSessions, **request: Any) -> WebBackend:
    return WebBackend(WebRequest(**request), sessions)


async def test_a_number_at_the_path(endpoint: Endpoint, sessions: WebSessions) -> None:
    outcome = await backend(sessions).query_scalar(endpoint.url("/ok"), "$.data.errorRate")
    assert (outcome.status, outcome.value) == (QueryStatus.VALUE, 0.004)
    braces = await backend(sessions).query_scalar(endpoint.url("/ok"), "{$.data.asText}")  # Argo's style
    assert (braces.status, braces.value) == (QueryStatus.VALUE, 0.25)


async def test_post_sends_the_body(endpoint: Endpoint, sessions: WebSessions) -> None:
    outcome = await backend(sessions, method="POST", body='{"version": "1.1.0"}').query_scalar(
        endpoint.url("/ok"), "$.data.errorRate"
    )
    assert outcome.status == QueryStatus.VALUE
    assert endpoint.seen[-1]["method"] == "POST"
    assert endpoint.seen[-1]["body"] == '{"version": "1.1.0"}'
    assert endpoint.seen[-1]["headers"]["Content-Type"] == "application/json"


async def test_null_is_no_data_never_a_pass(endpoint: Endpoint, sessions: WebSessions) -> None:
    outcome = await backend(sessions).query_scalar(endpoint.url("/ok"), "$.data.none")
    assert outcome.status == QueryStatus.EMPTY
    assert "null" in outcome.message


async def test_a_missing_path_is_an_error(endpoint: Endpoint, sessions: WebSessions) -> None:
    outcome = await backend(sessions).query_scalar(endpoint.url("/ok"), "$.data.latency")
    assert outcome.status == QueryStatus.ERROR
    assert "$.data.latency matched nothing" in outcome.message


async def test_several_matches_or_a_boolean_are_errors(endpoint: Endpoint, sessions: WebSessions) -> None:
    several = await backend(sessions).query_scalar(endpoint.url("/listed"), "$.items[*].v")
    assert several.status == QueryStatus.ERROR and "matched 2 values" in several.message
    flag = await backend(sessions).query_scalar(endpoint.url("/ok"), "$.data.flag")
    assert flag.status == QueryStatus.ERROR and "boolean" in flag.message


async def test_an_answer_that_is_not_json(endpoint: Endpoint, sessions: WebSessions) -> None:
    outcome = await backend(sessions).query_scalar(endpoint.url("/not-json"), "$.value")
    assert outcome.status == QueryStatus.ERROR
    assert outcome.message == f"GET {endpoint.url('/not-json')}: the answer is not JSON"


async def test_http_500_is_an_error_without_the_body(endpoint: Endpoint, sessions: WebSessions) -> None:
    outcome = await backend(sessions).query_scalar(endpoint.url("/broken"), "$.value")
    assert outcome.status == QueryStatus.ERROR
    assert "HTTP 500" in outcome.message
    assert "patient" not in outcome.message  # the answer may hold anything; status must not


async def test_timeout(endpoint: Endpoint, sessions: WebSessions) -> None:
    outcome = await backend(sessions, timeout=0.3).query_scalar(endpoint.url("/slow"), "$.value")
    assert outcome.status == QueryStatus.ERROR
    assert "no answer within 0.3s (timeoutSeconds)" in outcome.message


async def test_unreachable(endpoint: Endpoint, sessions: WebSessions) -> None:
    outcome = await backend(sessions).query_scalar("http://127.0.0.1:9/metrics", "$.value")
    assert outcome.status == QueryStatus.ERROR
    assert "unreachable" in outcome.message
    assert not await backend(sessions).is_online("http://127.0.0.1:9/metrics")
    assert await backend(sessions).is_online(endpoint.url("/broken"))  # a 500 is an answer


class SecretsApi:
    """The one call `web_headers` makes, answered from a dict of Secrets as the API server would."""

    def __init__(self, secrets: dict[str, dict[str, str]]) -> None:
        self.secrets = secrets

    async def get(self, resource: Any, namespace: str, name: str) -> dict[str, Any] | None:
        data = self.secrets.get(name)
        if data is None:
            return None
        return {"data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}}


@dataclass
class FakeRuntime:
    api: SecretsApi


async def test_a_header_from_a_secret_is_sent_and_never_shown(endpoint: Endpoint, sessions: WebSessions) -> None:
    headers = [
        WebHeader.model_validate(
            {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "web-auth", "key": "header"}}}
        ),
        WebHeader(name="X-Team", value="fraud"),
    ]
    runtime = FakeRuntime(SecretsApi({"web-auth": {"header": f"Bearer {SECRET_TOKEN}"}}))
    resolved = await web_headers(runtime, "team-a", "quality", headers)  # type: ignore[arg-type]
    assert resolved == {"Authorization": f"Bearer {SECRET_TOKEN}", "X-Team": "fraud"}
    assert isinstance(resolved, dict)
    guarded = backend(sessions, headers=resolved)
    outcome = await guarded.query_scalar(endpoint.url("/guarded"), "$.value")
    assert (outcome.status, outcome.value) == (QueryStatus.VALUE, 0.97)
    assert endpoint.seen[-1]["headers"]["X-Team"] == "fraud"
    assert SECRET_TOKEN not in repr(guarded.request)
    refused = await backend(sessions, headers={"Authorization": "Bearer wrong"}).query_scalar(
        endpoint.url("/guarded"), "$.value"
    )
    assert refused.status == QueryStatus.ERROR and "HTTP 401" in refused.message
    assert "wrong" not in refused.message


async def test_a_header_value_that_would_break_the_request_is_an_error_not_shown(
    endpoint: Endpoint, sessions: WebSessions
) -> None:
    broken = backend(sessions, headers={"Authorization": f"Bearer {SECRET_TOKEN}\nX-Injected: 1"})
    outcome = await broken.query_scalar(endpoint.url("/guarded"), "$.value")
    assert outcome.status == QueryStatus.ERROR
    assert SECRET_TOKEN not in outcome.message


async def test_a_missing_secret_or_key_names_it() -> None:
    header = WebHeader.model_validate(
        {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "web-auth", "key": "header"}}}
    )
    missing = await web_headers(FakeRuntime(SecretsApi({})), "team-a", "quality", [header])  # type: ignore[arg-type]
    assert missing == (
        "Secret team-a/web-auth key 'header' (spec.analysis.metrics[quality].web.headers[0].valueFrom): "
        "the Secret is not found"
    )
    no_key = await web_headers(  # type: ignore[arg-type]
        FakeRuntime(SecretsApi({"web-auth": {"other": "x"}})), "team-a", "quality", [header]
    )
    assert isinstance(no_key, str) and no_key.endswith("the Secret has no such key")


async def test_the_factory_chooses_by_provider() -> None:
    default = PrometheusBackend()
    factory = BackendFactory(default)
    try:
        assert factory.prometheus() is default
        web_backend = factory.web("GET", {}, None, 5.0)
        assert isinstance(web_backend, WebBackend) and isinstance(web_backend, MetricBackend)
        vector = await web_backend.query_vector("http://127.0.0.1:9/", "$.x")
        assert vector.status == QueryStatus.ERROR and "drift needs prometheus" in vector.message
    finally:
        await factory.aclose()


@pytest.mark.parametrize(
    ("message", "status", "value"),
    [
        ('{"value": 0.93}', QueryStatus.VALUE, 0.93),
        ("0.5\n", QueryStatus.VALUE, 0.5),
        ('{"value": null}', QueryStatus.EMPTY, None),
        ("", QueryStatus.ERROR, None),
        ("accuracy is great", QueryStatus.ERROR, None),
        ('{"accuracy": 0.9}', QueryStatus.ERROR, None),
    ],
)
def test_termination_messages(message: str, status: QueryStatus, value: float | None) -> None:
    outcome = termination_value(message, "fraud-eval-1")
    assert (outcome.status, outcome.value) == (status, value)
    if status == QueryStatus.ERROR:
        assert "great" not in outcome.message  # what a Job prints is not repeated into status


SPEC: dict[str, Any] = {
    "model": {"name": "m", "version": "2"},
    "template": {"spec": {"containers": [{"name": "server"}]}},
}


def spec_with(metric: dict[str, Any]) -> dict[str, Any]:
    return {**SPEC, "analysis": {"metrics": [{"name": "quality", **metric}]}}


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ({"threshold": {"max": 1}}, "set exactly one of prometheus, web, job (or template) (found: none)"),
        (
            {"prometheus": {"query": "up"}, "web": {"url": "http://x/", "jsonPath": "$.v"}, "threshold": {"max": 1}},
            "set exactly one of prometheus, web, job (or template) (found: prometheus, web)",
        ),
        (
            {"web": {"url": "http://x/", "jsonPath": "$.v"}, "compare": {"maxRatio": 1.1}},
            "a web metric is judged by threshold; compare needs prometheus",
        ),
        ({"web": {"url": "ftp://x/", "jsonPath": "$.v"}, "threshold": {"max": 1}}, "is not an http:// or https://"),
        ({"web": {"url": "http://x/", "jsonPath": "$.[[["}, "threshold": {"max": 1}}, "does not parse"),
        (
            {"web": {"url": "http://x/{{version}}", "jsonPath": "$.v"}, "threshold": {"max": 1}},
            "unknown template variable {{version}}",
        ),
        (
            {"web": {"url": "http://x/", "jsonPath": "$.v", "body": "{}"}, "threshold": {"max": 1}},
            "body is sent with method: POST only",
        ),
        (
            {"web": {"url": "http://x/", "jsonPath": "$.v", "timeoutSeconds": 600}, "threshold": {"max": 1}},
            "web.timeoutSeconds: must be greater than 0 and at most 60, got 600",
        ),
        (
            {"job": {"spec": {"template": {"spec": {"containers": [{"name": "eval"}]}}}}, "threshold": {"min": 0.9}},
            "a job metric runs in analysis steps only (a Job per measurement): set background: false",
        ),
        (
            {"job": {"spec": {"template": {"spec": {}}}}, "threshold": {"min": 0.9}, "background": False},
            "spec.template.spec.containers must list at least one container",
        ),
    ],
)
def test_what_a_provider_cannot_be_is_refused(metric: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidSpec) as refused:
        parse_spec(spec_with(metric))
    assert expected in str(refused.value)
    assert "analysis.metrics" in str(refused.value)


def test_providers_of_valid_metrics() -> None:
    web_metric = Metric.model_validate(
        {"name": "q", "web": {"url": "http://x/{{candidate}}", "jsonPath": "$.v"}, "threshold": {"max": 1}}
    )
    job_metric = Metric.model_validate(
        {
            "name": "e",
            "background": False,
            "job": {"spec": {"template": {"spec": {"containers": [{"name": "eval"}]}}}},
            "threshold": {"min": 0.9},
        }
    )
    prometheus_metric = Metric.model_validate({"name": "p", "prometheus": {"query": "up"}, "threshold": {"max": 1}})
    assert [m.provider for m in (web_metric, job_metric, prometheus_metric)] == ["web", "job", "prometheus"]
