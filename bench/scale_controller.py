"""A fast stand-in Deployment controller for the scale benchmark (its own process).

    python bench/scale_controller.py --server http://127.0.0.1:PORT --times-file F [--workers 32]

Lists and watches Deployments in every namespace; whenever one's status does not report its
requested replicas as ready, it merge-patches ``/status`` (readyReplicas = replicas), from a pool
of concurrent workers fed by a de-duplicating queue, so a burst of 10,000 changes is worked off in
parallel and a Deployment changed twice before its turn is patched once. On SIGTERM it writes, per
Deployment, the wall-clock times at which it reported a new ready count (for the readiness lag).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

import aiohttp

DEPLOYMENTS = "/apis/apps/v1/deployments"


def wanted_status(obj: dict[str, Any]) -> dict[str, Any] | None:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    generation = obj["metadata"].get("generation")
    if (
        int(status.get("readyReplicas") or 0) == replicas
        and int(status.get("replicas") or 0) == replicas
        and status.get("observedGeneration") == generation
    ):
        return None
    return {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }


class Controller:
    def __init__(self, server: str, workers: int) -> None:
        self.server = server.rstrip("/")
        self.workers = workers
        self._tasks: list[asyncio.Future[None]] = []  # kept so the workers are not garbage-collected
        self.pending: dict[tuple[str, str], dict[str, Any]] = {}
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.ready_times: dict[str, list[tuple[float, int]]] = {}
        self.patches = 0
        self.session: aiohttp.ClientSession | None = None

    def offer(self, obj: dict[str, Any]) -> None:
        status = wanted_status(obj)
        if status is None:
            return
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if key not in self.pending:
            self.queue.put_nowait(key)
        self.pending[key] = status

    async def worker(self) -> None:
        assert self.session is not None
        while True:
            key = await self.queue.get()
            status = self.pending.pop(key, None)
            if status is None:
                continue
            namespace, name = key
            url = f"{self.server}/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"
            try:
                async with self.session.patch(
                    url,
                    data=json.dumps({"status": status}),
                    headers={"Content-Type": "application/merge-patch+json"},
                ) as answer:
                    await answer.read()
                    if answer.status == 200:
                        self.patches += 1
                        self.ready_times.setdefault(f"{namespace}/{name}", []).append(
                            (time.time(), status["readyReplicas"])
                        )
            except aiohttp.ClientError:
                pass

    async def run(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.workers + 4),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            read_bufsize=2**22,
        )
        for _ in range(self.workers):
            self._tasks.append(asyncio.ensure_future(self.worker()))
        while True:
            try:
                async with self.session.get(self.server + DEPLOYMENTS) as answer:
                    listed = await answer.json()
                for item in listed.get("items", []):
                    item.setdefault("metadata", {})
                    self.offer(item)
                version = listed["metadata"]["resourceVersion"]
                params = {"watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true"}
                async with self.session.get(self.server + DEPLOYMENTS, params=params) as stream:
                    async for line in stream.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self.offer(event["object"])
                        elif event.get("type") == "ERROR":
                            break
            except (TimeoutError, aiohttp.ClientError, ValueError):
                await asyncio.sleep(0.2)


async def serve(args: argparse.Namespace) -> None:
    controller = Controller(args.server, args.workers)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    task = asyncio.ensure_future(controller.run())
    print("ready", flush=True)
    await stopping.wait()
    task.cancel()
    with open(args.times_file, "w") as out:
        json.dump({"patches": controller.patches, "ready_times": controller.ready_times}, out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--times-file", required=True)
    asyncio.run(serve(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
