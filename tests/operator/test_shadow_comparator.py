"""A mirror step with compare on the real API server, through the Gateway API router: the operator deploys
the comparator (owned, its own labels), the HTTPRoute's RequestMirror goes to it and not to the candidate,
and both go when the candidate is aborted. The operator runs with the Helm chart's permissions."""

from __future__ import annotations

from typing import Any

from kubernetes.client.rest import ApiException
from tests.operator.test_canary import rollout_spec, unique
from tests.operator.test_command_answers import cli
from tests.support.cluster import Cluster, DeploymentController
from tests.support.operator_process import OperatorProcess

from modelrollout.kube.comparator import COMPARATOR_LABEL, FOR_ANNOTATION
from modelrollout.vocabulary.names import ROLLOUT_LABEL
from modelrollout_devkit.sandbox.routes import route_crd_documents

GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")


def _install_httproute_crd(cluster: Cluster) -> None:
    for document in route_crd_documents():
        if document["spec"]["names"]["kind"] != "HTTPRoute":
            continue
        try:
            cluster.extensions.create_custom_resource_definition(document)
        except ApiException as error:
            if error.status != 409:  # there already: the cluster's own, or an earlier test's
                raise
    cluster.wait_for("the HTTPRoute CRD", lambda: _lists(cluster), timeout=60)


def _lists(cluster: Cluster) -> bool:
    try:
        cluster.custom.list_namespaced_custom_object(*GATEWAY[:2], cluster.namespace, GATEWAY[2])
    except ApiException:
        return False
    return True


def _route(cluster: Cluster, name: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.custom.get_namespaced_custom_object(
        *GATEWAY[:2], cluster.namespace, GATEWAY[2], name
    )
    return found


def _mirrors(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    rule = _route(cluster, name)["spec"]["rules"][0]
    return [item["requestMirror"] for item in rule.get("filters") or [] if item.get("type") == "RequestMirror"]


def test_the_mirror_goes_to_the_comparator_the_operator_deploys_and_removes(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess
) -> None:
    _install_httproute_crd(cluster)
    name = unique("shadow")
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [{"backendRefs": [{"name": f"{name}-stable", "port": 80}]}],
        },
    }
    cluster.custom.create_namespaced_custom_object(*GATEWAY[:2], cluster.namespace, GATEWAY[2], route)
    steps = [{"mirror": {"percent": 50, "compare": {"joinTtlSeconds": 20}}}, {"pause": {}}]
    spec = rollout_spec(name, "1.0.0", steps, trafficRouting={"gatewayAPI": {"httpRoute": name}})
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    assert f"{name}-comparator" not in cluster.deployments(), "nothing to compare before a candidate"

    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    cluster.wait_for_phase(name, "Paused", timeout=90)
    comparator = f"{name}-comparator"
    (mirror,) = cluster.wait_for("the route's mirror", lambda: _mirrors(cluster, name) or None)
    assert mirror["backendRef"] == {"name": comparator, "port": 80}
    assert mirror.get("percent", 50) == 50
    backends = {ref["name"] for ref in _route(cluster, name)["spec"]["rules"][0]["backendRefs"]}
    assert backends == {f"{name}-stable"}, "a shadow gives the candidate no user traffic"

    deployment = cluster.wait_for("the comparator", lambda: cluster.deployments().get(comparator))
    owner = deployment.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("ModelRollout", name, True)
    labels = deployment.spec.template.metadata.labels
    assert labels[COMPARATOR_LABEL] == name and ROLLOUT_LABEL not in labels, "no rollout Service may select it"
    assert deployment.metadata.annotations[FOR_ANNOTATION] == cluster.status(name)["candidateRevision"]
    container = deployment.spec.template.spec.containers[0]
    env = {item.name: item.value for item in container.env}
    assert container.args == ["comparator"]
    assert env["COMPARATOR_STABLE_URL"] == f"http://{name}-stable.{cluster.namespace}.svc:80"
    assert env["COMPARATOR_CANDIDATE_URL"] == f"http://{name}-canary.{cluster.namespace}.svc:80"
    assert (env["STABLE_VERSION"], env["CANDIDATE_VERSION"], env["COMPARATOR_JOIN_TTL_SECONDS"]) == (
        "1.0.0",
        "2.0.0",
        "20",
    )
    service = cluster.core.read_namespaced_service(comparator, cluster.namespace)
    assert service.spec.selector == {COMPARATOR_LABEL: name}
    assert [(port.port, port.target_port) for port in service.spec.ports] == [(80, 8080)]
    # The operator never takes the comparator for a version of the model: the rollout waits at its pause.
    assert cluster.status(name)["phase"] == "Paused"

    aborted = cli(cluster, "abort", name)
    assert aborted.returncode == 0, aborted.stderr
    cluster.wait_for_phase(name, "RolledBack", timeout=90)
    cluster.wait_for("the comparator to go", lambda: comparator not in cluster.deployments(), timeout=60)
    cluster.wait_for("the mirror to go", lambda: not _mirrors(cluster, name), timeout=60)
    services = {item.metadata.name for item in cluster.core.list_namespaced_service(cluster.namespace).items}
    assert comparator not in services
