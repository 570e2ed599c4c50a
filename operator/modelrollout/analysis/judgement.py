"""One measurement of any kind of metric: threshold, comparison with stable, or drift. Pure.

The kinds share the rules that matter: an error is an Error, no data is Inconclusive, and so is a
sample smaller than the metric's minCount: never a pass. A drift metric whose histograms cannot be
compared (no buckets, different bucket edges) is Inconclusive with a message naming the metric and
the field to fix, so the rollout waits for a person rather than deciding on bad data.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelrollout.analysis.accuracy import judge_accuracy
from modelrollout.analysis.agreement import judge_agreement
from modelrollout.analysis.compare import CompareLimits, Direction, compare
from modelrollout.analysis.drift import DEFAULT_MIN_COUNT, DriftCriteria, Statistic, categorical_drift, histogram_drift
from modelrollout.analysis.evaluate import Observation, judge
from modelrollout.analysis.histograms import (
    HistogramError,
    category_counts,
    category_counts_by,
    histogram_from_samples,
    histograms_by_label,
    training_reference,
)
from modelrollout.api.models import Measurement, Metric, Verdict
from modelrollout.vocabulary.samples import Sample

WHOLE = "all"  # the group name of a distribution that is not split by a label


def judge_metric(metric: Metric, observation: Observation, at: str) -> Measurement:
    if observation.error is not None:
        return Measurement(phase=Verdict.ERROR, at=at, message=observation.error)
    if metric.agreement is not None:
        return judge_agreement(metric.agreement, observation, at)
    if metric.kind == "compare":
        return _compare(metric, observation, at)
    if metric.kind == "drift":
        return _drift(metric, observation, at)
    if metric.kind == "accuracy":
        return judge_accuracy(metric, observation, at)
    too_few = _too_few(metric, observation.values.get("count"), "count" in observation.values)
    if too_few is not None:
        return Measurement(phase=Verdict.INCONCLUSIVE, value=observation.value, at=at, message=too_few)
    assert metric.threshold is not None
    return judge(observation, metric.threshold, at)


def _too_few(metric: Metric, count: float | None, measured: bool) -> str | None:
    if metric.min_count is None or not measured:
        return None
    if count is None or count < metric.min_count:
        seen = "no" if count is None else f"{count:g}"
        return f"{seen} samples in the window, fewer than minCount {metric.min_count:g}"
    return None


def _compare(metric: Metric, observation: Observation, at: str) -> Measurement:
    settings = metric.compare
    assert settings is not None
    limits = CompareLimits(
        direction=Direction(settings.direction),
        max_ratio=settings.max_ratio,
        max_difference=settings.max_difference,
        min_count=metric.min_count,
    )
    values = observation.values
    result = compare(
        values.get("candidate"),
        values.get("stable"),
        limits,
        candidate_n=values.get("count"),
        stable_n=values.get("stableCount"),
    )
    return result.measurement(at)


def _drift(metric: Metric, observation: Observation, at: str) -> Measurement:
    settings = metric.drift
    assert settings is not None
    where = f"metric {metric.name!r} (spec.analysis.metrics[name={metric.name}].drift)"
    criteria = DriftCriteria(
        statistic=Statistic(settings.statistic),
        max=settings.max,
        min_pvalue=settings.min_p_value,
        min_count=metric.min_count if metric.min_count is not None else DEFAULT_MIN_COUNT,
    )
    candidate = observation.vectors.get("candidate", ())
    if not candidate:
        return Measurement(
            phase=Verdict.INCONCLUSIVE,
            at=at,
            message=f"{where}: the candidate's query returned no series (no buckets in Prometheus); check the "
            "metric name and labels in prometheus.query, and that the candidate gets traffic",
        )
    try:
        if settings.shape == "categorical":
            return _categorical(metric, observation, candidate, criteria, at)
        candidate_groups = (
            histograms_by_label(candidate, settings.group_by)
            if settings.group_by
            else {WHOLE: histogram_from_samples(candidate)}
        )
        if settings.reference == "training":
            if observation.reference is None:
                raise HistogramError("the training reference could not be read")
            reference_groups = dict(training_reference(observation.reference).numeric)
        else:
            stable = observation.vectors.get("reference", ())
            if not stable:
                return Measurement(
                    phase=Verdict.INCONCLUSIVE,
                    at=at,
                    message=f"{where}: the stable version's query returned no series; it needs traffic in the "
                    "same window",
                )
            reference_groups = (
                histograms_by_label(stable, settings.group_by)
                if settings.group_by
                else {WHOLE: histogram_from_samples(stable)}
            )
        result = histogram_drift(candidate_groups, reference_groups, criteria, subject=metric.name)
    except (HistogramError, ValueError) as error:
        return Measurement(phase=Verdict.INCONCLUSIVE, at=at, message=f"{where}: {error}")
    return result.measurement(at)


def _categorical(
    metric: Metric, observation: Observation, candidate: tuple[Sample, ...], criteria: DriftCriteria, at: str
) -> Measurement:
    settings = metric.drift
    assert settings is not None
    candidate_counts: Mapping[str, Mapping[str, float]]
    reference_counts: Mapping[str, Mapping[str, float]]
    if settings.group_by:
        candidate_counts = category_counts_by(candidate, label=settings.label, by=settings.group_by)
    else:
        candidate_counts = {WHOLE: category_counts(candidate, label=settings.label)}
    if settings.reference == "training":
        if observation.reference is None:
            raise HistogramError("the training reference could not be read")
        reference_counts = dict(training_reference(observation.reference).categorical)
    else:
        stable = observation.vectors.get("reference", ())
        if settings.group_by:
            reference_counts = category_counts_by(stable, label=settings.label, by=settings.group_by)
        else:
            reference_counts = {WHOLE: category_counts(stable, label=settings.label)}
    return categorical_drift(candidate_counts, reference_counts, criteria, subject=metric.name).measurement(at)
