"""Go-style durations (``30s``, ``2m``, ``1h30m``, ``250ms``) as users write them in manifests.

Kubernetes users know this notation from Argo Rollouts and Flagger, so the spec keeps it as a
string and the meaning is checked when the spec is read, with a message that says what is allowed.
"""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_HELP = "a duration such as 30s, 5m, 1h30m or 250ms (units: ms, s, m, h)"


def parse_duration(text: str) -> float:
    """Return the duration in seconds, or raise ValueError naming what is allowed."""
    cleaned = text.strip()
    if not cleaned:
        raise ValueError(f"empty duration; expected {DURATION_HELP}")
    position = 0
    total = 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(cleaned):
        raise ValueError(f"{text!r} is not a duration; expected {DURATION_HELP}")
    return total


def format_duration(seconds: float) -> str:
    """Render seconds the way a person reads them in status messages (``1m30s``)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"
