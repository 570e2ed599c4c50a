"""Candidate vs stable: the same query for both versions, judged by a ratio and/or a difference.

Pure: the inputs are the two numbers the backend returned (and, optionally, the sample sizes behind
them); nothing here does I/O. Semantics (also in ``docs/analysis.md``):

* ``direction`` says which way is worse: ``lowerIsBetter`` (latency, error rate: the candidate is worse
  when higher) or ``higherIsBetter`` (accuracy, throughput: worse when lower);
* ``maxRatio`` r: lower is better: ``candidate <= r * stable``; higher is better: ``candidate >= stable / r``;
* ``maxDifference`` d: how much worse in absolute terms: ``candidate - stable <= d`` (lower is better) or
  ``stable - candidate <= d`` (higher is better);
* every limit given must hold; a candidate equal to stable always passes;
* stable 0: the ratio is undefined. Candidate 0 too: pass. A candidate worse than 0 with ``maxRatio``: judged
  by ``maxDifference`` alone if it is given, else Failed (any increase over 0 is an unbounded ratio);
* a missing or NaN value on either side, or a sample size below ``min_count``: Inconclusive, never a pass.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from modelrollout.api.models import Measurement, Verdict


class Direction(enum.StrEnum):
    """Which way of the candidate's value is worse than stable's."""

    LOWER_IS_BETTER = "lowerIsBetter"
    HIGHER_IS_BETTER = "higherIsBetter"


@dataclass(frozen=True)
class CompareLimits:
    """How much worse than stable the candidate may be."""

    direction: Direction = Direction.LOWER_IS_BETTER
    max_ratio: float | None = None
    max_difference: float | None = None
    min_count: float | None = None
    """Below this many observations behind either value (when the caller passes them): Inconclusive."""

    def __post_init__(self) -> None:
        if self.max_ratio is None and self.max_difference is None:
            raise ValueError("set maxRatio, maxDifference or both")
        if self.max_ratio is not None and not (math.isfinite(self.max_ratio) and self.max_ratio > 0):
            raise ValueError(f"maxRatio must be a number > 0, got {self.max_ratio}")
        if self.max_difference is not None and not (math.isfinite(self.max_difference) and self.max_difference >= 0):
            raise ValueError(f"maxDifference must be a number >= 0, got {self.max_difference}")
        if self.min_count is not None and not (math.isfinite(self.min_count) and self.min_count >= 0):
            raise ValueError(f"minCount must be a number >= 0, got {self.min_count}")


@dataclass(frozen=True)
class Comparison:
    """The verdict of one comparison, with the numbers behind it."""

    verdict: Verdict
    value: float | None
    """The judged quantity: the ratio candidate/stable when ``max_ratio`` is set and defined, else the
    difference candidate - stable; None when Inconclusive or Error."""
    candidate: float | None
    stable: float | None
    ratio: float | None
    difference: float | None
    message: str

    def measurement(self, at: str) -> Measurement:
        return Measurement(phase=self.verdict, value=self.value, at=at, message=self.message)


def _v(value: float) -> str:
    return f"{value:.3g}"


def _at_most(value: float, limit: float) -> bool:
    # Limits are inclusive; a value on the limit but for the last bits of a float (0.13 - 0.1 =
    # 0.030000000000000013) must not fail a "maxDifference: 0.03".
    return value <= limit or math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-12)


def _missing(side: str, value: float | None) -> str | None:
    if value is None:
        return f"no {side} value (the query returned no data)"
    if math.isnan(value):
        return f"the {side} value is NaN (e.g. 0/0: no traffic in the window)"
    return None


def compare(
    candidate: float | None,
    stable: float | None,
    limits: CompareLimits,
    *,
    candidate_n: float | None = None,
    stable_n: float | None = None,
) -> Comparison:
    """Judge the candidate's value against stable's (see the module docstring for the rules)."""

    def inconclusive(message: str, verdict: Verdict = Verdict.INCONCLUSIVE) -> Comparison:
        return Comparison(verdict, None, candidate, stable, None, None, message)

    for side, value in (("candidate", candidate), ("stable", stable)):
        reason = _missing(side, value)
        if reason is not None:
            return inconclusive(reason)
    assert candidate is not None and stable is not None
    if limits.min_count is not None:
        short = [
            f"{side} n={n:,.0f}"
            for side, n in (("candidate", candidate_n), ("stable", stable_n))
            if n is not None and n < limits.min_count
        ]
        if short:
            verb = "are" if len(short) > 1 else "is"
            return inconclusive(f"{' and '.join(short)} {verb} below the minimum sample size {limits.min_count:,.0f}")
    if math.isinf(candidate) and candidate == stable:
        return inconclusive(f"candidate and stable are both {_v(candidate)}: nothing to compare")

    lower = limits.direction == Direction.LOWER_IS_BETTER
    difference = candidate - stable
    worse_by = difference if lower else -difference
    ratio = candidate / stable if stable > 0 and candidate >= 0 and math.isfinite(stable) else None
    if stable == math.inf and math.isfinite(candidate) and candidate >= 0:
        ratio = 0.0
    failures: list[str] = []
    passes: list[str] = []
    ratio_skipped = ""  # why maxRatio could not be judged, when maxDifference decides alone

    if limits.max_ratio is not None:
        r = limits.max_ratio
        if candidate == stable:
            passes.append(f"candidate {_v(candidate)} equals stable")
        elif ratio is not None:
            bound = r if lower else 1 / r
            ok = _at_most(ratio, r) if lower else _at_most(bound, ratio)
            most = "most" if lower else "least"
            text = f"candidate {_v(candidate)} is {_v(ratio)}x stable {_v(stable)}; allowed at {most} {bound:.3g}x"
            (passes if ok else failures).append(text)
        elif candidate < 0 or stable < 0:
            ratio_skipped = "values below 0"
            if limits.max_difference is None:
                return inconclusive(
                    f"maxRatio needs values >= 0 (candidate {_v(candidate)}, stable {_v(stable)}); use maxDifference",
                    Verdict.ERROR,
                )
        elif worse_by > 0:
            # stable is 0 and the candidate is worse: the ratio is unbounded.
            ratio_skipped = "stable is 0"
            if limits.max_difference is None:
                failures.append(
                    f"candidate {_v(candidate)} vs stable 0: the ratio is unbounded; allowed at most {r:g}x "
                    "(set maxDifference to tolerate a stable value of 0)"
                )
        else:
            # stable is 0 and the candidate is better (higher is better): no ratio needed to judge that.
            passes.append(f"candidate {_v(candidate)} is better than stable 0")

    if limits.max_difference is not None:
        d = limits.max_difference
        direction_word = "above" if difference > 0 else "below"
        worse_word = "above" if lower else "below"
        ok = _at_most(worse_by, d)
        text = (
            f"candidate {_v(candidate)} is {_v(abs(difference))} {direction_word} stable {_v(stable)}; "
            f"allowed at most {d:g} {worse_word}"
            if difference != 0
            else f"candidate {_v(candidate)} equals stable"
        )
        if ratio_skipped:
            text += f" (maxRatio not judged: {ratio_skipped})"
        (passes if ok else failures).append(text)

    value = ratio if limits.max_ratio is not None and ratio is not None else difference
    if math.isnan(value):
        return inconclusive(f"candidate {_v(candidate)} and stable {_v(stable)} cannot be compared")
    verdict = Verdict.FAILED if failures else Verdict.SUCCESSFUL
    # Duplicates arise when both limits see equal values; a person needs to read that once.
    shown = list(dict.fromkeys(failures or passes))
    return Comparison(verdict, value, candidate, stable, ratio, difference, "; ".join(shown))
