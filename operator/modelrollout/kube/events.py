"""Kubernetes Events that survive an operator restart and API faults.

kopf posts Events from an in-memory queue after the handler returns, and drops one whose POST
fails: an operator killed between a status write and its Events, or an API server answering 500,
loses them for good while status says the step happened. Here every Event is first written into
status (`status.pendingEvents`, in the same patch as the status that explains it) under a name
fixed by the pass's time and its position in the pass, then posted. Posting again is harmless: the
API server answers 409 for a name it has, which counts as delivered. Entries leave status with
the next status write after they are delivered, so confirming costs no write of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from modelrollout.api.models import PendingEvent
from modelrollout.engine.types import EventRecord
from modelrollout.kube.api import ApiError, KubeApi, Resource

logger = logging.getLogger(__name__)

EVENTS = Resource("", "v1", "events")
# Bounds status under a long Event outage: the oldest undelivered Events give way to the newest.
PENDING_KEPT = 30
MESSAGE_LIMIT = 1000  # what kubectl describe shows comfortably; the API server allows more
COMPONENT = "modelrollout"


def pending_event(at: str, index: int, record: EventRecord, rollout: str) -> PendingEvent:
    # client-go names Events `<object>.<hex nanoseconds>`: names then sort in the order the Events
    # happened, which is the order `kubectl get events` lists them in (the API lists by name).
    # The pass's time and the Event's position in it fix the name, so a repost finds it again.
    milliseconds = round(datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() * 1000)
    nanoseconds = milliseconds * 1_000_000 + index
    return PendingEvent(
        name=f"{rollout[:200]}.{nanoseconds:x}",
        type="Warning" if record.type == "Warning" else "Normal",
        reason=record.reason,
        message=record.message[:MESSAGE_LIMIT],
        at=at,
    )


def _seconds(at: str) -> str:
    """RFC 3339 with whole seconds, as core/v1 Event timestamps are written."""
    return at.split(".", 1)[0].rstrip("Z") + "Z"


def event_body(body: Mapping[str, Any], event: PendingEvent) -> dict[str, Any]:
    metadata = body["metadata"]
    when = _seconds(event.at)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event.name, "namespace": metadata["namespace"]},
        "involvedObject": {
            "apiVersion": body.get("apiVersion", ""),
            "kind": body.get("kind", ""),
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata.get("uid", ""),
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": when,
        "lastTimestamp": when,
        "count": 1,
    }


class EventLedger:
    """Which pending Events of each rollout this process has seen delivered (memory only: after a
    restart every pending Event is posted again, and the API server's 409 says which were)."""

    def __init__(self) -> None:
        self._delivered: dict[tuple[str, str], set[str]] = {}

    def pending(
        self, key: tuple[str, str], stored: list[PendingEvent] | None, new: list[PendingEvent]
    ) -> list[PendingEvent]:
        """The pending list to write with this pass's status: undelivered old ones, then the new ones."""
        delivered = self._delivered.get(key, set())
        kept = [event for event in stored or [] if event.name not in delivered]
        return (kept + new)[-PENDING_KEPT:]

    async def post(self, api: KubeApi, body: Mapping[str, Any], pending: list[PendingEvent]) -> bool:
        """Post what is not known to be delivered, in order; False if one could not be posted now."""
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        delivered = self._delivered.setdefault(key, set())
        # Only names still pending are worth remembering: this bounds the memory per rollout.
        delivered.intersection_update(event.name for event in pending)
        for event in pending:
            if event.name in delivered:
                continue
            try:
                await api.create(EVENTS, metadata["namespace"], event_body(body, event))
            except ApiError as error:
                if error.status != 409:
                    logger.warning(
                        "%s/%s: Event %s (%s) not posted yet, will retry: %s",
                        key[0],
                        key[1],
                        event.name,
                        event.reason,
                        error,
                    )
                    return False
            delivered.add(event.name)
        return True

    def forget(self, key: tuple[str, str]) -> None:
        self._delivered.pop(key, None)
