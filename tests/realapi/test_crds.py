"""The generated CRDs on the real API server: accepted with server-side validation, published as
generated, documented for `kubectl explain`, and storing every example's spec with nothing pruned.

The session fixture (tests/support/control_plane.py) has already created them from crds/ as a user
would (`POST` of each CRD to an API server that had none) and waited for Established: a CRD the
server refuses fails the whole session there. These tests look at what the server made of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from modelrollout import GROUP, PLURAL, VERSION
from modelrollout.api.crd import render_crds
from modelrollout.api.models import ModelRolloutSpec
from tests.realapi.conftest import ROOT, Document, Kubectl, documents, in_namespace, is_subset, server_warnings
from tests.support.control_plane import RealControlPlane

SOURCES = {
    "render_crds()": None,
    "crds/": ROOT / "crds",
    "charts/modelrollout-operator/crds/": ROOT / "charts" / "modelrollout-operator" / "crds",
}
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def crd_files(source: str, tmp_path: Path) -> list[Path]:
    directory = SOURCES[source]
    if directory is None:
        directory = tmp_path / "rendered"
        directory.mkdir()
        for name, text in render_crds().items():
            (directory / name).write_text(text)
    return sorted(directory.glob("*.yaml"))


def test_every_copy_is_what_the_generator_renders() -> None:
    rendered = render_crds()
    for source, directory in SOURCES.items():
        if directory is not None:
            assert {path.name: path.read_text() for path in directory.glob("*.yaml")} == rendered, source


def test_the_installed_crds_are_the_generated_ones_and_served(real_control_plane: RealControlPlane) -> None:
    admin = kubernetes.config.new_client_from_config(config_file=str(real_control_plane.admin_kubeconfig))
    try:
        extensions = kubernetes.client.ApiextensionsV1Api(admin)
        for text in render_crds().values():
            generated = yaml.safe_load(text)
            served = admin.sanitize_for_serialization(
                extensions.read_custom_resource_definition(generated["metadata"]["name"])
            )
            conditions = {c["type"]: c["status"] for c in served["status"]["conditions"]}
            # A schema the server finds non-structural is still stored, with this condition True.
            assert conditions.get("NonStructuralSchema", "False") == "False", served["status"]
            assert conditions["Established"] == "True"
            assert conditions["NamesAccepted"] == "True"
            assert served["status"]["acceptedNames"]["kind"] == generated["spec"]["names"]["kind"]
            for want, got in zip(generated["spec"]["versions"], served["spec"]["versions"], strict=True):
                assert got["schema"] == want["schema"], (
                    f"{generated['metadata']['name']}: the server changed the schema"
                )
                assert got.get("additionalPrinterColumns") == want.get("additionalPrinterColumns")
                assert got.get("subresources") == want.get("subresources")
    finally:
        admin.close()


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("mode", ["client-side", "server-side"])
def test_apply_with_server_side_validation_is_clean(kubectl: Kubectl, source: str, mode: str, tmp_path: Path) -> None:
    """`kubectl apply --dry-run=server --validate=strict` (and the same with --server-side) of each
    copy: accepted, no warning (a warning is how the server reports a field it would drop)."""
    for path in crd_files(source, tmp_path):
        extra = ["--server-side", "--force-conflicts"] if mode == "server-side" else []
        done = kubectl("apply", "--dry-run=server", "--validate=strict", *extra, "-f", str(path))
        assert done.returncode == 0, f"{source}{path.name}: {done.stderr}"
        assert "(server dry run)" in done.stdout, done.stdout
        assert server_warnings(done.stderr) == [], f"{source}{path.name}"


def _first_line_of(description: str) -> str:
    return description.split("\n")[0].split(". ")[0].strip()


@pytest.mark.parametrize("path", ["spec.strategy.canary", "status", "spec", "spec.analysis", "status.weights"])
def test_kubectl_explain_prints_the_documented_fields(kubectl: Kubectl, path: str) -> None:
    """Each field under `path` in the generated schema is listed by `kubectl explain` (the server's
    published OpenAPI, not our file), with the start of its description."""
    schema: Any = yaml.safe_load(render_crds()[f"{PLURAL}.{GROUP}.yaml"])["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]
    for part in path.split("."):
        schema = schema["properties"][part]
    out = kubectl.ok("explain", f"modelrollout.{path}", f"--api-version={GROUP}/{VERSION}")
    assert f"FIELD: {path.split('.')[-1]}" in out
    flat = " ".join(out.split())
    assert " ".join(_first_line_of(schema["description"]).split()) in flat
    for name, prop in schema["properties"].items():
        assert f"\n  {name}\t" in out, f"kubectl explain modelrollout.{path} does not list {name}:\n{out}"
        assert prop.get("description"), f"{path}.{name} has no description"
        assert " ".join(_first_line_of(prop["description"]).split())[:60] in flat, f"{path}.{name}"


def example_rollouts() -> list[tuple[str, Document]]:
    return [
        (f"{path.name}:{doc['metadata']['name']}", doc)
        for path in EXAMPLES
        for doc in documents(path.read_text())
        if doc["kind"] == "ModelRollout"
    ]


@pytest.mark.parametrize(("name", "rollout"), example_rollouts(), ids=[name for name, _ in example_rollouts()])
def test_an_example_spec_is_stored_unchanged(
    name: str, rollout: Document, admin: kubernetes.client.ApiClient, namespace: str
) -> None:
    """Created for real and read back: every field sent is stored as sent (the structural schema
    prunes nothing the pydantic model has), and the defaults the server adds are the model's own."""
    custom = kubernetes.client.CustomObjectsApi(admin)
    sent = in_namespace(rollout, namespace)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, sent, field_validation="Strict")
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, sent["metadata"]["name"])
    assert is_subset(sent["spec"], stored["spec"]) == [], name
    model = ModelRolloutSpec.model_validate
    assert model(stored["spec"]) == model(sent["spec"]), f"{name}: the server's defaults differ from the model's"
