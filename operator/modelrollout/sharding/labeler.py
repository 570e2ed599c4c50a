"""Give every ModelRollout, and what the operator made for it, the shard labels of this generation.

Run by the replica that holds shard 0, beside that shard's operator. It watches only what still needs
labels (`unsharded_selector`: no label, or another generation's), so on a settled cluster its watch
carries nothing. A rollout's Deployments and Services are labelled before the rollout itself: when a
shard's operator first sees the rollout, it sees its children too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from modelrollout.kube.api import DEPLOYMENTS, MODELROLLOUTS, SERVICES, ApiError, KubeApi
from modelrollout.sharding.plan import labels_of, shard_labels, unsharded_selector
from modelrollout.vocabulary.names import MANAGED_BY, MANAGED_BY_LABEL, ROLLOUT_LABEL

logger = logging.getLogger("modelrollout.sharding")

RETRY_SECONDS = 5.0


async def label_rollout(api: KubeApi, rollout: dict[str, Any], shards: int) -> bool:
    """Label one rollout and its children; False when it changed or went meanwhile (seen again later)."""
    metadata = rollout.get("metadata") or {}
    namespace, name = str(metadata.get("namespace", "")), str(metadata.get("name", ""))
    wanted = shard_labels(namespace, name, shards)
    children = f"{MANAGED_BY_LABEL}={MANAGED_BY},{ROLLOUT_LABEL}={name}"
    for resource in (DEPLOYMENTS, SERVICES):
        for child in await api.list(resource, namespace, children):
            if any(labels_of(child).get(key) != value for key, value in wanted.items()):
                try:
                    patch = {"metadata": {"labels": wanted}}
                    await api.merge_patch(resource, namespace, child["metadata"]["name"], patch)
                except ApiError as error:
                    if error.status != 404:
                        raise
    try:
        await api.merge_patch(MODELROLLOUTS, namespace, name, {"metadata": {"labels": wanted}})
    except ApiError as error:
        if error.status == 404:
            return False
        raise
    return True


async def label_all(api: KubeApi, namespace: str | None, shards: int, stop: asyncio.Event) -> None:
    """List, label and watch what needs labels in one namespace (None: all), until `stop`."""
    query = {"labelSelector": unsharded_selector(shards)}
    while not stop.is_set():
        try:
            listing = await api.request("GET", MODELROLLOUTS.path(namespace), query=query)
            for rollout in listing.get("items", []):
                await label_rollout(api, rollout, shards)
            version = str(listing.get("metadata", {}).get("resourceVersion", ""))
            watching = asyncio.ensure_future(_watch(api, namespace, version, query, shards))
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({watching, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                watching.cancel()
                stopping.cancel()
            if watching.done() and not watching.cancelled() and watching.exception() is not None:
                raise watching.exception()  # type: ignore[misc]
        except ApiError as error:
            logger.warning("shard labels: API error, listing again in %.0f s: %s", RETRY_SECONDS, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=RETRY_SECONDS)


async def _watch(api: KubeApi, namespace: str | None, version: str, query: dict[str, str], shards: int) -> None:
    async for kind, rollout in api.watch(MODELROLLOUTS, namespace, version, query=query):
        if kind in ("ADDED", "MODIFIED"):
            await label_rollout(api, rollout, shards)
        elif kind == "ERROR":  # e.g. 410 Gone: list again
            return
