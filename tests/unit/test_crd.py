"""The CRD is generated from the models; these tests keep it structural, documented and in sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modelrollout.api.crd import CRD_FILE_NAME, crd_manifest, render_crds, template_crd_manifest
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
        "Candidate": ".status.summary.candidate",
        "Requested": ".spec.model.version",
        "Weight": ".status.weights.candidate",
        "Traffic": ".status.summary.traffic",
        "Step": ".status.summary.step",
        "Age": ".metadata.creationTimestamp",
        "Stage": ".status.stage",
        "Revision": ".status.candidateRevision",
    }
    wide = [column["name"] for column in version["additionalPrinterColumns"] if column.get("priority")]
    assert wide == ["Stage", "Revision"]


# Every number of the spec and its bound: (minimum, maximum, exclusive minimum). None: no bound,
# on purpose (a threshold may be any number). A numeric field added without an entry fails below.
SPEC_BOUNDS: dict[str, tuple[float | None, float | None, bool]] = {
    "root.spec.replicas": (1, None, False),
    "root.spec.progressDeadlineSeconds": (1, None, False),
    "root.spec.service.port": (1, 65535, False),
    "root.spec.service.targetPort": (1, 65535, False),
    "root.spec.strategy.canary.steps[].setWeight": (0, 100, False),
    "root.spec.strategy.canary.steps[].mirror.percent": (0, 100, False),
    "root.spec.strategy.canary.steps[].analysis.count": (1, None, False),
    "root.spec.strategy.canary.steps[].analysis.consecutiveSuccessLimit": (0, 1000, False),
    "root.spec.strategy.blueGreen.autoPromotionSeconds": (0, None, False),
    "root.spec.strategy.blueGreen.scaleDownDelaySeconds": (0, None, False),
    "root.spec.strategy.blueGreen.prePromotionAnalysis.count": (1, None, False),
    "root.spec.strategy.blueGreen.prePromotionAnalysis.consecutiveSuccessLimit": (0, 1000, False),
    "root.spec.strategy.blueGreen.postPromotionAnalysis.count": (1, None, False),
    "root.spec.strategy.blueGreen.postPromotionAnalysis.consecutiveSuccessLimit": (0, 1000, False),
    "root.spec.analysis.failureLimit": (0, None, False),
    "root.spec.analysis.inconclusiveLimit": (0, None, False),
    "root.spec.analysis.consecutiveErrorLimit": (0, None, False),
    "root.spec.analysis.metrics[].threshold.min": (None, None, False),
    "root.spec.analysis.metrics[].threshold.max": (None, None, False),
    "root.spec.analysis.metrics[].compare.maxRatio": (0, None, True),
    "root.spec.analysis.metrics[].compare.maxDifference": (0, None, False),
    "root.spec.analysis.metrics[].drift.max": (0, None, False),
    "root.spec.analysis.metrics[].drift.minPValue": (0, 1, True),
    "root.spec.analysis.metrics[].drift.topFeatures": (0, 50, False),
    "root.spec.analysis.metrics[].minCount": (0, None, False),
    "root.spec.analysis.metrics[].measurementRetention": (1, 100, False),
    "root.spec.analysis.metrics[].web.timeoutSeconds": (0, 60, True),
    "root.spec.analysis.metrics[].job.timeoutSeconds": (1, 86400, False),
    "root.spec.analysis.metrics[].accuracy.min": (0, 1, False),
    "root.spec.analysis.metrics[].accuracy.max": (0, None, False),
    "root.spec.analysis.metrics[].accuracy.maxDrop": (0, None, False),
    "root.spec.analysis.metrics[].accuracy.minLabelled": (1, None, False),
    "root.spec.analysis.metrics[].accuracy.confidence": (0.5, 0.9999, False),
    "root.spec.monitoring.consecutiveFailures": (1, 10, False),
    "root.spec.notifications.webhooks[].maxAttempts": (1, 20, False),
    "root.spec.notifications.webhooks[].timeoutSeconds": (0, 30, True),
    "root.spec.webhooks[].timeoutSeconds": (0, 30, True),
    "root.spec.strategy.canary.steps[].mirror.compare.joinTtlSeconds": (1, 600, False),
    "root.spec.analysis.metrics[].agreement.min": (0, 1, True),
    "root.spec.analysis.metrics[].agreement.minPairs": (1, None, False),
    "root.spec.analysis.metrics[].agreement.confidence": (0.5, 0.999, False),
}
TEMPLATE_BOUNDS: dict[str, tuple[float | None, float | None, bool]] = {
    "root.spec.threshold.min": (None, None, False),
    "root.spec.threshold.max": (None, None, False),
    "root.spec.compare.maxRatio": (0, None, True),
    "root.spec.compare.maxDifference": (0, None, False),
    "root.spec.drift.max": (0, None, False),
    "root.spec.drift.minPValue": (0, 1, True),
    "root.spec.drift.topFeatures": (0, 50, False),
    "root.spec.minCount": (0, None, False),
}


def _numbers(schema: dict[str, Any], under: str) -> dict[str, tuple[float | None, float | None, bool]]:
    return {
        path: (node.get("minimum"), node.get("maximum"), node.get("exclusiveMinimum", False))
        for path, node in _walk(schema, "root")
        if path.startswith(under) and node.get("type") in ("integer", "number")
    }


def test_every_number_of_the_spec_has_its_bound_in_the_schema() -> None:
    # The API server refuses `setWeight: 150` or `replicas: -2` itself only if the bound is here.
    assert _numbers(_schema(), "root.spec") == SPEC_BOUNDS


def test_every_number_of_a_template_has_its_bound_in_the_schema() -> None:
    for kind in ("ModelAnalysisTemplate", "ClusterModelAnalysisTemplate"):
        schema = template_crd_manifest(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert _numbers(schema, "root.spec") == TEMPLATE_BOUNDS, kind


def test_an_exclusive_bound_is_in_openapi_3_0_form() -> None:
    # JSON Schema 2020-12 writes `exclusiveMinimum: 0`; the API server wants `minimum: 0` and `true`.
    ratio = _schema()["properties"]["spec"]["properties"]["analysis"]["properties"]["metrics"]["items"]
    max_ratio = ratio["properties"]["compare"]["properties"]["maxRatio"]
    assert (max_ratio["minimum"], max_ratio["exclusiveMinimum"]) == (0, True)
    assert "exclusiveMaximum" not in yaml.safe_dump(crd_manifest())


def test_a_bound_is_said_in_its_description() -> None:
    # kubectl explain prints descriptions, never `minimum`/`maximum` (tests/realapi/test_kubectl.py).
    spec = _schema()["properties"]["spec"]["properties"]
    assert spec["replicas"]["description"].endswith("Must be 1 or more.")
    weight = spec["strategy"]["properties"]["canary"]["properties"]["steps"]["items"]["properties"]["setWeight"]
    assert weight["description"].endswith("Must be between 0 and 100.")
    for path, node in _walk(_schema(), "root"):
        if "minimum" in node or "maximum" in node:
            assert " Must be " in node["description"], path
