"""What the rollout page shows of its webhook gates (`status.gates`) and its notifications
(`status.notifications`, `status.notified`), from the raw wire status.

Pure, as view.py. Only names, triggers, states and short answers go out: never a URL, a header or
a template's values (a URL or a header may hold a token; `docs/notifications.md`). The operator's
own messages hold none, but a gate's answer carries up to 200 characters of its body, which is the
gate service's to word: anything that looks like a URL or a credential in it is masked here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

NOTIFIED_SHOWN = 10
MESSAGE_CHARS = 300
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[^\s,;]+")
_KEY_VALUE = re.compile(
    r"(?i)\b(token|api[-_]?key|password|secret|authorization)(\s*[:=]\s*)(?!(?:bearer|basic)\b)[^\s,;]+"
)


def masked(text: object) -> str:
    """A message for the page: URLs and what looks like a credential masked, at most 300 characters."""
    words = _URL.sub("<url>", str(text or ""))
    words = _SCHEME.sub(r"\1 <hidden>", words)
    words = _KEY_VALUE.sub(r"\1\2<hidden>", words)
    return words[:MESSAGE_CHARS]


def _when(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _entries(status: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    found = status.get(key)
    return [entry for entry in found if isinstance(entry, Mapping)] if isinstance(found, list) else []


def gates(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The webhook gates of the candidate in flight (an earlier candidate's are history), waiting
    ones first: which gate, what it gates, open or waiting and why, the last answer.

    A `rollback` gate neither opens nor waits: it is asked all along (`watching`) and its answer
    rolls back when it is a yes."""
    candidate = status.get("candidateRevision")
    if not candidate:
        return []
    shown = []
    for entry in _entries(status, "gates"):
        if entry.get("revision") != candidate:
            continue
        kind = str(entry.get("type") or "")
        opened = entry.get("state") == "Open"
        answer = masked(entry.get("message"))
        state = "watching" if kind == "rollback" else "open" if opened else "waiting"
        shown.append(
            {
                "name": str(entry.get("name") or ""),
                "type": kind,
                "scope": str(entry.get("scope") or ""),
                "state": state,
                "why": (answer or "not asked yet") if state == "waiting" else None,
                "lastAnswer": answer or None,
                "attempts": int(entry.get("attempts") or 0),
                "checkedAt": _when(entry.get("checkedAt")),
            }
        )
    order = {"waiting": 0, "watching": 1, "open": 2}
    return sorted(shown, key=lambda gate: order[gate["state"]])


def notifications(status: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The messages still being sent (`pending`) and how the last ones ended (`last`, newest first):
    destination name, trigger, outcome, attempts and the last answer; no URL, header or values."""
    pending = [
        {
            "destination": str(entry.get("destination") or ""),
            "trigger": str(entry.get("trigger") or ""),
            "state": str(entry.get("state") or ""),
            "attempts": int(entry.get("attempts") or 0),
            "nextAttemptAt": _when(entry.get("nextAttemptAt")),
            "lastError": masked(entry.get("lastError")) or None,
        }
        for entry in _entries(status, "notifications")
    ]
    last = [
        {
            "destination": str(entry.get("destination") or ""),
            "trigger": str(entry.get("trigger") or ""),
            "outcome": str(entry.get("outcome") or ""),
            "attempts": int(entry.get("attempts") or 0),
            "message": masked(entry.get("message")),
            "at": _when(entry.get("at")),
        }
        for entry in _entries(status, "notified")
    ]
    last.sort(key=lambda entry: -float(entry["at"] or 0.0))
    return {"pending": pending, "last": last[:NOTIFIED_SHOWN]}
