"""A fast stand-in kubelet for the scale benchmark on the real control plane (its own process).

    python bench/scale_kubelet.py --server https://127.0.0.1:PORT --ca-file CA --token-file F --node NODE
        [--namespace NS] [--workers 32]

The real controller manager makes ReplicaSets and Pods and the real scheduler binds them to NODE;
this plays the kubelet for the pods bound there, without running anything: it lists and watches
the pods with ``spec.nodeName=NODE`` (one watch, in every namespace or in ``--namespace``) and

* a pod not yet Running and Ready gets ``pods/status`` patched to Running with its Ready and
  ContainersReady conditions True (what a kubelet reports once a container's readiness probe passes);
* a pod with a ``deletionTimestamp`` is deleted with grace period 0 (a kubelet confirming that the
  containers are gone), so the ReplicaSet's scale-down completes.

Work goes through a de-duplicating queue to a pool of concurrent workers, so a burst of 10,000 new
pods is worked off in parallel and a pod changed twice before its turn is handled once. The real
Deployment controller then counts the ready pods into the Deployments' ``readyReplicas``: the
readiness the operator waits for is the real controllers' own. ``tests/support/cluster.py``'s
``PodKubelet`` does the same for the tests, polling one namespace; this one watches, to keep up with
thousands of pods. Prints ``ready`` once it listens for work; on SIGTERM writes its counts as JSON to
``--stats-file`` (if given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.cluster import kubelet_pod_status  # noqa: E402

PODS = "/api/v1/pods"


def is_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )


def running_status(pod: dict[str, Any]) -> dict[str, Any]:
    """What a kubelet reports for a pod whose containers run and are ready (as the tests' PodKubelet)."""
    containers = [(c["name"], c.get("image")) for c in (pod.get("spec") or {}).get("containers") or []]
    return kubelet_pod_status(pod["metadata"]["uid"], containers, ready=True)


class Kubelet:
    def __init__(
        self,
        server: str,
        ssl_context: ssl.SSLContext | None,
        token: str,
        node: str,
        workers: int,
        namespace: str | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.pods = f"/api/v1/namespaces/{namespace}/pods" if namespace else PODS
        self.ssl_context = ssl_context
        self.headers = {"Authorization": f"Bearer {token}"}
        self.node = node
        self.workers = workers
        self._tasks: list[asyncio.Future[None]] = []  # kept so the workers are not garbage-collected
        # (namespace, name) -> the latest version of the pod that needs something done
        self.pending: dict[tuple[str, str], dict[str, Any]] = {}
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.counts = {"ready": 0, "deleted": 0, "failed": 0}
        self.session: aiohttp.ClientSession | None = None

    def offer(self, pod: dict[str, Any]) -> None:
        metadata = pod.get("metadata") or {}
        if not metadata.get("deletionTimestamp") and is_ready(pod):
            return
        key = (metadata["namespace"], metadata["name"])
        if key not in self.pending:
            self.queue.put_nowait(key)
        self.pending[key] = pod

    async def act(self, pod: dict[str, Any]) -> None:
        assert self.session is not None
        metadata = pod["metadata"]
        url = f"{self.server}/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}"
        if metadata.get("deletionTimestamp"):
            body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}
            async with self.session.delete(url, json=body) as answer:
                await answer.read()
                outcome = "deleted" if answer.status in (200, 202, 404) else "failed"
        else:
            # The pod's uid guards against a same-named successor (StatefulSets; harmless here).
            patch = {"metadata": {"uid": metadata["uid"]}, "status": running_status(pod)}
            async with self.session.patch(
                url + "/status", data=json.dumps(patch), headers={"Content-Type": "application/merge-patch+json"}
            ) as answer:
                await answer.read()
                outcome = "ready" if answer.status == 200 else ("deleted" if answer.status == 404 else "failed")
        self.counts[outcome] += 1

    async def worker(self) -> None:
        while True:
            key = await self.queue.get()
            pod = self.pending.pop(key, None)
            if pod is None:
                continue
            try:
                await self.act(pod)
            except (TimeoutError, aiohttp.ClientError):
                self.counts["failed"] += 1
                # Offered again by the next watch event or relist; a failed patch leaves the pod as it was.

    async def run(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.workers + 4, ssl=self.ssl_context or True),
            headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            read_bufsize=2**22,
        )
        for _ in range(self.workers):
            self._tasks.append(asyncio.ensure_future(self.worker()))
        selector = {"fieldSelector": f"spec.nodeName={self.node}"}
        while True:
            try:
                async with self.session.get(self.server + self.pods, params=selector) as answer:
                    listed = await answer.json()
                for item in listed.get("items", []):
                    self.offer(item)
                version = listed["metadata"]["resourceVersion"]
                params = {**selector, "watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true"}
                async with self.session.get(self.server + self.pods, params=params) as stream:
                    async for line in stream.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self.offer(event["object"])
                        elif event.get("type") == "ERROR":
                            break  # 410 Gone and the like: list again
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError):
                await asyncio.sleep(0.2)


async def serve(args: argparse.Namespace) -> None:
    context = ssl.create_default_context(cafile=args.ca_file)
    token = Path(args.token_file).read_text().strip()
    kubelet = Kubelet(args.server, context, token, args.node, args.workers, args.namespace)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    task = asyncio.ensure_future(kubelet.run())
    print("ready", flush=True)
    await stopping.wait()
    task.cancel()
    if args.stats_file:
        Path(args.stats_file).write_text(json.dumps(kubelet.counts))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--token-file", required=True, help="a file holding a bearer token allowed to patch pods")
    parser.add_argument("--node", required=True)
    parser.add_argument("--namespace", default=None, help="only this namespace's pods (default: every namespace)")
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--stats-file", default=None)
    asyncio.run(serve(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
