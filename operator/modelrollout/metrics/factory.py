"""The backend of each metric, chosen from its spec: `prometheus:` (the default), `web:`.

A `job:` metric has no backend: its measurement is a Job the engine asks for and the observer
reads (`kube.evaluation`). The runtime holds one factory and asks it per measurement, so no pass
has a backend written into it; backends that keep connections (Prometheus per set of credentials,
the web session) are made once and kept.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelrollout.metrics.base import MetricBackend
from modelrollout.metrics.prometheus import Credentials, PrometheusBackend
from modelrollout.metrics.web import WebBackend, WebRequest, WebSessions

BACKEND_PROVIDERS = ("prometheus", "web")


class BackendFactory:
    def __init__(self, prometheus: MetricBackend, *, prometheus_timeout: float = 10.0, batch_seconds: float = 0.0):
        self._prometheus = prometheus
        self._prometheus_timeout = prometheus_timeout
        self._batch_seconds = batch_seconds
        self._with_credentials: dict[Credentials, MetricBackend] = {}
        self._web_sessions = WebSessions()

    def prometheus(self, credentials: Credentials | None = None) -> MetricBackend:
        """The operator's Prometheus backend, or one that sends these credentials (kept for reuse)."""
        if credentials is None:
            return self._prometheus
        if credentials not in self._with_credentials:
            self._with_credentials[credentials] = PrometheusBackend(
                timeout=self._prometheus_timeout, credentials=credentials, batch_seconds=self._batch_seconds
            )
        return self._with_credentials[credentials]

    def web(self, method: str, headers: Mapping[str, str], body: str | None, timeout: float) -> MetricBackend:
        """A backend for one web metric's request (on the shared session)."""
        return WebBackend(WebRequest(method, dict(headers), body, timeout), self._web_sessions)

    async def aclose(self) -> None:
        """Close every connection the backends keep (in the loop that opened them)."""
        backends, self._with_credentials = [self._prometheus, *self._with_credentials.values()], {}
        for backend in backends:
            if isinstance(backend, PrometheusBackend):
                await backend.aclose()
        await self._web_sessions.aclose()
