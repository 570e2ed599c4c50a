"""kubectl on the real API server as a user runs it: `get mro` with every printer column, `get mro -w`,
`get modelrollout NAME`, and `get events` (no operator: the status is written as the admin, through
the status subresource, as the operator would)."""

from __future__ import annotations

import queue
import subprocess
import threading
from typing import Any

import kubernetes
import yaml

from modelrollout import GROUP, PLURAL, VERSION
from modelrollout.api.crd import PRINTER_COLUMNS
from tests.realapi.conftest import ROOT, Kubectl, documents, in_namespace, wait_for

ROLLOUT = documents((ROOT / "examples" / "canary.yaml").read_text())[0]
SUMMARY = {"candidate": "1.1.0", "traffic": "90/10", "step": "1/4"}
STATUS = {
    "phase": "Progressing",
    "stableVersion": "1.0.0",
    "candidateVersion": "1.1.0",
    "weights": {"candidate": 10},
    "summary": SUMMARY,
}


def create_rollout(kubectl: Kubectl, namespace: str) -> None:
    kubectl.ok("apply", "--validate=strict", "-f", "-", stdin=yaml.safe_dump(in_namespace(ROLLOUT, namespace)))


def write_status(admin: kubernetes.client.ApiClient, namespace: str, status: dict[str, Any]) -> None:
    kubernetes.client.CustomObjectsApi(admin).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, ROLLOUT["metadata"]["name"], {"status": status}
    )


def columns(table: str) -> list[dict[str, str]]:
    """kubectl's table as rows by column name, cut at the header's column starts (values hold spaces)."""
    header, *rows = table.splitlines()
    names = header.split()
    starts = [header.index(f" {name} ") + 1 if index else 0 for index, name in enumerate(names[:-1])]
    starts.append(header.rindex(names[-1]))
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [{name: row[a:b].strip() for name, (a, b) in zip(names, bounds, strict=True)} for row in rows]


def test_get_shows_every_printer_column(kubectl: Kubectl, admin: kubernetes.client.ApiClient, namespace: str) -> None:
    create_rollout(kubectl, namespace)
    write_status(admin, namespace, STATUS)
    table = kubectl.ok("get", "mro", "-n", namespace)
    assert table.splitlines()[0].split() == [
        "NAME",
        *(c["name"].upper() for c in PRINTER_COLUMNS if not c.get("priority")),
    ]
    row = columns(table)[0]
    assert [row[name] for name in ("NAME", "PHASE", "STABLE", "CANDIDATE", "REQUESTED", "WEIGHT")] == [
        "fraud-scorer",
        "Progressing",
        "1.0.0",
        "1.1.0",
        "1.0.0",  # the spec's version: examples/canary.yaml asks for 1.0.0
        "10",
    ]
    assert (row["TRAFFIC"], row["STEP"]) == ("90/10", "1/4"), row
    # A live shadow and a header route show at weight 0; a template-only change shows its revision;
    # -o wide adds the stage and the candidate's revision.
    shadow = {
        "weights": {"candidate": 0, "mirror": 20, "headerRoute": True, "header": "x-canary=1"},
        "candidateVersion": "1.0.0",
        "candidateRevision": "abc1234567",
        "summary": {
            "candidate": "1.0.0 (rev abc1234)",
            "traffic": "100/0 +mirror 20% header x-canary=1",
            "step": "2/4",
        },
        "stage": "Stepping",
    }
    write_status(admin, namespace, {**STATUS, **shadow})
    row = columns(kubectl.ok("get", "mro", "-n", namespace, "-o", "wide"))[0]
    assert row["WEIGHT"] == "0" and row["TRAFFIC"] == "100/0 +mirror 20% header x-canary=1", row
    assert row["CANDIDATE"] == "1.0.0 (rev abc1234)" and row["STEP"] == "2/4", row
    assert (row["STAGE"], row["REVISION"]) == ("Stepping", "abc1234567"), row
    # The singular and the plural name one object (a category named `modelrollout` once broke this).
    for resource in ("modelrollout", "modelrollouts", "mro", f"modelrollouts.{GROUP}"):
        assert kubectl.ok("get", resource, "fraud-scorer", "-n", namespace, "-o", "name") == (
            f"{PLURAL[:-1]}.{GROUP}/fraud-scorer\n"
        )
    assert "fraud-scorer" in kubectl.ok("get", "modelrollout-io", "-n", namespace)


def test_get_watch_prints_a_line_per_change(
    kubectl: Kubectl, admin: kubernetes.client.ApiClient, namespace: str
) -> None:
    watch = subprocess.Popen(
        [*kubectl.command(), "get", "mro", "-n", namespace, "-w", "--request-timeout=60s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in watch.stdout or []], daemon=True).start()
    seen: list[str] = []

    def saw(*words: str) -> bool:
        while not lines.empty():
            seen.append(lines.get())
        return any(all(word in line.split() for word in words) for line in seen)

    try:
        # The first line may come from kubectl's initial list or from the watch; the status line can
        # only come from a watch event: the status is written after the first line was seen.
        create_rollout(kubectl, namespace)
        wait_for("a line for the new rollout", lambda: saw("fraud-scorer"))
        write_status(admin, namespace, STATUS)
        wait_for(f"a line with the new status; seen {seen}", lambda: saw("fraud-scorer", "Progressing", "10"))
    finally:
        watch.terminate()
        watch.wait(timeout=10)


def test_get_events_lists_a_rollouts_event(
    kubectl: Kubectl, admin: kubernetes.client.ApiClient, namespace: str
) -> None:
    create_rollout(kubectl, namespace)
    rollout = kubectl.json("get", "mro", "fraud-scorer", "-n", namespace)
    kubernetes.client.CoreV1Api(admin).create_namespaced_event(
        namespace,
        {
            "metadata": {"generateName": "fraud-scorer."},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ModelRollout",
                "name": "fraud-scorer",
                "namespace": namespace,
                "uid": rollout["metadata"]["uid"],
            },
            "reason": "StepStarted",
            "message": "setWeight 10",
            "type": "Normal",
            "source": {"component": "modelrollout"},
        },
    )
    out = kubectl.ok("get", "events", "-n", namespace)
    assert "modelrollout/fraud-scorer" in out and "StepStarted" in out and "setWeight 10" in out, out
    out = kubectl.ok("events", "-n", namespace, "--for", "modelrollout/fraud-scorer")
    assert "StepStarted" in out, out


def test_explain_shows_the_bounds_and_apply_refuses_what_crosses_them(kubectl: Kubectl, namespace: str) -> None:
    # kubectl explain prints a field's type and description, never its `minimum`/`maximum`: the
    # bound reaches a person through the description's last sentence, which crd.py writes from it.
    replicas = kubectl.ok("explain", "modelrollout.spec.replicas")
    assert "FIELD: replicas <integer>" in replicas
    assert "Must be 1 or more." in " ".join(replicas.split()), replicas
    assert "minimum" not in replicas.lower()
    weight = kubectl.ok("explain", "modelrollout.spec.strategy.canary.steps.setWeight")
    assert "Must be between 0 and 100." in " ".join(weight.split()), weight

    rollout = in_namespace(ROLLOUT, namespace)
    rollout["spec"]["replicas"] = -2
    done = kubectl("apply", "--validate=strict", "-f", "-", stdin=yaml.safe_dump(rollout))
    assert done.returncode != 0
    assert (
        'The ModelRollout "fraud-scorer" is invalid: spec.replicas: Invalid value: -2: '
        "spec.replicas in body should be greater than or equal to 1" in done.stderr
    ), done.stderr
    assert kubectl("get", "mro", "fraud-scorer", "-n", namespace).returncode != 0
