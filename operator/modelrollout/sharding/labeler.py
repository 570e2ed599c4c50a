"""Give every ModelRollout, and what the operator made for it, the shard labels of this generation.

Run by the replica that holds shard 0, beside that shard's operator. It lists and watches only what
still needs labels (`unsharded_selector`: no label, or another generation's), so on a settled cluster
its watches carry nothing. The Deployments and Services that need labels are listed, labelled and
watched on their own (one list per kind, not one per rollout: a label-selected list costs the API
server a scan of the namespace, so a list per rollout made labelling 10,000 new rollouts quadratic),
and before the rollouts: when a shard's operator first sees a listed rollout, it sees its children
too. A rollout seen later by the watch is listed for children only when an operator has acted on it
(it has a status); a new one has none, and a straggler is labelled by the children's watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from modelrollout.kube.api import DEPLOYMENTS, MODELROLLOUTS, SERVICES, ApiError, KubeApi, Resource
from modelrollout.sharding.plan import labels_of, shard_labels, unsharded_selector
from modelrollout.vocabulary.names import MANAGED_BY, MANAGED_BY_LABEL, ROLLOUT_LABEL, label_selector, selector_for

logger = logging.getLogger("modelrollout.sharding")

RETRY_SECONDS = 5.0
CHILDREN = (DEPLOYMENTS, SERVICES)
Labeller = Callable[[dict[str, Any]], Awaitable[object]]


def children_selector(shards: int) -> str:
    """What the operator made for a rollout and that still lacks this generation's labels."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{ROLLOUT_LABEL},{unsharded_selector(shards)}"


async def _patch_labels(api: KubeApi, resource: Resource, body: dict[str, Any], wanted: dict[str, str]) -> bool:
    """Merge-patch `wanted` into the object's labels unless it has them; False when it went meanwhile."""
    if all(labels_of(body).get(key) == value for key, value in wanted.items()):
        return True
    metadata = body["metadata"]
    try:
        await api.merge_patch(resource, metadata.get("namespace"), metadata["name"], {"metadata": {"labels": wanted}})
    except ApiError as error:
        if error.status == 404:
            return False
        raise
    return True


async def label_child(api: KubeApi, resource: Resource, child: dict[str, Any], shards: int) -> None:
    """Label a Deployment or Service with the shard of the rollout it was made for."""
    metadata = child.get("metadata") or {}
    rollout = labels_of(child).get(ROLLOUT_LABEL)
    if rollout:
        await _patch_labels(api, resource, child, shard_labels(str(metadata.get("namespace", "")), rollout, shards))


async def label_rollout(api: KubeApi, rollout: dict[str, Any], shards: int, with_children: bool = True) -> bool:
    """Label one rollout (and first, with `with_children`, its children); False when it went meanwhile."""
    metadata = rollout.get("metadata") or {}
    namespace, name = str(metadata.get("namespace", "")), str(metadata.get("name", ""))
    if with_children:
        children = label_selector({MANAGED_BY_LABEL: MANAGED_BY, **selector_for(name)})
        for resource in CHILDREN:
            for child in await api.list(resource, namespace, children):
                await label_child(api, resource, child, shards)
    return await _patch_labels(api, MODELROLLOUTS, rollout, shard_labels(namespace, name, shards))


async def label_seen_rollout(api: KubeApi, rollout: dict[str, Any], shards: int) -> bool:
    """Label a rollout the watch shows; one with a status was acted on, so it may have children: those first."""
    return await label_rollout(api, rollout, shards, with_children=bool(rollout.get("status")))


async def label_all(api: KubeApi, namespace: str | None, shards: int, stop: asyncio.Event) -> None:
    """List, label and watch what needs labels in one namespace (None: all), until `stop`."""
    rollouts_query = {"labelSelector": unsharded_selector(shards)}
    children_query = {"labelSelector": children_selector(shards)}

    def follow(resource: Resource, version: str, query: dict[str, str], label: Labeller) -> asyncio.Future[None]:
        return asyncio.ensure_future(_follow(api, resource, namespace, version, query, label))

    while not stop.is_set():
        try:
            watches: list[asyncio.Future[Any]] = []
            ended: list[asyncio.Future[Any]] = []
            try:
                for resource in CHILDREN:
                    listing = await api.request("GET", resource.path(namespace), query=children_query, timed=False)
                    for child in listing.get("items", []):
                        await label_child(api, resource, child, shards)
                    labelling = functools.partial(label_child, api, resource, shards=shards)
                    watches.append(follow(resource, _version_of(listing), children_query, labelling))
                listing = await api.request("GET", MODELROLLOUTS.path(namespace), query=rollouts_query, timed=False)
                for rollout in listing.get("items", []):
                    await label_rollout(api, rollout, shards, with_children=False)  # listed and labelled above
                seen = functools.partial(label_seen_rollout, api, shards=shards)
                watches.append(follow(MODELROLLOUTS, _version_of(listing), rollouts_query, seen))
                stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait([*watches, stopping], return_when=asyncio.FIRST_COMPLETED)
                    ended = [watch for watch in watches if watch.done()]
                finally:
                    stopping.cancel()
            finally:
                for watch in watches:
                    watch.cancel()
            # A watch that ended (the server's timeout, 410 Gone) means list again; one that failed, a retry.
            for watch in ended:
                if not watch.cancelled() and watch.exception() is not None:
                    raise watch.exception()  # type: ignore[misc]
        except ApiError as error:
            logger.warning("shard labels: API error, listing again in %.0f s: %s", RETRY_SECONDS, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=RETRY_SECONDS)


def _version_of(listing: dict[str, Any]) -> str:
    return str(listing.get("metadata", {}).get("resourceVersion", ""))


async def _follow(
    api: KubeApi,
    resource: Resource,
    namespace: str | None,
    version: str,
    query: dict[str, str],
    label: Labeller,
) -> None:
    """Label what the watch shows added or changed, until it ends (an ERROR, e.g. 410 Gone: list again)."""
    async for kind, body in api.watch(resource, namespace, version, query=query):
        if kind in ("ADDED", "MODIFIED"):
            await label(body)
        elif kind == "ERROR":
            return
