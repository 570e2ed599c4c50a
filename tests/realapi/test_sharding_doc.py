"""The commands of docs/sharding.md's "Who owns a rollout", run on the real API server as a reader types
them (its namespaces swapped for the test's own), against a rollout labelled for shard k of 2 and the
two shard Leases the page shows: each exits 0 and prints what the page says it prints."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import kubernetes

from modelrollout import GROUP, PLURAL, VERSION
from modelrollout.sharding.plan import shard_labels, shard_lease_name, shard_of
from tests.docs.shell_blocks import blocks
from tests.realapi.conftest import ROOT, documents, in_namespace
from tests.support.control_plane import RealControlPlane

DOC = ROOT / "docs" / "sharding.md"
SECTION = "## Who owns a rollout"
ROLLOUT = "fraud-scorer"


def _section_blocks() -> list[tuple[str, str]]:
    """(commands, what the page shows) of each console block in the section."""
    text = DOC.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + 1)
    found = []
    for block in blocks(DOC):
        line = text.splitlines()[block.line - 1]
        offset = sum(len(previous) + 1 for previous in text.splitlines()[: block.line - 1])
        if start <= offset < end and block.language == "console":
            body = text[offset + len(line) + 1 :].split("\n```", 1)[0]
            shown = "\n".join(row for row in body.splitlines() if not row.startswith("$ "))
            found.append((block.commands, shown))
    return found


def _holders(shown_leases: str) -> dict[int, str]:
    rows = [row.split() for row in shown_leases.splitlines()[1:]]
    return {int(row[0].rsplit("-", 1)[1]): row[1] for row in rows}


def test_the_pages_owner_commands_print_what_it_shows(
    real_control_plane: RealControlPlane,
    admin: kubernetes.client.ApiClient,
    make_namespace: Callable[[str], str],
    tmp_path: Path,
) -> None:
    found = _section_blocks()
    assert [commands.split()[:3] for commands, _ in found] == [
        ["kubectl", "modelrollout", "status"],
        ["kubectl", "modelrollout", "status"],
        ["kubectl", "get", "leases"],
    ]
    rollouts, operator = make_namespace(""), make_namespace("")
    holders = _holders(found[2][1])
    shards = len(holders)
    shard = shard_of(rollouts, ROLLOUT, shards)
    rollout = in_namespace(documents((ROOT / "examples" / "canary.yaml").read_text())[0], rollouts)
    rollout["metadata"]["labels"] = shard_labels(rollouts, ROLLOUT, shards)
    custom = kubernetes.client.CustomObjectsApi(admin)
    custom.create_namespaced_custom_object(GROUP, VERSION, rollouts, PLURAL, rollout)
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, rollouts, PLURAL, ROLLOUT, {"status": {"phase": "Progressing"}}
    )
    coordination = kubernetes.client.CoordinationV1Api(admin)
    for index, holder in holders.items():
        now = datetime.now(UTC)
        lease = kubernetes.client.V1Lease(
            metadata=kubernetes.client.V1ObjectMeta(
                name=shard_lease_name("modelrollout", index),
                labels={"modelrollout.io/lease": "shard", "modelrollout.io/shard": str(index)},
                annotations={"modelrollout.io/shards": str(shards)},
            ),
            spec=kubernetes.client.V1LeaseSpec(
                holder_identity=holder, lease_duration_seconds=30, acquire_time=now, renew_time=now
            ),
        )
        coordination.create_namespaced_lease(operator, lease)

    # kubectl finds `kubectl-modelrollout` on PATH, as after `pip install`; the Leases are looked for
    # in the test's operator namespace only (another test's sharded operator may hold shard Leases
    # elsewhere), through the variable the page names.
    env = {
        **os.environ,
        "KUBECONFIG": str(real_control_plane.admin_kubeconfig),
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "MODELROLLOUT_OPERATOR_NAMESPACE": operator,
        "COLUMNS": "200",
    }
    outputs = []
    for commands, _ in found:
        typed = commands.replace("-n ml", f"-n {rollouts}").replace("modelrollout-system", operator)
        ran = subprocess.run(["bash", "-c", typed], env=env, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, (typed, ran.stderr)
        outputs.append(ran.stdout)

    # The screen: the Owner row right under Name, in the page's words.
    page_owner = re.search(r"^Owner\s+(.*?)\nPhase", found[0][1], flags=re.S | re.M)
    assert page_owner is not None
    page_row = " ".join(page_owner.group(1).split())
    assert page_row.startswith(f"shard 0 of {shards}: {holders[0]}, alive (renewed ")
    assert page_row.endswith("ago, lease 30s; by this machine's clock)")
    screen = outputs[0].splitlines()
    assert screen[0].split() == ["Name", f"{rollouts}/{ROLLOUT}"]
    assert screen[1].startswith("Owner") and screen[2].startswith("Phase")
    row = " ".join(screen[1].split()[1:])
    assert row.startswith(f"shard {shard} of {shards}: {holders[shard]}, alive (renewed ")
    assert row.endswith("ago, lease 30s; by this machine's clock)")

    # -o json: the page's owner object, key for key.
    page_json = json.loads(re.sub(r"^  \.\.\.\n", "", found[1][1], flags=re.M))["owner"]
    owner = json.loads(outputs[1])["owner"]
    assert owner.keys() == page_json.keys()
    assert owner["lease"] == f"{operator}/modelrollout-shard-{shard}"
    assert (owner["shard"], owner["shards"], owner["holder"], owner["alive"]) == (shard, shards, holders[shard], True)

    # kubectl get leases: the page's NAME and HOLDER columns (AGE differs).
    assert outputs[2].splitlines()[0].split() == found[2][1].splitlines()[0].split()
    assert _holders(outputs[2]) == holders
