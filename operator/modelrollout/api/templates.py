"""Resolve `spec.analysis.metrics[].template` into a concrete metric. Pure.

A name is looked up among the ModelAnalysisTemplates (namespaced, then cluster-scoped) the caller
fetched, then among the built-ins. Arguments are written `{{name}}` in a template's queries; they
are substituted first, and what is left must be the operator's own variables.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from modelrollout.api.models import ModelAnalysisTemplateSpec
from modelrollout.vocabulary.builtin_templates import BUILTIN_TEMPLATES, TEMPLATE_VARIABLES, TemplateError, instantiate

_ARGUMENT = re.compile(r"\{\{\s*([A-Za-z][\w-]*)\s*\}\}")
# Arguments are pasted into PromQL as they are: a window, a number, a label value. Anything that
# could close a string, a bracket or a selector is refused, so no argument can add query syntax.
_SAFE_ARGUMENT = re.compile(r"^[A-Za-z0-9_.:/+-]*$")
_QUERY_KEYS = ("query", "stableQuery", "countQuery", "stableCountQuery")


class UnresolvedTemplate(Exception):
    """A template reference that cannot be resolved; `path` is the field to fix."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


def referenced_templates(spec: Mapping[str, Any]) -> list[str]:
    """The template names a raw spec refers to (for the caller to fetch)."""
    analysis = spec.get("analysis")
    metrics = analysis.get("metrics") if isinstance(analysis, Mapping) else None
    if not isinstance(metrics, list):
        return []  # not a list of metrics at all: the spec's own validation says so
    references = [metric.get("template") for metric in metrics if isinstance(metric, Mapping)]
    names = [str(reference.get("name")) for reference in references if isinstance(reference, Mapping)]
    return [name for name in names if name and name != "None"]


def resolve(spec: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The spec with every templated metric replaced by the template's metric, arguments filled in."""
    resolved = copy.deepcopy(dict(spec))
    analysis = resolved.get("analysis")
    metrics = analysis.get("metrics") if isinstance(analysis, dict) else None
    if not isinstance(metrics, list):
        return resolved
    for index, metric in enumerate(metrics):
        if not isinstance(metric, dict) or not isinstance(metric.get("template"), dict):
            continue
        path = f"spec.analysis.metrics[{index}].template"
        reference = metric["template"]
        name = str(reference.get("name") or "")
        given = reference.get("args") or {}
        args = {str(key): str(value) for key, value in given.items()} if isinstance(given, Mapping) else {}
        if name in templates:
            body = _custom(path, templates[name], args)
        elif name in BUILTIN_TEMPLATES:
            body = _builtin(path, name, args)
        else:
            known = ", ".join(sorted(BUILTIN_TEMPLATES))
            raise UnresolvedTemplate(
                f"{path}.name",
                f"unknown template {name!r}: no ModelAnalysisTemplate or ClusterModelAnalysisTemplate of that name, "
                f"and not a built-in ({known})",
            )
        # What the rollout writes beside the reference fills in what the template leaves open (e.g. a
        # drift metric's trainingReference); the template's own values win, because the API server
        # fills a partial block with schema defaults (`drift.reference: stable`) that would
        # otherwise silently replace the template's choices.
        extra = {key: value for key, value in metric.items() if key != "template"}
        metrics[index] = _merged(extra, body)
    return resolved


def _merged(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _builtin(path: str, name: str, args: Mapping[str, str]) -> dict[str, Any]:
    try:
        data = instantiate(name, args)
    except TemplateError as error:
        raise UnresolvedTemplate(f"{path}.args", str(error)) from None
    kind = data["kind"]
    limits = dict(data[kind])
    metric: dict[str, Any] = {"prometheus": {key: data[key] for key in _QUERY_KEYS if key in data}, kind: limits}
    if "minCount" in limits:
        metric["minCount"] = limits.pop("minCount")
    return metric


def _custom(path: str, template: Mapping[str, Any], args: Mapping[str, str]) -> dict[str, Any]:
    try:
        spec = ModelAnalysisTemplateSpec.model_validate(template)
    except ValidationError as error:
        first = error.errors()[0]
        # Name the field inside the template: "minCount: ..." tells a person what to fix.
        where = ".".join(str(part) for part in first["loc"])
        detail = f"spec.{where}: {first['msg']}" if where else first["msg"]
        raise UnresolvedTemplate(path, f"the template is invalid: {detail}") from None
    declared = {argument.name: argument for argument in spec.args}
    unknown = sorted(set(args) - set(declared))
    if unknown:
        raise UnresolvedTemplate(
            f"{path}.args",
            f"unknown argument(s) {', '.join(unknown)}; the template takes: {', '.join(sorted(declared)) or 'none'}",
        )
    values: dict[str, str] = {}
    for argument in spec.args:
        value = args.get(argument.name, argument.default)
        if value is None:
            raise UnresolvedTemplate(f"{path}.args", f"missing argument {argument.name!r} (no default)")
        if not _SAFE_ARGUMENT.match(value):
            raise UnresolvedTemplate(
                f"{path}.args.{argument.name}",
                f"{value!r} is not allowed: arguments may hold letters, digits and _ . : / + - only "
                "(they are pasted into PromQL)",
            )
        values[argument.name] = value
    body = spec.wire()
    body.pop("args", None)
    queries = body["prometheus"]
    for key in _QUERY_KEYS:
        if key in queries:
            queries[key] = _ARGUMENT.sub(
                lambda match: (
                    values.get(match.group(1), match.group(0))
                    if match.group(1) not in TEMPLATE_VARIABLES
                    else match.group(0)
                ),
                queries[key],
            )
    return body
