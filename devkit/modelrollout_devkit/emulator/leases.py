"""coordination.k8s.io/v1 Leases as the apiserver's typed decoding reads them.

A real server decodes a Lease into its Go struct before anything else, so: a field of the wrong JSON
type is a 400 (a 422 on a patch, whose result is decoded after patching); ``acquireTime`` and
``renewTime`` are MicroTimes, parsed with exactly the layout ``2006-01-02T15:04:05.000000Z07:00``
(six fraction digits, ``Z`` or a ``±hh:mm`` offset; anything else, no fraction, milliseconds or
nanoseconds included, is refused) and written back in UTC with ``Z``; a null is no field; unknown
fields are dropped (with a warning), and so are ``strategy`` and ``preferredHolder``, whose feature
gate (CoordinatedLeaderElection) is off by default in 1.36.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

JsonDict = dict[str, Any]

KEY = ("coordination.k8s.io", "leases")
MICRO_TIME_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"
_MICRO_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})(?:Z|([+-])(\d{2}):(\d{2}))$")
_INT32 = (-(2**31), 2**31 - 1)
#: the LeaseSpec fields and their Go types
_SPEC = {
    "holderIdentity": "string",
    "leaseDurationSeconds": "int32",
    "acquireTime": "MicroTime",
    "renewTime": "MicroTime",
    "leaseTransitions": "int32",
    "strategy": "string",
    "preferredHolder": "string",
}
#: behind a feature gate that is off by default: decoded, then dropped
_GATED = ("strategy", "preferredHolder")
_TOP = ("apiVersion", "kind", "metadata", "spec")


class LeaseDecodeError(ValueError):
    """What Go's encoding/json (or MicroTime's parser) says of a Lease it cannot decode."""


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _unmarshal_error(value: Any, field: str, go_type: str) -> LeaseDecodeError:
    shown = _json_type(value)
    if go_type == "int32" and shown == "number":
        shown = f"number {value!r}"  # Go names the number it cannot fit: "number 30.5"
    return LeaseDecodeError(
        f"json: cannot unmarshal {shown} into Go struct field LeaseSpec.spec.{field} of type {go_type}"
    )


def parse_micro_time(text: str) -> datetime.datetime:
    """A MicroTime as the apiserver parses it; LeaseDecodeError (with Go's wording) otherwise."""
    match = _MICRO_TIME.match(text)
    failure = LeaseDecodeError(f'parsing time "{text}" as "{MICRO_TIME_LAYOUT}": cannot parse "{text}"')
    if match is None:
        raise failure
    year, month, day, hour, minute, second, micro, sign, offset_hours, offset_minutes = match.groups()
    offset = datetime.timedelta(0)
    if sign:
        offset = datetime.timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
        offset = -offset if sign == "-" else offset
    try:
        zone = datetime.timezone(offset)
        return datetime.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), int(micro), tzinfo=zone
        )
    except ValueError as error:  # month 13, 30 February, hour 24...
        raise LeaseDecodeError(f'parsing time "{text}": {error}') from None


def format_micro_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check(obj: JsonDict) -> None:
    """Raise LeaseDecodeError where the Lease cannot be decoded into its Go struct."""
    spec = obj.get("spec")
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise LeaseDecodeError(
            f"json: cannot unmarshal {_json_type(spec)} into Go struct field Lease.spec of type v1.LeaseSpec"
        )
    for field, go_type in _SPEC.items():
        value = spec.get(field)
        if value is None:
            continue
        if go_type == "int32":
            if not isinstance(value, int) or isinstance(value, bool) or not _INT32[0] <= value <= _INT32[1]:
                raise _unmarshal_error(value, field, go_type)
        elif not isinstance(value, str):
            raise _unmarshal_error(value, field, "string")
        elif go_type == "MicroTime":
            parse_micro_time(value)


def normalise(obj: JsonDict) -> list[str]:
    """Make a decodable Lease what the server stores (see the module's doc); returns the paths of the
    unknown fields it dropped, for the warnings (or the strict refusal) of the write."""
    unknown = [key for key in obj if key not in _TOP]
    for key in unknown:
        del obj[key]
    spec = obj.get("spec")
    spec = dict(spec) if isinstance(spec, dict) else {}
    unknown += [f"spec.{key}" for key in spec if key not in _SPEC]
    kept: JsonDict = {}
    for field, go_type in _SPEC.items():
        value = spec.get(field)
        if value is None or field in _GATED:
            continue
        kept[field] = format_micro_time(parse_micro_time(value)) if go_type == "MicroTime" else value
    obj["spec"] = kept
    return unknown
