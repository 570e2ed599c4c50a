"""Label and field selectors as the apiserver parses and applies them to lists and watches."""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

from modelrollout_devkit.emulator.errors import bad_request

_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_REQ_RE = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[^\s!=<>()]+)\s*"
    r"(?:(?P<op>==|!=|=|<|>|\s+in\s+|\s+notin\s+)\s*(?P<value>\([^)]*\)|[^\s()]*))?\s*$"
)


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # one of: =, !=, in, notin, exists, !, <, >
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "exists":
                return present
            case "!":
                return not present
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "<" | ">":
                if not present or value is None or not value.lstrip("-").isdigit():
                    return False
                limit = int(next(iter(self.values)))
                return int(value) < limit if self.op == "<" else int(value) > limit
        return False  # pragma: no cover  # all operators are enumerated at parsing


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse a label selector; an invalid one is a 400, as in the apiserver."""
    requirements: list[Requirement] = []
    for part in _split_top_level(text):
        match = _REQ_RE.match(part)
        if match is None:
            raise bad_request(f'unable to parse requirement: invalid label selector: "{text}"')
        key, op, raw, neg = match["key"], (match["op"] or "").strip(), match["value"], match["neg"]
        if not _KEY_RE.match(key):
            raise bad_request(f'unable to parse requirement: invalid label key "{key}"')
        if neg:
            if op:
                raise bad_request(f'unable to parse requirement: invalid label selector: "{text}"')
            requirements.append(Requirement(key, "!", frozenset()))
            continue
        if not op:
            requirements.append(Requirement(key, "exists", frozenset()))
            continue
        if op in ("in", "notin"):
            if raw is None or not (raw.startswith("(") and raw.endswith(")")):
                raise bad_request(f'unable to parse requirement: expected "(" after {op} in "{text}"')
            values = frozenset(v.strip() for v in raw[1:-1].split(",") if v.strip())
        else:
            values = frozenset({raw or ""})
        for value in values:
            if not _VALUE_RE.match(value):
                raise bad_request(f'unable to parse requirement: invalid label value: "{value}"')
        if op in ("<", ">") and not next(iter(values)).lstrip("-").isdigit():
            raise bad_request(f'unable to parse requirement: for "{op}" operator, the value must be an integer')
        requirements.append(Requirement(key, "=" if op == "==" else op, values))
    return requirements


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    equal: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (field_value(obj, self.path) == self.value) == self.equal


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a field, as the apiserver's field sets show it (absent is empty)."""
    current: Any = obj
    for step in path.split("."):
        current = current.get(step) if isinstance(current, Mapping) else None
    if isinstance(current, bool):
        return "true" if current else "false"
    if current is None:
        return ""
    if isinstance(current, Mapping) and path == "source":  # events: "source" is its component
        return str(current.get("component", ""))
    return str(current)


def parse_field_selector(text: str, supported: Set[str]) -> list[FieldRequirement]:
    requirements: list[FieldRequirement] = []
    for part in re.split(r"(?<!\\),", text):
        if not part.strip():
            continue
        match = re.match(r"^\s*([^!=\s]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if match is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        path, op, value = match.groups()
        if path not in supported and path not in ("metadata.name", "metadata.namespace"):
            raise bad_request(f"field label not supported: {path}")
        requirements.append(FieldRequirement(path, op != "!=", value.replace("\\,", ",").replace("\\=", "=")))
    return requirements


@dataclass(frozen=True)
class Selector:
    """A combined label + field selector, ready to match raw objects."""

    labels: tuple[Requirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, label_selector: str | None, field_selector: str | None, supported: Set[str]) -> Selector:
        return cls(
            tuple(parse_label_selector(label_selector or "")),
            tuple(parse_field_selector(field_selector or "", supported)),
        )

    def matches(self, obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(req.matches(labels) for req in self.labels) and all(req.matches(obj) for req in self.fields)
