"""Which of a pass's Events are worth a message, and what it says (pure).

A message is made from an Event the engine emitted, in the pass that emitted it: the Event's fixed
name (`kube/events.py`) is the message's identity, so the pass that records it, and only that one,
queues it.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelrollout.analysis.evaluate import worst
from modelrollout.api.models import ModelRolloutSpec, ModelRolloutStatus, PendingEvent, Phase, Verdict

# The Events that say a rollout was rolled back (`engine.common.roll_back` and its callers).
ROLLED_BACK_REASONS = frozenset(
    {"AnalysisFailed", "AnalysisError", "Aborted", "ProgressDeadlineExceeded", "RollbackHook"}
)
PAUSED_REASONS = frozenset({"Paused", "WaitingForPromote", "AnalysisInconclusive", "GateWaiting"})
TRIGGER_OF_REASON: dict[str, str] = {
    "RolloutStarted": "on-rollout-started",
    "StepCompleted": "on-step-completed",
    "Promoted": "on-rollout-promoted",
    "Drifted": "on-drift",
    **{reason: "on-rollout-paused" for reason in PAUSED_REASONS},
    **{reason: "on-rollout-rolled-back" for reason in ROLLED_BACK_REASONS},
}


@dataclass(frozen=True)
class Message:
    """What to tell: the Event's name (the message's identity), the trigger and the template's values."""

    event: str
    trigger: str
    values: dict[str, str]


def messages_for(
    events: list[PendingEvent], status: ModelRolloutStatus, spec: ModelRolloutSpec | None, rollout: str, namespace: str
) -> list[Message]:
    """The messages a pass's Events make, in order."""
    found: list[Message] = []
    for event in events:
        trigger = TRIGGER_OF_REASON.get(event.reason)
        if trigger is None:
            continue
        if trigger == "on-rollout-rolled-back" and status.phase != Phase.ROLLED_BACK:
            continue  # a first deployment's missed deadline fails it; nothing was rolled back
        values = {
            "rollout": rollout,
            "namespace": namespace,
            "trigger": trigger,
            "reason": event.reason,
            "message": event.message,
            "stable": status.stable_version or "",
            "candidate": status.candidate_version or "",
            "step": "" if status.current_step_index is None else str(status.current_step_index),
            "phase": status.phase.value,
            "metric": "",
            "value": "",
            "threshold": "",
            "at": event.at,
        }
        if trigger == "on-rollout-rolled-back":
            values.update(culprit(status, spec))
        if trigger == "on-rollout-promoted":
            values["candidate"] = status.stable_version or ""
        found.append(Message(event.name, trigger, values))
    return found


def culprit(status: ModelRolloutStatus, spec: ModelRolloutSpec | None) -> dict[str, str]:
    """The metric that rolled the candidate back, its last value and what was allowed."""
    for analysis in (status.step_analysis, status.background_analysis):
        if analysis is None or analysis.phase not in (Verdict.FAILED, Verdict.ERROR):
            continue
        result = worst(analysis)
        if result is None:
            continue
        value = next((m.value for m in reversed(result.measurements) if m.value is not None), None)
        return {
            "metric": result.name,
            "value": "" if value is None else f"{value:g}",
            "threshold": threshold_words(spec, result.name),
        }
    return {}


def threshold_words(spec: ModelRolloutSpec | None, name: str) -> str:
    if spec is None:
        return ""
    metric = next((m for m in spec.analysis.metrics if m.name == name), None)
    if metric is None:
        return ""
    parts: list[str] = []
    if metric.threshold is not None:
        if metric.threshold.min is not None:
            parts.append(f"min {metric.threshold.min:g}")
        if metric.threshold.max is not None:
            parts.append(f"max {metric.threshold.max:g}")
    if metric.compare is not None:
        if metric.compare.max_ratio is not None:
            parts.append(f"maxRatio {metric.compare.max_ratio:g} vs stable")
        if metric.compare.max_difference is not None:
            parts.append(f"maxDifference {metric.compare.max_difference:g} vs stable")
    if metric.drift is not None:
        if metric.drift.max is not None:
            parts.append(f"{metric.drift.statistic} max {metric.drift.max:g}")
        if metric.drift.min_p_value is not None:
            parts.append(f"{metric.drift.statistic} p-value min {metric.drift.min_p_value:g}")
    return ", ".join(parts)
