"""A deleted rollout is forgotten by every piece of the operator's memory, the notifier too."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from modelrollout.runtime.worker import forget_rollout


class Recorder:
    def __init__(self) -> None:
        self.forgotten: list[Any] = []

    def forget(self, key: Any) -> None:
        self.forgotten.append(key)

    def forget_seen(self, namespace: str, name: str) -> None:
        self.forgotten.append((namespace, name))


def test_every_piece_forgets_a_deleted_rollout() -> None:
    pieces = {piece: Recorder() for piece in ("written", "statuses", "specs", "events", "notifier", "wakeups")}
    left = {("ml", "scorer"): object(), ("ml", "other"): object()}
    runtime = SimpleNamespace(**pieces, left_for_next_pass=left)
    forget_rollout(runtime, "ml", "scorer")  # type: ignore[arg-type]
    assert {piece: recorder.forgotten for piece, recorder in pieces.items()} == {
        piece: [("ml", "scorer")] for piece in pieces
    }
    assert list(left) == [("ml", "other")]
