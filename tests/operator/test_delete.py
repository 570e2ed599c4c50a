"""A ModelRollout deleted in the middle of a canary: its objects go, the user's route stays valid."""

from __future__ import annotations

import pytest
from kubernetes.client.rest import ApiException
from tests.operator.test_canary import rollout_spec, unique
from tests.support.cluster import Cluster, DeploymentController
from tests.support.operator_process import OperatorProcess
from tests.traffic.crds import httproute_crd

GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")


def _route(cluster: Cluster, name: str) -> dict[str, object]:
    result: dict[str, object] = cluster.custom.get_namespaced_custom_object(
        *GATEWAY[:2], cluster.namespace, GATEWAY[2], name
    )
    return result


def test_deleting_a_rollout_mid_canary_restores_the_users_route_and_removes_the_rest(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess
) -> None:
    if not cluster.emulated:
        pytest.skip("needs the Gateway API CRD; installed here only into the emulator")
    try:
        cluster.extensions.create_custom_resource_definition(httproute_crd())
    except ApiException as error:
        if error.status != 409:
            raise
    cluster.wait_for("the HTTPRoute CRD", lambda: _try_list(cluster))
    name = unique("deleted")
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/docs"}}], "backendRefs": [{"name": "docs"}]},
                {"backendRefs": [{"name": f"{name}-stable", "port": 80}]},
            ],
        },
    }
    cluster.custom.create_namespaced_custom_object(*GATEWAY[:2], cluster.namespace, GATEWAY[2], route)
    steps = [{"setWeight": 40}, {"mirror": {"percent": 50}}, {"pause": {}}]
    cluster.create_rollout(
        name, rollout_spec(name, "1.0.0", steps, analysis={}, trafficRouting={"gatewayAPI": {"httpRoute": name}})
    )
    cluster.wait_for_phase(name, "Succeeded")
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    cluster.wait_for_phase(name, "Paused")
    managed = _route(cluster, name)["spec"]["rules"][1]  # type: ignore[index]
    assert {ref["name"] for ref in managed["backendRefs"]} == {f"{name}-stable", f"{name}-canary"}
    assert managed["filters"][0]["type"] == "RequestMirror"

    cluster.delete_rollout(name)
    cluster.wait_for("the ModelRollout to be gone", lambda: name not in cluster.rollout_names(), timeout=30)
    restored = _route(cluster, name)
    rules = restored["spec"]["rules"]  # type: ignore[index]
    assert rules[0] == route["spec"]["rules"][0]  # type: ignore[index]  # the user's own rule, untouched
    (only,) = rules[1]["backendRefs"]  # all traffic to stable: the candidate's backendRef is gone
    assert only["name"] == f"{name}-stable" and only["port"] == 80 and only.get("weight", 1) > 0
    assert not rules[1].get("filters")
    # The Service the route names is kept, so the route never points at a deleted Service...
    stable = cluster.core.read_namespaced_service(f"{name}-stable", cluster.namespace)
    assert not stable.metadata.owner_references
    # ...and everything else the rollout owned is garbage-collected.
    cluster.wait_for("owned objects to be collected", lambda: not cluster.deployments(), timeout=30)
    services = {service.metadata.name for service in cluster.core.list_namespaced_service(cluster.namespace).items}
    assert services == {f"{name}-stable"}


def _try_list(cluster: Cluster) -> bool:
    try:
        cluster.custom.list_namespaced_custom_object(*GATEWAY[:2], cluster.namespace, GATEWAY[2])
    except ApiException:
        return False
    return True
