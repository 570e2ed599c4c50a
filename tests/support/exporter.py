"""A tiny Prometheus exporter whose series a test sets directly.

Built on prometheus-client with a custom collector rather than Gauge/Counter/Histogram objects,
so that a test can also remove a series, set a counter backwards (a restart) or publish exact
histogram bucket counts (drift tests need a given distribution, not thousands of observations).
Each exporter has its own registry, so several can live in one process. Unlike prometheus-client,
series of one metric may carry different label names (tests sharing an exporter need not agree):
a label a series lacks is exposed as "", which Prometheus treats as absent.

    with running_exporter() as exporter:
        exporter.set("model_error_ratio", 0.01, rollout="r", version="2")
        prometheus.add_targets([exporter.target])
"""

from __future__ import annotations

import bisect
import math
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

DEFAULT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Kind = Literal["gauge", "counter", "histogram"]
LabelSet = tuple[tuple[str, str], ...]  # sorted (name, value) pairs


@dataclass
class _HistogramSeries:
    bounds: tuple[float, ...]  # upper bounds, ascending, ending with +Inf
    counts: list[float]  # per bucket, not cumulative
    total: float = 0.0


@dataclass
class _Family:
    kind: Kind
    documentation: str
    values: dict[LabelSet, float] = field(default_factory=dict)
    histograms: dict[LabelSet, _HistogramSeries] = field(default_factory=dict)

    def label_names(self) -> list[str]:
        keys = [*self.values, *self.histograms]
        return sorted({name for key in keys for name, _ in key})


def _format_le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


class _Collector(Collector):
    def __init__(self, exporter: Exporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterable[Metric]:
        return self._exporter._families_snapshot()


class Exporter:
    """Serves the series a test sets on http://127.0.0.1:<port>/metrics, from a daemon thread."""

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self))
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Exporter:
        """Serve (again, on the same port once one was chosen); series set meanwhile are kept."""
        if self._server is None:
            server, thread = start_http_server(self._port, addr="127.0.0.1", registry=self._registry)
            self._server, self._thread = server, thread
            self._port = server.server_address[1]
        return self

    def stop(self) -> None:
        """Stop serving (Prometheus then sees `up == 0` for this target); `start()` resumes."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the exporter has no port until it is started")
        return self._port

    @property
    def target(self) -> str:
        """The `host:port` to put in a Prometheus scrape config."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    # -- series ----------------------------------------------------------------------------------

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge series (created on first use)."""
        family = self._family(name, "gauge")
        with self._lock:
            family.values[self._key(labels)] = float(value)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter series. `name` is given without `_total`, which the exposition adds."""
        family = self._family(name, "counter")
        with self._lock:
            key = self._key(labels)
            family.values[key] = family.values.get(key, 0.0) + amount

    def set_counter(self, name: str, value: float, **labels: str) -> None:
        """Set a counter series outright (e.g. back to 0 to imitate a restarted server)."""
        family = self._family(name, "counter")
        with self._lock:
            family.values[self._key(labels)] = float(value)

    def observe(
        self, name: str, value: float, count: int = 1, buckets: Sequence[float] = DEFAULT_BUCKETS, **labels: str
    ) -> None:
        """Record `count` observations of `value` in a histogram series (buckets fixed on first use)."""
        family = self._family(name, "histogram")
        with self._lock:
            series = self._histogram(family, labels, buckets)
            index = bisect.bisect_left(series.bounds, value)
            series.counts[index] += count
            series.total += value * count

    def set_histogram(
        self, name: str, buckets: Mapping[float, float], total: float | None = None, **labels: str
    ) -> None:
        """Publish exact per-bucket counts: {upper bound: count in that bucket}, NOT cumulative.

        A +Inf bucket is added when missing. `total` is the `_sum` series (default: sum of count
        times bound over the finite buckets, which is enough for tests that do not read it).
        """
        bounds = sorted(buckets)
        if not bounds or not math.isinf(bounds[-1]):
            bounds.append(math.inf)
        counts = [float(buckets.get(bound, 0.0)) for bound in bounds]
        if total is None:
            total = sum(bound * count for bound, count in zip(bounds, counts, strict=True) if math.isfinite(bound))
        family = self._family(name, "histogram")
        with self._lock:
            family.histograms[self._key(labels)] = _HistogramSeries(tuple(bounds), counts, total)

    def remove(self, name: str, **labels: str) -> None:
        """Drop one series (Prometheus marks it stale at the next scrape)."""
        with self._lock:
            family = self._families.get(name)
            if family is None:
                return
            key = self._key(labels)
            family.values.pop(key, None)
            family.histograms.pop(key, None)

    def clear(self) -> None:
        """Drop every series of every metric."""
        with self._lock:
            self._families.clear()

    # -- internals -------------------------------------------------------------------------------

    def _family(self, name: str, kind: Kind) -> _Family:
        with self._lock:
            family = self._families.get(name)
            if family is None:
                family = _Family(kind, f"Test series {name}.")
                self._families[name] = family
            if family.kind != kind:
                raise ValueError(f"{name} is a {family.kind}, not a {kind}")
            return family

    @staticmethod
    def _key(labels: Mapping[str, str]) -> LabelSet:
        return tuple(sorted((name, str(value)) for name, value in labels.items()))

    def _histogram(self, family: _Family, labels: Mapping[str, str], buckets: Sequence[float]) -> _HistogramSeries:
        key = self._key(labels)
        series = family.histograms.get(key)
        if series is None:
            bounds = sorted(float(bound) for bound in buckets)
            if not bounds or not math.isinf(bounds[-1]):
                bounds.append(math.inf)
            series = _HistogramSeries(tuple(bounds), [0.0] * len(bounds))
            family.histograms[key] = series
        return series

    def _families_snapshot(self) -> list[Metric]:
        metrics: list[Metric] = []
        with self._lock:
            for name, family in self._families.items():
                labels = family.label_names()

                def values_of(key: LabelSet, labels: list[str] = labels) -> list[str]:
                    present = dict(key)
                    return [present.get(label, "") for label in labels]

                if family.kind == "gauge":
                    gauge = GaugeMetricFamily(name, family.documentation, labels=labels)
                    for key, value in family.values.items():
                        gauge.add_metric(values_of(key), value)
                    metrics.append(gauge)
                elif family.kind == "counter":
                    counter = CounterMetricFamily(name, family.documentation, labels=labels)
                    for key, value in family.values.items():
                        counter.add_metric(values_of(key), value)
                    metrics.append(counter)
                else:
                    histogram = HistogramMetricFamily(name, family.documentation, labels=labels)
                    for key, series in family.histograms.items():
                        cumulative = 0.0
                        pairs: list[tuple[str, float]] = []
                        for bound, count in zip(series.bounds, series.counts, strict=True):
                            cumulative += count
                            pairs.append((_format_le(bound), cumulative))
                        histogram.add_metric(values_of(key), pairs, series.total)
                    metrics.append(histogram)
        return metrics


def free_port() -> int:
    """A port free on 127.0.0.1 right now (another process may take it before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_exporter(port: int = 0) -> Iterator[Exporter]:
    """An exporter serving for the duration of the block."""
    exporter = Exporter(port).start()
    try:
        yield exporter
    finally:
        exporter.stop()
