"""`modelrollout run --shards N`: the shard supervisor, one kopf operator per shard held, and the labeler.

kopf installs its signal handlers in the thread that runs its loop when that is the main thread, each
operator replacing the previous one's; so the loop runs in a thread of its own and the main thread
turns SIGINT and SIGTERM into one stop for everything (kopf then says it ignores OS signals, which is
the point; that line is filtered out).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import urllib.parse
from dataclasses import dataclass
from types import FrameType

import kopf
from aiohttp import web

from modelrollout import GROUP, PLURAL
from modelrollout.kube.api import KubeApi
from modelrollout.settings import OperatorOptions
from modelrollout.sharding.labeler import label_all
from modelrollout.sharding.leases import LeaseStore
from modelrollout.sharding.plan import DEFAULT_LEASE_PREFIX, DEFAULT_LEASE_SECONDS, shard_selector
from modelrollout.sharding.supervisor import ShardSupervisor

logger = logging.getLogger("modelrollout.sharding")

#: the resources each shard's operator watches, by the keys kopf's selector settings take
SHARDED_RESOURCES = ((GROUP, PLURAL), ("apps", "deployments"), ("v1", "services"))


@dataclass(frozen=True)
class ShardingOptions:
    shards: int
    identity: str
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    lease_prefix: str = DEFAULT_LEASE_PREFIX


class _NoSignalNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "OS signals are ignored" not in record.getMessage()


def run_sharded(options: OperatorOptions, sharding: ShardingOptions) -> None:
    """Run until SIGINT or SIGTERM; then stop every shard and release its Lease."""
    logging.getLogger("kopf._core.reactor.running").addFilter(_NoSignalNotice())
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(_supervise(options, sharding, stopping))
        except BaseException as error:  # reported by the main thread
            failure.append(error)
        finally:
            loop.close()

    def stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("%s: stopping every shard", signal.Signals(signum).name)
        loop.call_soon_threadsafe(stopping.set)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    thread = threading.Thread(target=serve, name="modelrollout-shards")
    thread.start()
    while thread.is_alive():
        thread.join(0.5)  # wakes the main thread for signals
    if failure:
        raise failure[0]


async def _supervise(options: OperatorOptions, sharding: ShardingOptions, stopping: asyncio.Event) -> None:
    assert options.operator_namespace is not None  # checked by the CLI
    api = await KubeApi.connect(options.kubeconfig)
    store = LeaseStore(
        api, options.operator_namespace, sharding.lease_prefix, sharding.identity, sharding.lease_seconds
    )
    supervisor: ShardSupervisor

    async def run_shard(shard: int, stop: asyncio.Event) -> None:
        settings = kopf.OperatorSettings()
        for resource in SHARDED_RESOURCES:
            settings.watching.label_selectors[resource] = shard_selector(shard, sharding.shards)
        memo = kopf.Memo(options=options, shard=shard, may_act=lambda: supervisor.holds(shard))
        work = [
            kopf.operator(
                settings=settings,
                memo=memo,
                stop_flag=stop,
                standalone=True,
                clusterwide=not options.namespaces,
                namespaces=options.namespaces,
            )
        ]
        if shard == 0:  # one replica labels new rollouts: the holder of shard 0
            namespaces: list[str | None] = [*options.namespaces] or [None]
            work += [label_all(api, namespace, sharding.shards, stop) for namespace in namespaces]
        await asyncio.gather(*work)

    supervisor = ShardSupervisor(store, sharding.shards, run_shard)
    health = await _serve_liveness(options.liveness_endpoint, supervisor)
    logger.info(
        "sharded: %s holds its fair share of %d shard(s), Leases %s-shard-* in %s",
        sharding.identity,
        sharding.shards,
        sharding.lease_prefix,
        options.operator_namespace,
    )
    try:
        await supervisor.run(stopping)
    finally:
        if health is not None:
            await health.cleanup()
        await api.close()


async def _serve_liveness(endpoint: str | None, supervisor: ShardSupervisor) -> web.AppRunner | None:
    """The liveness endpoint kopf serves unsharded: 200 while the supervisor keeps its Leases."""
    if not endpoint:
        return None
    url = urllib.parse.urlparse(endpoint)

    async def alive(_request: web.Request) -> web.Response:
        healthy = supervisor.healthy()
        return web.json_response({"shards": sorted(supervisor.running)}, status=200 if healthy else 503)

    app = web.Application()
    app.router.add_get(url.path or "/", alive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, url.hostname or "0.0.0.0", url.port or 8080).start()
    return runner
