"""Which shards a replica holds: pure functions over what the Leases said, with no I/O.

Names: each shard k of N is held through the Lease ``<prefix>-shard-<k>``, whose annotation
``modelrollout.io/shards`` says N (the generation); each replica keeps its own member Lease
``<prefix>-member-<hash>`` renewed, so that every replica knows how many are alive and takes its fair
share, ceil(N / replicas alive), and no more.

Time: a Lease is judged by how long ago this replica saw it change (`LeaseView.unchanged_for`, from its
own monotonic clock), never by the holder's `renewTime`: two machines' clocks need not agree (as
client-go's leader election does).

Resharding (N changes): a replica never takes a shard while a Lease of another generation is alive,
so the old and the new partition never act at the same time; the new generation starts once the old
replicas are gone (a rolling update stops them) and their Leases are released or expired.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from modelrollout import GROUP

SHARD_LABEL = f"{GROUP}/shard"
SHARDS_LABEL = f"{GROUP}/shards"
#: on a shard Lease: how many shards its generation has
GENERATION_ANNOTATION = f"{GROUP}/shards"
#: on every Lease of ours: "shard" or "member"; a shard Lease also carries SHARD_LABEL
LEASE_LABEL = f"{GROUP}/lease"
#: on a member Lease: the replica's identity, which a Lease name cannot always hold
IDENTITY_ANNOTATION = f"{GROUP}/identity"
DEFAULT_LEASE_PREFIX = "modelrollout"
DEFAULT_LEASE_SECONDS = 30
MAX_SHARDS = 64


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard of a rollout: stable across processes, machines and Python versions (not `hash()`)."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_labels(namespace: str, name: str, shards: int) -> dict[str, str]:
    return {SHARD_LABEL: str(shard_of(namespace, name, shards)), SHARDS_LABEL: str(shards)}


def shard_selector(shard: int, shards: int) -> str:
    """The label selector of one shard's watches."""
    return f"{SHARD_LABEL}={shard},{SHARDS_LABEL}={shards}"


def unsharded_selector(shards: int) -> str:
    """What still needs labels: no shard label yet, or one of another generation (`!=` also matches
    objects without the label)."""
    return f"{SHARDS_LABEL}!={shards}"


def labels_of(body: Mapping[str, object]) -> Mapping[str, str]:
    metadata = body.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def shard_in_labels(labels: Mapping[str, str], shards: int) -> int | None:
    """The shard the labels name, if they are of this generation."""
    if labels.get(SHARDS_LABEL) != str(shards):
        return None
    # Only the spelling shard_labels writes: the selector `shard=1` does not match "01", so reading it
    # as shard 1 would leave the object in no shard's watch and out of the relabelling one too; and
    # str.isdigit() is true of "²", which int() refuses.
    value = labels.get(SHARD_LABEL, "")
    return int(value) if value in {str(shard) for shard in range(shards)} else None


def shard_lease_name(prefix: str, shard: int) -> str:
    return f"{prefix}-shard-{shard}"


def member_lease_name(prefix: str, identity: str) -> str:
    """A replica's member Lease: its identity (a pod name) hashed, so any identity makes a valid name."""
    return f"{prefix}-member-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class LeaseView:
    """A Lease as this replica last saw it."""

    holder: str | None
    duration_seconds: float
    #: seconds since this replica saw the Lease's resourceVersion change (or first saw it)
    unchanged_for: float
    generation: int | None = None

    def alive(self) -> bool:
        return bool(self.holder) and self.unchanged_for < self.duration_seconds


@dataclass(frozen=True)
class Plan:
    acquire: tuple[int, ...] = ()
    renew: tuple[int, ...] = ()
    release: tuple[int, ...] = ()
    #: held here, but the Lease says another holder (or none): stop acting on it now
    lost: tuple[int, ...] = ()
    waiting: str = ""  # why nothing is acquired, for the log
    fair_share: int = 0


@dataclass(frozen=True)
class World:
    """What the Leases said, from one replica's point of view."""

    identity: str
    shards: int
    #: shard index -> its Lease (None: no Lease yet)
    leases: Mapping[int, LeaseView | None]
    #: live members' identities (this replica's own included or not)
    members: Iterable[str] = ()
    #: every shard Lease of another generation that is still alive, by name
    other_generations: Iterable[str] = ()
    #: shards this replica believes it holds (its kopf operators run)
    running: Iterable[int] = field(default_factory=tuple)


def plan(world: World) -> Plan:
    """Renew what is held; release what exceeds the fair share when another replica is short and no
    shard is free; acquire free shards up to the fair share, unless another generation is alive."""
    me = world.identity
    running = set(world.running)
    held: list[int] = []
    lost: list[int] = []
    free: list[int] = []
    count_by_holder: dict[str, int] = {}
    for shard in range(world.shards):
        lease = world.leases.get(shard)
        mine = lease is not None and lease.holder == me and lease.generation == world.shards
        if mine:
            held.append(shard)
        elif shard in running:
            lost.append(shard)
        if lease is not None and lease.alive() and not mine:
            count_by_holder[lease.holder or ""] = count_by_holder.get(lease.holder or "", 0) + 1
        elif (lease is None or not lease.alive()) and not mine:
            free.append(shard)
    # A held Lease that has expired unrenewed is lost too: someone may have taken it meanwhile.
    expired = [shard for shard in held if (lease := world.leases.get(shard)) is not None and not lease.alive()]
    held = [shard for shard in held if shard not in expired]
    lost = sorted({*lost, *(shard for shard in expired if shard in running)})
    free = sorted({*free, *expired})
    members = set(world.members) | {me}
    fair = math.ceil(world.shards / len(members))
    release: list[int] = []
    short = any(count_by_holder.get(member, 0) < fair for member in members - {me})
    if len(held) > fair and short and not free:
        release = held[fair:][: len(held) - fair]
    others = sorted(world.other_generations)
    acquire: list[int] = []
    waiting = ""
    if others:
        waiting = f"waiting for another generation's shard Lease(s) to end: {', '.join(others)}"
    elif len(held) < fair:
        start = int(hashlib.sha256(me.encode()).hexdigest(), 16) % world.shards
        ordered = sorted(free, key=lambda shard: (shard - start) % world.shards)
        acquire = ordered[: fair - len(held)]
    renew = tuple(shard for shard in held if shard not in release)
    return Plan(tuple(acquire), renew, tuple(release), tuple(lost), waiting, fair)


def shard_labels_in(metadata: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """The shard labels an object carries, to copy onto what is made for it."""
    labels = metadata.get("labels")
    if not isinstance(labels, Mapping):
        return ()
    return tuple((key, str(labels[key])) for key in (SHARD_LABEL, SHARDS_LABEL) if key in labels)
