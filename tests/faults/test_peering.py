"""Fault 5: two operator replicas against one API server, with kopf peering (`--peering NAME`).

The peering CRDs and the KopfPeering object come from the Helm chart, rendered as a user with
leaderElection enabled would install it (kopf creates neither). Only the replica with the higher
(random) priority acts; the other logs that it pauses and does nothing. When the active one is
SIGKILLed, it leaves no goodbye in the peering object: the standby takes over once the dead
replica's keep-alive expires (`--peering-lifetime`, 15 s here; kopf's default is 60 s)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.rest import ApiException

from modelrollout.cli import main as cli
from tests.faults.conftest import HeldDeploymentController, Operators
from tests.faults.rollouts import canary_spec, counts, messages, unique
from tests.support.cluster import Cluster
from tests.support.control_plane import RealControlPlane, chart_identity
from tests.support.operator_process import OperatorProcess

CHART = Path(__file__).resolve().parents[2] / "charts" / "modelrollout-operator"
PEERING = "modelrollout-faults"
LIFETIME = 15
TAKEOVER_BOUND = LIFETIME + 30.0  # the keep-alive's lifetime, then slack for a loaded machine
# What only an acting replica logs: the operator's own reconcile lines (kopf logs those of its
# modules under their names).
ACTING = re.compile(r"modelrollout\.reconci")


def _values(namespace: str) -> dict[str, Any]:
    return {"leaderElection": {"enabled": True, "peeringName": PEERING}, "watchNamespaces": [namespace]}


def _peering_manifests(namespace: str) -> list[dict[str, Any]]:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk renders the chart's peering objects")
    values = _values(namespace)
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="modelrollout", namespace="modelrollout-system", is_install=True)
    documents = [
        doc
        for path, text in sorted(rendered.items())
        if path.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    crds = [d for d in documents if d["kind"] == "CustomResourceDefinition" and d["spec"]["group"] == "kopf.dev"]
    objects = [d for d in documents if d["kind"] == "KopfPeering"]
    assert len(crds) == 2 and len(objects) == 1, [d["kind"] for d in documents]
    return crds + objects


def _install_peering(cluster: Cluster, control_plane: RealControlPlane | None, directory: Path) -> None:
    """The chart's peering CRDs and object; on the real control plane also the chart's RBAC for
    this install, which the operators then run with."""
    manifests = _peering_manifests(cluster.namespace)
    for document in manifests:
        if document["kind"] == "CustomResourceDefinition":
            try:
                cluster.extensions.create_custom_resource_definition(document)
            except ApiException as error:
                if error.status != 409:  # an earlier test of this session installed them
                    raise
    cluster.wait_for(
        "the KopfPeering CRD to be established",
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in cluster.extensions.read_custom_resource_definition("kopfpeerings.kopf.dev").status.conditions or []
        ),
    )
    for document in manifests:
        if document["kind"] == "KopfPeering":
            body = {**document, "metadata": {"name": document["metadata"]["name"]}}
            cluster.custom.create_namespaced_custom_object("kopf.dev", "v1", cluster.namespace, "kopfpeerings", body)
    if control_plane is not None:
        release = f"peering-{cluster.namespace}"
        cluster.operator_kubeconfig = chart_identity(
            control_plane, cluster.api_client, directory / "peering.kubeconfig", _values(cluster.namespace), release
        )


def _peers(cluster: Cluster) -> dict[str, dict[str, Any]]:
    peering = cluster.custom.get_namespaced_custom_object("kopf.dev", "v1", cluster.namespace, "kopfpeerings", PEERING)
    return dict(peering.get("status") or {})


def _acting_lines(operator: OperatorProcess) -> list[str]:
    return [line for line in operator.logs().splitlines() if ACTING.search(line)]


def test_one_replica_acts_and_the_other_takes_over_when_it_dies(
    cluster: Cluster,
    deployment_controller: HeldDeploymentController,
    operators: Operators,
    control_plane: RealControlPlane | None,
    tmp_path: Path,
) -> None:
    _install_peering(cluster, control_plane, tmp_path)
    replicas = {
        pod: operators.new(
            pod, extra_args=["--peering", PEERING, "--peering-lifetime", str(LIFETIME)], env={"POD_ID": pod}
        )
        for pod in ("replica-a", "replica-b")
    }
    for pod, operator in replicas.items():
        operator.start()
        cluster.wait_for(f"{pod} in the peering object", lambda pod=pod: pod in _peers(cluster), timeout=60)
    peers = _peers(cluster)
    assert peers["replica-a"]["priority"] != peers["replica-b"]["priority"]
    active_pod = max(replicas, key=lambda pod: peers[pod]["priority"])
    standby_pod = next(pod for pod in replicas if pod != active_pod)
    active, standby = replicas[active_pod], replicas[standby_pod]
    # kopf starts a peered operator paused; only the higher priority resumes (the standby stays paused
    # silently, or logs "Pausing operations in favour of" if it had resumed first).
    active.wait_for_log("Resuming operations after the pause", timeout=60)

    name = unique("peered")
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}]
    cluster.create_rollout(name, canary_spec(name, "1.0.0", steps, metrics=[]))
    cluster.wait_for_phase(name, "Succeeded")
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    cluster.wait_for_phase(name, "Paused")
    # Only one replica did anything.
    assert any("RolloutStarted" in line for line in _acting_lines(active))
    assert _acting_lines(standby) == []
    assert standby.logs().count("Resuming operations") <= standby.logs().count("Pausing operations in favour of")

    active.kill()
    killed_at = time.monotonic()
    assert cli(["promote", name, "--kubeconfig", str(cluster.kubeconfig), "-n", cluster.namespace]) == 0
    status = cluster.wait_for_phase(name, "Succeeded", timeout=TAKEOVER_BOUND + 30)
    takeover = time.monotonic() - killed_at
    print(f"takeover after SIGKILL of the active replica: {takeover:.1f}s")
    assert takeover <= TAKEOVER_BOUND, f"the standby took {takeover:.0f}s to take over"
    assert status["stableVersion"] == "2.0.0"
    assert "Resuming operations" in standby.logs()
    # The pass writes the status first and then posts (and logs) its Events: on a loaded machine the
    # line can come a moment after the status the test saw.
    cluster.wait_for(
        "the standby's Promoted line", lambda: any("Promoted" in line for line in _acting_lines(standby)), timeout=30
    )
    cluster.wait_for("the Promoted event", lambda: "Promoted" in cluster.event_reasons(name))
    seen = counts(cluster, name)
    assert (seen["RolloutStarted"], seen["Promoted"]) == (1, 1)
    completed = messages(cluster, name, "StepCompleted")
    assert len(completed) == len(set(completed)) == len(steps)
