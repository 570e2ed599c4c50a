"""When the shadow comparator runs: pure, from the spec and the status before and after a pass.

It runs while a canary whose mirror steps ask for `compare` has a candidate in flight (Progressing or
Paused), so that the mirror and the agreement analyses after it find it; it goes when the candidate
leaves (promoted, rolled back, replaced by a newer one: then a new one compares the newer). Deleting
the ModelRollout removes it too (owner reference).
"""

from __future__ import annotations

from modelrollout.api.models import ModelRolloutSpec, ModelRolloutStatus, Phase
from modelrollout.engine.types import Action, DeleteComparator, EnsureComparator

_IN_FLIGHT = (Phase.PROGRESSING, Phase.PAUSED)


def _in_flight(status: ModelRolloutStatus) -> bool:
    """A candidate next to a stable version (not the first deployment, which has nothing to compare with)."""
    return (
        status.candidate_revision is not None
        and status.stable_revision is not None
        and status.candidate_revision != status.stable_revision
        and status.phase in _IN_FLIGHT
    )


def _wanted(spec: ModelRolloutSpec, status: ModelRolloutStatus) -> EnsureComparator | None:
    if spec.shadow_comparison() is None or not _in_flight(status):
        return None
    assert status.candidate_revision is not None
    return EnsureComparator(
        revision=status.candidate_revision,
        stable_version=status.stable_version or "",
        candidate_version=status.candidate_version or spec.model.version,
    )


def comparator_actions(spec: ModelRolloutSpec, before: ModelRolloutStatus, after: ModelRolloutStatus) -> list[Action]:
    wanted = _wanted(spec, after)
    if wanted is not None:
        return [wanted]
    # Said once, on the pass the candidate leaves; a comparator missed then goes with the rollout.
    return [DeleteComparator()] if _in_flight(before) and spec.shadow_comparison() is not None else []
