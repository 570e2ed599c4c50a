"""The commands as a person runs them, against the real API server and the operator: each waits for
the operator's answer (`status.lastCommand`) and says it, with an exit code a script can test;
`restart`, `undo` and `list`; and a Succeeded status that is final in one write."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from tests.operator.test_canary import unique
from tests.support.cluster import Cluster, DeploymentController
from tests.support.operator_process import OperatorProcess

from modelrollout.client_errors import EXIT_IGNORED
from modelrollout.vocabulary.names import RESTARTED_AT_ANNOTATION

STEPS = [{"setWeight": 25}, {"pause": {}}]


def spec(version: str) -> dict[str, Any]:
    return {
        "replicas": 2,
        "model": {"name": "fraud-scorer", "version": version},
        "template": {"spec": {"containers": [{"name": "server", "image": "reference-model-server:test"}]}},
        "strategy": {"canary": {"steps": STEPS}},
    }


def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    kube = ["-n", cluster.namespace, "--kubeconfig", str(cluster.kubeconfig)]
    return subprocess.run(
        [sys.executable, "-m", "modelrollout.cli", *args, *kube], capture_output=True, text=True, timeout=180
    )


def said(result: subprocess.CompletedProcess[str], code: int, stream: str, *words: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    text = result.stdout if stream == "stdout" else result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in text, (word, text)
    return text


def test_each_command_says_what_the_operator_did_with_it(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess
) -> None:
    name = unique("asked")
    target = f"{cluster.namespace}/{name}"
    cluster.create_rollout(name, spec("1.0.0"))
    cluster.wait_for_phase(name, "Succeeded")

    said(
        cli(cluster, "promote", name),
        EXIT_IGNORED,
        "stderr",
        f"promote ignored by {target}: no candidate to promote: the rollout is Succeeded",
    )
    assert "CommandIgnored" in cluster.event_reasons(name)

    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    cluster.wait_for_phase(name, "Paused", timeout=90)
    said(cli(cluster, "resume", name), EXIT_IGNORED, "stderr", "resume ignored by", "it waits for PauseStep")
    said(cli(cluster, "promote", name), 0, "stdout", f"promote applied to {target}: goes past the step (step 1)")
    status = cluster.wait_for_phase(name, "Succeeded", timeout=90)
    assert status["stableVersion"] == "2.0.0" and status["previousStable"]["version"] == "1.0.0", status

    sent = said(cli(cluster, "pause", name, "--no-wait"), 0, "stdout", f"pause sent to {target} (command ")
    command_id = sent.split("(command ")[1].split(")")[0]
    cluster.wait_for(
        "the operator's answer", lambda: (cluster.status(name).get("lastCommand") or {}).get("id") == command_id
    )
    assert cluster.status(name)["lastCommand"]["outcome"] == "Ignored"

    # restart: the stable pods are replaced through the Deployment, one extra pod at a time.
    said(cli(cluster, "restart", name), 0, "stdout", f"restart applied to {target}", "one at a time")
    stable = next(d for d in cluster.deployments().values() if d.metadata.labels["modelrollout.io/version"] == "2.0.0")
    assert (stable.spec.strategy.rolling_update.max_surge, stable.spec.strategy.rolling_update.max_unavailable) == (
        1,
        0,
    )
    stamp = stable.spec.template.metadata.annotations[RESTARTED_AT_ANNOTATION]
    assert stamp == cluster.status(name)["restartedAt"]

    def restarted() -> bool:
        pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector=f"modelrollout.io/rollout={name}")
        live = [pod for pod in pods.items if pod.metadata.deletion_timestamp is None]
        return len(live) == 2 and all(
            (pod.metadata.annotations or {}).get(RESTARTED_AT_ANNOTATION) == stamp for pod in live
        )

    cluster.wait_for("every stable pod replaced", restarted, timeout=120)
    assert cluster.status(name)["phase"] == "Succeeded"

    # undo: the previous stable revision comes back through the canary, as any spec change.
    undone = cli(cluster, "undo", name)
    said(undone, 0, "stdout", f"undo: {target}: spec.model.version 2.0.0 -> 1.0.0")
    assert "a GitOps tool" in undone.stderr, undone.stderr
    assert cluster.rollout(name)["spec"]["model"]["version"] == "1.0.0"
    cluster.wait_for_phase(name, "Paused", timeout=90)
    said(cli(cluster, "promote", name), 0, "stdout", "promote applied")
    status = cluster.wait_for_phase(name, "Succeeded", timeout=90)
    assert status["stableVersion"] == "1.0.0" and status["previousStable"]["version"] == "2.0.0", status


def test_list_shows_every_rollout_with_phase_versions_traffic_step_and_age(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess
) -> None:
    settled, moving = unique("listed"), unique("listed")
    cluster.create_rollout(settled, spec("1.0.0"))
    cluster.create_rollout(moving, spec("1.0.0"))
    cluster.wait_for_phase(settled, "Succeeded")
    cluster.wait_for_phase(moving, "Succeeded")
    cluster.patch_spec(moving, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    cluster.wait_for_phase(moving, "Paused", timeout=90)

    result = said(cli(cluster, "list"), 0, "stdout")
    header, *rows = result.splitlines()
    assert header.split() == ["NAME", "PHASE", "STABLE", "CANDIDATE", "TRAFFIC", "STEP", "AGE"], header
    by_name = {row.split()[0]: row for row in rows}
    assert by_name[settled].split()[1:4] == ["Succeeded", "1.0.0", "-"], by_name
    fields = by_name[moving].split()
    assert fields[1:6] == ["Paused", "(PauseStep)", "1.0.0", "2.0.0", "50/50"], fields  # 1 of 2 pods: 50%
    assert fields[6] == "1/2" and fields[7].endswith(("s", "m")), fields

    # Nothing was promoted after the first version: undo has nothing to go back to, and says so.
    said(cli(cluster, "undo", settled), EXIT_IGNORED, "stderr", "nothing to go back to")
    assert cluster.rollout(settled)["spec"]["model"]["version"] == "1.0.0"
    # With a candidate in flight, undo goes back to the stable revision: the candidate is withdrawn.
    said(cli(cluster, "undo", moving), 0, "stdout", "spec.model.version 2.0.0 -> 1.0.0")
    withdrawn = cluster.wait_for_phase(moving, "Succeeded", timeout=60)
    assert withdrawn["stableVersion"] == "1.0.0" and "candidateVersion" not in withdrawn, withdrawn

    everywhere = cli(cluster, "list", "-A")
    assert everywhere.stdout.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"], everywhere.stdout
    assert any(line.split()[:2] == [cluster.namespace, moving] for line in everywhere.stdout.splitlines())


def test_a_first_version_s_succeeded_status_is_written_once(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess
) -> None:
    """It was written, then again seconds later only to say "2/2 ready replica(s)" for "2 ready replica(s)"."""
    name = unique("once")
    with cluster.status_history(name) as history:
        cluster.create_rollout(name, spec("1.0.0"))
        cluster.wait_for_phase(name, "Succeeded")
        # A command the operator answers: its write is the next one, and must carry nothing else new.
        said(cli(cluster, "abort", name), EXIT_IGNORED, "stderr", "no candidate to abort")
        cluster.wait_for("the watch to see the answer", lambda: any(s.get("lastCommand") for s in history))
    first = next(index for index, status in enumerate(history) if status.get("phase") == "Succeeded")
    settled = history[first]
    later = [
        {key: value for key, value in status.items() if key not in ("lastCommand", "pendingEvents")}
        for status in history[first:]
    ]
    base = {key: value for key, value in settled.items() if key != "pendingEvents"}
    assert all(status == base for status in later), [s.get("message") for s in history[first:]]
