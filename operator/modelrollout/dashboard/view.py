"""What the dashboard's pages show, computed from a ModelRollout as the API server returns it.

Pure: plain dicts in, plain JSON-ready dicts out, the time given. The raw wire dicts are read (not the
pydantic status) so that a dashboard newer or older than the operator still shows what it can.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from modelrollout.api.durations import parse_duration
from modelrollout.api.models import CanaryStep
from modelrollout.dashboard import gates_view
from modelrollout.engine.types import CommandAction

#: Why a rollout waits, in words, and what moves it on.
PAUSE_REASONS = {
    "PauseStep": "a pause step without a duration: Promote ends it",
    "ManualStep": "automation is manual and the step is done: Promote starts the next one",
    "Promotion": "every step is done: Promote makes the candidate stable",
    "Inconclusive": "an analysis had no data to judge: Promote goes on, Abort rolls back",
    "User": "paused by a person: Resume or Promote",
}
#: The commands a phase accepts, in the order the page shows them.
ACTIONS_BY_PHASE: dict[str, tuple[CommandAction, ...]] = {
    "Pending": (CommandAction.ABORT,),
    "Progressing": (CommandAction.PROMOTE, CommandAction.PROMOTE_FULL, CommandAction.PAUSE, CommandAction.ABORT),
    "Paused": (CommandAction.PROMOTE, CommandAction.PROMOTE_FULL, CommandAction.RESUME, CommandAction.ABORT),
    "RolledBack": (CommandAction.RETRY,),
    "Succeeded": (),
    "Failed": (),
}
EVENTS_SHOWN = 20
COUNTS = ("count", "successful", "failed", "inconclusive", "error")
# compare's messages name both sides: "candidate 0.0123 is 1.5x stable 0.0082; ..." (3 significant digits)
_CANDIDATE_VALUE = re.compile(r"candidate (-?[0-9.e+-]+)")
_STABLE_VALUE = re.compile(r"stable (-?[0-9.e+-]+)")
# drift's messages name the worst feature: "<metric>: worst feature 'age' ..." or "<metric>: 'age' ..."
_WORST_FEATURE = re.compile(r"^[^:]*: (?:worst feature )?'([^']+)'")


def _when(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _steps_of(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    steps = ((spec.get("strategy") or {}).get("canary") or {}).get("steps") or []
    return [step for step in steps if isinstance(step, dict)]


def summary(rollout: Mapping[str, Any], now: float) -> dict[str, Any]:
    """One row of the list page."""
    metadata = rollout.get("metadata") or {}
    spec = rollout.get("spec") or {}
    status = rollout.get("status") or {}
    weights = status.get("weights") or {}
    phase = str(status.get("phase") or "Pending")
    steps = _steps_of(spec)
    index = status.get("currentStepIndex")
    created = _when(metadata.get("creationTimestamp"))
    monitoring = status.get("monitoring") or {}
    strategy = "blueGreen" if (spec.get("strategy") or {}).get("blueGreen") is not None else "canary"
    marks = []
    if phase == "Paused":
        marks.append("paused")
    if phase == "RolledBack":
        marks.append("rolled back")
    if phase == "Failed":
        marks.append("failed")
    if monitoring.get("driftedSince"):
        marks.append("drifted")
    return {
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "uid": metadata.get("uid"),
        "phase": phase,
        "stage": status.get("stage"),
        "strategy": strategy,
        "message": status.get("message") or "",
        "pauseReason": status.get("pauseReason"),
        "model": (spec.get("model") or {}).get("name"),
        "stableVersion": status.get("stableVersion"),
        "candidateVersion": status.get("candidateVersion"),
        "weights": {
            "stable": int(weights.get("stable", 100)),
            "candidate": int(weights.get("candidate", 0)),
            "mirror": int(weights.get("mirror", 0)),
            "headerRoute": bool(weights.get("headerRoute", False)),
        },
        "step": None if index is None or not steps else {"n": min(int(index) + 1, len(steps)), "m": len(steps)},
        "createdAt": created,
        "ageSeconds": None if created is None else max(0.0, now - created),
        "marks": marks,
        "lastCommand": status.get("lastCommand"),
        "lastCommandId": status.get("lastCommandId"),
        "resourceVersion": metadata.get("resourceVersion"),
    }


def timeline(spec: Mapping[str, Any], status: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
    """The canary's steps: done, the current one (with what is left of a timed pause), still to come."""
    raw_steps = _steps_of(spec)
    phase = status.get("phase")
    index = status.get("currentStepIndex")
    promoted = phase == "Succeeded"
    shown = []
    for position, raw in enumerate(raw_steps):
        try:
            text = CanaryStep.model_validate(raw).describe()
        except (ValidationError, AssertionError):
            text = ", ".join(sorted(raw)) or "(empty step)"
        if promoted or (index is not None and position < index):
            state = "done"
        elif index is not None and position == index:
            state = {"RolledBack": "stopped", "Failed": "stopped"}.get(str(phase), "current")
        else:
            state = "todo"
        entry: dict[str, Any] = {"index": position, "text": text, "state": state}
        duration = (raw.get("pause") or {}).get("duration")
        started = _when(status.get("stepStartedAt"))
        if state == "current" and duration and started is not None:
            with contextlib.suppress(ValueError):
                entry["remainingSeconds"] = max(0.0, started + parse_duration(str(duration)) - now)
        if state == "current" and status.get("pauseReason"):
            entry["waiting"] = PAUSE_REASONS.get(str(status["pauseReason"]), str(status["pauseReason"]))
        shown.append(entry)
    return shown


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _metric_chart(
    result: Mapping[str, Any], definition: Mapping[str, Any], analysis: str, stable_version: str | None
) -> dict[str, Any]:
    threshold = definition.get("threshold") or {}
    compare = definition.get("compare")
    drift = definition.get("drift")
    kind = "compare" if compare else "drift" if drift else "threshold"
    # What status kept of a drift measurement's features says the kind and limit a template gave.
    kept = result.get("drift") if isinstance(result.get("drift"), Mapping) else None
    if kept is not None and kind == "threshold":
        kind, drift = "drift", {"statistic": kept.get("statistic")}
    points = []
    for measurement in result.get("measurements") or []:
        at = _when(measurement.get("at"))
        if at is None:
            continue
        message = str(measurement.get("message") or "")
        point: dict[str, Any] = {
            "at": at,
            "value": measurement.get("value"),
            "phase": measurement.get("phase"),
            "message": message,
        }
        if kind == "compare":
            candidate = _CANDIDATE_VALUE.search(message)
            stable = _STABLE_VALUE.search(message)
            point["candidate"] = _number(candidate.group(1).rstrip(".;,") if candidate else None)
            point["stable"] = _number(stable.group(1).rstrip(".;,") if stable else None)
        if kind == "drift":
            worst = _WORST_FEATURE.search(message)
            point["worstFeature"] = worst.group(1) if worst else None
        points.append(point)
    band: dict[str, float | None] = {"min": threshold.get("min"), "max": threshold.get("max")}
    if drift:
        # judged on the statistic (max) or on the p-value (minPValue)
        band = {"min": drift.get("minPValue"), "max": drift.get("max")}
        if band["max"] is None and kept is not None and kept.get("max") is not None:
            band["max"] = kept["max"]
    accuracy = definition.get("accuracy")
    if isinstance(accuracy, Mapping):
        # accuracy or recall at least min; a mean absolute error at most max
        band = {"min": accuracy.get("min"), "max": accuracy.get("max")}
    return {
        "name": result.get("name"),
        "analysis": analysis,
        "kind": kind,
        "phase": result.get("phase"),
        "message": result.get("message") or "",
        "counts": {key: int(result.get(key) or 0) for key in COUNTS},
        "threshold": band,
        "compare": compare,
        "drift": drift,
        "template": (definition.get("template") or {}).get("name"),
        "stableVersion": stable_version,
        "points": points,
    }


def metrics(spec: Mapping[str, Any], status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One chart per metric of each analysis kept in status: step, background, monitoring."""
    definitions = {m.get("name"): m for m in (spec.get("analysis") or {}).get("metrics") or [] if isinstance(m, dict)}
    analyses: list[tuple[str, Mapping[str, Any]]] = []
    for key, label in (("stepAnalysis", "step"), ("backgroundAnalysis", "background")):
        if status.get(key):
            analyses.append((label, status[key]))
    monitoring = status.get("monitoring") or {}
    if monitoring.get("analysis"):
        analyses.append(("monitoring", monitoring["analysis"]))
    charts = []
    for label, analysis in analyses:
        for result in analysis.get("metrics") or []:
            definition = definitions.get(result.get("name")) or {}
            charts.append(_metric_chart(result, definition, label, status.get("stableVersion")))
    return charts


def drift_table(charts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each drift metric's latest measurement against its limit, the worst first.

    Status keeps, per measurement, the worst feature and its statistic; every feature of the last
    measurement is in :func:`drift_features`."""
    rows = []
    for chart in charts:
        if chart["kind"] != "drift" or not chart["points"]:
            continue
        latest = chart["points"][-1]
        value, band = latest.get("value"), chart["threshold"]
        limit = band.get("max") if band.get("max") is not None else band.get("min")
        on_pvalue = band.get("max") is None and band.get("min") is not None
        if value is None or not limit:
            severity = None
        else:
            severity = float(limit) / float(value) if on_pvalue and value else float(value) / float(limit)
        rows.append(
            {
                "metric": chart["name"],
                "analysis": chart["analysis"],
                "statistic": (chart["drift"] or {}).get("statistic", "psi"),
                "worstFeature": latest.get("worstFeature"),
                "value": value,
                "limit": limit,
                "limitKind": "minPValue" if on_pvalue else "max",
                "severity": severity,
                "phase": latest.get("phase"),
                "message": latest.get("message"),
                "at": latest.get("at"),
            }
        )
    return sorted(rows, key=lambda row: -(row["severity"] if row["severity"] is not None else -1.0))


def reason_in_words(status: Mapping[str, Any]) -> str | None:
    """Why the rollout stopped or waits, for a person; None while it just runs."""
    phase = status.get("phase")
    message = status.get("message") or ""
    if phase == "RolledBack":
        return f"Rolled back: {message}" if message else "Rolled back."
    if phase == "Paused":
        why = PAUSE_REASONS.get(str(status.get("pauseReason")), "paused")
        return f"Paused ({why}). {message}".strip()
    if phase == "Failed":
        return f"The spec cannot be acted on: {message}"
    return None


def events_of(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The last Events of a rollout, newest first."""

    def at(event: Mapping[str, Any]) -> float:
        for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
            seen = _when(event.get(key) or (event.get("metadata") or {}).get("creationTimestamp"))
            if seen is not None:
                return seen
        return 0.0

    shown: list[dict[str, Any]] = [
        {
            "at": at(event),
            "type": event.get("type"),
            "reason": event.get("reason"),
            "message": event.get("message") or event.get("note") or "",
            "count": event.get("count") or 1,
        }
        for event in events
    ]
    return sorted(shown, key=lambda event: -float(event["at"]))[:EVENTS_SHOWN]


def detail(
    rollout: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    traffic: Sequence[Mapping[str, Any]],
    now: float,
    read_only: bool,
) -> dict[str, Any]:
    """Everything the rollout page draws."""
    spec = rollout.get("spec") or {}
    status = rollout.get("status") or {}
    charts = metrics(spec, status)
    row = summary(rollout, now)
    return {
        **row,
        "steps": timeline(spec, status, now),
        "metrics": charts,
        "drift": drift_table(charts),
        "conditions": status.get("conditions") or [],
        "events": events_of(events),
        "reason": reason_in_words(status),
        "traffic": list(traffic),
        "monitoring": status.get("monitoring"),
        "driftFeatures": drift_features(status),
        "monitoringHistory": monitoring_history(status),
        "actions": [] if read_only else [action.value for action in ACTIONS_BY_PHASE.get(row["phase"], ())],
        "stepStartedAt": _when(status.get("stepStartedAt")),
        "rolloutStartedAt": _when(status.get("rolloutStartedAt")),
        "gates": gates_view.gates(status),
        "notifications": gates_view.notifications(status),
    }


def drift_features(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each drift metric's last measurement feature by feature, as status keeps it (`drift` of each
    metric: its worst `drift.topFeatures` features), worst first; step, background and monitoring.

    Each feature's statistic is given with its limit and their ratio, for a bar chart with the limit line;
    metrics with a drifted feature come first."""
    blocks = []
    for label, analysis in _analyses(status):
        for result in analysis.get("metrics") or []:
            drift = result.get("drift")
            if not isinstance(drift, Mapping) or not isinstance(drift.get("features"), list):
                continue
            limit = drift.get("max")
            features = []
            for feature in drift["features"]:
                if not isinstance(feature, Mapping):
                    continue
                value = feature.get("value")
                features.append(
                    {
                        "name": str(feature.get("name")),
                        "value": value,
                        "pValue": feature.get("pValue"),
                        "drifted": bool(feature.get("drifted")),
                        "overLimit": limit is not None and value is not None and float(value) > float(limit),
                        "ratio": float(value) / float(limit) if value is not None and limit else None,
                    }
                )
            blocks.append(
                {
                    "metric": result.get("name"),
                    "analysis": label,
                    "phase": result.get("phase"),
                    "statistic": drift.get("statistic"),
                    "max": limit,
                    "pValueLevel": drift.get("pValueLevel"),
                    "compared": int(drift.get("compared") or 0),
                    "drifted": int(drift.get("drifted") or 0),
                    "inconclusive": int(drift.get("inconclusive") or 0),
                    "at": _when(drift.get("at")),
                    "features": features,
                }
            )
    return sorted(blocks, key=lambda block: -block["drifted"])


def _analyses(status: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    found: list[tuple[str, Mapping[str, Any]]] = []
    for key, label in (("stepAnalysis", "step"), ("backgroundAnalysis", "background")):
        if isinstance(status.get(key), Mapping):
            found.append((label, status[key]))
    monitoring = status.get("monitoring") or {}
    if isinstance(monitoring.get("analysis"), Mapping):
        found.append(("monitoring", monitoring["analysis"]))
    return found


def monitoring_history(status: Mapping[str, Any]) -> dict[str, Any] | None:
    """After promotion, what `status.monitoring` keeps: the watched version, the drift episode and its
    retraining hook, and every monitoring measurement kept (each metric's last measurementRetention),
    newest first, with the feature each drift measurement named worst."""
    monitoring = status.get("monitoring")
    if not isinstance(monitoring, Mapping):
        return None
    analysis = monitoring.get("analysis") or {}
    history = []
    for result in analysis.get("metrics") or []:
        for measurement in result.get("measurements") or []:
            message = str(measurement.get("message") or "")
            worst = _WORST_FEATURE.search(message) if result.get("drift") else None
            history.append(
                {
                    "metric": result.get("name"),
                    "at": _when(measurement.get("at")),
                    "phase": measurement.get("phase"),
                    "value": measurement.get("value"),
                    "worstFeature": worst.group(1) if worst else None,
                    "message": message,
                }
            )
    history.sort(key=lambda entry: -(entry["at"] or 0.0))
    return {
        "version": monitoring.get("version"),
        "startedAt": _when(analysis.get("startedAt")),
        "driftedSince": _when(monitoring.get("driftedSince")),
        "hook": monitoring.get("hook"),
        "metrics": [
            {
                "name": result.get("name"),
                "phase": result.get("phase"),
                "dryRun": bool(result.get("dryRun")),
                "counts": {key: int(result.get(key) or 0) for key in COUNTS},
                "message": result.get("message") or "",
            }
            for result in analysis.get("metrics") or []
        ],
        "history": history,
    }
