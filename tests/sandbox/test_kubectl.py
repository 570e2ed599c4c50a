"""kubectl on the sandbox's real control plane, as a user would use it (skipped without the binaries).

`kubectl apply` with client- and server-side validation of examples/canary.yaml, `kubectl get mro` with
the CRD's columns, `kubectl explain modelrollout.spec.strategy.canary`, and `kubectl get events` with
the operator's Events: all against the sandbox's kubeconfig, the way docs/sandbox.md tells people to.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modelrollout_devkit.sandbox.supervisor import Sandbox
from tests.support.cluster import REPO, Cluster
from tests.support.control_plane import RealControlPlane
from tests.support.prometheus import prometheus_binary

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def real_sandbox(tmp_path: Path, real_control_plane: RealControlPlane) -> Iterator[Sandbox]:
    prometheus_binary()
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    pattern = f"kubectl-{uuid.uuid4().hex[:4]}-*"
    with Sandbox(
        tmp_path / "sandbox",
        kubeconfig=real_control_plane.admin_kubeconfig,
        operator_kubeconfig=real_control_plane.operator_kubeconfig,
        namespaces=(pattern,),
        dataplane_port=0,
        prometheus_port=0,
    ) as running:
        yield running


def kubectl(sandbox: Sandbox, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(sandbox.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def test_kubectl_apply_get_explain_and_events_on_the_sandbox(real_sandbox: Sandbox) -> None:
    sandbox = real_sandbox
    assert sandbox.real_api and sandbox.kubelet is not None
    namespace = sandbox.config.namespaces[0].rstrip("*") + "canary"
    metadata = {"name": namespace, "annotations": sandbox.namespace_annotations()}
    kubectl(
        sandbox,
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}),
    )
    example = yaml.safe_load((REPO / "examples" / "canary.yaml").read_text())
    example["metadata"]["namespace"] = namespace
    manifest = yaml.safe_dump(example)
    cluster = Cluster(sandbox.kubeconfig, namespace, emulated=False)
    try:
        # Client-side (kubectl's own checks) and server-side (the CRD's schema, strict field
        # validation) dry runs, then the real thing.
        assert "(dry run)" in kubectl(
            sandbox, "apply", "--dry-run=client", "--validate=strict", "-f", "-", stdin=manifest
        )
        assert "(server dry run)" in kubectl(
            sandbox, "apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=manifest
        )
        broken = yaml.safe_load(manifest)
        broken["spec"]["strategy"]["canary"]["noSuchField"] = 1
        refused = subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(sandbox.kubeconfig),
                "apply",
                "--dry-run=server",
                "--validate=strict",
                "-f",
                "-",
            ],
            input=yaml.safe_dump(broken),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0 and "noSuchField" in refused.stderr
        assert "created" in kubectl(sandbox, "apply", "--validate=strict", "-f", "-", stdin=manifest)
        name = example["metadata"]["name"]
        cluster.wait_for_phase(name, "Succeeded", timeout=120)
        table = kubectl(sandbox, "get", "mro", "-n", namespace)
        header = table.splitlines()[0].split()
        assert header[:4] == ["NAME", "PHASE", "STABLE", "CANDIDATE"], table
        row = table.splitlines()[1].split()
        assert row[0] == name and row[1] == "Succeeded", table
        explained = kubectl(sandbox, "explain", "modelrollout.spec.strategy.canary")
        assert "KIND:" in explained and "ModelRollout" in explained and "steps" in explained, explained
        events = kubectl(sandbox, "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
        assert "Deployed" in events or "Deploying" in events, events
        pods = kubectl(sandbox, "get", "pods", "-n", namespace, "-o", "wide")
        assert sandbox.config.node_name in pods and "Running" in pods, pods
    finally:
        cluster.delete_all_rollouts()
        cluster.release_finalizers()
        cluster.core.delete_namespace(namespace)
        cluster.api_client.close()
