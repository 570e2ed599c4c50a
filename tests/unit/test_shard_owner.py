"""`modelrollout status` says which shard and replica own a sharded rollout, and nothing new for an
unsharded one; a Lease it cannot read is said, never a traceback."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from modelrollout.kube.api import ApiError, Resource
from modelrollout.sharding.owner import LEASES, Owner, describe, find_owner, owner_from_leases
from modelrollout.sharding.plan import shard_labels
from modelrollout.status_view import render, status_json

NOW = datetime(2026, 12, 2, 18, 0, 0, tzinfo=UTC)
OPERATOR_NAMESPACE = "modelrollout-system"


def _rollout(labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "fraud-scorer", "namespace": "ml"}
    if labels is not None:
        metadata["labels"] = labels
    return {"metadata": metadata, "spec": {}, "status": {"phase": "Progressing", "weights": {"stable": 90}}}


def _lease(
    shard: int, shards: int, holder: str | None, renewed_ago: float, duration: int = 30, name: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "leaseDurationSeconds": duration,
        "renewTime": (NOW - timedelta(seconds=renewed_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if holder is not None:
        spec["holderIdentity"] = holder
    return {
        "metadata": {
            "name": name or f"modelrollout-shard-{shard}",
            "namespace": OPERATOR_NAMESPACE,
            "labels": {"modelrollout.io/lease": "shard", "modelrollout.io/shard": str(shard)},
            "annotations": {"modelrollout.io/shards": str(shards)},
        },
        "spec": spec,
    }


def _screen(rollout: dict[str, Any], owner: Owner | None) -> str:
    console = Console(record=True, width=240)
    console.print(render(rollout, owner))
    return console.export_text()


class FakeLeases:
    """Answers a Lease list as the API server would, or refuses it."""

    def __init__(self, leases: list[dict[str, Any]], refusal: ApiError | None = None) -> None:
        self.leases = leases
        self.refusal = refusal
        self.asked: list[tuple[Resource, str | None, str | None]] = []

    async def list(
        self, resource: Resource, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self.asked.append((resource, namespace, label_selector))
        if self.refusal is not None:
            raise self.refusal
        return self.leases


def _find(api: FakeLeases, rollout: dict[str, Any], namespace: str | None = OPERATOR_NAMESPACE) -> Owner | None:
    return asyncio.run(find_owner(api, rollout, namespace, NOW))


# --- the lookup ------------------------------------------------------------------------------------


def test_an_unsharded_rollout_has_no_owner_and_no_lease_is_asked_for() -> None:
    api = FakeLeases([])
    assert _find(api, _rollout()) is None
    assert _find(api, _rollout({"app": "x"})) is None
    assert api.asked == []


def test_the_shard_lease_is_asked_for_by_label_in_the_operator_namespace_or_everywhere() -> None:
    labels = shard_labels("ml", "fraud-scorer", 3)
    shard = int(labels["modelrollout.io/shard"])
    api = FakeLeases([_lease(shard, 3, "operator-0", renewed_ago=4)])
    owner = _find(api, _rollout(labels))
    assert owner is not None and owner.holder == "operator-0" and owner.alive is True
    selector = f"modelrollout.io/lease=shard,modelrollout.io/shard={shard}"
    assert api.asked == [(LEASES, OPERATOR_NAMESPACE, selector)]
    _find(api, _rollout(labels), namespace=None)
    assert api.asked[-1] == (LEASES, None, selector)


def test_a_refused_lease_list_is_said_not_raised() -> None:
    refusal = ApiError(403, "Forbidden", 'leases.coordination.k8s.io is forbidden: User "alice" cannot list')
    owner = _find(FakeLeases([], refusal), _rollout({"modelrollout.io/shard": "1", "modelrollout.io/shards": "3"}))
    assert owner is not None and owner.alive is None
    assert describe(owner) == (
        "shard 1 of 3, owner unknown: cannot list leases "
        '(403 Forbidden: leases.coordination.k8s.io is forbidden: User "alice" cannot list)'
    )


def test_labels_that_name_no_shard_are_said() -> None:
    owner = _find(FakeLeases([]), _rollout({"modelrollout.io/shard": "5", "modelrollout.io/shards": "3"}))
    assert owner is not None and "the labels name no shard k of N" in owner.problem


# --- what the Leases say ---------------------------------------------------------------------------


def test_a_live_holder_is_named_with_the_clock_caveat() -> None:
    owner = owner_from_leases(1, 3, [_lease(1, 3, "operator-7d9c-x2", renewed_ago=4)], OPERATOR_NAMESPACE, NOW)
    assert owner.alive is True
    assert owner.expires_in == pytest.approx(26)
    assert (
        describe(owner) == "shard 1 of 3: operator-7d9c-x2, alive (renewed 4s ago, lease 30s; by this machine's clock)"
    )


def test_an_expired_lease_names_its_last_holder_and_the_takeover() -> None:
    owner = owner_from_leases(1, 3, [_lease(1, 3, "operator-0", renewed_ago=72)], OPERATOR_NAMESPACE, NOW)
    assert owner.alive is False
    assert describe(owner) == (
        "shard 1 of 3: last held by operator-0, expired 42s ago by this machine's clock; another replica takes it over"
    )


def test_a_released_lease_has_no_holder() -> None:
    owner = owner_from_leases(0, 2, [_lease(0, 2, None, renewed_ago=1)], OPERATOR_NAMESPACE, NOW)
    assert owner.alive is False
    assert describe(owner) == "shard 0 of 2: no holder (its Lease was released); a replica takes it up next"


def test_no_lease_and_another_generations_lease_are_told_apart() -> None:
    none = owner_from_leases(2, 3, [], None, NOW)
    assert describe(none) == (
        "shard 2 of 3, owner unknown: no shard Lease (modelrollout.io/lease=shard,modelrollout.io/shard=2) "
        "in any namespace"
    )
    resharding = owner_from_leases(1, 2, [_lease(1, 3, "operator-0", renewed_ago=1)], OPERATOR_NAMESPACE, NOW)
    assert "labelled for 2 shards, but the shard Leases are of 3 shards (resharding" in describe(resharding)


def test_of_two_installs_leases_for_the_shard_the_freshest_is_shown() -> None:
    stale = _lease(1, 3, "other-install-0", renewed_ago=300, name="other-shard-1")
    fresh = _lease(1, 3, "operator-1", renewed_ago=2)
    assert owner_from_leases(1, 3, [stale, fresh], None, NOW).holder == "operator-1"


# --- the screen and -o json ------------------------------------------------------------------------


def test_the_status_screen_shows_the_owner_of_a_sharded_rollout_only() -> None:
    owner = owner_from_leases(1, 3, [_lease(1, 3, "operator-7d9c-x2", renewed_ago=4)], OPERATOR_NAMESPACE, NOW)
    screen = _screen(_rollout(), owner)
    [line] = [line for line in screen.splitlines() if line.startswith("Owner")]
    assert "shard 1 of 3: operator-7d9c-x2, alive" in line
    assert "Owner" not in _screen(_rollout(), None)


def test_json_adds_owner_to_the_status_of_a_sharded_rollout_only() -> None:
    rollout = _rollout()
    assert status_json(rollout, None) == rollout["status"]
    owner = owner_from_leases(1, 3, [_lease(1, 3, "operator-0", renewed_ago=4)], OPERATOR_NAMESPACE, NOW)
    shown = json.loads(json.dumps(status_json(rollout, owner)))
    assert shown["phase"] == "Progressing"
    assert shown["owner"] == {
        "shard": 1,
        "shards": 3,
        "lease": "modelrollout-system/modelrollout-shard-1",
        "holder": "operator-0",
        "alive": True,
        "renewTime": "2026-12-02T17:59:56Z",
        "leaseDurationSeconds": 30,
        "leaseGeneration": 3,
        "expiresInSeconds": 26.0,
        "problem": None,
    }
    refused = Owner(1, 3, problem="owner unknown: cannot list leases (403 Forbidden: no)")
    assert status_json(rollout, refused)["owner"]["alive"] is None


def test_a_renew_time_without_an_offset_is_read_as_utc() -> None:
    lease = _lease(1, 3, "operator-0", renewed_ago=4)
    lease["spec"]["renewTime"] = (NOW - timedelta(seconds=4)).replace(tzinfo=None).isoformat()
    assert owner_from_leases(1, 3, [lease], None, NOW).expires_in == pytest.approx(26)
