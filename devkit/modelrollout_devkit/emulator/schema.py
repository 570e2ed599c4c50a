"""Structural OpenAPI v3 schemas of CRDs: the structural check, pruning, defaulting, and validation."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from modelrollout_devkit.emulator.errors import Cause, invalid_value

JsonDict = dict[str, Any]

_TYPES = ("object", "array", "string", "integer", "number", "boolean")
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
_UNSUPPORTED = ("$ref", "$schema", "id", "definitions", "dependencies", "patternProperties", "additionalItems")
_NOT_IN_JUNCTORS = (
    "type",
    "default",
    "nullable",
    "additionalProperties",
    "description",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
)
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")


def structural_errors(schema: Any, path: str) -> list[Cause]:
    """Why a CRD schema is not structural, in the apiserver's words; empty if it is fine."""
    if not isinstance(schema, dict):
        return [Cause(path, "FieldValueRequired", "Required value: schemas are required")]
    causes: list[Cause] = []
    if schema.get("type") != "object":
        causes.append(
            Cause(
                f"{path}.type",
                "FieldValueInvalid" if "type" in schema else "FieldValueRequired",
                "Invalid value: must be object at the root"
                if "type" in schema
                else "Required value: must not be empty at the root",
            )
        )
    _check_node(schema, path, causes, typed=True, in_junctor=False)
    return causes


def _check_node(node: Any, path: str, causes: list[Cause], *, typed: bool, in_junctor: bool) -> None:
    if not isinstance(node, dict):
        causes.append(Cause(path, "FieldValueInvalid", "Invalid value: must be a schema object"))
        return
    for key in _UNSUPPORTED:
        if key in node:
            causes.append(Cause(f"{path}.{key}", "FieldValueForbidden", f"Forbidden: {key} is not supported"))
    if node.get("uniqueItems") is True:
        causes.append(
            Cause(
                f"{path}.uniqueItems",
                "FieldValueForbidden",
                "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            )
        )
    if in_junctor:
        for key in _NOT_IN_JUNCTORS:
            if key in node:
                causes.append(
                    Cause(f"{path}.{key}", "FieldValueForbidden", "Forbidden: must be empty to be structural")
                )
    else:
        node_type = node.get("type")
        preserved = node.get("x-kubernetes-preserve-unknown-fields")
        int_or_string = node.get("x-kubernetes-int-or-string") is True
        if preserved not in (None, True):
            causes.append(
                Cause(
                    f"{path}.x-kubernetes-preserve-unknown-fields",
                    "FieldValueInvalid",
                    "Invalid value: false: must be true or undefined",
                )
            )
        if node_type is None and typed and not int_or_string and preserved is not True:
            causes.append(
                Cause(
                    f"{path}.type",
                    "FieldValueRequired",
                    "Required value: must not be empty for specified object fields",
                )
            )
        elif node_type is not None and node_type not in _TYPES:
            causes.append(
                Cause(
                    f"{path}.type",
                    "FieldValueNotSupported",
                    f"Unsupported value: {invalid_value(node_type)}: supported values: "
                    + ", ".join(f'"{t}"' for t in _TYPES),
                )
            )
        elif int_or_string and node_type is not None:
            causes.append(
                Cause(
                    f"{path}.type",
                    "FieldValueInvalid",
                    "Invalid value: must be empty if x-kubernetes-int-or-string is true",
                )
            )
        if node_type == "array" and "items" not in node:
            causes.append(Cause(f"{path}.items", "FieldValueRequired", "Required value: must be specified"))
        if "properties" in node and node.get("additionalProperties") not in (None, False):
            causes.append(
                Cause(
                    f"{path}.additionalProperties",
                    "FieldValueForbidden",
                    "Forbidden: additionalProperties and properties are mutual exclusive",
                )
            )
    for name, sub in (node.get("properties") or {}).items():
        _check_node(sub, f"{path}.properties[{name}]", causes, typed=not in_junctor, in_junctor=in_junctor)
    if isinstance(node.get("additionalProperties"), dict):
        _check_node(
            node["additionalProperties"],
            f"{path}.additionalProperties",
            causes,
            typed=not in_junctor,
            in_junctor=in_junctor,
        )
    if "items" in node:
        if isinstance(node["items"], list):
            causes.append(
                Cause(
                    f"{path}.items", "FieldValueForbidden", "Forbidden: items must be a schema object and not an array"
                )
            )
        else:
            _check_node(node["items"], f"{path}.items", causes, typed=not in_junctor, in_junctor=in_junctor)
    for junctor in _JUNCTORS:
        members = node.get(junctor)
        if junctor == "not" and members is not None:
            _check_node(members, f"{path}.not", causes, typed=False, in_junctor=True)
        elif isinstance(members, list):
            for index, member in enumerate(members):
                _check_node(member, f"{path}.{junctor}[{index}]", causes, typed=False, in_junctor=True)


@dataclass
class Outcome:
    """The result of admitting an object through its CRD schema."""

    obj: JsonDict
    causes: list[Cause] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)  # paths of unknown fields, for warnings/strictness


def admit(obj: JsonDict, schema: JsonDict) -> Outcome:
    """Prune unknown fields, apply defaults, then validate, as the apiserver does on writes."""
    # apiVersion, kind and metadata are the apiserver's own business, whatever the schema says about them.
    root = {
        **schema,
        "properties": {k: v for k, v in (schema.get("properties") or {}).items() if k not in _ROOT_FIELDS},
        "required": [name for name in schema.get("required") or [] if name not in _ROOT_FIELDS],
    }
    outcome = Outcome({})
    cleaned = _prune_and_default({k: v for k, v in obj.items() if k not in _ROOT_FIELDS}, root, "", outcome)
    _validate(cleaned, root, "", outcome.causes)
    outcome.obj = {**{k: v for k, v in obj.items() if k in _ROOT_FIELDS}, **cleaned}
    return outcome


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _prune_and_default(value: Any, schema: JsonDict, path: str, outcome: Outcome) -> Any:
    if isinstance(value, dict) and (
        schema.get("type") == "object" or "properties" in schema or schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        properties: JsonDict = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") is True or additional is True
        embedded = schema.get("x-kubernetes-embedded-resource") is True
        result: JsonDict = {}
        for key, item in value.items():
            sub = properties.get(key, additional if isinstance(additional, dict) else None)
            if item is None and isinstance(sub, dict) and not sub.get("nullable"):
                continue  # null where null is not allowed is pruned (then defaulted), not refused
            if key in properties:
                result[key] = _prune_and_default(item, properties[key], _join(path, key), outcome)
            elif isinstance(additional, dict):
                result[key] = _prune_and_default(item, additional, _join(path, key), outcome)
            elif keep_unknown or (embedded and key in _ROOT_FIELDS):
                result[key] = item
            else:
                outcome.pruned.append(_join(path, key))
        for key, sub in properties.items():
            if "default" not in sub:
                continue
            if key not in result or (result[key] is None and not sub.get("nullable")):
                result[key] = _prune_and_default(copy.deepcopy(sub["default"]), sub, _join(path, key), outcome)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune_and_default(item, schema["items"], f"{path}[{n}]", outcome) for n, item in enumerate(value)]
    return value


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(value: Any, wanted: str) -> bool:
    actual = _type_of(value)
    if wanted == "number":
        return actual in ("integer", "number")
    if wanted == "integer":
        return actual == "integer" or (actual == "number" and float(value).is_integer())
    return actual == wanted


def _validate(value: Any, schema: JsonDict, path: str, causes: list[Cause]) -> None:
    shown = invalid_value(value)
    where = path or "<root>"
    wanted = schema.get("type")
    if value is None:
        if not schema.get("nullable") and wanted:
            causes.append(
                Cause(
                    path,
                    "FieldValueTypeInvalid",
                    f'Invalid value: "null": {where} in body must be of type {wanted}: "null"',
                )
            )
        return
    if schema.get("x-kubernetes-int-or-string") and (isinstance(value, bool) or not isinstance(value, (int, str))):
        causes.append(
            Cause(
                path,
                "FieldValueTypeInvalid",
                f"Invalid value: {shown}: {where} in body must be of type integer or string",
            )
        )
        return
    if wanted and not _type_ok(value, wanted):
        causes.append(
            Cause(
                path,
                "FieldValueTypeInvalid",
                f'Invalid value: {shown}: {where} in body must be of type {wanted}: "{_type_of(value)}"',
            )
        )
        return
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(invalid_value(v) for v in schema["enum"])
        causes.append(
            Cause(path, "FieldValueNotSupported", f"Unsupported value: {shown}: supported values: {supported}")
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _validate_number(value, schema, path, causes)
    elif isinstance(value, str):
        _validate_string(value, schema, path, causes)
    elif isinstance(value, list):
        _validate_array(value, schema, path, causes)
    elif isinstance(value, dict):
        _validate_object(value, schema, path, causes)
    _validate_junctors(value, schema, path, causes)


def _validate_number(value: float, schema: JsonDict, path: str, causes: list[Cause]) -> None:
    shown = invalid_value(value)
    if "minimum" in schema:
        low = schema["minimum"]
        if value < low or (schema.get("exclusiveMinimum") is True and value == low):
            relation = "greater than" if schema.get("exclusiveMinimum") is True else "greater than or equal to"
            causes.append(
                Cause(path, "FieldValueInvalid", f"Invalid value: {shown}: {path} in body should be {relation} {low}")
            )
    if "maximum" in schema:
        high = schema["maximum"]
        if value > high or (schema.get("exclusiveMaximum") is True and value == high):
            relation = "less than" if schema.get("exclusiveMaximum") is True else "less than or equal to"
            causes.append(
                Cause(path, "FieldValueInvalid", f"Invalid value: {shown}: {path} in body should be {relation} {high}")
            )
    factor = schema.get("multipleOf")
    if factor and (value / factor) % 1:
        causes.append(
            Cause(path, "FieldValueInvalid", f"Invalid value: {shown}: {path} in body should be a multiple of {factor}")
        )


def _validate_string(value: str, schema: JsonDict, path: str, causes: list[Cause]) -> None:
    shown = invalid_value(value)
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        causes.append(Cause(path, "FieldValueTooLong", f"Too long: may not be longer than {schema['maxLength']}"))
    if "minLength" in schema and len(value) < schema["minLength"]:
        causes.append(
            Cause(
                path,
                "FieldValueInvalid",
                f"Invalid value: {shown}: {path} in body should be at least {schema['minLength']} chars long",
            )
        )
    if "pattern" in schema and not re.search(schema["pattern"], value):
        causes.append(
            Cause(
                path, "FieldValueInvalid", f"Invalid value: {shown}: {path} in body should match '{schema['pattern']}'"
            )
        )


def _validate_array(value: list[Any], schema: JsonDict, path: str, causes: list[Cause]) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        causes.append(
            Cause(path, "FieldValueTooMany", f"Too many: {len(value)}: must have at most {schema['maxItems']} items")
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        causes.append(
            Cause(
                path,
                "FieldValueInvalid",
                f"Invalid value: {len(value)}: {path} in body should have at least {schema['minItems']} items",
            )
        )
    if isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _validate(item, schema["items"], f"{path}[{index}]", causes)


def _validate_object(value: JsonDict, schema: JsonDict, path: str, causes: list[Cause]) -> None:
    for name in schema.get("required") or []:
        if name not in value:
            causes.append(Cause(_join(path, name), "FieldValueRequired", "Required value"))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        causes.append(
            Cause(
                path, "FieldValueTooMany", f"Too many: {len(value)}: must have at most {schema['maxProperties']} items"
            )
        )
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        causes.append(
            Cause(
                path,
                "FieldValueInvalid",
                f"Invalid value: {len(value)}: {path} in body should have"
                f" at least {schema['minProperties']} properties",
            )
        )
    properties: JsonDict = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if key in properties:
            _validate(item, properties[key], _join(path, key), causes)
        elif isinstance(additional, dict):
            _validate(item, additional, _join(path, key), causes)


def _validate_junctors(value: Any, schema: JsonDict, path: str, causes: list[Cause]) -> None:
    def passes(sub: JsonDict) -> bool:
        found: list[Cause] = []
        _validate(value, sub, path, found)
        return not found

    shown = invalid_value(value)
    for sub in schema.get("allOf") or []:
        _validate(value, sub, path, causes)
    if schema.get("anyOf") and not any(passes(sub) for sub in schema["anyOf"]):
        causes.append(
            Cause(
                path,
                "FieldValueInvalid",
                f"Invalid value: {shown}: {path} in body must validate at least one schema (anyOf)",
            )
        )
    if schema.get("oneOf") and sum(passes(sub) for sub in schema["oneOf"]) != 1:
        causes.append(
            Cause(
                path,
                "FieldValueInvalid",
                f"Invalid value: {shown}: {path} in body must validate one and only one schema (oneOf)",
            )
        )
    if isinstance(schema.get("not"), dict) and passes(schema["not"]):
        causes.append(
            Cause(
                path,
                "FieldValueInvalid",
                f"Invalid value: {shown}: {path} in body should not be valid against the schema",
            )
        )
