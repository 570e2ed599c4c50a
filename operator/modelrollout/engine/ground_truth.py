"""Accuracy metrics in the engine: their queries, waiting for labels, and concept drift after promotion.

Labels arrive after the predictions they judge, so an accuracy metric is not measured before
`labelDelay` has passed since its analysis started, nor while fewer than `minLabelled` labels are in its
window: an analysis step waits for them at most `labelWait` (then the measurement is Inconclusive); the
background analysis and monitoring simply wait. After promotion (`spec.monitoring`), an accuracy
metric's first full window is the model's baseline, kept in status; a later drop against it beyond
`maxDrop` (significant, as `analysis.accuracy` judges it) for `consecutiveFailures` measurements in a
row is concept drift: the `ConceptDrift` condition, one Event and the retraining hook, once per episode.
Pure, as the rest of the engine.
"""

from __future__ import annotations

from modelrollout.analysis.accuracy import judge_accuracy, labels_not_ready
from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import (
    AccuracyBaseline,
    HookStatus,
    Measurement,
    Metric,
    MetricResult,
    ModelRolloutSpec,
    ModelRolloutStatus,
    MonitoringStatus,
    Verdict,
    render_template,
)
from modelrollout.engine.common import Pass, parse_time
from modelrollout.engine.feedback_queries import accuracy_queries
from modelrollout.engine.types import MeasurementRequest

BASELINE = "its baseline after promotion"


def accuracy_request(kind: str, name: str, spec: ModelRolloutSpec, values: dict[str, str]) -> MeasurementRequest:
    """The queries of an accuracy metric; monitoring compares with the stored baseline, not with stable."""
    metric = spec.analysis.metric(name)
    accuracy = metric.accuracy
    assert accuracy is not None
    queries = accuracy_queries(accuracy, with_stable=kind != "monitor" and accuracy.max_drop is not None)
    address = accuracy.address or spec.analysis.prometheus.address
    return MeasurementRequest(kind, name, {role: render_template(q, values) for role, q in queries.items()}, address)


def waits_for_labels(run: Pass, metric: Metric, observation: Observation, started_at: str, bounded: bool) -> bool:
    """Whether this accuracy measurement is not to be taken yet (see the module docstring)."""
    elapsed = (run.now - parse_time(started_at)).total_seconds()
    return labels_not_ready(metric, observation, elapsed, bounded)


def is_accuracy(spec: ModelRolloutSpec, name: str) -> bool:
    return spec.analysis.metric(name).accuracy is not None


def monitor_accuracy(
    run: Pass, current: MonitoringStatus, metric: Metric, observation: Observation
) -> Measurement | None:
    """One monitoring measurement of an accuracy metric against the model's baseline (None: wait)."""
    if waits_for_labels(run, metric, observation, current.analysis.started_at, bounded=False):
        return None
    baseline = current.baseline(metric.name)
    if baseline is None:
        # No reference in the values: judged by min/max only; its numbers become the baseline.
        measurement = judge_accuracy(metric, observation, run.at)
        hits, labelled = observation.values.get("candidate"), observation.values.get("count")
        if measurement.value is not None and hits is not None and labelled:
            current.accuracy_baselines.append(
                AccuracyBaseline(metric=metric.name, hits=hits, labelled=labelled, value=measurement.value, at=run.at)
            )
            run.event(
                "AccuracyBaseline",
                f"{current.version}: {metric.name} baseline after promotion is {measurement.value:.4g} "
                f"over {labelled:.0f} labelled predictions",
            )
            measurement = measurement.model_copy(update={"message": f"baseline: {measurement.message}"})
        return measurement
    values = {**observation.values, "stable": baseline.hits, "stableCount": baseline.labelled}
    with_baseline = Observation(value=None, values=values)
    return judge_accuracy(metric, with_baseline, run.at, reference_name=BASELINE)


def watch_concept(run: Pass, current: MonitoringStatus, streaks: dict[str, int], needed: int) -> None:
    """Start a concept-drift episode (condition, one Event, the hook) or end one."""
    spec, status = run.spec, run.status
    watch = spec.monitoring
    assert watch is not None
    results = [r for r in current.analysis.metrics if is_accuracy(spec, r.name) and not r.dry_run]
    if not results:
        current.concept_drifted_since = None
        return
    dropped = [r for r in results if streaks.get(r.name, 0) >= needed]
    clean = all(r.phase == Verdict.SUCCESSFUL for r in results)
    if dropped and current.concept_drifted_since is None:
        current.concept_drifted_since = run.at
        reasons = "; ".join(named(r) for r in dropped)
        run.event(
            "ConceptDrift", f"{status.stable_version}: accuracy dropped against {BASELINE}: {reasons}", warning=True
        )
        if watch.hook is not None and (current.hook is None or current.hook.state != "Pending"):
            current.hook = HookStatus(episode=run.at, state="Pending", next_attempt_at=run.at)
    elif clean and current.concept_drifted_since is not None:
        current.concept_drifted_since = None
        run.event("ConceptDriftCleared", f"{status.stable_version}: accuracy is back within maxDrop of {BASELINE}")


def concept_condition(status: ModelRolloutStatus, spec: ModelRolloutSpec) -> tuple[bool, str] | None:
    """The ConceptDrift condition (None: no accuracy metric is watched)."""
    watch = status.monitoring
    if spec.monitoring is None or not any(is_accuracy(spec, name) for name in spec.monitoring.metrics):
        return None
    if watch is None:
        return False, ""
    failing = [
        r for r in watch.analysis.metrics if is_accuracy(spec, r.name) and r.phase == Verdict.FAILED and not r.dry_run
    ]
    return watch.concept_drifted_since is not None, "; ".join(named(r) for r in failing)


def hook_kind(current: MonitoringStatus) -> str:
    hook = current.hook
    if hook is not None and current.concept_drifted_since is not None and hook.episode == current.concept_drifted_since:
        return "ConceptDrift"
    return "ModelDrift"


def named(result: MetricResult) -> str:
    return result.message if result.message.startswith(result.name) else f"{result.name}: {result.message}"
