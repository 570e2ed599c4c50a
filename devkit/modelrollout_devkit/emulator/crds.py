"""CustomResourceDefinitions: validation as the apiextensions-apiserver does it, defaults, and status."""

from __future__ import annotations

import re
from typing import Any

from modelrollout_devkit.emulator.errors import Cause, invalid_value
from modelrollout_devkit.emulator.schema import structural_errors

JsonDict = dict[str, Any]

CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def apply_defaults(crd: JsonDict) -> None:
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", f"{names['kind']}List")
    spec.setdefault("conversion", {"strategy": "None"})
    spec.setdefault("scope", "Namespaced")


def validate(crd: JsonDict) -> list[Cause]:
    causes: list[Cause] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    name = (crd.get("metadata") or {}).get("name", "")
    if not group:
        causes.append(Cause("spec.group", "FieldValueRequired", "Required value"))
    elif "." not in group:
        causes.append(
            Cause(
                "spec.group",
                "FieldValueInvalid",
                f"Invalid value: {invalid_value(group)}: should be a domain with at least one dot",
            )
        )
    if not plural:
        causes.append(Cause("spec.names.plural", "FieldValueRequired", "Required value"))
    elif not _DNS_LABEL.match(plural):
        causes.append(
            Cause(
                "spec.names.plural",
                "FieldValueInvalid",
                f"Invalid value: {invalid_value(plural)}: a lowercase RFC 1123 label must consist of"
                " lower case alphanumeric characters or '-'",
            )
        )
    if not names.get("kind"):
        causes.append(Cause("spec.names.kind", "FieldValueRequired", "Required value"))
    if group and plural and name != f"{plural}.{group}":
        causes.append(
            Cause(
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: {invalid_value(name)}: must be spec.names.plural+"."+spec.group',
            )
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            Cause(
                "spec.scope",
                "FieldValueNotSupported",
                f'Unsupported value: {invalid_value(spec.get("scope"))}: supported values: "Cluster", "Namespaced"',
            )
        )
    versions = spec.get("versions") or []
    if not versions:
        causes.append(
            Cause(
                "spec.versions",
                "FieldValueInvalid",
                'Invalid value: "null": must have exactly one version marked as storage version',
            )
        )
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(
            Cause(
                "spec.versions",
                "FieldValueInvalid",
                'Invalid value: "array": must have exactly one version marked as storage version',
            )
        )
    seen: set[str] = set()
    schemas = [(version.get("schema") or {}).get("openAPIV3Schema") for version in versions]
    # The apiserver validates the internal form, where a schema that all versions share is hoisted
    # to spec.validation: its errors name that path, as a real server's do.
    shared = bool(schemas) and all(schema == schemas[0] for schema in schemas)
    if shared:
        causes.extend(schema_errors(schemas[0], "spec.validation.openAPIV3Schema"))
    for index, version in enumerate(versions):
        where = f"spec.versions[{index}]"
        vname = version.get("name") or ""
        if not vname:
            causes.append(Cause(f"{where}.name", "FieldValueRequired", "Required value"))
        elif vname in seen:
            causes.append(Cause(f"{where}.name", "FieldValueDuplicate", f"Duplicate value: {invalid_value(vname)}"))
        seen.add(vname)
        if not shared:
            causes.extend(schema_errors(schemas[index], f"{where}.schema.openAPIV3Schema"))
    return causes


def schema_errors(schema: Any, path: str) -> list[Cause]:
    causes = structural_errors(schema, path)
    if isinstance(schema, dict):
        causes.extend(root_metadata_errors(schema, path))
    return causes


def root_metadata_errors(schema: JsonDict, path: str) -> list[Cause]:
    """A root ``metadata`` schema may say it is an object and constrain ``name`` and ``generateName``
    (as strings), nothing else: the apiserver owns metadata (``kubectl apply`` of a CRD whose root
    metadata has a description is refused)."""
    metadata = (schema.get("properties") or {}).get("metadata")
    if not isinstance(metadata, dict):
        return []
    where = f"{path}.properties[metadata]"
    causes: list[Cause] = []
    if metadata.get("type") not in (None, "object"):
        causes.append(
            Cause(
                f"{where}.type",
                "FieldValueInvalid",
                f"Invalid value: {invalid_value(metadata['type'])}: must be object",
            )
        )
    properties = metadata.get("properties") or {}
    for name in ("name", "generateName"):
        sub = properties.get(name)
        if isinstance(sub, dict) and sub.get("type") not in (None, "string"):
            causes.append(
                Cause(
                    f"{where}.properties[{name}].type",
                    "FieldValueInvalid",
                    f"Invalid value: {invalid_value(sub['type'])}: must be string",
                )
            )
    others = set(metadata) - {"type", "properties"} or set(properties) - {"name", "generateName"}
    if others:
        causes.append(
            Cause(
                where,
                "FieldValueForbidden",
                "Forbidden: must not specify anything other than name and generateName, but metadata is implicitly"
                " specified",
            )
        )
    return causes


def established_status(crd: JsonDict, now: str, previous: JsonDict | None) -> JsonDict:
    spec = crd["spec"]
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    stored = list((previous or {}).get("storedVersions") or [])
    return {
        "acceptedNames": dict(spec["names"]),
        "storedVersions": [*stored, storage] if storage not in stored else stored,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": now,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": now,
            },
        ],
    }
