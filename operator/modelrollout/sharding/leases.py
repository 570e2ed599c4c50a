"""The shard and member Leases (coordination.k8s.io/v1) on the API server.

Every write carries the resourceVersion it was decided on, so two replicas racing for a free shard
cannot both win: the second gets 409 Conflict (or AlreadyExists on create) and takes nothing.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from modelrollout.kube.api import ApiError, KubeApi, Resource
from modelrollout.sharding.plan import (
    GENERATION_ANNOTATION,
    IDENTITY_ANNOTATION,
    LEASE_LABEL,
    SHARD_LABEL,
    member_lease_name,
    shard_lease_name,
)
from modelrollout.vocabulary.names import MANAGED_BY, MANAGED_BY_LABEL

LEASES = Resource("coordination.k8s.io", "v1", "leases")


def micro_time(moment: datetime) -> str:
    """The API's MicroTime: RFC 3339 with exactly six fractional digits."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseStore:
    """The Leases of one operator: `<prefix>-shard-<k>` and `<prefix>-member-<hash>` in one namespace."""

    def __init__(self, api: KubeApi, namespace: str, prefix: str, identity: str, seconds: int) -> None:
        self.api = api
        self.namespace = namespace
        self.prefix = prefix
        self.identity = identity
        self.seconds = seconds

    def _path_name(self, body: dict[str, Any]) -> str:
        return str(body["metadata"]["name"])

    async def list(self, kind: str) -> list[dict[str, Any]]:
        """Our Leases of one kind ("shard" or "member")."""
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY},{LEASE_LABEL}={kind}"
        return [
            lease
            for lease in await self.api.list(LEASES, self.namespace, selector)
            if str(lease.get("metadata", {}).get("name", "")).startswith(f"{self.prefix}-")
        ]

    def _new(self, name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
        now = micro_time(datetime.now(UTC))
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY, **labels},
                "annotations": annotations,
            },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.seconds,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }

    async def take(self, shard: int, shards: int, seen: dict[str, Any] | None) -> dict[str, Any] | None:
        """Hold shard `shard` of `shards`: create its Lease, or take over the one last `seen` (free or
        expired). None when another replica was faster."""
        name = shard_lease_name(self.prefix, shard)
        generation = {GENERATION_ANNOTATION: str(shards)}
        try:
            if seen is None:
                labels = {LEASE_LABEL: "shard", SHARD_LABEL: str(shard)}
                return await self.api.create(LEASES, self.namespace, self._new(name, labels, generation))
            now = micro_time(datetime.now(UTC))
            body = {
                **seen,
                "metadata": {
                    **seen["metadata"],
                    "annotations": {**(seen["metadata"].get("annotations") or {}), **generation},
                },
                "spec": {
                    **seen.get("spec", {}),
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": self.seconds,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": int(seen.get("spec", {}).get("leaseTransitions") or 0) + 1,
                },
            }
            return await self._put(body)
        except ApiError as error:
            if error.status in (404, 409):
                return None
            raise

    async def renew(self, held: dict[str, Any]) -> dict[str, Any] | None:
        """Renew a held Lease; None when it is no longer ours (changed or gone under us)."""
        body = {**held, "spec": {**held["spec"], "renewTime": micro_time(datetime.now(UTC))}}
        try:
            return await self._put(body)
        except ApiError as error:
            if error.status in (404, 409):
                return None
            raise

    async def release(self, held: dict[str, Any]) -> None:
        """Give a Lease up at once, so the next holder need not wait for it to expire (as client-go
        does on release: no holder, and a 1 s duration)."""
        body = {**held, "spec": {**held["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}}
        try:
            await self._put(body)
        except ApiError as error:
            if error.status not in (404, 409):
                raise

    async def keep_member(self, held: dict[str, Any] | None) -> dict[str, Any]:
        """Create or renew this replica's member Lease (its heartbeat as a member)."""
        if held is not None:
            renewed = await self.renew(held)
            if renewed is not None:
                return renewed
        name = member_lease_name(self.prefix, self.identity)
        existing = await self.api.get(LEASES, self.namespace, name)
        if existing is None:
            body = self._new(name, {LEASE_LABEL: "member"}, {IDENTITY_ANNOTATION: self.identity})
            try:
                return await self.api.create(LEASES, self.namespace, body)
            except ApiError as error:
                if error.status != 409:
                    raise
                existing = await self.api.get(LEASES, self.namespace, name)
                if existing is None:
                    raise
        body = {**existing, "spec": {**existing.get("spec", {}), "holderIdentity": self.identity}}
        renewed = await self.renew(body)
        return renewed if renewed is not None else existing

    async def leave(self, member: dict[str, Any] | None) -> None:
        if member is not None:
            with contextlib.suppress(ApiError):  # else it expires on its own
                await self.api.delete(LEASES, self.namespace, self._path_name(member))

    async def _put(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.api.request("PUT", LEASES.path(self.namespace, self._path_name(body)), body)
