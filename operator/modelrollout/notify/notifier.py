"""Deliver messages off the rollout's pass: each attempt is its own task, so a slow or dead receiver
never holds a rollout up. What each attempt gave is kept in memory until the rollout's next pass
writes it into status (`ledger.settle`); that pass is asked for at once (`wake`).

Credentials (a URL or header from a Secret) are read just before each attempt and never logged, nor
put in status or Events: messages name a destination, never its URL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from modelrollout.api.models import (
    ModelRolloutSpec,
    ModelRolloutStatus,
    NotificationStatus,
    NotificationWebhook,
    PendingEvent,
    WebHeader,
)
from modelrollout.kube.api import CONFIGMAPS, SECRETS, ApiError, KubeApi
from modelrollout.notify.config import CLUSTER_CONFIG, ClusterConfig, Destination, parse_cluster_config
from modelrollout.notify.ledger import Attempt, Result, due, queue, settle
from modelrollout.notify.templates import render
from modelrollout.notify.triggers import messages_for

logger = logging.getLogger(__name__)

Key = tuple[str, str]
CLUSTER_CONFIG_TTL_SECONDS = 30.0


@dataclass(frozen=True)
class Sending:
    """What a pass's status write carries for the notifier: entries to send once it is stored, the
    destinations they go to, and the outcomes it records (to forget once stored)."""

    entries: list[NotificationStatus]
    destinations: list[Destination]
    settled: list[str]


class SecretMissing(Exception):
    """A secret part of a destination cannot be read (the message names the Secret and key only)."""


POST_ROLLOUT_PREFIX = "webhook/"


def spec_destinations(spec: ModelRolloutSpec | None, namespace: str) -> list[Destination]:
    """The rollout's own destinations, and its post-rollout webhooks (told once of a promotion or a
    rollback, with Flagger's payload, at most once as every message)."""
    if spec is None:
        return []
    found = [Destination(w.name, w, namespace) for w in (spec.notifications.webhooks if spec.notifications else [])]
    for gate in spec.webhooks:
        if gate.type != "post-rollout":
            continue
        body = json.dumps(
            {
                "name": "{{rollout}}",
                "namespace": "{{namespace}}",
                "phase": "{{phase}}",
                "type": "post-rollout",
                "metadata": {key: value.replace("{{", "{ {") for key, value in gate.metadata.items()},
                "message": "{{message}}",
            }
        )
        webhook = NotificationWebhook(
            name=gate.name,
            url=gate.url,
            headers=gate.headers,
            body=body,
            triggers=["on-rollout-promoted", "on-rollout-rolled-back"],
            timeout_seconds=gate.timeout_seconds,
        )
        found.append(Destination(POST_ROLLOUT_PREFIX + gate.name, webhook, namespace))
    return found


class Notifier:
    def __init__(self, api: KubeApi, operator_namespace: str | None, wake: Callable[[str, str], None]) -> None:
        self.api = api
        self.operator_namespace = operator_namespace
        self.wake = wake
        self._sent: dict[Key, set[str]] = {}
        self._outcomes: dict[Key, dict[str, Attempt]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._cluster: ClusterConfig = ClusterConfig([], [])
        self._cluster_read_at: float | None = None
        self._problems_told: set[str] = set()
        self._session: aiohttp.ClientSession | None = None

    # --- where messages go -------------------------------------------------------------------------

    async def destinations(self, spec: ModelRolloutSpec | None, namespace: str) -> list[Destination]:
        own = spec_destinations(spec, namespace)
        if spec is not None and spec.notifications is not None and not spec.notifications.cluster_defaults:
            return own
        return own + (await self.cluster_config()).destinations

    async def cluster_config(self) -> ClusterConfig:
        """The operator-wide destinations, read at most every 30 s (none without an operator namespace)."""
        namespace = self.operator_namespace
        if namespace is None:
            return self._cluster
        now = time.monotonic()
        if self._cluster_read_at is not None and now - self._cluster_read_at < CLUSTER_CONFIG_TTL_SECONDS:
            return self._cluster
        self._cluster_read_at = now
        try:
            found = await self.api.get(CONFIGMAPS, namespace, CLUSTER_CONFIG)
        except ApiError as error:
            self._tell(f"reading ConfigMap {namespace}/{CLUSTER_CONFIG}: {error.status} {error.reason}")
            return self._cluster  # keep what was read last
        self._cluster = parse_cluster_config((found or {}).get("data"), namespace)
        for problem in self._cluster.problems:
            self._tell(problem)
        return self._cluster

    def _tell(self, problem: str) -> None:
        if problem not in self._problems_told:
            self._problems_told.add(problem)
            logger.warning("notifications: %s; that destination is left out", problem)

    # --- what the passes ask -----------------------------------------------------------------------

    async def prepare(
        self,
        key: Key,
        spec: ModelRolloutSpec | None,
        status: ModelRolloutStatus,
        new: list[PendingEvent],
        now: datetime,
    ) -> Sending:
        """Put into `status` (in place) the outcomes of attempts made here, the retries now due and a
        `Sending` entry per message this pass's Events make; what to send once that status is stored."""
        destinations = await self.destinations(spec, key[0]) if spec is not None else []
        routes = {destination.name: destination.route for destination in destinations}
        outcomes = dict(self._outcomes.get(key, {}))
        if not status.notifications and not outcomes and not (new and routes):
            return Sending([], [], [])
        settle(status, outcomes, self.sent_here(key), routes, now)
        retries = due(status, now)
        messages = messages_for(new, status, spec, key[1], key[0])
        added = queue(status, ((m.event, m.trigger, m.values) for m in messages), list(routes.values()), now)
        return Sending(retries + added, destinations, list(outcomes))

    def stored(self, key: Key, sending: Sending) -> None:
        """The status `prepare` changed is stored: forget the outcomes it holds now, and send."""
        sent = self._sent.get(key)
        if sent is not None:  # what has settled is in status now: only what is in flight is remembered
            sent.difference_update(sending.settled)
            if not sent:
                self._sent.pop(key, None)
        kept = self._outcomes.get(key)
        if kept is not None:
            for entry_id in sending.settled:
                kept.pop(entry_id, None)
            if not kept:
                self._outcomes.pop(key, None)
        if sending.entries:
            self.send(key, sending.entries, sending.destinations)

    def sent_here(self, key: Key) -> set[str]:
        return set(self._sent.get(key, set()))

    def send(self, key: Key, entries: list[NotificationStatus], destinations: list[Destination]) -> None:
        """Start an attempt for each entry (its `Sending` state is stored already)."""
        by_name = {destination.name: destination for destination in destinations}
        for entry in entries:
            self._sent.setdefault(key, set()).add(entry.id)
            task = asyncio.get_running_loop().create_task(self._attempt(key, entry, by_name.get(entry.destination)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def forget(self, key: Key) -> None:
        self._sent.pop(key, None)
        self._outcomes.pop(key, None)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # --- one attempt -------------------------------------------------------------------------------

    async def _attempt(self, key: Key, entry: NotificationStatus, destination: Destination | None) -> None:
        if destination is None:
            attempt = Attempt(Result.FAILED, f"destination {entry.destination!r} is no longer configured")
        else:
            try:
                attempt = await self._deliver(entry, destination)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a surprise must end as an outcome, not a lost task
                logger.exception("notification %s to %s failed unexpectedly", entry.id, entry.destination)
                attempt = Attempt(Result.UNKNOWN, f"{type(error).__name__}")
        log = logger.info if attempt.result == Result.DELIVERED else logger.warning
        log(
            "%s/%s notification %s (%s) to %s: %s%s",
            key[0],
            key[1],
            entry.id,
            entry.trigger,
            entry.destination,
            attempt.result.value,
            f" ({attempt.message})" if attempt.message else "",
        )
        self._outcomes.setdefault(key, {})[entry.id] = attempt
        self.wake(*key)

    async def _deliver(self, entry: NotificationStatus, destination: Destination) -> Attempt:
        webhook = destination.webhook
        try:
            url = webhook.url
            if url is None:
                url = await self._secret(destination, webhook.url_from, "urlFrom")
            headers = await self._headers(destination, webhook.headers)
        except SecretMissing as missing:
            return Attempt(Result.RETRY, str(missing))  # a Secret may be created late: retried
        assert url is not None
        try:
            body = render(webhook.template, webhook.body, entry.values)
        except ValueError as error:
            return Attempt(Result.FAILED, f"the body is not a JSON object: {error}")
        return await post(self._client(), url, body, headers, webhook.timeout_seconds)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _secret(self, destination: Destination, source: Any, field: str) -> str:
        ref = source.secret_key_ref
        where = f"Secret {destination.secrets_namespace}/{ref.name} key {ref.key!r} ({destination.name} {field})"
        try:
            secret = await self.api.get(SECRETS, destination.secrets_namespace, ref.name)
        except ApiError as error:
            raise SecretMissing(f"reading {where}: {error.status} {error.reason}") from None
        if secret is None:
            raise SecretMissing(f"{where}: the Secret is not found")
        raw = (secret.get("data") or {}).get(ref.key)
        if raw is None:
            raise SecretMissing(f"{where}: the Secret has no such key")
        try:
            return base64.b64decode(raw).decode().strip()
        except ValueError:
            raise SecretMissing(f"{where}: the value is not UTF-8 text") from None

    async def _headers(self, destination: Destination, headers: list[WebHeader]) -> dict[str, str]:
        resolved: dict[str, str] = {}
        for header in headers:
            if header.value is not None:
                resolved[header.name] = header.value
            else:
                assert header.value_from is not None
                resolved[header.name] = await self._secret(destination, header.value_from, f"header {header.name}")
        return resolved


async def post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str], timeout: float
) -> Attempt:
    """POST a JSON body. What may have arrived is never retried: only a refused connection and a 429 or
    5xx answer (the receiver said it did not take it) are. Messages never hold the URL (it may be secret)."""
    try:
        async with session.post(
            url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as answer:
            if 200 <= answer.status < 300:
                return Attempt(Result.DELIVERED, f"HTTP {answer.status}")
            if answer.status == 429 or answer.status >= 500:
                return Attempt(Result.RETRY, f"HTTP {answer.status}")
            return Attempt(Result.FAILED, f"HTTP {answer.status}: refused")
    except aiohttp.ConnectionTimeoutError:
        return Attempt(Result.RETRY, f"cannot connect within {timeout:g}s")
    except aiohttp.ClientConnectorError as error:
        return Attempt(Result.RETRY, f"cannot connect: {error.os_error.strerror or type(error.os_error).__name__}")
    except TimeoutError:
        return Attempt(Result.UNKNOWN, f"no answer within {timeout:g}s; it may have arrived, so it is not sent again")
    except aiohttp.ClientError as error:
        return Attempt(Result.UNKNOWN, f"{type(error).__name__}; it may have arrived, so it is not sent again")
