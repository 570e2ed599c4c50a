"""The operator's /metrics tell routine passes (background measurements) from urgent ones (a pause
ending): `modelrollout_pass_lateness_seconds{kind}`, the overload signal of docs/operator-metrics.md."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families
from tests.operator.test_canary import ERROR_RATIO, rollout_spec, unique
from tests.support.cluster import Cluster, DeploymentController
from tests.support.exporter import Exporter, free_port
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import PrometheusServer


def lateness_counts(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modelrollout_pass_lateness_seconds_count"
    }


def test_measurements_and_a_pause_end_are_counted_apart(
    cluster: Cluster,
    deployment_controller: DeploymentController,
    shared_exporter: Exporter,
    prometheus_session: PrometheusServer,
    operator_with: Callable[..., OperatorProcess],
) -> None:
    port = free_port()
    operator_with("--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    name = unique("pacing")
    cluster.create_rollout(name, rollout_spec(name, "1.0.0", [{"setWeight": 25}, {"pause": {"duration": "4s"}}]))
    cluster.wait_for_phase(name, "Succeeded")
    shared_exporter.set(ERROR_RATIO, 0.01, rollout=name, version="2.0.0")
    prometheus_session.wait_for_value(f'{ERROR_RATIO}{{rollout="{name}",version="2.0.0"}}')
    before = lateness_counts(port)

    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    cluster.wait_for("2.0.0 promoted", lambda: cluster.status(name).get("stableVersion") == "2.0.0", timeout=60)

    after = lateness_counts(port)
    # The measurements through the 4 s pause (one a second when the machine keeps up; fewer on a loaded
    # one, whose passes come late): routine passes woken by their timer; the pause's end: an urgent one.
    assert after.get("routine", 0) - before.get("routine", 0) >= 1, (before, after)
    assert after.get("urgent", 0) - before.get("urgent", 0) >= 1, (before, after)
