"""Prometheus credentials from a Secret: sent to Prometheus, never logged, never in status or Events."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.operator.test_canary import ERROR_RATIO, rollout_spec, unique
from tests.support.cluster import Cluster, DeploymentController
from tests.support.exporter import Exporter
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import PrometheusServer
from tests.support.recording_proxy import RecordingProxy

PASSWORD = "s3cr3t-never-shown"


@pytest.fixture
def proxied_operator(
    cluster: Cluster, prometheus_session: PrometheusServer, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, RecordingProxy]]:
    """The operator with a recording proxy in front of the real Prometheus."""
    proxy = RecordingProxy(prometheus_session.address).start()
    url = f"http://127.0.0.1:{proxy.port}"
    process = OperatorProcess(cluster.kubeconfig, cluster.namespace, url, tmp_path / "op.log").start()
    try:
        yield process, proxy
    finally:
        if process.alive:
            cluster.delete_all_rollouts()
        process.stop()
        proxy.stop()


def _secret(cluster: Cluster, name: str) -> None:
    data = {"user": base64.b64encode(b"analyst").decode(), "password": base64.b64encode(PASSWORD.encode()).decode()}
    cluster.core.create_namespaced_secret(cluster.namespace, {"metadata": {"name": name}, "data": data})


def _assert_never_shown(cluster: Cluster, name: str, process: OperatorProcess) -> None:
    assert PASSWORD not in json.dumps(cluster.rollout(name))
    assert all(PASSWORD not in (event.message or "") for event in cluster.events(name))
    assert PASSWORD not in process.logs()


def test_credentials_from_a_secret_reach_prometheus_and_nothing_else(
    cluster: Cluster,
    deployment_controller: DeploymentController,
    proxied_operator: tuple[OperatorProcess, RecordingProxy],
    shared_exporter: Exporter,
    prometheus_session: PrometheusServer,
) -> None:
    process, proxy = proxied_operator
    name = unique("auth")
    _secret(cluster, "prometheus-credentials")
    auth = {"secret": "prometheus-credentials", "usernameKey": "user", "passwordKey": "password"}
    spec = rollout_spec(name, "1.0.0", [{"setWeight": 50}, {"pause": {"duration": "3s"}}])
    spec["analysis"]["prometheus"] = {"auth": auth}
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    shared_exporter.set(ERROR_RATIO, 0.01, rollout=name, version="2.0.0")
    prometheus_session.wait_for_value(f'{ERROR_RATIO}{{rollout="{name}",version="2.0.0"}}')
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    cluster.wait_for("the canary to start", lambda: cluster.status(name).get("candidateVersion") == "2.0.0")
    status = cluster.wait_for_phase(name, "Succeeded", timeout=60)
    assert status["stableVersion"] == "2.0.0"
    expected = "Basic " + base64.b64encode(f"analyst:{PASSWORD}".encode()).decode()
    assert expected in proxy.authorizations
    _assert_never_shown(cluster, name, process)


def test_a_secret_the_operator_cannot_find_is_an_error_naming_it_and_the_rollout_never_promotes(
    cluster: Cluster,
    deployment_controller: DeploymentController,
    proxied_operator: tuple[OperatorProcess, RecordingProxy],
) -> None:
    process, _ = proxied_operator
    name = unique("noauth")
    spec = rollout_spec(name, "1.0.0", [{"setWeight": 50}, {"pause": {"duration": "2s"}}])
    spec["analysis"]["prometheus"] = {"auth": {"secret": "missing", "bearerTokenKey": "token"}}
    spec["analysis"]["consecutiveErrorLimit"] = 1
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    status = cluster.wait_for_phase(name, "RolledBack", timeout=60)
    assert "Secret" in status["message"] and "/missing (spec.analysis.prometheus.auth) not found" in status["message"]
    assert status["stableVersion"] == "1.0.0"
    _assert_never_shown(cluster, name, process)
