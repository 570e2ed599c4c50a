"""Hold shard Leases and run one kopf operator per shard held.

Every tick (a third of the Lease duration) the supervisor lists the Leases, asks `plan` what to do,
and does it: renew what it holds, start a shard's operator once its Lease is taken, stop it before
its Lease is released or when the Lease was lost. A shard whose Lease could not be renewed for two
thirds of its duration is stopped from this side too (`holds` turns False at once, so no new pass
starts), so that by the time another replica may take it over, nothing here acts on it any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from modelrollout.kube.api import ApiError
from modelrollout.sharding.leases import LeaseStore
from modelrollout.sharding.plan import (
    GENERATION_ANNOTATION,
    IDENTITY_ANNOTATION,
    SHARD_LABEL,
    LeaseView,
    World,
    plan,
    shard_lease_name,
)

logger = logging.getLogger("modelrollout.sharding")

#: run a shard: returns when `stop` is set (or fails)
RunShard = Callable[[int, asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class _Running:
    lease: dict[str, Any]
    renewed_at: float  # monotonic time of the last successful write of the Lease
    stop: asyncio.Event
    task: asyncio.Task[None]


@dataclass
class _Seen:
    resource_version: str
    since: float  # monotonic time this replica first saw this resourceVersion


@dataclass
class ShardSupervisor:
    store: LeaseStore
    shards: int
    run_shard: RunShard
    running: dict[int, _Running] = field(default_factory=dict)
    #: shards whose operator is being stopped (and then their Lease released), in the background so
    #: that a slow stop never holds up the renewal of the other shards' Leases
    stopping: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _member: dict[str, Any] | None = None
    _quitting: bool = False  # the replica is stopping: take nothing more
    _last_tick: float | None = None  # monotonic time of the last tick that reached the API server

    @property
    def tick_seconds(self) -> float:
        return self.store.seconds / 3

    @property
    def renew_deadline(self) -> float:
        return self.store.seconds * 2 / 3

    def holds(self, shard: int) -> bool:
        """May this replica act on shard `shard` now: it runs it and renewed its Lease lately.
        Asked from the shard's own thread (modelrollout.sharding.run): it only reads."""
        held = self.running.get(shard)
        return held is not None and time.monotonic() - held.renewed_at < self.renew_deadline

    def healthy(self) -> bool:
        """Alive for a liveness probe: a tick reached the API server lately (or none was due yet)."""
        if self._last_tick is None:
            return True
        return time.monotonic() - self._last_tick < 3 * self.store.seconds

    async def run(self, stopping: asyncio.Event) -> None:
        stopping_seen = asyncio.ensure_future(stopping.wait())
        stopping_seen.add_done_callback(lambda _: setattr(self, "_quitting", True))
        try:
            while not stopping.is_set():
                try:
                    await self.tick()
                    self._last_tick = time.monotonic()
                except ApiError as error:
                    logger.warning("shard Leases: API error, trying again: %s", error)
                await self._expire_unrenewed()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=self.tick_seconds)
        finally:
            stopping_seen.cancel()
            await self.stop_all()

    async def tick(self) -> None:
        self._member = await self.store.keep_member(self._member)
        shard_leases = await self.store.list("shard")
        members = await self.store.list("member")
        now = time.monotonic()
        views: dict[int, LeaseView | None] = dict.fromkeys(range(self.shards))
        bodies: dict[int, dict[str, Any]] = {}
        other_generations: list[str] = []
        for lease in shard_leases:
            view = self._view(lease, now)
            metadata = lease["metadata"]
            index = str((metadata.get("labels") or {}).get(SHARD_LABEL, ""))
            if view.generation != self.shards and view.alive():
                other_generations.append(str(metadata["name"]))
            if (
                index.isdigit()
                and int(index) < self.shards
                and metadata["name"] == shard_lease_name(self.store.prefix, int(index))
            ):
                views[int(index)] = view
                bodies[int(index)] = lease
        alive_members = [
            str((lease["metadata"].get("annotations") or {}).get(IDENTITY_ANNOTATION, ""))
            for lease in members
            if self._view(lease, now).alive()
        ]
        decided = plan(
            World(
                identity=self.store.identity,
                shards=self.shards,
                leases=views,
                members=[member for member in alive_members if member],
                other_generations=other_generations,
                running=tuple(self.running),
            )
        )
        if decided.waiting:
            logger.info("%s", decided.waiting)
        for shard in decided.lost:
            logger.warning("shard %d: its Lease is no longer ours; stopping its rollouts", shard)
            self._begin_stop(shard, release=False)
        for shard in decided.release:
            logger.info("shard %d: handing it over (fair share %d)", shard, decided.fair_share)
            self._begin_stop(shard, release=True, lease=bodies.get(shard))
        for shard in decided.renew:
            if shard not in self.stopping:
                await self._renew(shard, bodies[shard])
        for shard in decided.acquire:
            if shard in self.stopping or self._quitting:
                continue  # its last operator here has not stopped yet, or this replica is stopping
            taken = await self.store.take(shard, self.shards, bodies.get(shard))
            if taken is not None:
                self._start(shard, taken)

    def _view(self, lease: dict[str, Any], now: float) -> LeaseView:
        metadata, spec = lease["metadata"], lease.get("spec") or {}
        name, version = str(metadata["name"]), str(metadata.get("resourceVersion", ""))
        seen = self._seen.get(name)
        if seen is None or seen.resource_version != version:
            seen = self._seen[name] = _Seen(version, now)
        generation = str((metadata.get("annotations") or {}).get(GENERATION_ANNOTATION, ""))
        return LeaseView(
            holder=spec.get("holderIdentity") or None,
            duration_seconds=float(spec.get("leaseDurationSeconds") or 0),
            unchanged_for=now - seen.since,
            generation=int(generation) if generation.isdigit() else None,
        )

    async def _renew(self, shard: int, seen: dict[str, Any]) -> None:
        running = self.running.get(shard)
        if running is None:  # ours on the server, but not running here (a restart): run it
            renewed = await self.store.renew(seen)
            if renewed is not None:
                self._start(shard, renewed)
            return
        if running.task.done():  # the shard's operator ended on its own: give the shard up
            logger.warning("shard %d: its operator stopped; releasing it", shard)
            self._begin_stop(shard, release=True)
            return
        renewed = await self.store.renew(running.lease)
        if renewed is None:
            logger.warning("shard %d: lost its Lease on renewal; stopping its rollouts", shard)
            self._begin_stop(shard, release=False)
            return
        running.lease = renewed
        running.renewed_at = time.monotonic()

    def _start(self, shard: int, lease: dict[str, Any]) -> None:
        logger.info("shard %d of %d: taken; starting its rollouts", shard, self.shards)
        stop = asyncio.Event()
        task = asyncio.create_task(self.run_shard(shard, stop), name=f"shard-{shard}")
        self.running[shard] = _Running(lease, time.monotonic(), stop, task)

    def _begin_stop(self, shard: int, *, release: bool, lease: dict[str, Any] | None = None) -> None:
        """Stop acting on the shard now (`holds` is False from here on), and stop its operator, then
        release its Lease if asked, in the background."""
        running = self.running.pop(shard, None)
        if running is None or shard in self.stopping:
            return
        running.stop.set()
        held = running.lease if lease is None else lease

        async def stop() -> None:
            await asyncio.wait({running.task})
            if not running.task.cancelled() and running.task.exception() is not None:
                logger.error("shard %d: its operator failed", shard, exc_info=running.task.exception())
            if release:
                try:
                    await self.store.release(held)
                except ApiError as error:
                    logger.warning("shard %d: could not release its Lease (it expires): %s", shard, error)

        task = asyncio.create_task(stop(), name=f"stop-shard-{shard}")
        self.stopping[shard] = task
        task.add_done_callback(lambda _: self.stopping.pop(shard, None))

    async def _expire_unrenewed(self) -> None:
        """Stop what could not be renewed in time, before anyone else may take it."""
        now = time.monotonic()
        for shard, running in list(self.running.items()):
            if now - running.renewed_at >= self.renew_deadline:
                waited = now - running.renewed_at
                logger.warning("shard %d: Lease not renewed for %.0f s; stopping its rollouts", shard, waited)
                self._begin_stop(shard, release=False)

    async def stop_all(self) -> None:
        self._quitting = True
        for shard in list(self.running):
            self._begin_stop(shard, release=True)
        if self.stopping:
            await asyncio.wait(set(self.stopping.values()))
        with contextlib.suppress(ApiError):
            await self.store.leave(self._member)
