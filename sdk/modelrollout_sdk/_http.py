"""What the WSGI and ASGI middlewares share: which paths they observe and how a status maps to an outcome."""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from modelrollout_sdk import names

#: Probes and the metrics endpoint are not predictions: counting them would dilute error rates and
#: latency percentiles with requests the model never saw.
DEFAULT_EXCLUDED_PATHS: Final = frozenset(
    {"/healthz", "/health", "/livez", "/ready", "/readyz", "/metrics", "/favicon.ico"}
)


def outcome_for_status(status: int) -> str:
    """4xx is the caller's fault (invalid input); 5xx is the model server's (error)."""
    if status >= 500:
        return names.OUTCOME_ERROR
    if status >= 400:
        return names.OUTCOME_INVALID_INPUT
    return names.OUTCOME_SUCCESS


def is_observed(path: str, include: Collection[str] | None, exclude: Collection[str]) -> bool:
    """``include`` (exact paths) wins when given; otherwise everything not excluded is observed."""
    if include is not None:
        return path in include
    return path not in exclude
