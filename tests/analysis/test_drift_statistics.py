"""Every drift statistic against scipy, or a formula written out independently here, to 1e-9."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from modelrollout.analysis.drift import (
    PSI_EPSILON,
    DriftInputError,
    chi_square,
    jensen_shannon,
    ks_binned,
    psi,
)

TOL = 1e-9


def psi_by_hand(candidate: list[float], reference: list[float], eps: float = PSI_EPSILON) -> float:
    """The documented rule, spelled out: drop bins empty on both sides, floor proportions, renormalise."""
    pairs = [(c, r) for c, r in zip(candidate, reference, strict=True) if c > 0 or r > 0]
    n, m = sum(candidate), sum(reference)
    p = [max(c / n, eps) for c, _ in pairs]
    q = [max(r / m, eps) for _, r in pairs]
    sp, sq = sum(p), sum(q)
    p, q = [x / sp for x in p], [y / sq for y in q]
    return sum((x - y) * math.log(x / y) for x, y in zip(p, q, strict=True))


def ks_by_hand(candidate: list[float], reference: list[float]) -> tuple[float, float]:
    n, m = sum(candidate), sum(reference)
    fc = fr = 0.0
    d = 0.0
    for c, r in zip(candidate, reference, strict=True):
        fc += c
        fr += r
        d = max(d, abs(fc / n - fr / m))
    ne = n * m / (n + m)
    return d, float(stats.kstwobign.sf(math.sqrt(ne) * d))


CASES: dict[str, tuple[list[float], list[float]]] = {
    "dense": ([58, 56, 57, 57, 57, 56, 57, 57, 58, 56], [120, 90, 100, 130, 80, 95, 105, 110, 70, 100]),
    "empty-both": ([10, 0, 20, 0, 30], [12, 0, 18, 0, 33]),
    "one-sided-zero-candidate": ([0, 40, 60], [10, 40, 50]),
    "one-sided-zero-reference": ([10, 40, 50], [0, 40, 60]),
    "both-kinds-of-zero": ([0, 5, 0, 7, 9], [3, 0, 0, 7, 1]),
    "single-bucket": ([812], [9544]),
    "identical": ([5, 10, 15], [5, 10, 15]),
    "proportional": ([5, 10, 15], [50, 100, 150]),
    "disjoint": ([10, 0], [0, 10]),
    "fractional": ([0.5, 12.25, 3.75], [1.5, 2.5, 30.0]),
    "huge": ([3e12, 1e12, 2e12], [2.9e12, 1.1e12, 2e12]),
}


@pytest.mark.parametrize("case", CASES)
def test_psi_matches_the_formula(case: str) -> None:
    candidate, reference = CASES[case]
    assert psi(candidate, reference) == pytest.approx(psi_by_hand(candidate, reference), abs=TOL, rel=TOL)


def test_psi_without_empty_bins_is_the_symmetrised_kl_divergence() -> None:
    candidate, reference = CASES["dense"]
    p = np.asarray(candidate) / sum(candidate)
    q = np.asarray(reference) / sum(reference)
    expected = stats.entropy(p, q) + stats.entropy(q, p)
    assert psi(candidate, reference) == pytest.approx(expected, abs=TOL)


def test_psi_one_sided_zero_uses_the_epsilon_floor() -> None:
    # [10, 0] vs [5, 5]: p = [1, 1e-4] / 1.0001, q = [0.5, 0.5].
    p = [1 / 1.0001, 1e-4 / 1.0001]
    q = [0.5, 0.5]
    expected = sum((x - y) * math.log(x / y) for x, y in zip(p, q, strict=True))
    assert psi([10, 0], [5, 5]) == pytest.approx(expected, abs=TOL)
    assert math.isfinite(psi([10, 0], [0, 10]))
    # The epsilon is a parameter: a larger floor gives a smaller PSI for the same one-sided zero.
    assert psi([10, 0], [5, 5], epsilon=1e-2) < psi([10, 0], [5, 5])


def test_psi_ignores_bins_empty_on_both_sides() -> None:
    assert psi([10, 0, 20], [12, 0, 18]) == pytest.approx(psi([10, 20], [12, 18]), abs=1e-15)


def test_psi_of_a_single_bucket_and_of_identical_distributions_is_zero() -> None:
    assert psi([812], [9544]) == 0.0
    assert psi([5, 10, 15], [5, 10, 15]) == 0.0
    assert psi([5, 0, 15], [50, 0, 150]) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("case", CASES)
def test_jensen_shannon_matches_scipy(case: str) -> None:
    candidate, reference = CASES[case]
    expected = distance.jensenshannon(candidate, reference, base=2)
    assert jensen_shannon(candidate, reference) == pytest.approx(expected, abs=TOL)


def test_jensen_shannon_extremes() -> None:
    assert jensen_shannon([5, 10], [5, 10]) == 0.0
    assert jensen_shannon([812], [9544]) == 0.0
    assert jensen_shannon([10, 0], [0, 10]) == pytest.approx(1.0, abs=TOL)


@pytest.mark.parametrize("case", CASES)
def test_ks_matches_the_formula(case: str) -> None:
    candidate, reference = CASES[case]
    d, p = ks_by_hand(candidate, reference)
    result = ks_binned(candidate, reference)
    assert result.statistic == pytest.approx(d, abs=TOL)
    assert result.pvalue == pytest.approx(p, abs=TOL)


def test_ks_statistic_equals_scipy_on_samples_placed_at_the_edges() -> None:
    # Every observation of bin i placed at edge i: the raw samples' empirical CDFs differ only at the
    # edges, so ks_2samp's D is exactly the binned D.
    candidate, reference = [3, 0, 7, 2, 5], [1, 4, 4, 0, 6]
    edges = [1.0, 2.0, 3.0, 4.0, 5.0]
    xs = np.repeat(edges, candidate)
    ys = np.repeat(edges, reference)
    assert ks_binned(candidate, reference).statistic == pytest.approx(stats.ks_2samp(xs, ys).statistic, abs=TOL)


def test_ks_identical_and_single_bucket_give_p_one() -> None:
    assert ks_binned([5, 10, 15], [50, 100, 150]).statistic == pytest.approx(0.0, abs=1e-15)
    assert ks_binned([5, 10, 15], [50, 100, 150]).pvalue == pytest.approx(1.0, abs=1e-12)
    single = ks_binned([812], [9544])
    assert single.statistic == pytest.approx(0.0, abs=1e-15)
    assert single.pvalue == pytest.approx(1.0, abs=1e-12)


def test_ks_with_huge_counts_detects_a_small_shift() -> None:
    result = ks_binned([3e12, 1e12, 2e12], [2.9e12, 1.1e12, 2e12])
    assert result.statistic == pytest.approx(abs(3 / 6 - 2.9 / 6), abs=TOL)
    assert result.pvalue == 0.0


def chi_square_by_hand(candidate: list[float], reference: list[float]) -> tuple[float, float, int]:
    """Pearson's statistic on the 2 x K table without Yates' correction, zero columns dropped."""
    cols = [(c, r) for c, r in zip(candidate, reference, strict=True) if c > 0 or r > 0]
    n, m = sum(candidate), sum(reference)
    total = n + m
    statistic = 0.0
    for c, r in cols:
        column = c + r
        for observed, row in ((c, n), (r, m)):
            expected = row * column / total
            statistic += (observed - expected) ** 2 / expected
    dof = len(cols) - 1
    return statistic, float(stats.chi2.sf(statistic, dof)) if dof else 1.0, dof


@pytest.mark.parametrize("case", CASES)
def test_chi_square_matches_scipy_on_the_table_without_empty_columns(case: str) -> None:
    candidate, reference = CASES[case]
    keep = [i for i in range(len(candidate)) if candidate[i] > 0 or reference[i] > 0]
    table = np.array([[candidate[i] for i in keep], [reference[i] for i in keep]], dtype=float)
    result = chi_square(candidate, reference)
    if table.shape[1] < 2:
        assert (result.statistic, result.pvalue, result.dof) == (0.0, 1.0, 0)
        return
    expected = stats.chi2_contingency(table)
    assert result.statistic == pytest.approx(expected.statistic, abs=TOL, rel=TOL)
    assert result.pvalue == pytest.approx(expected.pvalue, abs=TOL)
    assert result.dof == expected.dof


@pytest.mark.parametrize("case", CASES)
def test_chi_square_without_correction_matches_pearsons_formula(case: str) -> None:
    candidate, reference = CASES[case]
    statistic, pvalue, dof = chi_square_by_hand(candidate, reference)
    result = chi_square(candidate, reference, correction=False)
    assert result.statistic == pytest.approx(statistic, abs=TOL, rel=TOL)
    assert result.pvalue == pytest.approx(pvalue, abs=TOL)
    assert result.dof == dof


def test_chi_square_identical_mix_gives_p_one() -> None:
    result = chi_square([50, 30, 20], [500, 300, 200])
    assert result.statistic == pytest.approx(0.0, abs=1e-9)
    assert result.pvalue == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    ("candidate", "reference", "match"),
    [
        ([1, 2], [1, 2, 3], "aligned"),
        ([], [], "no bins"),
        ([1, -1], [1, 1], "negative"),
        ([1, math.nan], [1, 1], "finite"),
        ([0, 0], [1, 1], "no observations on the candidate"),
        ([1, 1], [0, 0], "no observations on the reference"),
    ],
)
def test_bad_vectors_are_refused(candidate: list[float], reference: list[float], match: str) -> None:
    for statistic in (psi, jensen_shannon, ks_binned, chi_square):
        with pytest.raises(DriftInputError, match=match):
            statistic(candidate, reference)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

# increase() yields 0 or a count of at least a fraction of one observation; denormal counts are not data.
counts = st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e9, allow_nan=False, allow_infinity=False))


@st.composite
def aligned(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    size = draw(st.integers(min_value=1, max_value=12))
    candidate = draw(st.lists(counts, min_size=size, max_size=size).filter(lambda v: sum(v) > 0))
    reference = draw(st.lists(counts, min_size=size, max_size=size).filter(lambda v: sum(v) > 0))
    return candidate, reference


@settings(max_examples=200, deadline=None)
@given(aligned())
def test_properties_of_every_statistic(pair: tuple[list[float], list[float]]) -> None:
    candidate, reference = pair
    value = psi(candidate, reference)
    assert value >= 0
    assert value <= 2 * math.log(1 / PSI_EPSILON) + 1e-9
    assert psi(candidate, reference) == pytest.approx(psi(reference, candidate), abs=1e-9)
    js = jensen_shannon(candidate, reference)
    assert 0 <= js <= 1
    assert js == pytest.approx(jensen_shannon(reference, candidate), abs=1e-12)
    assert js == pytest.approx(distance.jensenshannon(candidate, reference, base=2), abs=1e-9)
    ks = ks_binned(candidate, reference)
    assert 0 <= ks.statistic <= 1 + 1e-12
    assert 0 <= ks.pvalue <= 1
    chi = chi_square(candidate, reference)
    assert chi.statistic >= 0
    assert 0 <= chi.pvalue <= 1


@settings(max_examples=200, deadline=None)
@given(st.lists(counts, min_size=1, max_size=12).filter(lambda v: sum(v) > 0), st.sampled_from([1.0, 3.0, 1000.0]))
def test_a_distribution_against_itself_has_no_drift(counts_: list[float], scale: float) -> None:
    scaled = [c * scale for c in counts_]
    assert psi(counts_, counts_) == 0.0
    assert psi(counts_, scaled) == pytest.approx(0.0, abs=1e-12)
    assert jensen_shannon(counts_, scaled) == pytest.approx(0.0, abs=1e-6)
    assert ks_binned(counts_, scaled).statistic == pytest.approx(0.0, abs=1e-12)
    assert ks_binned(counts_, counts_).pvalue == 1.0
