"""The RBAC the chart grants (operator/modelrollout/rbac.py) covers every call the operator makes.

The operator runs behind a recording proxy through a rollout that uses every feature that talks to
the API: first deploy, canary over a Gateway API route, a namespaced analysis template and the
built-in fallback (which looks for a cluster template first), a training reference in a ConfigMap,
monitoring with a retraining Job, a command from a person, and deletion. Every (verb, resource) it
sent must be granted, both to a cluster-wide install and to one scoped to the test's namespace.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client.rest import ApiException
from tests.operator.test_canary import ERROR_RATIO, rollout_spec, unique
from tests.support.cluster import Cluster, DeploymentController
from tests.support.exporter import Exporter
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import PrometheusServer
from tests.support.recording_proxy import RecordingProxy
from tests.traffic.crds import httproute_crd

from modelrollout import rbac
from modelrollout.cli import main as cli
from modelrollout.emulator.server import _verb, parse_api_path

GATEWAY = ("gateway.networking.k8s.io", "v1")


@pytest.fixture
def recorded_operator(
    cluster: Cluster, prometheus_session: PrometheusServer, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, RecordingProxy]]:
    if not cluster.emulated or cluster.api_url is None:
        pytest.skip("records requests through a proxy in front of the in-process emulator")
    proxy = RecordingProxy(cluster.api_url).start()
    kubeconfig = proxy.write_kubeconfig(tmp_path / "operator-kubeconfig")
    process = OperatorProcess(kubeconfig, cluster.namespace, prometheus_session.address, tmp_path / "op.log").start()
    try:
        yield process, proxy
    finally:
        if process.alive:
            cluster.delete_all_rollouts()
        process.stop()
        proxy.stop()


def test_the_granted_rbac_covers_every_call_the_operator_makes(
    cluster: Cluster,
    deployment_controller: DeploymentController,
    recorded_operator: tuple[OperatorProcess, RecordingProxy],
    shared_exporter: Exporter,
    prometheus_session: PrometheusServer,
) -> None:
    _process, proxy = recorded_operator
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

    cluster_wide = rbac.grants(namespaces=[], peering=False)
    scoped = rbac.grants(namespaces=[ns], peering=False)
    called: set[tuple[str, str, str, bool]] = set()
    for seen in proxy.seen:
        path = parse_api_path(seen.path)
        if path is None:
            continue  # discovery (/api, /apis, /version): allowed to every authenticated user
        resource = path.plural + (f"/{path.subresource}" if path.subresource else "")
        verb = _verb(seen.method, path, dict(urllib.parse.parse_qsl(seen.query)))
        called.add((path.group, resource, verb, path.namespace is not None))
    assert ("modelrollout.io", "modelrollouts/status", "patch", True) in called
    assert ("batch", "jobs", "create", True) in called
    assert ("", "configmaps", "get", True) in called
    assert ("modelrollout.io", "clustermodelanalysistemplates", "get", False) in called
    assert ("gateway.networking.k8s.io", "httproutes", "patch", True) in called
    missing_cluster_wide = sorted(
        call for call in called if (rbac.CLUSTER, call[0], call[1], call[2]) not in cluster_wide
    )
    assert missing_cluster_wide == []
    missing_scoped = sorted(
        call
        for call in called
        if (ns if call[3] else rbac.CLUSTER, call[0], call[1], call[2]) not in scoped
        and (rbac.CLUSTER, call[0], call[1], call[2]) not in scoped
    )
    assert missing_scoped == []


def _served(cluster: Cluster) -> bool:
    try:
        cluster.custom.list_namespaced_custom_object(*GATEWAY, cluster.namespace, "httproutes")
    except ApiException:
        return False
    return True


def _jobs(cluster: Cluster) -> bool:
    import kubernetes

    jobs = kubernetes.client.BatchV1Api(cluster.api_client).list_namespaced_job(cluster.namespace).items
    return bool(jobs)
