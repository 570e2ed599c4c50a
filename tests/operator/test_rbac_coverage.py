"""The RBAC the Helm chart grants covers every call the operator makes, enforced by a real API server.

The operator runs on the real control plane as the chart's own ServiceAccount, through a rollout
that uses every feature that talks to the API: first deploy, canary over a Gateway API route, a
namespaced analysis template and the built-in fallback (which looks for a cluster template first),
a training reference in a ConfigMap, monitoring with a retraining Job, a command from a person, and
deletion. RBAC is the API server's own, so a call the chart does not allow is refused there: the
rollout must go through every phase and the operator's log must show no refusal. Twice: installed
for the whole cluster (the chart's defaults) and scoped to the test's namespace (`watchNamespaces`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from kubernetes.client.rest import ApiException
from tests.operator.test_canary import ERROR_RATIO, rollout_spec, unique
from tests.support.cluster import Cluster, DeploymentController
from tests.support.control_plane import RealControlPlane, chart_identity
from tests.support.exporter import Exporter
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import PrometheusServer
from tests.traffic.crds import httproute_crd

from modelrollout.cli import main as cli

GATEWAY = ("gateway.networking.k8s.io", "v1")
# How a refusal reads in the operator's log: the API server's "... is forbidden: User ..." and the
# reason Forbidden (kopf's APIForbiddenError, our client's "403 Forbidden"). Not a bare "403": a
# log timestamp's milliseconds can be that.
REFUSALS = ("Forbidden", "forbidden")


@pytest.fixture(params=["cluster-wide", "namespaced"])
def chart_operator(
    request: pytest.FixtureRequest,
    real_control_plane: RealControlPlane,
    cluster: Cluster,
    prometheus_session: PrometheusServer,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    if request.param == "cluster-wide":
        kubeconfig = real_control_plane.operator_kubeconfig
    else:
        # Roles in the test's namespace, a ClusterRole for the cluster-scoped reads only.
        values = {"watchNamespaces": [cluster.namespace]}
        release = f"scoped-{cluster.namespace}"
        kubeconfig = chart_identity(
            real_control_plane, cluster.api_client, tmp_path / "scoped.kubeconfig", values, release
        )
    process = OperatorProcess(kubeconfig, cluster.namespace, prometheus_session.address, tmp_path / "op.log").start()
    try:
        yield process
    finally:
        if process.alive:
            cluster.delete_all_rollouts()
        process.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"--- operator log ---\n{process.logs()[-8000:]}")


def test_the_charts_rbac_covers_every_call_the_operator_makes(
    cluster: Cluster,
    deployment_controller: DeploymentController,
    chart_operator: OperatorProcess,
    shared_exporter: Exporter,
    prometheus_session: PrometheusServer,
) -> None:
    ns = cluster.namespace
    try:
        cluster.extensions.create_custom_resource_definition(httproute_crd())
    except ApiException as error:
        if error.status != 409:
            raise
    name = unique("rbac")
    cluster.wait_for("the HTTPRoute CRD", lambda: _served(cluster))
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {"rules": [{"backendRefs": [{"name": f"{name}-stable", "port": 80}]}]},
    }
    cluster.custom.create_namespaced_custom_object(*GATEWAY, ns, "httproutes", route)
    cluster.custom.create_namespaced_custom_object(
        "modelrollout.io",
        "v1alpha1",
        ns,
        "modelanalysistemplates",
        {
            "apiVersion": "modelrollout.io/v1alpha1",
            "kind": "ModelAnalysisTemplate",
            "metadata": {"name": "error-ratio"},
            "spec": {
                "prometheus": {"query": f'{ERROR_RATIO}{{rollout="{{{{name}}}}",version="{{{{candidate}}}}"}}'},
                "threshold": {"max": 0.05},
            },
        },
    )
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "edges"}, "data": {"feature-edges.json": "{}"}})
    shared_exporter.set(ERROR_RATIO, 0.01, rollout=name, version="1.0.0")
    shared_exporter.set(ERROR_RATIO, 0.01, rollout=name, version="2.0.0")
    prometheus_session.wait_for_value(f'{ERROR_RATIO}{{rollout="{name}",version="2.0.0"}}')
    analysis = {
        "interval": "1s",
        "metrics": [
            {"name": "errors", "template": {"name": "error-ratio"}},
            {"name": "builtin", "template": {"name": "null-predictions"}, "background": False},
            {
                "name": "inputs",
                "background": False,
                "prometheus": {"query": 'nothing{version="{{candidate}}"}'},
                "drift": {"max": 0.2, "reference": "training", "trainingReference": {"configMap": "edges"}},
            },
        ],
    }
    monitoring = {
        "interval": "1s",
        "metrics": ["errors", "inputs"],
        "hook": {
            "job": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "x"}]}}}
        },
    }
    spec = rollout_spec(
        name,
        "1.0.0",
        [{"setWeight": 30}, {"pause": {}}],
        analysis=analysis,
        monitoring=monitoring,
        trafficRouting={"gatewayAPI": {"httpRoute": name}},
    )
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    cluster.wait_for_phase(name, "Paused")
    assert cli(["promote", name, "--kubeconfig", str(cluster.kubeconfig), "-n", ns]) == 0
    cluster.wait_for_phase(name, "Succeeded")
    shared_exporter.set(ERROR_RATIO, 0.9, rollout=name, version="2.0.0")  # the promoted model "drifts"
    cluster.wait_for("the retraining Job", lambda: cluster.custom.api_client and _jobs(cluster), timeout=60)
    cluster.delete_rollout(name)
    cluster.wait_for("the rollout to be gone", lambda: name not in cluster.rollout_names(), timeout=30)

    refusals = [line for line in chart_operator.logs().splitlines() if any(word in line for word in REFUSALS)]
    assert refusals == [], "the API server refused calls the chart does not grant:\n" + "\n".join(refusals[:20])


def _served(cluster: Cluster) -> bool:
    try:
        cluster.custom.list_namespaced_custom_object(*GATEWAY, cluster.namespace, "httproutes")
    except ApiException:
        return False
    return True


def _jobs(cluster: Cluster) -> bool:
    jobs = kubernetes.client.BatchV1Api(cluster.api_client).list_namespaced_job(cluster.namespace).items
    return bool(jobs)


def test_the_operators_identity_is_refused_what_the_chart_does_not_grant(real_control_plane: RealControlPlane) -> None:
    """The tests' operator really is held to the chart: RBAC on, and nothing granted beyond it."""
    client = kubernetes.config.new_client_from_config(config_file=str(real_control_plane.operator_kubeconfig))
    with client:
        core = kubernetes.client.CoreV1Api(client)
        with pytest.raises(ApiException) as refused:
            core.list_node()
        assert refused.value.status == 403
        with pytest.raises(ApiException) as refused:
            core.create_namespace({"metadata": {"name": "not-for-the-operator"}})
        assert refused.value.status == 403
        assert core.list_namespace().items  # what the chart grants (kopf's namespace scan) works
