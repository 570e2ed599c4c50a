"""Each message's delivery state in status, so that it is sent at most once (pure).

A message enters `status.notifications` as `Sending` in the very status write that records the Event
it tells of, and is sent only once that write is stored. So after any crash, status says what may
have been sent: an entry still `Sending` that this process did not send was being sent by one that
died, and is never sent again (its outcome is `Unknown`). An attempt that surely did not arrive
(the receiver refused the connection, or answered 429/5xx) is `Retrying` until its backoff is over;
then a status write marks it `Sending` again before the next attempt. Finished messages leave
`notifications` for `notified` (the last few outcomes).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from modelrollout.api.models import ModelRolloutStatus, NotificationOutcome, NotificationStatus

IN_FLIGHT_KEPT = 50  # a receiver down for long must not grow status without bound
OUTCOMES_KEPT = 10
FIRST_BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 300.0


class Result(enum.StrEnum):
    DELIVERED = "Delivered"
    RETRY = "Retry"  # surely not delivered: the connection was refused, or the receiver said 429/5xx
    FAILED = "Failed"  # refused for good (4xx), or the destination is gone
    UNKNOWN = "Unknown"  # may have arrived (timed out after sending): never sent again


@dataclass(frozen=True)
class Attempt:
    result: Result
    message: str = ""


@dataclass(frozen=True)
class Route:
    """A destination's name, what it is sent for, and how many attempts it allows."""

    name: str
    triggers: frozenset[str]
    max_attempts: int


def backoff(attempts: int) -> float:
    """Seconds before attempt `attempts + 1`: 2s, 4s, 8s, ... at most 5 minutes."""
    return float(min(FIRST_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS))


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _finish(
    status: ModelRolloutStatus,
    entry: NotificationStatus,
    outcome: Literal["Delivered", "Failed", "Unknown"],
    message: str,
    at: str,
) -> None:
    done = NotificationOutcome(
        id=entry.id,
        destination=entry.destination,
        trigger=entry.trigger,
        outcome=outcome,
        attempts=entry.attempts,
        message=message[:300],
        at=at,
    )
    status.notified = ([*(status.notified or []), done])[-OUTCOMES_KEPT:]


def settle(
    status: ModelRolloutStatus,
    outcomes: dict[str, Attempt],
    sent_here: set[str],
    routes: dict[str, Route],
    now: datetime,
) -> None:
    """Apply the outcomes of attempts this process made; an entry left `Sending` by another process is
    `Unknown` (never sent again). `sent_here`: ids this process sent or is sending."""
    at = _timestamp(now)
    kept: list[NotificationStatus] = []
    for entry in status.notifications or []:
        attempt = outcomes.get(entry.id)
        if entry.state == "Sending" and attempt is None:
            if entry.id not in sent_here:
                _finish(status, entry, "Unknown", "the operator stopped while sending it; not sent again", at)
                continue
            kept.append(entry)  # still in flight here
            continue
        if attempt is None:
            kept.append(entry)
            continue
        route = routes.get(entry.destination)
        if attempt.result == Result.RETRY and route is not None and entry.attempts < route.max_attempts:
            retry = _timestamp(now + timedelta(seconds=backoff(entry.attempts)))
            kept.append(
                entry.model_copy(update={"state": "Retrying", "next_attempt_at": retry, "last_error": attempt.message})
            )
            continue
        outcome: Literal["Delivered", "Failed", "Unknown"]
        if attempt.result == Result.DELIVERED:
            outcome = "Delivered"
        elif attempt.result == Result.UNKNOWN:
            outcome = "Unknown"
        else:
            outcome = "Failed"
        message = attempt.message
        if attempt.result == Result.RETRY:
            message = f"gave up after {entry.attempts} attempt(s): {message}"
        _finish(status, entry, outcome, message, at)
    status.notifications = kept or None


def due(status: ModelRolloutStatus, now: datetime) -> list[NotificationStatus]:
    """Mark the retries that are due `Sending` (their next attempt), and return them."""
    marked: list[NotificationStatus] = []
    entries = list(status.notifications or [])
    for position, entry in enumerate(entries):
        if entry.state == "Retrying" and entry.next_attempt_at is not None and _parse(entry.next_attempt_at) <= now:
            entries[position] = entry.model_copy(
                update={"state": "Sending", "attempts": entry.attempts + 1, "next_attempt_at": None}
            )
            marked.append(entries[position])
    if marked:
        status.notifications = entries
    return marked


def queue(
    status: ModelRolloutStatus, messages: Iterable[tuple[str, str, dict[str, str]]], routes: list[Route], now: datetime
) -> list[NotificationStatus]:
    """Add a `Sending` entry per (message, destination that wants its trigger); return them."""
    added: list[NotificationStatus] = []
    known = {entry.id for entry in status.notifications or []}
    for event, trigger, values in messages:
        for route in routes:
            if trigger not in route.triggers:
                continue
            entry_id = f"{event}/{route.name}"
            if entry_id in known:
                continue
            added.append(
                NotificationStatus(id=entry_id, destination=route.name, trigger=trigger, state="Sending", values=values)
            )
    if not added:
        return []
    entries = [*(status.notifications or []), *added]
    at = _timestamp(now)
    while len(entries) > IN_FLIGHT_KEPT:
        dropped = next((e for e in entries if e.state == "Retrying"), None)
        if dropped is None:
            break
        entries.remove(dropped)
        _finish(status, dropped, "Failed", f"dropped: more than {IN_FLIGHT_KEPT} messages waiting", at)
    status.notifications = entries
    return [entry for entry in added if entry in entries]


def next_retry_in(status: ModelRolloutStatus, now: datetime) -> float | None:
    """Seconds until the soonest retry falls due, if any."""
    times = [
        (_parse(entry.next_attempt_at) - now).total_seconds()
        for entry in status.notifications or []
        if entry.state == "Retrying" and entry.next_attempt_at is not None
    ]
    return max(min(times), 0.0) if times else None
