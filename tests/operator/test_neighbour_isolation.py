"""A neighbour's slow query costs a healthy canary nothing (issue 16, item 1), on the real operator, the
real Prometheus and the real control plane.

Two rollouts in two namespaces share one operator and one Prometheus. A proxy in front of
Prometheus holds back every query that names the neighbour's marker until the operator gives up on
it (`--prometheus-timeout`), as a query too heavy for Prometheus would. The healthy rollout's canary
runs once alone and once beside the neighbour, whose background analysis keeps timing out all the
while: beside it, the healthy canary gets no Error measurement and takes the same measurements as
alone. Wall times are printed, never asserted (they depend on the machine).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tests.operator.test_canary import ERROR_RATIO, rollout_spec, unique
from tests.support.cluster import Cluster, DeploymentController, PodKubelet
from tests.support.exporter import Exporter
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import PrometheusServer

MARKER = "slow_neighbour_marker"
TIMEOUT_SECONDS = 2.0
STEP_COUNT = 3


class SlowNeighbourProxy:
    """Passes queries on to Prometheus, but holds back any that names MARKER until its client
    hangs up (at most `hold` seconds); records when each query arrived and what it asked."""

    def __init__(self, upstream: str, hold: float = 30.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.hold = hold
        self.seen: list[tuple[float, str]] = []
        self._released = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.answer(self, b"")

            def do_POST(self) -> None:
                proxy.answer(self, self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="slow-proxy")

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        asked = urllib.parse.parse_qs(parsed.query) | urllib.parse.parse_qs(body.decode())
        expression = " ".join(asked.get("query", []))
        self.seen.append((time.monotonic(), expression))
        if MARKER in expression:
            self._released.wait(self.hold)  # the operator gives up first, and hangs up
            return
        request = urllib.request.Request(
            f"{self.upstream}{handler.path}",
            data=body or None,
            method=handler.command,
            headers={key: value for key, value in handler.headers.items() if key.lower() == "content-type"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as upstream:
                status, payload = upstream.status, upstream.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            pass  # the client gave up meanwhile

    def slow_queries_between(self, start: float, end: float) -> int:
        return sum(1 for at, expression in self.seen if start <= at <= end and MARKER in expression)

    def __enter__(self) -> SlowNeighbourProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def slow_proxy(prometheus_session: PrometheusServer) -> Iterator[SlowNeighbourProxy]:
    with SlowNeighbourProxy(prometheus_session.address) as proxy:
        yield proxy


@pytest.fixture
def neighbourhood(cluster: Cluster) -> Iterator[Cluster]:
    """A second namespace on the same API server, with its pods' kubelet (or Deployment controller)."""
    other = Cluster(
        cluster.kubeconfig,
        f"mro-{uuid.uuid4().hex[:8]}",
        emulated=cluster.emulated,
        api_url=cluster.api_url,
        operator_kubeconfig=cluster.operator_kubeconfig,
        node=cluster.node,
    )
    other.core.create_namespace({"metadata": {"name": other.namespace}})
    controller = PodKubelet(other).start() if other.node else DeploymentController(other).start()
    try:
        yield other
    finally:
        controller.stop()
        other.release_finalizers()
        other.core.delete_namespace(other.namespace)
        other.api_client.close()


def healthy_spec(name: str, version: str) -> dict[str, Any]:
    steps = [{"setWeight": 50}, {"analysis": {"metrics": ["error-rate"], "count": STEP_COUNT, "interval": "1s"}}]
    spec = rollout_spec(name, version, steps)
    spec["analysis"]["metrics"][0]["background"] = False  # only the step measures: a count, not a duration
    return spec


def neighbour_spec(name: str, version: str) -> dict[str, Any]:
    """Background analysis every second on a query that never answers in time; it errs on and on."""
    spec = rollout_spec(name, version, [{"setWeight": 50}, {"pause": {}}])
    spec["analysis"]["consecutiveErrorLimit"] = 100000
    spec["analysis"]["metrics"] = [
        {
            "name": "heavy",
            "prometheus": {"query": f'sum(up{{job=~".+"}}) * 0 + 0.001 # {MARKER}'},
            "threshold": {"max": 1},
        }
    ]
    return spec


def deliver(
    cluster: Cluster, exporter: Exporter, prometheus: PrometheusServer, name: str, version: str
) -> tuple[float, dict[str, Any]]:
    """Start a canary of `version` and wait until it is promoted: the wall time it took, and its
    step analysis as last written before promotion cleared it."""
    exporter.set(ERROR_RATIO, 0.01, rollout=name, version=version)
    prometheus.wait_for_value(f'{ERROR_RATIO}{{rollout="{name}",version="{version}"}}')
    with cluster.status_history(name) as history:
        started = time.monotonic()
        cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": version}})
        cluster.wait_for(
            f"{version} promoted", lambda: cluster.status(name).get("stableVersion") == version, timeout=180
        )
        took = time.monotonic() - started
        cluster.wait_for(
            "the watch to see the promotion",
            lambda: any(seen.get("stableVersion") == version for seen in history),
        )
    analyses = [seen["stepAnalysis"] for seen in history if seen.get("stepAnalysis")]
    assert analyses, f"no step analysis seen for {version}"
    return took, analyses[-1]


def tally(analysis: dict[str, Any]) -> tuple[int, int, int, str]:
    result = analysis["metrics"][0]
    return result["count"], result.get("successful", 0), result.get("error", 0), result["phase"]


def test_a_neighbours_slow_query_costs_a_healthy_canary_nothing(
    cluster: Cluster,
    deployment_controller: DeploymentController,
    neighbourhood: Cluster,
    slow_proxy: SlowNeighbourProxy,
    operator_with: Callable[..., OperatorProcess],
    shared_exporter: Exporter,
    prometheus_session: PrometheusServer,
) -> None:
    operator = operator_with(
        "--namespace",
        neighbourhood.namespace,
        "--prometheus-url",
        slow_proxy.address,
        "--prometheus-timeout",
        str(TIMEOUT_SECONDS),
    )
    healthy, neighbour = unique("healthy"), unique("neighbour")
    cluster.create_rollout(healthy, healthy_spec(healthy, "1.0.0"))
    neighbourhood.create_rollout(neighbour, neighbour_spec(neighbour, "1.0.0"))
    cluster.wait_for_phase(healthy, "Succeeded")
    neighbourhood.wait_for_phase(neighbour, "Succeeded")

    alone_seconds, alone = deliver(cluster, shared_exporter, prometheus_session, healthy, "2.0.0")
    assert tally(alone) == (STEP_COUNT, STEP_COUNT, 0, "Successful"), alone

    # The neighbour's canary starts, and its background analysis times out on every measurement.
    neighbourhood.patch_spec(neighbour, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})

    def neighbour_errors() -> int:
        metrics = (neighbourhood.status(neighbour).get("backgroundAnalysis") or {}).get("metrics") or [{}]
        return int(metrics[0].get("error", 0))

    neighbourhood.wait_for("the neighbour's first Error measurement", lambda: neighbour_errors() >= 1, timeout=60)
    errors_before = neighbour_errors()
    started = time.monotonic()
    beside_seconds, beside = deliver(cluster, shared_exporter, prometheus_session, healthy, "3.0.0")
    ended = time.monotonic()
    print(
        f"\nhealthy canary ({STEP_COUNT} measurements at 1s, --prometheus-timeout {TIMEOUT_SECONDS:g}s): "
        f"alone {alone_seconds:.1f}s, beside the slow neighbour {beside_seconds:.1f}s"
    )

    # The neighbour was slow all along: its queries kept being held while the healthy canary ran.
    assert slow_proxy.slow_queries_between(started, ended) >= 1
    assert neighbour_errors() >= errors_before
    # The healthy canary: no Error measurement, the same measurements as alone, promoted.
    assert tally(beside) == tally(alone), (beside, alone)
    assert cluster.status(healthy)["stableVersion"] == "3.0.0"
    reasons = cluster.event_reasons(healthy)
    assert "AnalysisError" not in reasons and "AnalysisFailed" not in reasons, reasons
    assert "Error" not in str([entry["phase"] for entry in beside["metrics"][0]["measurements"]])
    assert operator.alive
