"""Which shard and which replica own a rollout, for `modelrollout status`: read from the rollout's
shard labels and its shard's Lease, as a person (not a replica) would see them.

The replicas judge a Lease by their own monotonic clocks (`plan.LeaseView`); a person asking once
has only the Lease's `renewTime` and `leaseDurationSeconds` against this machine's clock, which
need not agree with the holder's. So `alive` here is a reading, said with that caveat, never a
decision anything acts on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from modelrollout.kube.api import ApiError, Resource
from modelrollout.sharding.plan import (
    GENERATION_ANNOTATION,
    LEASE_LABEL,
    SHARD_LABEL,
    SHARDS_LABEL,
    labels_of,
)

LEASES = Resource("coordination.k8s.io", "v1", "leases")


class LeaseLister(Protocol):
    """What the lookup needs of `KubeApi`."""

    async def list(
        self, resource: Resource, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Owner:
    """A sharded rollout's owner as far as could be found; `problem` says why it is unknown."""

    shard: int | None
    shards: int | None
    #: the shard Lease read, as namespace/name
    lease: str | None = None
    holder: str | None = None
    renewed: datetime | None = None
    duration_seconds: int | None = None
    #: the Lease's generation (its `modelrollout.io/shards` annotation)
    generation: int | None = None
    #: seconds from now until the Lease expires by this machine's clock (negative: expired that long ago)
    expires_in: float | None = None
    problem: str = ""

    @property
    def alive(self) -> bool | None:
        """Held and not expired by this machine's clock; None when that cannot be told."""
        if self.problem or self.lease is None:
            return None
        if not self.holder:
            return False
        return self.expires_in is not None and self.expires_in > 0

    def as_json(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "shards": self.shards,
            "lease": self.lease,
            "holder": self.holder,
            "alive": self.alive,
            "renewTime": _timestamp(self.renewed),
            "leaseDurationSeconds": self.duration_seconds,
            "leaseGeneration": self.generation,
            "expiresInSeconds": None if self.expires_in is None else round(self.expires_in, 1),
            "problem": self.problem or None,
        }


def parse_shard(labels: Mapping[str, str]) -> tuple[int, int] | None:
    """(shard, shards) from shard labels; None when they do not name a shard k of N."""
    shard, shards = labels.get(SHARD_LABEL, ""), labels.get(SHARDS_LABEL, "")
    if shard.isdigit() and shards.isdigit() and int(shard) < int(shards):
        return int(shard), int(shards)
    return None


def lease_selector(shard: int) -> str:
    """The shard Leases of shard index `shard`, of any generation and any operator install."""
    return f"{LEASE_LABEL}=shard,{SHARD_LABEL}={shard}"


async def find_owner(
    api: LeaseLister, rollout: Mapping[str, Any], operator_namespace: str | None, now: datetime
) -> Owner | None:
    """The owner of a sharded rollout (None for an unsharded one: no shard label): its shard Lease is
    looked for in `operator_namespace`, or in every namespace when that is not given. A refusal to
    list Leases (a person's RBAC need not allow it) is said in `problem`, not raised."""
    labels = labels_of(rollout)
    if SHARD_LABEL not in labels:
        return None
    parsed = parse_shard(labels)
    if parsed is None:
        return Owner(
            None,
            None,
            problem=f"owner unknown: the labels name no shard k of N "
            f"({SHARD_LABEL}={labels.get(SHARD_LABEL)!r}, {SHARDS_LABEL}={labels.get(SHARDS_LABEL)!r})",
        )
    shard, shards = parsed
    try:
        leases = await api.list(LEASES, operator_namespace, label_selector=lease_selector(shard))
    except ApiError as error:
        reason = f"{error.status} {error.reason}: {error.message}"
        return Owner(shard, shards, problem=f"owner unknown: cannot list leases ({reason})")
    return owner_from_leases(shard, shards, leases, operator_namespace, now)


def owner_from_leases(
    shard: int, shards: int, leases: list[dict[str, Any]], operator_namespace: str | None, now: datetime
) -> Owner:
    """Pure: the owner, from the Leases labelled for this shard index (of any generation)."""
    where = f"namespace {operator_namespace}" if operator_namespace else "any namespace"
    if not leases:
        return Owner(shard, shards, problem=f"owner unknown: no shard Lease ({lease_selector(shard)}) in {where}")
    same = [lease for lease in leases if _generation(lease) == shards]
    if not same:
        others = sorted({str(_generation(lease)) for lease in leases})
        return Owner(
            shard,
            shards,
            problem=f"owner unknown: the rollout is labelled for {shards} shards, but the shard Leases are of "
            f"{', '.join(others)} shards (resharding: it is relabelled once the new generation runs)",
        )
    # Two operator installs (two prefixes) could each hold a Lease for this shard: show the freshest.
    lease = max(same, key=lambda item: _renewed(item) or datetime.min.replace(tzinfo=UTC))
    metadata = lease.get("metadata") or {}
    spec = lease.get("spec") or {}
    renewed = _renewed(lease)
    duration = spec.get("leaseDurationSeconds")
    expires_in = None
    if renewed is not None and isinstance(duration, int):
        expires_in = (renewed - now).total_seconds() + duration
    return Owner(
        shard,
        shards,
        lease=f"{metadata.get('namespace')}/{metadata.get('name')}",
        holder=spec.get("holderIdentity") or None,
        renewed=renewed,
        duration_seconds=duration if isinstance(duration, int) else None,
        generation=shards,
        expires_in=expires_in,
    )


def describe(owner: Owner) -> str:
    """The owner in words, short enough for one status row (the Lease's name is in `-o json` and
    `kubectl get leases`). "by this machine's clock": the holder's clock may differ (docs/sharding.md)."""
    which = f"shard {owner.shard} of {owner.shards}" if owner.shard is not None else "sharded"
    if owner.problem:
        return f"{which}, {owner.problem}"
    if not owner.holder:
        return f"{which}: no holder (its Lease was released); a replica takes it up next"
    if owner.expires_in is None:
        return f"{which}: {owner.holder}, alive or not unknown (its Lease has no renewTime or duration)"
    if owner.expires_in > 0:
        ago = (owner.duration_seconds or 0) - owner.expires_in
        return (
            f"{which}: {owner.holder}, alive (renewed {_seconds(ago)} ago, lease {owner.duration_seconds}s; "
            "by this machine's clock)"
        )
    return (
        f"{which}: last held by {owner.holder}, expired {_seconds(-owner.expires_in)} ago by this machine's "
        "clock; another replica takes it over"
    )


def _generation(lease: Mapping[str, Any]) -> int | None:
    annotations = (lease.get("metadata") or {}).get("annotations") or {}
    value = str(annotations.get(GENERATION_ANNOTATION, ""))
    return int(value) if value.isdigit() else None


def _renewed(lease: Mapping[str, Any]) -> datetime | None:
    spec = lease.get("spec") or {}
    text = spec.get("renewTime") or spec.get("acquireTime")
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    # MicroTime is UTC; a hand-written Lease without an offset is read so rather than refused.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _timestamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _seconds(value: float) -> str:
    return f"{value:.0f}s" if value < 120 else f"{value / 60:.0f}m"
