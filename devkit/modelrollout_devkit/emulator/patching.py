"""The three patch formats of the apiserver: JSON patch, JSON merge patch, and strategic merge patch."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch  # a dependency of kopf and kmock
import jsonpointer

from modelrollout_devkit.emulator.errors import ApiError, bad_request

JsonDict = dict[str, Any]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# patchMergeKey of the list fields in the compiled-in types (k8s.io/api), by field name.
# "ports" is resolved by content: container ports merge on containerPort, service ports on port.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
# Lists of scalars with patchStrategy=merge: merged as sets.
_PRIMITIVE_MERGE = frozenset({"finalizers"})


def _rejected(err: Exception) -> ApiError:
    # The apiserver answers a failed patch application with a generic 422 that has no causes.
    return ApiError(422, f"the server rejected our request due to an error in our request: {err}", "Invalid")


def json_patch(document: JsonDict, patch: Any) -> JsonDict:
    """RFC 6902, including ``test``; a failed operation is a 422 as in the apiserver."""
    if not isinstance(patch, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        result = jsonpatch.JsonPatch(patch).apply(document)
    except jsonpatch.InvalidJsonPatch as err:
        raise bad_request(str(err)) from err
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as err:
        raise _rejected(err) from err
    if not isinstance(result, dict):
        raise _rejected(ValueError("the patch replaced the whole object with a non-object"))
    return result


def merge_patch(document: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, ``null`` deletes a key, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(document) if isinstance(document, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(document: JsonDict, patch: Any) -> JsonDict:
    """Strategic merge patch with the merge keys and directives of the common built-in types."""
    if not isinstance(patch, dict):
        raise bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
    try:
        result = _merge_map(document, patch)
    except _PatchFormatError as err:
        raise bad_request(str(err)) from err
    return result if result is not None else {}


class _PatchFormatError(Exception):
    pass


def _merge_map(original: Any, patch: JsonDict) -> JsonDict | None:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive not in (None, "merge"):
        raise _PatchFormatError(f"Unknown patch type: {directive}")
    result: JsonDict = dict(original) if isinstance(original, dict) else {}
    orders: dict[str, list[Any]] = {}
    retain: list[str] | None = None
    for key, value in patch.items():
        if key == "$patch":
            continue
        if key == "$retainKeys":
            retain = list(value or [])
        elif key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = list(value or [])
        elif key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [item for item in result.get(field) or [] if item not in (value or [])]
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _merge_map(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(field, result[field], order)
    if retain is not None:
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        return "containerPort" if any(isinstance(i, dict) and "containerPort" in i for i in items) else "port"
    return _MERGE_KEYS.get(field)


def _merge_list(field: str, original: Any, patch: list[Any]) -> list[Any]:
    current = list(original) if isinstance(original, list) else []
    if field in _PRIMITIVE_MERGE:
        merged_primitives = current + [item for item in patch if item not in current]
        return _normalise_order(merged_primitives, patch, current, lambda item: item)
    key = _merge_key(field, current + patch)
    if key is None:
        # Lists without a patch strategy are replaced (the "$patch: replace" marker is moot then).
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise _PatchFormatError(f"map: {item} does not contain declared merge key: {key}")
        index = next((n for n, old in enumerate(current) if isinstance(old, dict) and old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del current[index]
        elif index is None:
            merged = _merge_map({}, item)
            current.append(merged if merged is not None else {})
        else:
            merged = _merge_map(current[index], item)
            if merged is None:
                del current[index]
            else:
                current[index] = merged
    return _normalise_order(
        current, patch, original or [], lambda item: item.get(key) if isinstance(item, dict) else item
    )


def _normalise_order(merged: list[Any], patch: list[Any], original: list[Any], identity: Any) -> list[Any]:
    """The order the apiserver gives a merged list (apimachinery's normalizeElementOrder): the
    patch's items in the patch's order, with the server-only items slotted in by their live order."""
    patch_ids = [identity(item) for item in patch]
    server_ids = [identity(item) for item in original]
    from_patch = sorted(
        (item for item in merged if identity(item) in patch_ids), key=lambda item: patch_ids.index(identity(item))
    )
    server_only = [item for item in merged if identity(item) not in patch_ids]

    def rank(item: Any) -> int:
        value = identity(item)
        return server_ids.index(value) if value in server_ids else -1

    result: list[Any] = []
    left, right = 0, 0
    while left < len(server_only) or right < len(from_patch):
        if right >= len(from_patch):
            result.append(server_only[left])
            left += 1
        elif left >= len(server_only):
            result.append(from_patch[right])
            right += 1
        else:
            lrank, rrank = rank(server_only[left]), rank(from_patch[right])
            if lrank >= 0 and rrank >= 0 and lrank < rrank:
                result.append(server_only[left])
                left += 1
            else:
                result.append(from_patch[right])
                right += 1
    return result


def _reorder(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = _merge_key(field, items)

    def identity(item: Any) -> Any:
        return item.get(key) if key is not None and isinstance(item, dict) else item

    wanted = [identity(o) if isinstance(o, dict) else o for o in order]
    ranked = {value: rank for rank, value in enumerate(wanted) if isinstance(value, (str, int, float))}
    return sorted(items, key=lambda item: ranked.get(identity(item), len(ranked)))
