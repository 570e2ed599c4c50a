"""Load generator: open-loop ``POST /predict`` traffic at a fixed rate, with optional input drift.

Feature vectors are rows of the training data set plus Gaussian noise, optionally shifted per feature
in units of that feature's training standard deviation (data drift), so that the input-drift analysis
has something real to find. Requests are sent on a fixed schedule whatever the server's latency (open
loop, as real clients behave), bounded by ``concurrency`` in-flight requests, and the run always ends by
itself (``duration`` and/or ``count``) or on ``stop()``.

Python::

    gen = LoadGenerator("http://127.0.0.1:8080", rate=50, duration=30, shift={"mean radius": 3.0})
    stats = await gen.run()
    stats.by_status, stats.by_version

CLI::

    python -m modelrollout_devkit.sandbox.loadgen --url http://127.0.0.1:8080 --rate 50 --duration 30 \\
        [--shift 'mean radius=3'] [--preset drifted] [--header 'X-Canary: always'] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import numpy as np
import numpy.typing as npt

from modelrollout_devkit.sandbox.model_server import VARIANTS, Dataset, load_dataset, training_labels

#: Named input distributions. ``drifted`` moves the size and texture features by 1.5-2 training
#: standard deviations: a population shift the deciles' PSI sees clearly (PSI >> 0.2).
PRESETS: Final[Mapping[str, Mapping[str, float]]] = {
    "baseline": {},
    "drifted": {
        "mean radius": 2.0,
        "mean perimeter": 2.0,
        "mean area": 2.0,
        "mean texture": 1.5,
        "worst radius": 2.0,
        "worst perimeter": 2.0,
        "worst area": 2.0,
        "worst texture": 1.5,
    },
}
#: Where a response carries no version (connection errors, bodies that are not JSON).
NO_VERSION: Final = "none"
#: Status recorded for requests that got no HTTP response at all.
STATUS_CONNECTION_ERROR: Final = 0


def parse_shift(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """A shift from a mapping, a preset name, or ``'feature=sd,feature=sd'`` (presets may be mixed in)."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return {str(k): float(v) for k, v in spec.items()}
    out: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part in PRESETS:
            out.update(PRESETS[part])
            continue
        name, sep, value = part.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"bad shift {part!r}: expected 'feature=sd' or a preset {sorted(PRESETS)}")
        out[name.strip()] = float(value)
    return out


@dataclass
class LoadStats:
    """What a run did. Counts update live, so a test or the demo may read them while it runs."""

    sent: int = 0
    completed: int = 0  # got an HTTP response, whatever its status
    connection_errors: int = 0
    late: int = 0  # sends that started over 100 ms behind schedule (concurrency cap or a slow loop)
    by_status: Counter[int] = field(default_factory=Counter)
    by_version: Counter[str] = field(default_factory=Counter)
    by_prediction: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def elapsed_s(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else time.monotonic()
        return end - self.started_at

    @property
    def achieved_rate(self) -> float:
        """Requests sent per second over the run so far."""
        elapsed = self.elapsed_s
        return self.sent / elapsed if elapsed > 0 else 0.0

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.by_status.items() if 200 <= status < 300)

    def share(self, version: str) -> float:
        """The share of answered requests that the given version served."""
        total = sum(self.by_version.values())
        return self.by_version[version] / total if total else 0.0

    def latency_quantile(self, q: float) -> float:
        if not self.latencies_s:
            return math.nan
        return float(np.quantile(np.asarray(self.latencies_s), q))

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "completed": self.completed,
            "ok": self.ok,
            "connection_errors": self.connection_errors,
            "late": self.late,
            "elapsed_s": round(self.elapsed_s, 3),
            "achieved_rate": round(self.achieved_rate, 2),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_version": dict(sorted(self.by_version.items())),
            "by_prediction": dict(sorted(self.by_prediction.items())),
            "latency_p50_s": _rounded(self.latency_quantile(0.5)),
            "latency_p99_s": _rounded(self.latency_quantile(0.99)),
        }


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 5)


class FeatureSampler:
    """Rows of the data set with noise and a per-feature shift, both in training standard deviations."""

    def __init__(
        self,
        dataset: Dataset | None = None,
        *,
        shift: Mapping[str, float] | None = None,
        noise: float = 0.05,
        missing_rate: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.dataset = dataset or load_dataset()
        self._names = self.dataset.feature_names
        self._std = self.dataset.X.std(axis=0)
        # Physical quantities (sizes, counts) stay non-negative under noise, or the server would see
        # impossible values that look like drift nobody asked for.
        self._floor = np.where(self.dataset.X.min(axis=0) >= 0, 0.0, -np.inf)
        self.noise = noise
        self.missing_rate = missing_rate
        self._rng = np.random.default_rng(seed)
        self._shift = np.zeros(len(self._names))
        self.set_shift(shift or {})

    def set_shift(self, shift: Mapping[str, float]) -> None:
        unknown = set(shift) - set(self._names)
        if unknown:
            raise ValueError(f"unknown features in shift: {sorted(unknown)}")
        vec = np.zeros(len(self._names))
        for name, sd in shift.items():
            vec[self._names.index(name)] = sd
        self._shift = vec

    @property
    def shift(self) -> dict[str, float]:
        return {n: float(s) for n, s in zip(self._names, self._shift, strict=True) if s}

    def sample_array(self) -> npt.NDArray[np.float64]:
        return self.sample_row()[0]

    def sample_row(self) -> tuple[npt.NDArray[np.float64], int]:
        """A feature vector and the index of the data set's row it was drawn from (its true label's)."""
        index = int(self._rng.integers(len(self.dataset.X)))
        row = self.dataset.X[index]
        x = row + (self._rng.standard_normal(len(row)) * self.noise + self._shift) * self._std
        return np.asarray(np.maximum(x, self._floor), dtype=np.float64), index

    def sample(self) -> dict[str, float | None]:
        return self.sample_labelled()[0]

    def sample_labelled(self) -> tuple[dict[str, float | None], int]:
        x, index = self.sample_row()
        out: dict[str, float | None] = {n: round(float(v), 6) for n, v in zip(self._names, x, strict=True)}
        if self.missing_rate > 0:
            for n in self._names:
                if self._rng.random() < self.missing_rate:
                    out[n] = None
        return out, index


class LoadGenerator:
    """Sends ``POST {url}{path}`` at ``rate`` requests/s until ``duration`` s or ``count`` requests (or ``stop()``)."""

    def __init__(
        self,
        url: str,
        rate: float = 50.0,
        *,
        duration: float | None = None,
        count: int | None = None,
        shift: str | Mapping[str, float] | None = None,
        noise: float = 0.05,
        missing_rate: float = 0.0,
        headers: Mapping[str, str] | None = None,
        path: str = "/predict",
        timeout: float = 10.0,
        concurrency: int = 256,
        seed: int | None = None,
        dataset: Dataset | None = None,
        feedback_delay: float | None = None,
        concept: str = "baseline",
    ) -> None:
        """``feedback_delay``: send each prediction's true label to the server that made it (its
        ``X-Feedback-Url``) this many seconds after the answer; None: no feedback. ``concept``: which
        labels are true (``baseline``, or ``drifted``: the world's concept shifted, inputs unchanged)."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        if duration is None and count is None:
            raise ValueError("give duration and/or count: a load generator must stop by itself")
        if (duration is not None and duration < 0) or (count is not None and count < 0):
            raise ValueError("duration and count must not be negative")
        self.url = url.rstrip("/") + path
        self.rate = float(rate)
        self.duration = duration
        self.count = count
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.concurrency = concurrency
        self.sampler = FeatureSampler(
            dataset, shift=parse_shift(shift), noise=noise, missing_rate=missing_rate, seed=seed
        )
        self.stats = LoadStats()
        self.feedback = FeedbackSender(feedback_delay, self.sampler.dataset, concept, timeout)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[LoadStats] | None = None

    def set_shift(self, shift: str | Mapping[str, float] | None) -> None:
        """Change the input distribution mid-run (a drift that starts at a known time)."""
        self.sampler.set_shift(parse_shift(shift))

    def start(self) -> asyncio.Task[LoadStats]:
        """Run in the background; ``await gen.wait()`` or ``await gen.stop()`` later."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"loadgen {self.url}")
        return self._task

    def request_stop(self) -> None:
        """Stop sending (safe from a signal handler); ``run()`` returns once in-flight requests end."""
        self._stopping.set()

    async def stop(self) -> LoadStats:
        """Stop sending, let in-flight requests finish (up to the timeout), return the stats."""
        self._stopping.set()
        if self._task is not None:
            return await self._task
        return self.stats

    async def wait(self) -> LoadStats:
        if self._task is None:
            raise RuntimeError("not started")
        return await self._task

    def set_concept(self, concept: str) -> None:
        """Change which labels are true mid-run (the world's concept shifts; the inputs do not)."""
        self.feedback.set_concept(concept)

    async def _one(self, session: aiohttp.ClientSession, sem: asyncio.Semaphore) -> None:
        features, row = self.sampler.sample_labelled()
        payload = {"features": features}
        t0 = time.monotonic()
        try:
            async with session.post(self.url, json=payload, headers=self.headers) as resp:
                body = await resp.read()
                status = resp.status
                header_version = resp.headers.get("X-Model-Version")
                self.feedback.later(session, resp.headers, row)
        except (aiohttp.ClientError, TimeoutError, OSError):
            self.stats.connection_errors += 1
            self.stats.by_status[STATUS_CONNECTION_ERROR] += 1
            self.stats.by_version[NO_VERSION] += 1
            return
        finally:
            sem.release()
        self.stats.latencies_s.append(time.monotonic() - t0)
        self.stats.completed += 1
        self.stats.by_status[status] += 1
        version: str | None = None
        with contextlib.suppress(ValueError):
            data = json.loads(body)
            if isinstance(data, dict):
                version = data.get("version")
                if "prediction" in data:
                    self.stats.by_prediction[str(data["prediction"])] += 1
        self.stats.by_version[str(version or header_version or NO_VERSION)] += 1

    async def run(self) -> LoadStats:
        """Send the whole run and return its stats."""
        stats = self.stats
        stats.started_at = start = time.monotonic()
        deadline = start + self.duration if self.duration is not None else math.inf
        sem = asyncio.Semaphore(self.concurrency)
        pending: set[asyncio.Task[None]] = set()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        # One connection per in-flight request at most; keep-alive reuses them across the run.
        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            i = 0
            while not self._stopping.is_set() and (self.count is None or i < self.count):
                due = start + i / self.rate
                if due >= deadline:
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
                    if self._stopping.is_set():
                        break
                elif delay < -0.1:
                    stats.late += 1
                await sem.acquire()
                task = asyncio.create_task(self._one(session, sem))
                pending.add(task)
                task.add_done_callback(pending.discard)
                stats.sent += 1
                i += 1
            if pending:
                await asyncio.wait(set(pending), timeout=self.timeout + 1.0)
            await self.feedback.finish(stopped=self._stopping.is_set())
        stats.finished_at = time.monotonic()
        return stats


#: Feedback waiting for its delay, at most: beyond it a label is dropped (and counted), never queued unbounded.
MAX_PENDING_FEEDBACK: Final = 20_000


class FeedbackSender:
    """Send the true label of each answered prediction to the server that made it, after a delay."""

    def __init__(self, delay: float | None, dataset: Dataset, concept: str, timeout: float) -> None:
        if delay is not None and delay < 0:
            raise ValueError("the feedback delay must not be negative")
        self.delay = delay
        self.dataset = dataset
        self.timeout = timeout
        self.sent = self.failed = self.dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.set_concept(concept)

    def set_concept(self, concept: str) -> None:
        if concept not in VARIANTS:
            raise ValueError(f"concept must be one of {', '.join(VARIANTS)}, not {concept!r}")
        self.concept = concept
        self._labels = training_labels(self.dataset, concept)

    def later(self, session: aiohttp.ClientSession, headers: Mapping[str, str], row: int) -> None:
        url, prediction = headers.get("X-Feedback-Url"), headers.get("X-Prediction-Id")
        if self.delay is None or not url or not prediction:
            return
        if len(self._tasks) >= MAX_PENDING_FEEDBACK:
            self.dropped += 1
            return
        # The truth as the world has it when the label is known (a concept shift applies to later labels).
        task = asyncio.create_task(self._send(session, url, prediction, row))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, session: aiohttp.ClientSession, url: str, prediction: str, row: int) -> None:
        assert self.delay is not None
        await asyncio.sleep(self.delay)
        label = self.dataset.class_names[int(self._labels[row])]
        try:
            async with session.post(url, json={"predictionId": prediction, "label": label}) as resp:
                await resp.read()
                ok = resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            ok = False
        if ok:
            self.sent += 1
        else:
            self.failed += 1

    async def finish(self, stopped: bool) -> None:
        """At the end of a run: let the labels still due arrive (unless stopped), then drop the rest."""
        if self._tasks and not stopped and self.delay is not None:
            await asyncio.wait(set(self._tasks), timeout=self.delay + self.timeout + 1.0)
        for task in list(self._tasks):
            task.cancel()


def _parse_header(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition(":")
    if not sep:
        name, sep, value = raw.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"bad header {raw!r}: expected 'Name: value'")
    return name.strip(), value.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelrollout_devkit.sandbox.loadgen",
        description="Send POST /predict traffic at a fixed rate to a model server or router.",
    )
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--path", default="/predict")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    parser.add_argument("--duration", type=float, help="seconds to run")
    parser.add_argument("--count", type=int, help="requests to send")
    parser.add_argument(
        "--shift",
        action="append",
        default=[],
        help="feature shift in training standard deviations, 'mean radius=3' (repeatable, comma-separated)",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a named input distribution")
    parser.add_argument("--noise", type=float, default=0.05, help="noise, in training standard deviations")
    parser.add_argument("--missing-rate", type=float, default=0.0, help="share of feature values sent as null")
    parser.add_argument("--header", action="append", type=_parse_header, default=[], help="'Name: value'")
    parser.add_argument("--concurrency", type=int, default=256, help="in-flight requests at most")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--feedback-delay",
        type=float,
        help="send each prediction's true label to the server that made it this many seconds later",
    )
    parser.add_argument(
        "--concept",
        choices=VARIANTS,
        default="baseline",
        help="which labels are true: baseline, or drifted (the concept shifted; the inputs did not)",
    )
    parser.add_argument("--json", action="store_true", help="print the final stats as JSON")
    args = parser.parse_args(argv)
    if args.duration is None and args.count is None:
        parser.error("give --duration and/or --count")
    shift = ",".join([*([args.preset] if args.preset else []), *args.shift])
    try:
        gen = LoadGenerator(
            args.url,
            args.rate,
            duration=args.duration,
            count=args.count,
            shift=shift or None,
            noise=args.noise,
            missing_rate=args.missing_rate,
            headers=dict(args.header),
            path=args.path,
            timeout=args.timeout,
            concurrency=args.concurrency,
            seed=args.seed,
            feedback_delay=args.feedback_delay,
            concept=args.concept,
        )
    except ValueError as exc:
        parser.error(str(exc))

    async def go() -> LoadStats:
        task = gen.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, gen.request_stop)
        return await task

    stats = asyncio.run(go())
    if args.json:
        print(json.dumps(stats.to_dict(), indent=1))
    else:
        d = stats.to_dict()
        print(
            f"sent {d['sent']} in {d['elapsed_s']}s ({d['achieved_rate']}/s), ok {d['ok']}, "
            f"connection errors {d['connection_errors']}, p50 {d['latency_p50_s']}s, p99 {d['latency_p99_s']}s"
        )
        print(f"by status: {d['by_status']}")
        print(f"by version: {d['by_version']}")
        print(f"by prediction: {d['by_prediction']}")
    return 0 if stats.completed else 1


if __name__ == "__main__":
    sys.exit(main())
