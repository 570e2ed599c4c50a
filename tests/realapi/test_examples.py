"""Every manifest in examples/ on the real API server: `kubectl apply --dry-run=server` and then for
real, each into a namespace of its own (the examples say `namespace: default`), with strict field
validation, and every object stored as written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.realapi.conftest import ROOT, Document, Kubectl, documents, in_namespace, is_subset, server_warnings

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
@pytest.mark.usefixtures("third_party_crds")
def test_an_example_is_accepted_and_stored(kubectl: Kubectl, namespace: str, path: Path) -> None:
    objects = [in_namespace(doc, namespace) for doc in documents(path.read_text())]
    manifest = yaml.safe_dump_all(objects)

    dry = kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=manifest)
    assert dry.returncode == 0, f"{path.name}: {dry.stderr}"
    assert dry.stdout.count("created (server dry run)") == len(objects), dry.stdout
    assert server_warnings(dry.stderr) == [], path.name
    stored_by_dry_run = kubectl("get", "-n", namespace, "-f", "-", "--ignore-not-found", stdin=manifest)
    assert stored_by_dry_run.stdout.strip() == "", "a dry run stored something"

    real = kubectl("apply", "--validate=strict", "-f", "-", stdin=manifest)
    assert real.returncode == 0, f"{path.name}: {real.stderr}"
    assert real.stdout.count(" created") == len(objects), real.stdout
    assert server_warnings(real.stderr) == [], path.name

    for sent in objects:
        kind, name = sent["kind"].lower(), sent["metadata"]["name"]
        stored = kubectl.json("get", kind, name, "-n", namespace)
        assert is_subset(sent["spec"], stored["spec"]) == [], f"{path.name}: {kind}/{name}"

    # Applying the same file again changes nothing stored. (kubectl may still say "configured":
    # a JSON merge patch replaces a whole list, and a list item the server filled defaults into
    # differs from the file's; the server then stores the same object, with the same generation.)
    before = {(o["kind"], o["metadata"]["name"]): _version(kubectl, o, namespace) for o in objects}
    again = kubectl("apply", "--validate=strict", "-f", "-", stdin=manifest)
    assert again.returncode == 0, again.stderr
    after = {(o["kind"], o["metadata"]["name"]): _version(kubectl, o, namespace) for o in objects}
    assert after == before, f"{path.name}: a second apply of the same file changed {again.stdout}"


def _version(kubectl: Kubectl, obj: Document, namespace: str) -> tuple[str, int]:
    stored = kubectl.json("get", obj["kind"].lower(), obj["metadata"]["name"], "-n", namespace)
    return stored["metadata"]["resourceVersion"], stored["metadata"]["generation"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
@pytest.mark.usefixtures("third_party_crds")
def test_an_example_applies_server_side(kubectl: Kubectl, namespace: str, path: Path) -> None:
    """`kubectl apply --server-side`: the server merges the fields itself (and checks list keys)."""
    manifest = yaml.safe_dump_all([in_namespace(doc, namespace) for doc in documents(path.read_text())])
    done = kubectl("apply", "--server-side", "--validate=strict", "-f", "-", stdin=manifest)
    assert done.returncode == 0, f"{path.name}: {done.stderr}"
    assert server_warnings(done.stderr) == [], path.name
