"""Leases on the emulator alone, as a real kube-apiserver 1.36 was found to treat them (compared with
one in tests/emulator/test_sharding_calls.py, which needs the control plane binaries): typed decoding
with MicroTimes of exactly six fraction digits, validation, PUT that creates, PUT that needs a
resourceVersion."""

from __future__ import annotations

from typing import Any

import pytest

from modelrollout_devkit.emulator.leases import LeaseDecodeError, parse_micro_time
from tests.emulator.conftest import Api

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


def lease(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name}, "spec": spec}


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2026-12-02T18:00:00.123456Z", "2026-12-02T18:00:00.123456Z"),
        ("2026-12-02T19:30:00.000001+01:30", "2026-12-02T18:00:00.000001Z"),
        ("2026-12-02T16:00:00.500000-02:00", "2026-12-02T18:00:00.500000Z"),
    ],
)
async def test_micro_times_are_stored_in_utc(api: Api, sent: str, stored: str) -> None:
    status, made = await api.post(LEASES, lease("l", holderIdentity="a", renewTime=sent, acquireTime=sent))
    assert status == 201, made
    assert made["spec"] == {"holderIdentity": "a", "acquireTime": stored, "renewTime": stored}
    _, read = await api.get(f"{LEASES}/l")
    assert read["spec"] == made["spec"]


@pytest.mark.parametrize(
    "sent",
    [
        "2026-12-02T18:00:00Z",  # what datetime.isoformat() gives when the microseconds are 0
        "2026-12-02T18:00:00.123Z",
        "2026-12-02T18:00:00.123456789Z",
        "2026-12-02T18:00:00.123456+00:00:00",
        "2026-12-02t18:00:00.123456z",
        "2026-02-30T18:00:00.123456Z",
        "",
        "yesterday",
    ],
)
async def test_other_time_precisions_are_refused(api: Api, sent: str) -> None:
    with pytest.raises(LeaseDecodeError):
        parse_micro_time(sent)
    status, answer = await api.post(LEASES, lease("l", renewTime=sent))
    assert (status, answer["reason"]) == (400, "BadRequest")
    assert answer["message"].startswith('Lease in version "v1" cannot be handled as a Lease: parsing time')
    made = await api.ok("POST", LEASES, lease("m"))
    status, answer = await api.put(f"{LEASES}/m", {**made, "spec": {"renewTime": sent}})
    assert status == 400, answer
    status, answer = await api.patch(f"{LEASES}/m", {"spec": {"renewTime": sent}})
    assert (status, answer["details"]["causes"][0]["field"]) == (422, "patch"), answer


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"leaseDurationSeconds": "30"},
            "cannot unmarshal string into Go struct field LeaseSpec.spec.leaseDurationSeconds of type int32",
        ),
        ({"leaseDurationSeconds": 30.5}, "cannot unmarshal number 30.5 into Go struct field"),
        ({"leaseTransitions": 2**31}, "cannot unmarshal number 2147483648 into Go struct field"),
        (
            {"holderIdentity": 7},
            "cannot unmarshal number into Go struct field LeaseSpec.spec.holderIdentity of type string",
        ),
        (
            {"renewTime": 1764698400},
            "cannot unmarshal number into Go struct field LeaseSpec.spec.renewTime of type string",
        ),
    ],
)
async def test_wrong_json_types_are_a_bad_request(api: Api, spec: dict[str, Any], message: str) -> None:
    status, answer = await api.post(LEASES, lease("l", **spec))
    assert status == 400 and message in answer["message"], answer


@pytest.mark.parametrize(
    ("spec", "field"),
    [({"leaseDurationSeconds": 0}, "spec.leaseDurationSeconds"), ({"leaseTransitions": -1}, "spec.leaseTransitions")],
)
async def test_validation(api: Api, spec: dict[str, Any], field: str) -> None:
    status, answer = await api.post(LEASES, lease("l", **spec))
    assert status == 422 and [c["field"] for c in answer["details"]["causes"]] == [field], answer


async def test_nulls_unknown_and_gated_fields_are_dropped(api: Api) -> None:
    body = {**lease("l", holderIdentity="a", renewTime=None, owner="b", preferredHolder="c", strategy="d"), "x": 1}
    status, made = await api.post(LEASES, body)
    assert status == 201 and made["spec"] == {"holderIdentity": "a"} and "x" not in made, made
    status, answer = await api.post(LEASES, lease("strict", owner="b"), fieldValidation="Strict")
    assert status == 400 and 'unknown field "spec.owner"' in answer["message"], answer


async def test_put_creates_a_missing_lease_and_needs_a_resource_version_to_update(api: Api) -> None:
    status, made = await api.put(f"{LEASES}/l", lease("l", holderIdentity="a"))
    assert status == 201 and made["spec"] == {"holderIdentity": "a"}, made
    status, answer = await api.put(f"{LEASES}/other", lease("wrong-name"))
    assert status == 400, answer
    unversioned = {**made, "metadata": {"name": "l"}, "spec": {"holderIdentity": "b"}}
    status, answer = await api.put(f"{LEASES}/l", unversioned)
    assert status == 422 and answer["details"]["causes"][0]["field"] == "metadata.resourceVersion", answer
    status, answer = await api.put(f"{LEASES}/l", {**made, "spec": {"holderIdentity": "b"}})
    assert status == 200 and answer["spec"] == {"holderIdentity": "b"}, answer
    status, answer = await api.put(f"{LEASES}/l", {**made, "spec": {"holderIdentity": "c"}})
    assert (status, answer["reason"]) == (409, "Conflict"), answer
