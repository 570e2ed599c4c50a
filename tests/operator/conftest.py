"""Fixtures: an API server (the session's real control plane; else MODELROLLOUT_TEST_KUBECONFIG or an
emulator), the pods' kubelet (or, with no controller manager, a stand-in Deployment controller), a
real Prometheus scraping an exporter whose values tests set, and the operator running as its own
process with the Helm chart's permissions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.support.cluster import Cluster, DeploymentController, PodKubelet, test_cluster
from tests.support.control_plane import RealControlPlane
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import PrometheusServer


@pytest.fixture
def cluster(tmp_path: Path, control_plane: RealControlPlane | None) -> Iterator[Cluster]:
    with test_cluster(tmp_path, control_plane) as made:
        yield made


@pytest.fixture
def deployment_controller(cluster: Cluster) -> Iterator[DeploymentController | PodKubelet]:
    controller = PodKubelet(cluster).start() if cluster.node else DeploymentController(cluster).start()
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture
def operator_with(
    cluster: Cluster, prometheus_session: PrometheusServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start the operator with more flags; it is stopped (its rollouts deleted first) after the test,
    and its log printed if the test failed."""
    started: list[OperatorProcess] = []

    def start(*extra_args: str) -> OperatorProcess:
        log = tmp_path / f"operator-{len(started)}.log" if started else tmp_path / "operator.log"
        process = OperatorProcess(
            cluster.operator_kubeconfig, cluster.namespace, prometheus_session.address, log, extra_args=extra_args
        ).start()
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.alive:
                cluster.delete_all_rollouts()  # through the operator, as a user would
            process.stop()
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                print(f"--- operator log ---\n{process.logs()[-8000:]}")


@pytest.fixture
def operator(operator_with: Callable[..., OperatorProcess]) -> OperatorProcess:
    return operator_with()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
