"""Server-side ``meta.k8s.io/v1`` Tables, which ``kubectl get`` asks for to print its columns."""

from __future__ import annotations

import datetime
import re
from typing import Any

from modelrollout_devkit.emulator.resources import ResourceType

JsonDict = dict[str, Any]

_STEP = re.compile(r'\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.-]+)==["\']([^"\']*)["\']\)\]')


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def _jsonpath(obj: Any, path: str) -> Any:
    """The subset of JSONPath that printer columns use: fields, indexes, and ``[?(@.key=="value")]``."""
    current: Any = obj
    for match in _STEP.finditer(path.strip().lstrip("{").rstrip("}")):
        field, index, key, value = match.groups()
        if field is not None:
            current = current.get(field) if isinstance(current, dict) else None
        elif index is not None:
            current = current[int(index)] if isinstance(current, list) and int(index) < len(current) else None
        else:
            found = [
                item for item in current or [] if isinstance(item, dict) and str(_jsonpath(item, f".{key}")) == value
            ]
            current = found[0] if found else None
        if current is None:
            return None
    return current


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    created = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    seconds = int((datetime.datetime.now(datetime.UTC) - created).total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3 * 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _builtin_columns(rtype: ResourceType) -> list[tuple[str, str, Any]]:
    """(name, type, cell function) of the columns kubectl shows for common built-ins."""

    def status(path: str) -> Any:
        return lambda obj: _jsonpath(obj, path)

    match rtype.kind:
        case "Namespace":
            return [("Status", "string", status(".status.phase"))]
        case "Deployment":
            return [
                (
                    "Ready",
                    "string",
                    lambda obj: (
                        f"{_jsonpath(obj, '.status.readyReplicas') or 0}/{_jsonpath(obj, '.spec.replicas') or 0}"
                    ),
                ),
                ("Up-to-date", "integer", lambda obj: _jsonpath(obj, ".status.updatedReplicas") or 0),
                ("Available", "integer", lambda obj: _jsonpath(obj, ".status.availableReplicas") or 0),
            ]
        case "Pod":
            return [("Status", "string", status(".status.phase"))]
        case "Service":
            return [("Type", "string", status(".spec.type")), ("Cluster-IP", "string", status(".spec.clusterIP"))]
    return []


def table(rtype: ResourceType, items: list[JsonDict], metadata: JsonDict) -> JsonDict:
    definitions: list[JsonDict] = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "priority": 0,
            "description": "Name must be unique within a namespace.",
        }
    ]
    cells: list[Any] = []
    if rtype.custom:
        for column in rtype.printer_columns:
            definitions.append(
                {
                    "name": column["name"],
                    "type": column.get("type", "string"),
                    "format": column.get("format", ""),
                    "priority": column.get("priority", 0),
                    "description": column.get("description", ""),
                }
            )
            if column.get("type") == "date":
                # kubectl prints a date column as an age, as it does the default Age column.
                cells.append(lambda obj, path=column["jsonPath"]: _age(_jsonpath(obj, path)))
            else:
                cells.append(lambda obj, path=column["jsonPath"]: _jsonpath(obj, path))
    else:
        for name, kind, cell in _builtin_columns(rtype):
            definitions.append({"name": name, "type": kind, "format": "", "priority": 0, "description": ""})
            cells.append(cell)
    # A CRD with printer columns shows exactly those (as the apiserver does); otherwise, Age.
    if not (rtype.custom and rtype.printer_columns):
        definitions.append({"name": "Age", "type": "string", "format": "", "priority": 0, "description": ""})
        cells.append(lambda obj: _age(obj["metadata"].get("creationTimestamp")))
    rows = [
        {
            "cells": [
                obj["metadata"]["name"],
                *(cell(obj) for cell in cells),
            ],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]},
        }
        for obj in items
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    }
