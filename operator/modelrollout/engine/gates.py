"""Webhook gates (Flagger's webhooks), pure: which gates to ask in a pass, and what their answers mean.

A gate is kept in `status.gates` per candidate revision and scope (`rollout`, `step N`,
`promotion`). It starts `Waiting`; the observer asks it (`gate_requests`, a POST) at once and then
every `interval` while it waits; an HTTP 2xx answer opens it for good (for that candidate and scope).
Anything else, a timeout or an error, is "not yet": the rollout stays where it is, never goes on.
A `rollback` gate is asked every `interval` while a candidate is in flight; a 2xx answer rolls back.
(`post-rollout` webhooks are told after the fact, through the notifications: `notify/notifier.py`.)
"""

from __future__ import annotations

from datetime import datetime, timedelta

from modelrollout.api.durations import parse_duration
from modelrollout.api.models import GateStatus, ModelRolloutSpec, ModelRolloutStatus, Phase, WebhookGate
from modelrollout.engine.common import Pass, parse_time, revision_of
from modelrollout.engine.types import GateRequest, RolloutRef

ROLLOUT, PROMOTION = "rollout", "promotion"


def step_scope(index: int) -> str:
    return f"step {index}"


def _current(status: ModelRolloutStatus) -> list[GateStatus]:
    return [gate for gate in status.gates or [] if gate.revision == status.candidate_revision]


def _entry(status: ModelRolloutStatus, name: str, scope: str) -> GateStatus | None:
    return next((g for g in _current(status) if g.name == name and g.scope == scope), None)


def _put(status: ModelRolloutStatus, entry: GateStatus) -> None:
    kept = [g for g in _current(status) if not (g.name == entry.name and g.scope == entry.scope)]
    status.gates = [*kept, entry]


def _due_in(entry: GateStatus, gate: WebhookGate, now: datetime) -> float:
    if entry.checked_at is None:
        return 0.0
    due = parse_time(entry.checked_at) + timedelta(seconds=parse_duration(gate.interval))
    return max((due - now).total_seconds(), 0.0)


def _payload(ref: RolloutRef, status: ModelRolloutStatus, gate: WebhookGate, scope: str) -> dict[str, object]:
    """Flagger's webhook payload, and where the rollout stands."""
    return {
        "name": ref.name,
        "namespace": ref.namespace,
        "phase": status.phase.value,
        "type": gate.type,
        "checksum": status.candidate_revision or "",
        "scope": scope,
        "stable": status.stable_version or "",
        "candidate": status.candidate_version or "",
        "metadata": dict(gate.metadata),
    }


def gates_open(run: Pass, types: tuple[str, ...], scope: str) -> bool:
    """Whether every gate of these types has said yes for this candidate and scope; records why not."""
    status = run.status
    waiting: list[str] = []
    for gate in (g for g in run.spec.webhooks if g.type in types):
        entry = _entry(status, gate.name, scope)
        if entry is None:
            assert status.candidate_revision is not None
            entry = GateStatus(
                name=gate.name, type=gate.type, scope=scope, revision=status.candidate_revision, state="Waiting"
            )
            _put(status, entry)
            run.event("GateWaiting", f"waiting for webhook gate {gate.name!r} ({gate.type}, {scope})")
        if entry.state == "Open":
            continue
        answer = run.observed.gate_answers.get(gate.name)
        if answer is not None and answer.scope == scope:
            entry = entry.model_copy(
                update={
                    "state": "Open" if answer.yes else "Waiting",
                    "message": answer.message,
                    "checked_at": run.at,
                    "attempts": entry.attempts + 1,
                }
            )
            _put(status, entry)
            if answer.yes:
                run.event("GateOpened", f"webhook gate {gate.name!r} ({gate.type}, {scope}) said go: {answer.message}")
                continue
        waiting.append(f"{gate.name!r} ({gate.type}): {entry.message or 'not asked yet'}")
        run.again_in(_due_in(entry, gate, run.now))
    if waiting:
        status.message = f"{scope}: waiting for webhook gate " + "; ".join(waiting)
    return not waiting


def rollback_requested(run: Pass) -> str | None:
    """What a `rollback` gate said when it answered yes (roll back now); None to go on."""
    status = run.status
    for gate in (g for g in run.spec.webhooks if g.type == "rollback"):
        entry = _entry(status, gate.name, ROLLOUT)
        if entry is None:
            assert status.candidate_revision is not None
            entry = GateStatus(
                name=gate.name, type=gate.type, scope=ROLLOUT, revision=status.candidate_revision, state="Waiting"
            )
        answer = run.observed.gate_answers.get(gate.name)
        if answer is not None and answer.scope == ROLLOUT:
            entry = entry.model_copy(
                update={"message": answer.message, "checked_at": run.at, "attempts": entry.attempts + 1}
            )
        _put(status, entry)
        if answer is not None and answer.yes:
            return f"webhook gate {gate.name!r} (rollback) said roll back: {answer.message}"
        run.again_in(_due_in(entry, gate, run.now))
    return None


def gate_requests(
    ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus, now: datetime
) -> list[GateRequest]:
    """The gates to ask in this pass: those waiting whose interval is up, and the rollback gates."""
    if not spec.webhooks or status.phase not in (Phase.PROGRESSING, Phase.PAUSED):
        return []
    if status.candidate_revision is None or status.candidate_revision != revision_of(spec):
        return []
    requests: list[GateRequest] = []
    for gate in spec.webhooks:
        if gate.type == "post-rollout":
            continue
        if gate.type == "rollback":
            entry = _entry(status, gate.name, ROLLOUT)
            asks = [(ROLLOUT, entry)]
        else:
            asks = [(g.scope, g) for g in _current(status) if g.name == gate.name and g.state == "Waiting"]
        for scope, found in asks:
            if found is not None and _due_in(found, gate, now) > 0:
                continue
            requests.append(
                GateRequest(
                    gate.name,
                    gate.type,
                    gate.url,
                    scope,
                    _payload(ref, status, gate, scope),
                    gate.timeout_seconds,
                    gate.headers,
                )
            )
            break  # one scope per gate at a time: the rollout waits at one place
    return requests


def not_yet_open(spec: ModelRolloutSpec, status: ModelRolloutStatus, kind: str, scope: str) -> list[str]:
    """The names of the gates of this type that have not said yes for this candidate and scope."""
    opened = {g.name for g in _current(status) if g.scope == scope and g.state == "Open"}
    return [gate.name for gate in spec.webhooks if gate.type == kind and gate.name not in opened]
