"""Render the ModelRollout CustomResourceDefinition from the pydantic models.

A real kube-apiserver refuses pydantic's raw JSON schema: it does not allow `$ref`/`$defs`, and
it calls pydantic's `Optional[X]` shape (`anyOf: [{type: X}, {type: null}]`) non-structural.
This module turns the schema into the structural form the apiserver accepts: references inlined,
optionals as `nullable: true` (keeping their bounds), exclusive bounds in OpenAPI 3.0's form,
each bound also said at the end of its field's description (`kubectl explain` prints no `minimum`),
defaults that Kubernetes can apply (a missing object defaults to `{}`, so its own fields' defaults
apply in turn), and no `title` noise.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from modelrollout import GROUP, KIND, PLURAL, VERSION
from modelrollout.api.models import ModelAnalysisTemplateSpec, ModelRolloutSpec, ModelRolloutStatus

CRD_FILE_NAME = f"{PLURAL}.{GROUP}.yaml"
# `kubectl get modelrollout-io` lists all three kinds. Not `modelrollout`: kubectl expands a category
# before it looks for a resource of that name, so a category named like the singular made
# `kubectl get modelrollout NAME` fail on every real cluster ("you must specify only one resource").
CATEGORY = "modelrollout-io"
PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Where the rollout is."},
    {"name": "Stable", "type": "string", "jsonPath": ".status.stableVersion", "description": "Stable version."},
    # The summary's candidate carries the revision when only the template changed: two equal
    # versions side by side said nothing was being delivered.
    {
        "name": "Candidate",
        "type": "string",
        "jsonPath": ".status.summary.candidate",
        "description": "Version being delivered (with its revision when the version is the stable one's).",
    },
    # What the spec asks for, read from the spec itself: after an edit the operator refused, the
    # candidate column still shows the version in flight, and this one what was asked.
    {
        "name": "Requested",
        "type": "string",
        "jsonPath": ".spec.model.version",
        "description": "The version the spec asks for.",
    },
    {
        "name": "Weight",
        "type": "integer",
        "jsonPath": ".status.weights.candidate",
        "description": "Percent of traffic on the candidate.",
    },
    # A shadow step or a header route sends the candidate real requests at weight 0: WEIGHT alone
    # showed nothing live.
    {
        "name": "Traffic",
        "type": "string",
        "jsonPath": ".status.summary.traffic",
        "description": "The split in force, stable/candidate, with a live mirror (+mirror 20%) or header route.",
    },
    {
        "name": "Step",
        "type": "string",
        "jsonPath": ".status.summary.step",
        "description": "Canary: steps completed of all steps.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    # Blue-green has no step index: its stage (Preview, ScaleDownDelay...) says where it stands.
    {
        "name": "Stage",
        "type": "string",
        "jsonPath": ".status.stage",
        "description": "Where the rollout stands (phase and pause reason follow from it).",
        "priority": 1,
    },
    {
        "name": "Revision",
        "type": "string",
        "jsonPath": ".status.candidateRevision",
        "description": "Hash of the candidate's model and pod template.",
        "priority": 1,
    },
]


def _resolve(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(definitions[node["$ref"].split("/")[-1]])
        extra = {key: value for key, value in node.items() if key != "$ref"}
        node = {**target, **extra}
    node = {key: _resolve(value, definitions) for key, value in node.items() if key not in ("title", "$defs")}
    return _structural(node)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def bounds_text(node: dict[str, Any]) -> str | None:
    """A schema node's numeric bounds in words (`between 0 and 100`, `1 or more`); None when it has none.

    The same words end the field's description (kubectl explain prints descriptions, not `minimum`)
    and the operator's message for a spec that crossed a bound without the API server checking it.
    """
    low, high = node.get("minimum"), node.get("maximum")
    low_open, high_open = node.get("exclusiveMinimum") is True, node.get("exclusiveMaximum") is True
    if low is not None and high is not None and not low_open and not high_open:
        return f"between {_number(low)} and {_number(high)}"
    said = []
    if low is not None:
        said.append(f"greater than {_number(low)}" if low_open else f"{_number(low)} or more")
    if high is not None:
        said.append(f"less than {_number(high)}" if high_open else f"at most {_number(high)}")
    return " and ".join(said) or None


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    """Rewrite one resolved schema node into the shape a structural CRD schema requires."""
    any_of = node.get("anyOf")
    if any_of is not None:
        non_null = [option for option in any_of if option.get("type") != "null"]
        if len(non_null) == 1 and len(non_null) < len(any_of):
            rest = {key: value for key, value in node.items() if key != "anyOf"}
            node = {**non_null[0], **rest, "nullable": True}
    if node.get("default", 0) is None:
        del node["default"]
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        # JSON Schema 2020-12 (pydantic's `gt=`/`lt=`) writes an exclusive bound as a number of its own;
        # the API server speaks OpenAPI 3.0, where it is `minimum`/`maximum` plus `exclusive...: true`.
        value = node.get(exclusive)
        if value is not None and not isinstance(value, bool):
            node[bound] = value
            node[exclusive] = True
    allowed = bounds_text(node)
    if allowed is not None and "description" in node:
        node["description"] = f"{node['description'].rstrip('.')}. Must be {allowed}."
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    if node.get("type") == "object" and "properties" in node:
        required = set(node.get("required", []))
        for name, prop in node["properties"].items():
            if name in required or "default" in prop or prop.get("nullable"):
                continue
            # pydantic omits defaults made by default_factory; Kubernetes applies `{}`/`[]` and then
            # the nested defaults, which gives the same value as the factory.
            if prop.get("type") == "object" and "properties" in prop:
                prop["default"] = {}
            elif prop.get("type") == "array":
                prop["default"] = []
        node.setdefault("additionalProperties", None)
        if node["additionalProperties"] is None or node["additionalProperties"] is False:
            del node["additionalProperties"]
    if node.get("x-kubernetes-preserve-unknown-fields") and node.get("type") == "object":
        node.pop("additionalProperties", None)
    return node


def structural_schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.get("$defs", {})
    resolved = _resolve(raw, definitions)
    assert isinstance(resolved, dict)
    return resolved


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition object, ready for `kubectl apply`."""
    spec_schema = structural_schema(ModelRolloutSpec)
    status_schema = structural_schema(ModelRolloutStatus)
    spec_schema["description"] = ModelRolloutSpec.__doc__
    status_schema["description"] = ModelRolloutStatus.__doc__
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "modelrollout", "app.kubernetes.io/part-of": "modelrollout"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["mro"],
                "categories": ["all", CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "Delivers a new version of a machine-learning model: shadow, canary "
                            "or blue-green, judged on model metrics from Prometheus, rolled back on its own.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "modelrollout.io/v1alpha1"},
                                "kind": {"type": "string", "description": "ModelRollout"},
                                # The API server allows nothing but `type` here (v1.36 refuses a description).
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


TEMPLATE_KINDS = {
    "ModelAnalysisTemplate": ("modelanalysistemplates", "Namespaced", ["mat"]),
    "ClusterModelAnalysisTemplate": ("clustermodelanalysistemplates", "Cluster", ["cmat"]),
}


def template_crd_manifest(kind: str) -> dict[str, Any]:
    """A CRD for reusable analysis metrics: namespaced, or cluster-scoped (same schema)."""
    plural, scope, short_names = TEMPLATE_KINDS[kind]
    spec_schema = structural_schema(ModelAnalysisTemplateSpec)
    spec_schema["description"] = ModelAnalysisTemplateSpec.__doc__
    where = "in its namespace" if scope == "Namespaced" else "in every namespace"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "modelrollout", "app.kubernetes.io/part-of": "modelrollout"},
        },
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": f"A reusable analysis metric for ModelRollouts {where}, named in "
                            "spec.analysis.metrics[].template.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "modelrollout.io/v1alpha1"},
                                "kind": {"type": "string", "description": kind},
                                # The API server allows nothing but `type` here (v1.36 refuses a description).
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crds() -> dict[str, str]:
    """File name to YAML text, for everything under `crds/`."""
    header = "# Generated by `modelrollout crd` from operator/modelrollout/api/models.py. Do not edit.\n"
    files = {CRD_FILE_NAME: header + yaml.safe_dump(crd_manifest(), sort_keys=False, width=100)}
    for kind, (plural, _, _) in TEMPLATE_KINDS.items():
        files[f"{plural}.{GROUP}.yaml"] = header + yaml.safe_dump(
            template_crd_manifest(kind), sort_keys=False, width=100
        )
    return files


def write_crds(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_crds().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
