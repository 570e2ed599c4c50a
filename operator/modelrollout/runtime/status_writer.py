"""Which status writes may wait: a status that differs from the stored one only by quiet
background measurements is held in the rollout's worker, not written, for up to
`--quiet-write-seconds`, and goes out with the next change (or when that time is up).

Such a pass is most of a large fleet's passes (a background measurement every interval while a pause
runs) and its status write most of the API writes. Losing a held status on a restart is harmless:
it changed no counter a decision reads, and the next pass measures again. `reconcile.record` writes
the status and asks `quiet_change` whether it may hold it instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelrollout.api.models import MetricResult
from modelrollout.kube.api import merge_patch_between


@dataclass(frozen=True)
class HeldStatus:
    """A status decided but not written yet: only quiet background measurements set it apart from
    the stored status it was decided from (`base`). Kept in the rollout's worker, in memory."""

    base: dict[str, Any]
    status: dict[str, Any]
    since: datetime


# What a successful measurement changes in its metric's entry; anything else changing is news. A drift
# metric's features (`drift`) change with every measurement's numbers; a feature that drifted fails the
# measurement, which changes `failed` and is news on its own.
_MEASUREMENT_BOOKKEEPING = frozenset(
    {"count", "successful", "consecutiveSuccessful", "measurements", "message", "drift"}
)


def quiet_change(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether a pass changed status only by adding measurements that change no verdict."""
    patch = merge_patch_between(dict(before), dict(after))
    if not isinstance(patch, dict) or set(patch) != {"backgroundAnalysis"}:
        return False
    if not isinstance(patch["backgroundAnalysis"], dict) or set(patch["backgroundAnalysis"]) != {"metrics"}:
        return False
    old = {m.get("name"): m for m in (before.get("backgroundAnalysis") or {}).get("metrics") or []}
    new = {m.get("name"): m for m in (after.get("backgroundAnalysis") or {}).get("metrics") or []}
    if not old.keys() <= new.keys():
        return False
    for name, result in new.items():
        # A metric measured for the first time had, in effect, a fresh entry before.
        previous = old.get(name) or MetricResult(name=str(name), dry_run=bool(result.get("dryRun"))).wire()
        keys = (previous.keys() | result.keys()) - _MEASUREMENT_BOOKKEEPING
        if any(previous.get(key) != result.get(key) for key in keys):
            return False
    return True
