"""Good canaries in the sandbox: how many unchanged models do the built-in gates promote? (issue 21)

    python bench/drift_good_canaries.py [--count 20] [--rate 10] [--parallel 5] [--seed 21] [--dir DIR]

One sandbox (on a real control plane when ``$KUBEBUILDER_ASSETS`` is set, else the emulator; the real
operator; the reference model server as real processes; the data plane; a real Prometheus scraping
every second). ``--count`` ModelRollouts of ``breast-cancer``, each in a namespace of its own, 1 replica
per version. Each is deployed as 1.0.0, gets ``--rate`` requests/s from the load generator through the
data plane (inputs like the training data), and is then changed to 1.0.1: the SAME model (same image,
same variant, same data; only the version string differs). The canary goes to 50 %, pauses, and runs
an analysis step; the built-ins ``error-rate``, ``latency-p99``, ``input-drift`` and ``output-drift``
are used at their defaults (no template args), measured in the background too. An unchanged model
should be promoted; a rollback of one is a false alarm, and the table gives its status.message.

The rollouts run ``--parallel`` at a time (waves), to keep a 2-core machine's load reasonable. Every
request loop is bounded in count and time (loopback only); every wait has a deadline. Not a test: it
prints the count ("promoted K of N") and exits 0 whatever K is (1 if the sandbox itself failed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

from modelrollout import GROUP, PLURAL, VERSION
from modelrollout_devkit.sandbox.loadgen import LoadGenerator, LoadStats
from modelrollout_devkit.sandbox.supervisor import Sandbox

T = TypeVar("T")

MODEL = "breast-cancer"
STABLE = "1.0.0"
CANDIDATE = "1.0.1"  # the same model: nothing but the version string changes
GATES = ("error-rate", "latency-p99", "input-drift", "output-drift")
#: The canary: half the traffic, a pause for the samples to build up (at 10 requests/s, 5/s reach the
#: candidate: input-drift's minCount of 150 in 30 s, plus Prometheus's pick-up of the new pod), then an
#: analysis step of every gate. The background analysis measures every gate every 10 s throughout.
STEPS: list[dict[str, Any]] = [
    {"setWeight": 50},
    {"pause": {"duration": "60s"}},
    {"analysis": {"metrics": list(GATES), "count": 5, "interval": "10s"}},
]
ANALYSIS_INTERVAL = "10s"
#: Measurements before the candidate has minCount samples are Inconclusive; allow for them.
INCONCLUSIVE_LIMIT = 30
WARM_UP_S = 20.0  # stable-only traffic before the change, so that the stable side has samples too
TALLY = re.compile(r"[\w-]+ \d+/\d+ ok")


def rollout_spec(version: str) -> dict[str, Any]:
    return {
        "replicas": 1,
        "model": {"name": MODEL, "version": version},
        "template": {"spec": {"containers": [{"name": "server", "image": "reference-model-server"}]}},
        "strategy": {"canary": {"steps": STEPS}},
        "analysis": {
            "interval": ANALYSIS_INTERVAL,
            "inconclusiveLimit": INCONCLUSIVE_LIMIT,
            # The built-ins at their defaults: no args.
            "metrics": [{"name": gate, "template": {"name": gate}} for gate in GATES],
        },
    }


@dataclass
class Canary:
    index: int
    namespace: str
    name: str
    outcome: str = "not started"
    message: str = ""
    seconds: float | None = None
    load: LoadStats | None = None
    #: The step analysis's tally ("input-drift 5/5 ok, ..."), from its AnalysisSucceeded Event.
    tally: str = ""


class Kube:
    """The few API calls the benchmark makes, on the sandbox's admin kubeconfig."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.api_client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(sandbox.kubeconfig)
        )
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self.custom = kubernetes.client.CustomObjectsApi(self.api_client)

    def create_namespace(self, namespace: str) -> None:
        metadata = kubernetes.client.V1ObjectMeta(name=namespace, annotations=self.sandbox.namespace_annotations())
        self.core.create_namespace(kubernetes.client.V1Namespace(metadata=metadata))

    def create(self, canary: Canary, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelRollout",
            "metadata": {"name": canary.name, "namespace": canary.namespace},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, canary.namespace, PLURAL, body)

    def status(self, canary: Canary) -> dict[str, Any]:
        body = cast(
            dict[str, Any],
            self.custom.get_namespaced_custom_object(GROUP, VERSION, canary.namespace, PLURAL, canary.name),
        )
        return dict(body.get("status") or {})

    def last_event(self, canary: Canary, reason: str) -> str:
        """The message of one of the rollout's Events of that reason ("" if none was posted)."""
        listed = self.core.list_namespaced_event(canary.namespace, field_selector=f"involvedObject.name={canary.name}")
        found = [str(event.message or "") for event in listed.items if event.reason == reason]
        return found[-1] if found else ""

    def patch_spec(self, canary: Canary, changes: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, canary.namespace, PLURAL, canary.name, {"spec": changes}
        )

    def remove(self, canary: Canary, wait: float = 30.0) -> None:
        """The rollout first (the operator releases its finalizer and its pods go), then the namespace."""
        with contextlib.suppress(ApiException):
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, canary.namespace, PLURAL, canary.name)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                self.status(canary)
            except ApiException:
                break
            time.sleep(0.5)
        else:
            with contextlib.suppress(ApiException):
                self.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, canary.namespace, PLURAL, canary.name, {"metadata": {"finalizers": None}}
                )
        with contextlib.suppress(ApiException):
            self.core.delete_namespace(canary.namespace)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)


class Traffic:
    """Load generators for one wave, on an event loop of their own thread; each bounded in time and count."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="loadgen", daemon=True)
        self.thread.start()
        self.running: dict[int, tuple[LoadGenerator, Any]] = {}

    def start(self, key: int, url: str, rate: float, duration: float, seed: int) -> None:
        async def make() -> tuple[LoadGenerator, asyncio.Task[LoadStats]]:
            gen = LoadGenerator(url, rate, duration=duration, count=int(rate * duration) + 1, seed=seed)
            return gen, gen.start()

        self.running[key] = asyncio.run_coroutine_threadsafe(make(), self.loop).result(10)

    def stop(self, key: int) -> LoadStats | None:
        entry = self.running.pop(key, None)
        if entry is None:
            return None
        gen = entry[0]
        return asyncio.run_coroutine_threadsafe(gen.stop(), self.loop).result(gen.timeout + 10)

    def close(self) -> None:
        for key in list(self.running):
            with contextlib.suppress(Exception):
                self.stop(key)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def run_wave(kube: Kube, canaries: list[Canary], args: argparse.Namespace) -> None:
    traffic = Traffic()
    # Every request loop ends by itself: the whole wave's time budget at most.
    load_s = args.timeout + WARM_UP_S + 180.0
    try:
        for canary in canaries:
            kube.create_namespace(canary.namespace)
            kube.create(canary, rollout_spec(STABLE))
        for canary in canaries:

            def deployed(canary: Canary = canary) -> dict[str, Any] | None:
                status = kube.status(canary)
                return status if status.get("phase") == "Succeeded" and status.get("stableVersion") == STABLE else None

            wait_for(f"{canary.name} {STABLE} deployed", deployed, timeout=180)
            url = kube.sandbox.service_url(canary.namespace, canary.name)
            traffic.start(canary.index, url, args.rate, load_s, seed=args.seed + canary.index)
        time.sleep(WARM_UP_S)
        started: dict[int, float] = {}
        for canary in canaries:
            kube.patch_spec(canary, {"model": {"name": MODEL, "version": CANDIDATE}})
            started[canary.index] = time.monotonic()
            canary.outcome = "pending"
        deadline = time.monotonic() + args.timeout
        waiting = list(canaries)
        while waiting and time.monotonic() < deadline:
            for canary in list(waiting):
                status = kube.status(canary)
                phase = status.get("phase")
                done = phase == "RolledBack" or (phase == "Succeeded" and status.get("stableVersion") == CANDIDATE)
                if phase == "Paused" and status.get("pauseReason") == "Inconclusive":
                    # inconclusiveLimit exceeded: it waits for a person; not promoted.
                    done = True
                if done:
                    canary.outcome = "Paused (Inconclusive)" if phase == "Paused" else str(phase)
                    canary.message = str(status.get("message") or "")
                    canary.seconds = time.monotonic() - started[canary.index]
                    canary.load = traffic.stop(canary.index)
                    for _ in range(10 if phase == "Succeeded" else 0):  # Events follow the status write
                        canary.tally = ", ".join(TALLY.findall(kube.last_event(canary, "AnalysisSucceeded")))
                        if canary.tally:
                            break
                        time.sleep(0.5)
                    waiting.remove(canary)
            time.sleep(1.0)
        for canary in waiting:
            status = kube.status(canary)
            canary.outcome = f"timeout ({status.get('phase')})"
            canary.message = str(status.get("message") or "")
            canary.load = traffic.stop(canary.index)
    finally:
        traffic.close()
        for canary in canaries:
            kube.remove(canary)


def reason(canary: Canary) -> str:
    return "" if canary.outcome == "Succeeded" else canary.message.replace("|", "\\|")


def report(canaries: list[Canary], args: argparse.Namespace, where: str, elapsed: float) -> str:
    lines = [
        f"{len(canaries)} canaries of {MODEL} {STABLE} -> {CANDIDATE} (the same model), 1 replica per version, "
        f"{args.rate:g} requests/s each (seed {args.seed}); {len(range(0, len(canaries), args.parallel))} waves of "
        f"at most {args.parallel} at once; sandbox on the {where}",
        f"gates: {', '.join(GATES)} at their defaults; steps: setWeight 50, pause 60s, analysis (count 5, "
        f"interval 10s); background analysis every {ANALYSIS_INTERVAL}",
        "",
        "| rollout | outcome | seconds | requests (ok) | step analysis | reason (status.message) |",
        "|---|---|---|---|---|---|",
    ]
    for canary in canaries:
        load = canary.load
        sent = f"{load.sent} ({load.ok})" if load is not None else "-"
        seconds = f"{canary.seconds:.0f}" if canary.seconds is not None else "-"
        row = [canary.name, canary.outcome, seconds, sent, canary.tally or "-", reason(canary)]
        lines.append("| " + " | ".join(row) + " |")
    promoted = sum(canary.outcome == "Succeeded" for canary in canaries)
    lines += ["", f"promoted {promoted} of {len(canaries)} (wall time {elapsed / 60:.1f} min)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help="good canaries (default 20)")
    parser.add_argument("--rate", type=float, default=10.0, help="requests/s to each rollout (default 10)")
    parser.add_argument("--parallel", type=int, default=5, help="rollouts at once, in waves (default 5)")
    parser.add_argument("--seed", type=int, default=21, help="load generator seeds: seed + rollout index")
    parser.add_argument("--timeout", type=float, default=420.0, help="deadline per wave after the change, s")
    parser.add_argument("--dir", type=Path, help="sandbox directory (default: a fresh temporary one)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.parallel < 1 or not 0 < args.rate <= 100:
        parser.error("--count and --parallel must be positive, --rate in (0, 100]")
    directory = args.dir or Path(tempfile.mkdtemp(prefix="good-canaries-"))
    began = time.monotonic()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; sandbox in {directory}", flush=True)
    canaries = [Canary(i, f"good-{i:02d}", f"scorer-{i:02d}") for i in range(args.count)]
    with Sandbox(directory, dataplane_port=0, prometheus_port=0, api_port=0, scrape_interval=1.0) as sandbox:
        where = "real control plane" if sandbox.real_api else "emulator"
        print(f"sandbox ready in {sandbox.ready_after_s:.1f}s on the {where}", flush=True)
        kube = Kube(sandbox)
        try:
            for first in range(0, args.count, args.parallel):
                wave = canaries[first : first + args.parallel]
                print(f"wave {first // args.parallel + 1}: {', '.join(c.name for c in wave)}", flush=True)
                run_wave(kube, wave, args)
                for canary in wave:
                    print(f"  {canary.name}: {canary.outcome} {reason(canary)}", flush=True)
        finally:
            kube.api_client.close()  # type: ignore[no-untyped-call]
    print(report(canaries, args, where, time.monotonic() - began))
    return 0


if __name__ == "__main__":
    sys.exit(main())
