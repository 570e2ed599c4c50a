"""Throughput of the emulator over HTTP (a benchmark, not a test): ``python -m tests.emulator.bench_emulator``.

Creates N custom objects, patches the status of each, lists them, and replays a watch of all events,
reporting the time per operation at the start and at the end of each phase (to show it stays flat).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from modelrollout_devkit.emulator import EmulatorServer
from tests.emulator.conftest import CR_PATH, modelrollout, modelrollout_crd

MERGE = {"Content-Type": "application/merge-patch+json"}


async def _timed(label: str, count: int, call: object) -> None:
    assert callable(call)
    timings: list[float] = []
    started = time.perf_counter()
    for index in range(count):
        begin = time.perf_counter()
        await call(index)
        timings.append(time.perf_counter() - begin)
    total = time.perf_counter() - started
    window = max(1, count // 10)
    first, last = sum(timings[:window]) / window, sum(timings[-window:]) / window
    print(
        f"{label:<16} {count:>6} ops  {total:7.2f} s  {1000 * total / count:6.2f} ms/op"
        f"  (first 10%: {1000 * first:.2f} ms/op, last 10%: {1000 * last:.2f} ms/op)"
    )


async def main(count: int) -> None:
    async with EmulatorServer(crds=[modelrollout_crd()]) as emu, aiohttp.ClientSession(base_url=emu.url) as http:

        async def create(index: int) -> None:
            async with http.post(CR_PATH, json=modelrollout(f"mr-{index}")) as response:
                assert response.status == 201, await response.text()

        async def patch_status(index: int) -> None:
            body = {"status": {"phase": "Ready", "observedGeneration": 1, "index": index}}
            async with http.patch(f"{CR_PATH}/mr-{index}/status", data=json.dumps(body), headers=MERGE) as response:
                assert response.status == 200, await response.text()

        async def get(index: int) -> None:
            async with http.get(f"{CR_PATH}/mr-{index}") as response:
                assert response.status == 200

        await _timed("create", count, create)
        await _timed("patch /status", count, patch_status)
        await _timed("get", count, get)

        started = time.perf_counter()
        async with http.get(CR_PATH) as response:
            items = (await response.json())["items"]
        print(f"list             {len(items):>6} items {time.perf_counter() - started:6.2f} s")

        started = time.perf_counter()
        events = 0
        async with http.get(CR_PATH, params={"watch": "true", "resourceVersion": "1", "timeoutSeconds": "1"}) as resp:
            async for line in resp.content:
                events += bool(line.strip())
                if events == 2 * count:
                    break
        print(f"watch replay     {events:>6} events {time.perf_counter() - started:5.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=5000)
    asyncio.run(main(parser.parse_args().count))
