"""The CRD is generated from the models; these tests keep it structural, documented and in sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modelrollout.api.crd import CRD_FILE_NAME, crd_manifest, render_crds
from modelrollout.cli import main

REPO = Path(__file__).resolve().parents[2]


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _walk(node["items"], f"{path}[]")
    return found


def test_crds_directory_matches_the_models() -> None:
    for name, text in render_crds().items():
        on_disk = REPO / "crds" / name
        assert on_disk.exists(), f"crds/{name} is missing: run `modelrollout crd --output crds`"
        assert on_disk.read_text() == text, "crds/ drifted from the models: run `modelrollout crd --output crds`"


def test_crd_check_command_reports_drift(tmp_path: Path, capsys: Any) -> None:
    assert main(["crd", "--check", str(REPO / "crds")]) == 0
    (tmp_path / CRD_FILE_NAME).write_text("stale")
    assert main(["crd", "--check", str(tmp_path)]) == 1
    assert "out of date" in capsys.readouterr().err


def test_schema_is_structural() -> None:
    text = yaml.safe_dump(_schema())
    assert "$ref" not in text and "$defs" not in text and "anyOf" not in text and "allOf" not in text
    for path, node in _walk(_schema(), "root"):
        assert "type" in node, f"{path} has no type"
        assert "title" not in node, path


def test_every_field_is_described() -> None:
    missing = [
        path for path, node in _walk(_schema(), "root") if not path.endswith("[]") and not node.get("description")
    ]
    # The API server refuses anything but `type` on the root metadata (kubectl explain describes it itself).
    assert missing == ["root.metadata"]
    assert _schema()["properties"]["metadata"] == {"type": "object"}


def test_defaults_are_in_the_schema() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    assert spec["replicas"]["default"] == 1
    assert spec["automation"]["default"] == "auto"
    assert spec["automation"]["enum"] == ["manual", "assisted", "auto"]
    assert spec["progressDeadlineSeconds"]["default"] == 600
    assert spec["analysis"]["properties"]["interval"]["default"] == "30s"
    assert spec["analysis"]["properties"]["consecutiveErrorLimit"]["default"] == 4
    assert spec["strategy"]["default"] == {}
    assert spec["template"]["x-kubernetes-preserve-unknown-fields"] is True


def test_names_columns_and_status_subresource() -> None:
    crd = crd_manifest()
    assert crd["metadata"]["name"] == "modelrollouts.modelrollout.io"
    assert crd["spec"]["names"]["shortNames"] == ["mro"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ".status.phase",
        "Stable": ".status.stableVersion",
        "Candidate": ".status.candidateVersion",
        "Weight": ".status.weights.candidate",
        "Age": ".metadata.creationTimestamp",
    }
