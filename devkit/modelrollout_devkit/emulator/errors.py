"""API errors rendered as ``Status`` objects, with the reasons and messages of a real apiserver."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]

_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    504: "Timeout",
}


@dataclass(frozen=True)
class Cause:
    """One field-level cause of an ``Invalid`` error, as in ``details.causes``."""

    field: str
    reason: str
    message: str

    def render(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass
class ApiError(Exception):
    """An error that the emulator answers as a ``kind: Status`` body with its HTTP code."""

    code: int
    message: str
    reason: str = ""
    details: JsonDict = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)
        self.reason = self.reason or _REASONS.get(self.code, "Unknown")

    def status(self) -> JsonDict:
        body: JsonDict = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body

    def body(self) -> bytes:
        return json.dumps(self.status()).encode()


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def _details(name: str, group: str, kind: str) -> JsonDict:
    details: JsonDict = {"name": name, "kind": kind}
    if group:
        details["group"] = group
    return details


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(404, f'{_qualified(plural, group)} "{name}" not found', "NotFound", _details(name, group, plural))


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409, f'{_qualified(plural, group)} "{name}" already exists', "AlreadyExists", _details(name, group, plural)
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}',
        "Conflict",
        _details(name, group, plural),
    )


STALE = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(kind: str, group: str, name: str, causes: Sequence[Cause]) -> ApiError:
    rendered = [cause.render() for cause in causes]
    summary = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details = _details(name, group, kind)
    details["causes"] = [{"reason": cause.reason, "message": cause.message, "field": cause.field} for cause in causes]
    return ApiError(422, f'{_qualified(kind, group)} "{name}" is invalid: {summary}', "Invalid", details)


def patch_invalid(patched: Any, why: str) -> ApiError:
    """A patch whose result the server cannot decode into its type: a 422 on the field "patch",
    of no named object (the apiserver's message starts ``"" is invalid``)."""
    message = f"Invalid value: {json.dumps(json.dumps(patched, separators=(',', ':')))}: {why}"
    return ApiError(
        422,
        f' "" is invalid: patch: {message}',
        "Invalid",
        {"causes": [{"reason": "FieldValueInvalid", "message": message, "field": "patch"}]},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def not_found_url() -> ApiError:
    return ApiError(404, "the server could not find the requested resource", "NotFound", {})


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(405, message, "MethodNotAllowed")


def unsupported_media(content_type: str, accepted: Sequence[str]) -> ApiError:
    return ApiError(
        415,
        f"the body of the request was in an unknown format ({content_type})"
        f" - accepted media types include: {', '.join(accepted)}",
        "UnsupportedMediaType",
    )


def expired(requested: int, oldest: int) -> ApiError:
    return ApiError(410, f"too old resource version: {requested} ({oldest})", "Expired")


def invalid_value(value: Any) -> str:
    """Format a value the way the apiserver's ``field.Invalid`` does in its messages."""
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    if value is None:
        return '"null"'
    return json.dumps(value)
