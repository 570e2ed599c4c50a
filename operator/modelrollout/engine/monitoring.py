"""After promotion: keep measuring the stable model's drift and fire the retraining hook once per episode.

A drift episode starts when one metric's measurements have failed `consecutiveFailures` times in a
row (one noisy window of live traffic is no drift) and ends when every monitoring metric passes
again. The hook of an episode is retried with exponential backoff until it is delivered; each attempt
and its error are in status, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

from modelrollout.analysis.evaluate import Limits, measurements_kept, record
from modelrollout.analysis.judgement import judge_metric
from modelrollout.api.durations import parse_duration
from modelrollout.api.models import (
    AnalysisStatus,
    HookStatus,
    MetricResult,
    ModelRolloutStatus,
    MonitoringStatus,
    Verdict,
)
from modelrollout.engine.common import Pass, next_due_in, parse_time, timestamp
from modelrollout.engine.ground_truth import hook_kind, is_accuracy, monitor_accuracy, watch_concept
from modelrollout.engine.types import FireHook, HookResult

HOOK_FIRST_RETRY_SECONDS = 10.0
HOOK_MAX_RETRY_SECONDS = 600.0
# Monitoring keeps every verdict of its own: the tally only bounds the history kept in status.
_NO_LIMITS = Limits(failure=10**9, inconclusive=10**9, consecutive_error=10**9)


def hook_backoff(attempts: int) -> float:
    return float(min(HOOK_FIRST_RETRY_SECONDS * 2.0 ** max(attempts - 1, 0), HOOK_MAX_RETRY_SECONDS))


def monitor(run: Pass) -> None:
    status, spec = run.status, run.spec
    watch = spec.monitoring
    if watch is None or status.stable_version is None:
        status.monitoring = None
        return
    current = status.monitoring
    if current is None or current.version != status.stable_version:
        analysis = AnalysisStatus.model_validate({"kind": "background", "startedAt": run.at})
        current = MonitoringStatus(version=status.stable_version, analysis=analysis)
        status.monitoring = current
    analysis = current.analysis
    interval = parse_duration(watch.interval)
    waiting: set[str] = set()
    for name in watch.metrics:
        metric = spec.analysis.metric(name)
        result = analysis.result(name)
        if result is None:
            result = MetricResult(name=name, dry_run=metric.dry_run)
            analysis.metrics.append(result)
        observation = run.observed.measurements.get(("monitor", name))
        if observation is not None:
            if metric.accuracy is not None:
                judged = monitor_accuracy(run, current, metric, observation)
                if judged is None:  # labels still to come: no measurement, look again in an interval
                    waiting.add(name)
                    continue
                measurement = judged
            else:
                measurement = judge_metric(metric, observation, run.at)
            keep = measurements_kept(len(watch.metrics), metric.measurement_retention)
            updated = record(result, measurement, _NO_LIMITS, None, keep)
            updated.phase = measurement.phase
            updated.message = measurement.message
            analysis.metrics[analysis.metrics.index(result)] = updated
    for result in analysis.metrics:
        due = interval if result.name in waiting else next_due_in(result, analysis.started_at, interval, run.now, False)
        run.again_in(due, routine=True)
    # Accuracy metrics judge the concept (ConceptDrift), the others the inputs and outputs (Drifted).
    concept = {name for name in watch.metrics if is_accuracy(spec, name)}
    watch_concept(
        run,
        current,
        {r.name: _failure_streak(r) for r in analysis.metrics if r.name in concept},
        watch.consecutive_failures,
    )
    # A dry-run metric is watched and shown, but neither starts nor ends a drift episode.
    decisive = [result for result in analysis.metrics if not result.dry_run and result.name not in concept]
    drifted = [result for result in decisive if _failure_streak(result) >= watch.consecutive_failures]
    clean = decisive and all(result.phase == Verdict.SUCCESSFUL for result in decisive)
    if drifted and current.drifted_since is None:
        current.drifted_since = run.at
        message = f"{status.stable_version} drifted: " + "; ".join(_named(r) for r in drifted)
        run.event("Drifted", message, warning=True)
        if watch.hook is not None:
            current.hook = HookStatus(episode=run.at, state="Pending", next_attempt_at=run.at)
    elif clean and current.drifted_since is not None:
        current.drifted_since = None
        run.event("DriftCleared", f"{status.stable_version}: every monitoring metric passes again")
    _fire(run, current)


def _fire(run: Pass, current: MonitoringStatus) -> None:
    hook = current.hook
    if hook is None or hook.state != "Pending" or hook.next_attempt_at is None:
        return
    due = parse_time(hook.next_attempt_at)
    if run.now < due:
        run.again_in((due - run.now).total_seconds())
        return
    hook.attempts += 1
    hook.next_attempt_at = timestamp(run.now + timedelta(seconds=hook_backoff(hook.attempts)))
    reasons = "; ".join(_named(r) for r in current.analysis.metrics if r.phase == Verdict.FAILED and not r.dry_run)
    run.actions.append(FireHook(hook.episode, current.version, reasons or "drift", kind=hook_kind(current)))
    run.again_in(hook_backoff(hook.attempts))


def drift_condition(status: ModelRolloutStatus, needed: int, skip: Collection[str] = ()) -> tuple[bool, str]:
    """Whether the watched model is in a drift episode, and why (or how close a failing metric is);
    `skip`: metrics that judge something else (accuracy: ConceptDrift)."""
    watch = status.monitoring
    if watch is None:
        return False, ""
    failing = [
        result
        for result in watch.analysis.metrics
        if result.phase == Verdict.FAILED and not result.dry_run and result.name not in skip
    ]
    if watch.drifted_since is not None:
        return True, "; ".join(_named(result) for result in failing)
    notes = []
    for result in failing:
        streak = _failure_streak(result)
        notes.append(f"{_named(result)} ({streak} of {needed} failures in a row that count as drift)")
    return False, "; ".join(notes)


def _failure_streak(result: MetricResult) -> int:
    """How many of the metric's last measurements failed in a row (errors are no measurement)."""
    streak = 0
    for measurement in reversed(result.measurements):
        if measurement.phase == Verdict.ERROR:
            continue
        if measurement.phase != Verdict.FAILED:
            break
        streak += 1
    return streak


def _named(result: MetricResult) -> str:
    """The metric's message, prefixed with its name unless the message starts with it already."""
    return result.message if result.message.startswith(result.name) else f"{result.name}: {result.message}"


def record_hook_result(status: ModelRolloutStatus, result: HookResult) -> list[tuple[str, str, bool]]:
    """Fold an attempt's outcome into status; returns Events to post as (reason, message, warning)."""
    hook = status.monitoring.hook if status.monitoring is not None else None
    if hook is None or hook.episode != result.episode:
        return []
    if result.delivered:
        hook.state = "Delivered"
        hook.next_attempt_at = None
        hook.last_error = ""
        return [("RetrainingHookFired", f"retraining hook delivered for the drift episode of {hook.episode}", False)]
    hook.last_error = result.error
    return [
        (
            "RetrainingHookFailed",
            f"retraining hook attempt {hook.attempts} failed: {result.error}; next attempt at {hook.next_attempt_at}",
            True,
        )
    ]
