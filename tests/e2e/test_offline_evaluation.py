"""Issue 17 part 3 end to end: offline evaluation before any traffic, in the sandbox on the real control plane.

A canary's step 0 is an analysis by a job metric: the operator creates a Job (owned by the rollout)
that runs the reference model server's `--evaluate` entry point on the candidate's model (its
`spec.model.uri`), the real Job controller runs its pod through the sandbox kubelet, and the number in
the pod's termination message (the accuracy on the labelled evaluation set) is judged against
`threshold.min`. A candidate that scores badly is rolled back with weight 0 all along, so it never
serves a request; a good one goes on to its canary steps and is promoted. The Jobs are gone afterwards.
"""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from modelrollout_devkit.sandbox.supervisor import Sandbox
from tests.e2e.test_sandbox_canary import scenario, start_load
from tests.support.cluster import Cluster

pytestmark = pytest.mark.timeout(420)

EVALUATION_LABEL = "modelrollout.io/evaluation-of"
MIN_ACCURACY = 0.9


def rollout_spec(version: str, uri: str) -> dict[str, Any]:
    return {
        "replicas": 2,
        "model": {"name": "breast-cancer", "version": version, "uri": uri},
        "template": {"spec": {"containers": [{"name": "server", "image": "reference-model-server"}]}},
        "strategy": {
            "canary": {
                "steps": [
                    {"analysis": {"metrics": ["offline-accuracy"], "count": 1}},
                    {"setWeight": 50},
                    {"pause": {"duration": "3s"}},
                ]
            }
        },
        "analysis": {
            "metrics": [
                {
                    "name": "offline-accuracy",
                    "background": False,
                    "job": {
                        "timeoutSeconds": 180,
                        "spec": {
                            "template": {
                                "spec": {
                                    "containers": [
                                        {
                                            "name": "evaluate",
                                            "image": "reference-model-server",
                                            "args": ["--evaluate"],
                                            "env": [{"name": "EVALUATED_VERSION", "value": "{{candidate}}"}],
                                        }
                                    ]
                                }
                            }
                        },
                    },
                    "threshold": {"min": MIN_ACCURACY},
                }
            ]
        },
    }


def test_a_candidate_failing_its_offline_evaluation_never_gets_traffic(sandbox: Sandbox) -> None:
    if not sandbox.real_api:
        pytest.skip("a Job needs the real controller manager (KUBEBUILDER_ASSETS); the emulator runs none")
    with scenario(sandbox, "offline") as made:
        cluster, name = made.cluster, made.name
        cluster.create_rollout(name, rollout_spec("1.0.0", "sandbox://baseline"))
        cluster.wait_for_phase(name, "Succeeded", timeout=90)
        start_load(made)
        cluster.wait_for("traffic to the stable version", lambda: made.served("1.0.0") > 0, timeout=60)

        bad = rollout_spec("2.0.0", "sandbox://drifted")
        with cluster.status_history(name) as history:
            cluster.patch_spec(name, {"model": bad["model"]})
            rolled_back = cluster.wait_for_phase(name, "RolledBack", timeout=240)
        assert rolled_back["stableVersion"] == "1.0.0"
        assert "metric 'offline-accuracy'" in rolled_back["message"]
        assert f"is not at least {MIN_ACCURACY:g}" in rolled_back["message"]
        measured = rolled_back["stepAnalysis"]["metrics"][0]["measurements"]
        assert [m["phase"] for m in measured] == ["Failed"]
        assert 0.5 < measured[0]["value"] < MIN_ACCURACY  # the drifted model's real accuracy (~0.63)
        # Never any traffic: weight 0 in every status written, and the data plane never reached it.
        candidates = [s for s in history if s.get("candidateVersion") == "2.0.0"]
        assert candidates, "the watch saw no status of the candidate"
        assert all((s.get("weights") or {}).get("candidate", 0) == 0 for s in candidates)
        assert made.served("2.0.0") == 0
        cluster.wait_for("the evaluation Job to be deleted once measured", lambda: not _evaluation_jobs(cluster, name))

        good = rollout_spec("1.1.0", "sandbox://baseline")
        cluster.patch_spec(name, {"model": good["model"]})
        cluster.wait_for("1.1.0 as candidate", lambda: cluster.status(name).get("candidateVersion") == "1.1.0")
        promoted = cluster.wait_for_phase(name, "Succeeded", timeout=240)
        assert promoted["stableVersion"] == "1.1.0"
        reasons = cluster.event_reasons(name)
        assert "AnalysisSucceeded" in reasons and "Promoted" in reasons
        cluster.wait_for("traffic to the promoted version", lambda: made.served("1.1.0") > 0, timeout=60)
        cluster.wait_for("no evaluation Job left", lambda: not _evaluation_jobs(cluster, name))


def _evaluation_jobs(cluster: Cluster, name: str) -> list[str]:
    batch = kubernetes.client.BatchV1Api(cluster.api_client)
    listed = batch.list_namespaced_job(cluster.namespace, label_selector=f"{EVALUATION_LABEL}={name}")
    return [job.metadata.name for job in listed.items]


def test_an_evaluation_job_that_does_not_finish_in_time_is_an_error_and_the_candidate_gets_no_traffic(
    sandbox: Sandbox,
) -> None:
    if not sandbox.real_api:
        pytest.skip("a Job needs the real controller manager (KUBEBUILDER_ASSETS); the emulator runs none")
    with scenario(sandbox, "deadline") as made:
        cluster, name = made.cluster, made.name
        spec = rollout_spec("1.0.0", "sandbox://baseline")
        metric = spec["analysis"]["metrics"][0]
        # Without --evaluate the reference model server serves for ever: the Job's deadline ends it.
        del metric["job"]["spec"]["template"]["spec"]["containers"][0]["args"]
        metric["job"]["timeoutSeconds"] = 6
        spec["analysis"]["consecutiveErrorLimit"] = 0
        cluster.create_rollout(name, spec)
        cluster.wait_for_phase(name, "Succeeded", timeout=90)
        cluster.patch_spec(name, {"model": {**spec["model"], "version": "2.0.0"}})
        rolled_back = cluster.wait_for_phase(name, "RolledBack", timeout=240)
        assert "failed: DeadlineExceeded (timeoutSeconds)" in rolled_back["message"]
        assert (rolled_back.get("weights") or {}).get("candidate", 0) == 0
        assert [m["phase"] for m in rolled_back["stepAnalysis"]["metrics"][0]["measurements"]] == ["Error"]
        cluster.wait_for("the evaluation Job to be deleted", lambda: not _evaluation_jobs(cluster, name))
