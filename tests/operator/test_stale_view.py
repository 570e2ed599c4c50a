"""A rollback for pods not ready in time is checked against the API server, not the lagging watch.

At 10,000 rollouts the operator's watch-fed view of Deployments fell minutes behind; hundreds of
candidates were rolled back as "0/1 replicas ready after 10m" though the API server had them
ready. One pass is run here in-process against the API server, with the view a lagging watch
would give: the pass reads the Deployments before it rolls back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.operator.test_canary import rollout_spec, unique
from tests.support.cluster import Cluster, DeploymentController, PodKubelet

from modelrollout.api.validation import parse_spec
from modelrollout.engine.common import revision_of, timestamp
from modelrollout.engine.types import DeploymentState
from modelrollout.kube import manifests
from modelrollout.kube.api import DEPLOYMENTS, MODELROLLOUTS, KubeApi
from modelrollout.metrics.prometheus import PrometheusBackend
from modelrollout.reconcile import Runtime, reconcile

STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}]


async def _rollout_waiting_for_its_candidate(
    api: KubeApi, cluster: Cluster, candidate_ready: int
) -> tuple[dict[str, Any], str, str]:
    """A canary whose candidate was created 10 minutes ago (deadline 60 s), stable at 2/2 ready."""
    name = unique("stale")
    old, new = (rollout_spec(name, version, STEPS, replicas=2, progressDeadlineSeconds=60) for version in ("1", "2"))
    for spec in (old, new):
        spec["analysis"]["metrics"] = []
    body = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout", "metadata": {"name": name}, "spec": new}
    created = await api.create(MODELROLLOUTS, cluster.namespace, body)
    old_revision, new_revision = revision_of(parse_spec(old)), revision_of(parse_spec(new))
    started = timestamp(datetime.now(UTC) - timedelta(minutes=10))
    status = {
        "phase": "Progressing",
        "observedGeneration": created["metadata"]["generation"],
        "stableVersion": "1",
        "stableRevision": old_revision,
        "candidateVersion": "2",
        "candidateRevision": new_revision,
        "currentStepIndex": 0,
        "stepStartedAt": started,
        "rolloutStartedAt": started,
    }
    await api.merge_patch(MODELROLLOUTS, cluster.namespace, name, {"status": status}, subresource="status")
    owner = manifests.Owner(name, cluster.namespace, created["metadata"]["uid"])
    for spec, revision, replicas, ready in ((old, old_revision, 2, 2), (new, new_revision, 1, candidate_ready)):
        made = manifests.deployment(owner, parse_spec(spec), revision, replicas)
        await api.create(DEPLOYMENTS, cluster.namespace, made)
        # The pods' readiness comes from the kubelet (the real controllers then count it), or the
        # stand-in Deployment controller: wait until the API server reports what the test wants.
        deadline = asyncio.get_running_loop().time() + 120
        while True:
            seen = await api.get(DEPLOYMENTS, cluster.namespace, made["metadata"]["name"]) or {}
            if seen and (seen.get("status") or {}).get("readyReplicas", 0) == ready:
                break
            assert asyncio.get_running_loop().time() < deadline, f"{made['metadata']['name']}: {seen.get('status')}"
            await asyncio.sleep(0.1)
    current = await api.get(MODELROLLOUTS, cluster.namespace, name)
    assert current is not None
    return current, old_revision, new_revision


@pytest.mark.parametrize(("ready_in_the_api", "phase"), [(1, "Paused"), (0, "RolledBack")])
async def test_a_deadline_rollback_is_decided_on_the_deployments_as_the_api_server_has_them(
    cluster: Cluster, deployment_controller: DeploymentController | PodKubelet, ready_in_the_api: int, phase: str
) -> None:
    if not ready_in_the_api:
        deployment_controller.broken_versions.add("2")  # the candidate's pods never pass their probe
    api = await KubeApi.connect(str(cluster.kubeconfig))
    try:
        body, old_revision, new_revision = await _rollout_waiting_for_its_candidate(api, cluster, ready_in_the_api)
        lagging_watch = {
            old_revision: DeploymentState(old_revision, "1", 2, 2, 0),
            new_revision: DeploymentState(new_revision, "2", 1, 0, 0),
        }
        runtime = Runtime(api=api, backend=PrometheusBackend(), default_prometheus=None)
        result = await reconcile(runtime, body, lagging_watch, {})
        stored = await api.get(MODELROLLOUTS, cluster.namespace, body["metadata"]["name"])
        assert stored is not None
        assert stored["status"]["phase"] == phase, stored["status"]["message"]
        if phase == "Paused":
            # setWeight 50 went ahead on the candidate the API server reports ready, on to the pause
            assert stored["status"]["currentStepIndex"] == 1 and stored["status"]["weights"]["candidate"] == 50
            assert "ProgressDeadlineExceeded" not in [event.reason for event in result.decision.events]
        else:
            assert "0/1 replicas ready" in stored["status"]["message"]
    finally:
        await api.close()
