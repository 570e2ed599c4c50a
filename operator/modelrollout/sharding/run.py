"""`modelrollout run --shards N`: the shard supervisor, one kopf operator per shard held, and the labeler.

Each shard's kopf operator runs in a thread and event loop of its own: a kopf operator that stops
cancels every task spawned in its loop since it started (kopf's `run_tasks`: "the loop is not fully
ours"), which in a shared loop would stop the other shards and the supervisor too. The supervisor has
its loop and thread as well, and the main thread turns SIGINT and SIGTERM into one stop for everything
(kopf installs signal handlers only in the main thread, and says in the others that it ignores OS
signals, which is the point; that line is filtered out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import urllib.parse
from collections.abc import Callable
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
        """Run the shard's operator in its own thread until `stop` is set or the operator ends."""
        loop = asyncio.get_running_loop()
        ended = asyncio.Event()
        stop_shard = threading.Event()

        def serve_shard() -> None:
            try:
                asyncio.run(_run_shard(options, sharding, shard, stop_shard, lambda: supervisor.holds(shard)))
            except Exception:
                logger.exception("shard %d: its operator failed", shard)
            finally:
                loop.call_soon_threadsafe(ended.set)

        thread = threading.Thread(target=serve_shard, name=f"modelrollout-shard-{shard}", daemon=True)
        thread.start()
        stopping = asyncio.ensure_future(stop.wait())
        finished = asyncio.ensure_future(ended.wait())
        try:
            await asyncio.wait({stopping, finished}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            stop_shard.set()
            await finished

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


async def _run_shard(
    options: OperatorOptions,
    sharding: ShardingOptions,
    shard: int,
    stop: threading.Event,
    may_act: Callable[[], bool],
) -> None:
    """One shard's kopf operator, watching only its shard; the holder of shard 0 also labels."""
    settings = kopf.OperatorSettings()
    for resource in SHARDED_RESOURCES:
        settings.watching.label_selectors[resource] = shard_selector(shard, sharding.shards)
    labelling: asyncio.Future[list[None]] | None = None
    labels_stop = asyncio.Event()
    api: KubeApi | None = None
    if shard == 0:  # one replica labels new rollouts: the holder of shard 0
        api = await KubeApi.connect(options.kubeconfig)
        namespaces: list[str | None] = [*options.namespaces] or [None]
        labelling = asyncio.ensure_future(
            asyncio.gather(*(label_all(api, namespace, sharding.shards, labels_stop) for namespace in namespaces))
        )
    try:
        await kopf.operator(
            settings=settings,
            memo=kopf.Memo(options=options, shard=shard, may_act=may_act),
            stop_flag=stop,
            standalone=True,
            clusterwide=not options.namespaces,
            namespaces=options.namespaces,
        )
    finally:
        labels_stop.set()
        if labelling is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await labelling
        if api is not None:
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
