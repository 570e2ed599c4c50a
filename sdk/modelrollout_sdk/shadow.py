"""Report stable's answers to the shadow comparator (a mirror step with ``compare: {stableAnswers: report}``).

In ``report`` mode the comparator does not ask stable again: whoever sees stable's answer (the model
server itself, through this class) reports it, and the comparator joins it by request id with the
candidate's answer to the mirrored copy. Only what a comparison needs is sent: per prediction its class
and score, never the request::

    reporter = ShadowReporter.from_env()          # $MODELROLLOUT_COMPARATOR_URL; None when unset
    if reporter is not None:
        reporter.report(request.headers.get("x-request-id"), [("benign", 0.12)], latency_seconds=0.004)

Reports go from a background thread through a bounded queue: a slow or absent comparator never slows
an answer (a full queue drops the report, counted in :attr:`ShadowReporter.dropped`).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, Final

ANSWERS_PATH: Final = "/_comparator/answers"
URL_ENV: Final = "MODELROLLOUT_COMPARATOR_URL"


def report_body(
    request_id: str, predictions: Sequence[tuple[str | None, float | None]], latency_seconds: float, error: bool = False
) -> dict[str, Any]:
    """The JSON the comparator's ``/_comparator/answers`` takes: classes and scores only."""
    items = [{"prediction": label, "score": score} for label, score in predictions]
    return {
        "requestId": request_id,
        "answer": {"predictions": items},
        "latencySeconds": latency_seconds,
        "error": error,
    }


class ShadowReporter:
    def __init__(self, comparator_url: str, *, max_queued: int = 1000, timeout_seconds: float = 2.0) -> None:
        self.url = comparator_url.rstrip("/") + ANSWERS_PATH
        self.timeout_seconds = timeout_seconds
        self.dropped = 0
        self.sent = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queued)
        self._thread = threading.Thread(target=self._run, name="shadow-reporter", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ShadowReporter | None:
        url = (os.environ if env is None else env).get(URL_ENV, "").strip()
        return cls(url) if url else None

    def report(
        self,
        request_id: str | None,
        predictions: Sequence[tuple[str | None, float | None]],
        *,
        latency_seconds: float,
        error: bool = False,
    ) -> None:
        """Queue stable's answer to one request; without a request id nothing can join it, so nothing is sent."""
        if not request_id:
            return
        try:
            self._queue.put_nowait(report_body(request_id, predictions, latency_seconds, error))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (within `timeout`), then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            if body is None:
                return
            request = urllib.request.Request(
                self.url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_seconds):
                    self.sent += 1
            except (urllib.error.URLError, OSError, ValueError):
                self.dropped += 1
