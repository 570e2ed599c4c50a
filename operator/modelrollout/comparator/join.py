"""The join of a mirrored request's two answers (stable's and the candidate's), bounded in memory and time. Pure.

An answer is reduced at once to what a comparison needs and nothing more: per instance, the predicted
class (a short string), the score (a number) and a digest of the whole answer (SHA-256 of its canonical
JSON, for answers that are neither); plus the time it took and whether it was an error. The raw request
and the raw answer are never kept.

`JoinStore` holds one side until the other arrives (keyed by request id), at most `max_pending` ids and
for at most `ttl_seconds`; an id that stays alone longer, or is pushed out because the store is full,
comes back from `expire` as unjoined. Time is given (`now`), never read, so every case is testable.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Side = Literal["stable", "candidate"]
SIDES: tuple[Side, Side] = ("stable", "candidate")

#: A predicted class longer than this is cut: a class is a label, never a free text.
MAX_CLASS_CHARS = 64


@dataclass(frozen=True)
class Instance:
    """One prediction of an answer: its class, its score, and a digest of the prediction as a whole."""

    klass: str | None
    score: float | None
    digest: str


@dataclass(frozen=True)
class Answer:
    """One side's answer to a request, reduced: instances, latency, and whether it failed."""

    instances: tuple[Instance, ...] = ()
    latency_seconds: float = 0.0
    error: bool = False


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _instance(item: Any, class_field: str, score_field: str) -> Instance:
    if isinstance(item, Mapping):
        raw_class = item.get(class_field)
        klass = None if raw_class is None else str(raw_class)[:MAX_CLASS_CHARS]
        return Instance(klass, _number(item.get(score_field)), _digest(item))
    return Instance(None, _number(item), _digest(item))


def reduce_answer(
    body: Any,
    *,
    latency_seconds: float,
    error: bool = False,
    class_field: str = "prediction",
    score_field: str = "score",
    batch_field: str = "predictions",
) -> Answer:
    """What is kept of an answer body (parsed JSON): `{"prediction": c, "score": s}`, a batch
    `{"predictions": [...]}`, or a bare number or list of numbers (a regression)."""
    if error:
        return Answer((), latency_seconds, True)
    items: Sequence[Any]
    if isinstance(body, Mapping) and isinstance(body.get(batch_field), list):
        items = body[batch_field]
    elif isinstance(body, list):
        items = body
    else:
        items = [body]
    return Answer(tuple(_instance(item, class_field, score_field) for item in items), latency_seconds, False)


@dataclass(frozen=True)
class InstancePair:
    """The two predictions of one instance, compared."""

    stable_class: str | None
    candidate_class: str | None
    agree: bool
    abs_difference: float | None
    rel_difference: float | None


@dataclass(frozen=True)
class Pair:
    """Both answers to one request, compared: per instance, and the latency difference (candidate - stable)."""

    instances: tuple[InstancePair, ...]
    latency_difference_seconds: float
    stable_error: bool
    candidate_error: bool
    #: The two answers have a different number of instances: nothing is compared instance by instance.
    mismatched: bool = False


#: Below this a stable score counts as zero in the relative difference (no division by almost nothing).
_REL_FLOOR = 1e-9


def compare(stable: Answer, candidate: Answer) -> Pair:
    latency = candidate.latency_seconds - stable.latency_seconds
    if stable.error or candidate.error:
        return Pair((), latency, stable.error, candidate.error)
    if len(stable.instances) != len(candidate.instances):
        return Pair((), latency, False, False, mismatched=True)
    pairs: list[InstancePair] = []
    for ours, theirs in zip(stable.instances, candidate.instances, strict=True):
        if ours.klass is not None or theirs.klass is not None:
            agree = ours.klass == theirs.klass
        elif ours.score is not None and theirs.score is not None:
            agree = ours.score == theirs.score
        else:
            agree = ours.digest == theirs.digest
        absolute = relative = None
        if ours.score is not None and theirs.score is not None:
            absolute = abs(theirs.score - ours.score)
            relative = absolute / max(abs(ours.score), _REL_FLOOR)
        pairs.append(InstancePair(ours.klass, theirs.klass, agree, absolute, relative))
    return Pair(tuple(pairs), latency, False, False)


@dataclass
class _Pending:
    first_seen: float
    answers: dict[Side, Answer] = field(default_factory=dict)


@dataclass(frozen=True)
class Unjoined:
    """An id whose other answer did not come in time (or was pushed out of a full store)."""

    request_id: str
    had: Side
    why: Literal["expired", "evicted"]


class JoinStore:
    """One side of a request waits here for the other: at most `max_pending` ids, each at most
    `ttl_seconds`. `add` returns the comparison once both sides are in (and forgets the id);
    `expire(now)` hands back the ids that waited too long. Memory is bounded by `max_pending`
    (each entry: an id, a time, one reduced answer)."""

    def __init__(self, *, max_pending: int = 10_000, ttl_seconds: float = 30.0) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, not {max_pending}")
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be above 0, not {ttl_seconds}")
        self.max_pending = max_pending
        self.ttl_seconds = ttl_seconds
        self._pending: OrderedDict[str, _Pending] = OrderedDict()  # oldest first
        self._evicted: list[Unjoined] = []

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, request_id: str, side: Side, answer: Answer, now: float) -> Pair | None:
        entry = self._pending.get(request_id)
        if entry is None:
            while len(self._pending) >= self.max_pending:
                old_id, old = self._pending.popitem(last=False)
                self._evicted.append(Unjoined(old_id, next(iter(old.answers)), "evicted"))
            entry = self._pending[request_id] = _Pending(now)
        entry.answers[side] = answer  # a repeated report of one side: the last one counts
        if len(entry.answers) < 2:
            return None
        del self._pending[request_id]
        return compare(entry.answers["stable"], entry.answers["candidate"])

    def expire(self, now: float) -> list[Unjoined]:
        """The ids pushed out since the last call, and those alone for longer than the TTL (forgotten)."""
        gone, self._evicted = self._evicted, []
        while self._pending:
            request_id, entry = next(iter(self._pending.items()))
            if now - entry.first_seen < self.ttl_seconds:
                break
            del self._pending[request_id]
            gone.append(Unjoined(request_id, next(iter(entry.answers)), "expired"))
        return gone
