"""Candidate vs stable: ratio and difference, both directions, zero / NaN / missing baselines."""

from __future__ import annotations

import math

import pytest

from modelrollout.analysis.compare import CompareLimits, Direction, compare
from modelrollout.api.models import Verdict

LOWER = Direction.LOWER_IS_BETTER
HIGHER = Direction.HIGHER_IS_BETTER


def test_ratio_failure_message() -> None:
    result = compare(0.031, 0.020, CompareLimits(LOWER, max_ratio=1.2))
    assert result.verdict == Verdict.FAILED
    assert result.value == pytest.approx(1.55)
    assert result.message == "candidate 0.031 is 1.55x stable 0.02; allowed at most 1.2x"


def test_ratio_within_limits_passes() -> None:
    result = compare(0.021, 0.020, CompareLimits(LOWER, max_ratio=1.2))
    assert result.verdict == Verdict.SUCCESSFUL
    assert result.measurement("t").phase == Verdict.SUCCESSFUL


def test_limits_are_inclusive_despite_float_rounding() -> None:
    assert compare(0.024, 0.02, CompareLimits(LOWER, max_ratio=1.2)).verdict == Verdict.SUCCESSFUL
    assert compare(0.13, 0.1, CompareLimits(LOWER, max_difference=0.03)).verdict == Verdict.SUCCESSFUL


def test_higher_is_better() -> None:
    limits = CompareLimits(HIGHER, max_ratio=1.25)
    worse = compare(0.70, 0.95, limits)
    assert worse.verdict == Verdict.FAILED
    assert worse.message == "candidate 0.7 is 0.737x stable 0.95; allowed at least 0.8x"
    assert compare(0.80, 0.95, limits).verdict == Verdict.SUCCESSFUL
    assert compare(0.99, 0.95, limits).verdict == Verdict.SUCCESSFUL
    diff = compare(0.90, 0.95, CompareLimits(HIGHER, max_difference=0.03))
    assert diff.verdict == Verdict.FAILED
    assert diff.message == "candidate 0.9 is 0.05 below stable 0.95; allowed at most 0.03 below"


def test_better_candidate_always_passes_the_difference() -> None:
    result = compare(0.01, 0.02, CompareLimits(LOWER, max_difference=0.0))
    assert result.verdict == Verdict.SUCCESSFUL
    assert result.message == "candidate 0.01 is 0.01 below stable 0.02; allowed at most 0 above"


def test_every_given_limit_must_hold() -> None:
    limits = CompareLimits(LOWER, max_ratio=1.5, max_difference=0.01)
    result = compare(0.12, 0.10, limits)  # 1.2x: fine; +0.02: too much
    assert result.verdict == Verdict.FAILED
    assert result.message == "candidate 0.12 is 0.02 above stable 0.1; allowed at most 0.01 above"
    assert compare(0.105, 0.10, limits).verdict == Verdict.SUCCESSFUL


def test_both_zero_passes() -> None:
    for limits in (CompareLimits(LOWER, max_ratio=1.2), CompareLimits(HIGHER, max_ratio=1.2, max_difference=0.1)):
        result = compare(0.0, 0.0, limits)
        assert result.verdict == Verdict.SUCCESSFUL
        assert result.message == "candidate 0 equals stable"


def test_zero_stable_with_only_a_ratio_fails_clearly() -> None:
    result = compare(0.003, 0.0, CompareLimits(LOWER, max_ratio=1.2))
    assert result.verdict == Verdict.FAILED
    assert "the ratio is unbounded" in result.message
    assert "maxDifference" in result.message


def test_zero_stable_is_judged_by_the_difference_when_given() -> None:
    limits = CompareLimits(LOWER, max_ratio=1.2, max_difference=0.005)
    ok = compare(0.003, 0.0, limits)
    assert ok.verdict == Verdict.SUCCESSFUL
    assert ok.message.endswith("(maxRatio not judged: stable is 0)")
    assert ok.value == pytest.approx(0.003)
    assert compare(0.006, 0.0, limits).verdict == Verdict.FAILED


def test_zero_stable_and_a_better_candidate_when_higher_is_better() -> None:
    assert compare(0.5, 0.0, CompareLimits(HIGHER, max_ratio=1.2)).verdict == Verdict.SUCCESSFUL


@pytest.mark.parametrize(("candidate", "stable"), [(None, 0.1), (0.1, None), (math.nan, 0.1), (0.1, math.nan)])
def test_missing_or_nan_is_inconclusive(candidate: float | None, stable: float | None) -> None:
    result = compare(candidate, stable, CompareLimits(LOWER, max_ratio=1.2))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.value is None
    side = "candidate" if candidate is None or math.isnan(candidate) else "stable"
    assert side in result.message


def test_minimum_sample_size() -> None:
    limits = CompareLimits(LOWER, max_ratio=2, min_count=100)
    result = compare(1.0, 1.0, limits, candidate_n=5, stable_n=1000)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.message == "candidate n=5 is below the minimum sample size 100"
    assert compare(1.0, 1.0, limits, candidate_n=500, stable_n=1000).verdict == Verdict.SUCCESSFUL


def test_infinities() -> None:
    limits = CompareLimits(LOWER, max_ratio=1.2)
    assert compare(math.inf, 0.2, limits).verdict == Verdict.FAILED
    assert compare(0.2, math.inf, limits).verdict == Verdict.SUCCESSFUL
    assert compare(math.inf, math.inf, limits).verdict == Verdict.INCONCLUSIVE


def test_negative_values_cannot_be_ratioed() -> None:
    assert compare(-1.0, -2.0, CompareLimits(LOWER, max_ratio=1.2)).verdict == Verdict.ERROR
    assert compare(-1.0, -2.0, CompareLimits(LOWER, max_ratio=1.2, max_difference=2)).verdict == Verdict.SUCCESSFUL


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "set maxRatio"),
        ({"max_ratio": 0.0}, "> 0"),
        ({"max_difference": -1.0}, ">= 0"),
        ({"max_ratio": 1.0, "min_count": -1.0}, "minCount"),
    ],
)
def test_limits_are_validated(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CompareLimits(LOWER, **kwargs)
