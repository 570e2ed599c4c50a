"""Judge a model on ground truth that arrived after its predictions: accuracy, a class's recall, or the
mean absolute error, against a bound or against a reference (stable on the same window, or the model's own
baseline at promotion). Pure: the numbers are the feedback counts the metric backend fetched.

The statistics (``docs/analysis.md``, "Ground truth"):

* a share (accuracy, recall) against ``min``: the Wilson score interval (Wilson 1927; Brown, Cai and
  DasGupta 2001 on why not the Wald interval). Successful when the observed share reaches ``min``; Failed
  when even the interval's one-sided upper bound at ``confidence`` is below it (the model is worse than the
  bar beyond sampling noise); in between, Inconclusive: the labels do not yet tell;
* a share against a reference with ``maxDrop``: a one-sided test of ``reference - candidate > maxDrop`` on
  the Agresti-Caffo adjusted proportions (Agresti and Caffo 2000: one success and one failure added to each
  side, which keeps the two-proportion z-test honest near 0 and 1). Successful when the observed drop is
  within maxDrop; Failed when the test rejects at ``confidence``; in between, Inconclusive;
* the mean absolute error (regression): the observed mean against ``max`` and against the reference plus
  ``maxDrop``, without a test (the histogram carries no variance).

Fewer than ``minLabelled`` labelled predictions on either side is no measurement: :func:`too_few_labels`
says so, and the engine waits (an analysis step at most ``labelWait``) rather than judging noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.durations import parse_duration
from modelrollout.api.models import Accuracy, Measurement, Metric, Verdict

_RANK = {Verdict.SUCCESSFUL: 0, Verdict.INCONCLUSIVE: 1, Verdict.FAILED: 2}


@dataclass(frozen=True)
class Side:
    """One version's labelled predictions in the window: `hits` correct (or the summed absolute error)."""

    hits: float
    labelled: float

    @property
    def value(self) -> float:
        return self.hits / self.labelled


def wilson_interval(hits: float, n: float, z: float) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``hits / n`` for the normal quantile ``z``."""
    if n <= 0:
        return 0.0, 1.0
    p = min(max(hits / n, 0.0), 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def drop_p_value(candidate: Side, reference: Side, max_drop: float) -> float:
    """One-sided p-value of "the candidate's share is more than `max_drop` below the reference's"
    (null: the drop is at most max_drop), on Agresti-Caffo adjusted proportions."""
    pc = (candidate.hits + 1) / (candidate.labelled + 2)
    pr = (reference.hits + 1) / (reference.labelled + 2)
    se = math.sqrt(pc * (1 - pc) / (candidate.labelled + 2) + pr * (1 - pr) / (reference.labelled + 2))
    z = ((pr - pc) - max_drop) / se
    return float(stats.norm.sf(z))


def _side(values: dict[str, float | None], hits: str, labelled: str) -> Side | None:
    k, n = values.get(hits), values.get(labelled)
    if k is None or n is None or math.isnan(k) or math.isnan(n) or n <= 0:
        return None
    return Side(max(k, 0.0), n)


def _with_reference(metric: Metric, observation: Observation) -> bool:
    assert metric.accuracy is not None
    return metric.accuracy.max_drop is not None and "stableCount" in observation.values


def too_few_labels(metric: Metric, observation: Observation) -> str | None:
    """Why there is nothing to judge yet (fewer than minLabelled labels on a side), or None."""
    accuracy = metric.accuracy
    assert accuracy is not None
    need = accuracy.min_labelled
    sides = [("the model", "count")] + (
        [("the reference", "stableCount")] if _with_reference(metric, observation) else []
    )
    for who, role in sides:
        n = observation.values.get(role)
        if n is None or math.isnan(n) or n < need:
            seen = "no" if n is None or math.isnan(n) else f"{n:.0f}"
            whose = "" if len(sides) == 1 else f" of {who}"
            return f"{seen} labelled predictions{whose} in the last {accuracy.window}, fewer than minLabelled {need}"
    return None


def labels_not_ready(metric: Metric, observation: Observation, elapsed_seconds: float, bounded: bool) -> bool:
    """Whether to wait rather than measure: labelDelay has not passed since the analysis started, or too
    few labels arrived and (`bounded`, an analysis step) labelWait is not over yet."""
    accuracy = metric.accuracy
    assert accuracy is not None
    delay = parse_duration(accuracy.label_delay)
    if observation.error is not None:
        return False  # an error is reported as one, never waited away
    if elapsed_seconds < delay:
        return True
    if too_few_labels(metric, observation) is None:
        return False
    return not bounded or elapsed_seconds < delay + parse_duration(accuracy.label_wait)


def _name(accuracy: Accuracy) -> str:
    if accuracy.statistic == "recall":
        return f"recall of {accuracy.class_name!r}"
    return "mean absolute error" if accuracy.statistic == "error" else "accuracy"


def judge_accuracy(metric: Metric, observation: Observation, at: str, reference_name: str = "stable") -> Measurement:
    """One measurement of an accuracy metric; `reference_name` says what stable/stableCount hold."""
    accuracy = metric.accuracy
    assert accuracy is not None
    if observation.error is not None:
        return Measurement(phase=Verdict.ERROR, at=at, message=observation.error)
    short = too_few_labels(metric, observation)
    values = dict(observation.values)
    candidate = _side(values, "candidate", "count")
    if short is not None or candidate is None:
        return Measurement(phase=Verdict.INCONCLUSIVE, at=at, message=short or "no labelled predictions")
    what = _name(accuracy)
    share = accuracy.statistic != "error"
    z = float(stats.norm.ppf(accuracy.confidence))
    value = candidate.value
    shown = (
        f"{what} {value:.3f} ({candidate.hits:.0f} of {candidate.labelled:.0f})"
        if share
        else (f"{what} {value:.4g} over {candidate.labelled:.0f} labelled")
    )
    verdicts: list[tuple[Verdict, str]] = []
    if accuracy.min is not None:
        _, high = wilson_interval(candidate.hits, candidate.labelled, z)
        interval = f"Wilson upper bound {high:.3f} at {accuracy.confidence:g}"
        if value >= accuracy.min:
            verdicts.append((Verdict.SUCCESSFUL, f"{shown} is at least {accuracy.min:g}"))
        elif high < accuracy.min:
            verdicts.append((Verdict.FAILED, f"{shown} is below {accuracy.min:g} beyond sampling noise ({interval})"))
        else:
            verdicts.append(
                (Verdict.INCONCLUSIVE, f"{shown} is below {accuracy.min:g} by less than sampling noise ({interval})")
            )
    if accuracy.max is not None:
        ok = value <= accuracy.max
        verdicts.append(
            (
                Verdict.SUCCESSFUL if ok else Verdict.FAILED,
                f"{shown} is {'at most' if ok else 'above'} {accuracy.max:g}",
            )
        )
    reference = _side(values, "stable", "stableCount") if _with_reference(metric, observation) else None
    if accuracy.max_drop is not None and reference is not None:
        verdicts.append(_against(accuracy, candidate, reference, reference_name, shown))
    if not verdicts:
        return Measurement(phase=Verdict.SUCCESSFUL, value=value, at=at, message=f"{shown} (no bound to judge here)")
    phase = max((verdict for verdict, _ in verdicts), key=_RANK.__getitem__)
    return Measurement(phase=phase, value=value, at=at, message="; ".join(text for _, text in verdicts))


def _against(accuracy: Accuracy, candidate: Side, reference: Side, name: str, shown: str) -> tuple[Verdict, str]:
    assert accuracy.max_drop is not None
    allowed = accuracy.max_drop
    if accuracy.statistic == "error":
        rise = candidate.value - reference.value
        ok = rise <= allowed
        text = f"{shown}, {rise:+.4g} against {name}'s {reference.value:.4g} (at most +{allowed:g})"
        return (Verdict.SUCCESSFUL if ok else Verdict.FAILED), text
    drop = reference.value - candidate.value
    against = f"{name}'s {reference.value:.3f} ({reference.hits:.0f} of {reference.labelled:.0f})"
    if drop <= allowed:
        return Verdict.SUCCESSFUL, f"{shown} is within {allowed:g} of {against}"
    p_value = drop_p_value(candidate, reference, allowed)
    if p_value < 1 - accuracy.confidence:
        return Verdict.FAILED, f"{shown} is {drop:.3f} below {against}, more than {allowed:g} (z-test p={p_value:.2g})"
    return Verdict.INCONCLUSIVE, (
        f"{shown} is {drop:.3f} below {against}, more than {allowed:g} but within sampling noise "
        f"(z-test p={p_value:.2g})"
    )
