"""Read a ModelRollout spec and explain, field by field, what is wrong with it.

The messages follow one shape, `spec.<path>: <what is wrong>; <what is allowed>`, because a person
reads them in `kubectl describe` and a program matches the path.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from modelrollout.api.crd import bounds_text, structural_schema
from modelrollout.api.models import ModelRolloutSpec
from modelrollout.api.templates import UnresolvedTemplate, resolve

# A message that starts with a relative path (`steps[2].setWeight: ...`) names a field below the one
# pydantic reports; the two are joined so the user sees one complete path.
_RELATIVE_PATH = re.compile(r"^([A-Za-z][\w]*(?:\[\d+\])?(?:\.[A-Za-z][\w]*(?:\[\d+\])?)*): (.*)$", re.DOTALL)


@dataclass(frozen=True)
class SpecError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidSpec(Exception):
    def __init__(self, errors: Sequence[SpecError]):
        self.errors = list(errors)
        super().__init__("; ".join(str(error) for error in self.errors))


def _path(location: Sequence[int | str]) -> list[str]:
    parts: list[str] = ["spec"]
    for item in location:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]"
        elif item.startswith("function-") or item in {"list", "dict"}:
            continue
        else:
            parts.append(to_camel(item) if "_" in item else item)
    return parts


def _join(parts: list[str], relative: str) -> str:
    """Join a path and a relative path whose first segment may repeat the path's last one."""
    head = relative.split(".", 1)[0]
    head_name = head.split("[", 1)[0]
    if parts and parts[-1].split("[", 1)[0] == head_name:
        parts = parts[:-1]
    if relative.startswith("spec.") or relative == "spec":
        return relative
    return ".".join([*parts, relative])


# pydantic's error types for a violated `Field(ge=, gt=, le=, lt=)`.
_BOUND_ERRORS = {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}


@functools.cache
def _spec_schema() -> dict[str, Any]:
    # The bounds as the CRD states them (what the API server enforces), rendered once.
    return structural_schema(ModelRolloutSpec)


def _schema_at(parts: Sequence[str]) -> dict[str, Any]:
    """The CRD schema node of a path such as ["spec", "strategy", "canary", "steps[3]", "setWeight"]."""
    node = _spec_schema()
    for part in parts[1:]:
        name, _, index = part.partition("[")
        node = node.get("properties", {}).get(name, {})
        if index:
            node = node.get("items", {})
    return node


def _bounds_message(parts: Sequence[str], given: Any) -> str:
    """`must be between 0 and 100, got 150`: the whole allowed range, whichever bound was crossed.

    A spec reaches this only where no API server checked it against the CRD first (a CRD from an
    older release, a unit test); it then reads like every other message of the operator's, in the
    words the field's description uses.
    """
    got = f"{given:g}" if isinstance(given, float) else str(given)
    allowed = bounds_text(_schema_at(parts))
    return f"must be {allowed}, got {got}" if allowed else f"is out of range, got {got}"


def _error(raw: dict[str, Any]) -> SpecError:
    parts = _path(raw["loc"])
    message = str(raw["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    match = _RELATIVE_PATH.match(message)
    if match and raw["type"] == "value_error":
        return SpecError(_join(parts, match.group(1)), match.group(2))
    if raw["type"] == "missing":
        return SpecError(".".join(parts), "is required")
    given = raw.get("input")
    if raw["type"] in _BOUND_ERRORS:
        return SpecError(".".join(parts), _bounds_message(parts, given))
    if raw["type"].endswith("_type") or raw["type"] in {"enum", "literal_error"}:
        return SpecError(".".join(parts), f"{message} (got {given!r})")
    return SpecError(".".join(parts), message)


def parse_spec(spec: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]] | None = None) -> ModelRolloutSpec:
    """The spec as a model, its metric templates resolved, or InvalidSpec listing every field that is wrong.

    `templates` are the ModelAnalysisTemplates the spec names, as fetched (name to their spec);
    built-in templates need none. A pass reads the same spec several times, and a rollout keeps its
    spec for many passes: the result is remembered by content (the models are never modified).
    """
    key = json.dumps([spec, templates or {}], sort_keys=True, default=str)
    return _parse_cached(key)


def parse_or_refusal(
    spec: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]] | None = None
) -> ModelRolloutSpec | InvalidSpec:
    """`parse_spec`, with the refusal returned rather than raised: for callers that keep either."""
    try:
        return parse_spec(spec, templates)
    except InvalidSpec as invalid:
        return invalid


@functools.lru_cache(maxsize=4096)
def _parse_cached(key: str) -> ModelRolloutSpec:
    spec, templates = json.loads(key)
    return _parse(spec, templates)


def _parse(spec: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]]) -> ModelRolloutSpec:
    try:
        resolved = resolve(spec, templates or {})
    except UnresolvedTemplate as error:
        raise InvalidSpec([SpecError(error.path, error.message)]) from None
    try:
        return ModelRolloutSpec.model_validate(resolved)
    except ValidationError as error:
        raise InvalidSpec([_error(dict(raw)) for raw in error.errors()]) from None
