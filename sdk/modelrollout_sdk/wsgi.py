"""WSGI middleware: observe every prediction request of a WSGI app and serve ``/metrics``.

The outcome comes from the response status (5xx ``error``, 4xx ``invalid_input``, else ``success``)
unless the app set one explicitly; an exception escaping the app is an ``error``. The app reaches the
request's observation through ``environ["modelrollout.request"]`` (or ``current_request()``) to record
inputs and outputs. Timing ends when the server closes the response body, so streamed bodies count.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from types import TracebackType
from typing import Final
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from modelrollout_sdk._http import DEFAULT_EXCLUDED_PATHS, is_observed, outcome_for_status
from modelrollout_sdk.monitor import ModelMonitor, RequestObservation

ENVIRON_KEY: Final = "modelrollout.request"

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


class _ObservedBody:
    """Wraps the response iterable so that the observation ends when the server closes it."""

    def __init__(self, body: Iterable[bytes], obs: RequestObservation, status: list[int]) -> None:
        self._body = body
        self._obs = obs
        self._status = status

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except BaseException as exc:
            self._obs.finish(exc)
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if self._obs.outcome is None and self._status:
                self._obs.set_outcome(outcome_for_status(self._status[0]))
            self._obs.finish()


class ModelMetricsWSGIMiddleware:
    """``app = ModelMetricsWSGIMiddleware(app, monitor)``.

    ``include_paths`` (exact paths) restricts observation to those; otherwise every path except
    ``exclude_paths`` (probes, ``/metrics``) is observed. ``metrics_path=None`` leaves ``/metrics`` to the app.
    """

    def __init__(
        self,
        app: WSGIApplication,
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

    def _serve_metrics(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body, content_type = self.monitor.exposition(environ.get("HTTP_ACCEPT"))
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if self.metrics_path is not None and path == self.metrics_path:
            return self._serve_metrics(environ, start_response)
        if not is_observed(path, self.include_paths, self.exclude_paths):
            return self.app(environ, start_response)

        obs = self.monitor.observe_request().start()
        environ[ENVIRON_KEY] = obs
        status: list[int] = []

        def observing_start_response(
            status_line: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
        ) -> object:
            try:
                status[:] = [int(status_line.split(" ", 1)[0])]
            except ValueError:
                status[:] = [500]
            return start_response(status_line, headers, exc_info)

        try:
            body = self.app(environ, observing_start_response)  # type: ignore[arg-type]
        except BaseException as exc:
            obs.finish(exc)
            raise
        return _ObservedBody(body, obs, status)
