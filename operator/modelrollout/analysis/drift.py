"""Distribution drift between a candidate's histogram and a reference's: the statistics and the verdict.

Pure: inputs are aligned count vectors (the same bins, in the same order, for both sides), as built by
:mod:`modelrollout.analysis.histograms`; nothing here does I/O. The statistics (formulas in
``docs/analysis.md``), with ``c`` the candidate's counts, ``r`` the reference's, ``p = c / sum(c)`` and
``q = r / sum(r)``:

* PSI, population stability index: ``sum((p' - q') * ln(p' / q'))`` over smoothed proportions (see
  :data:`PSI_EPSILON` for the rule for empty bins);
* Jensen-Shannon distance, base 2: ``sqrt((KL(p || m) + KL(q || m)) / 2)`` with ``m = (p + q) / 2``, in [0, 1];
  equal to ``scipy.spatial.distance.jensenshannon(p, q, base=2)``;
* binned two-sample Kolmogorov-Smirnov: ``D = max_i |P_i - Q_i|`` over the cumulative proportions at the
  bucket edges, p-value ``kstwobign.sf(sqrt(n_e) * D)`` with ``n_e = n1 * n2 / (n1 + n2)``;
* chi-square test of homogeneity on the 2 x K table ``[c; r]`` (``scipy.stats.chi2_contingency``), for
  categories (classes, categorical features) and usable on bins too.

A feature with fewer than ``min_count`` observations on either side is Inconclusive, never a pass: a
distance over a handful of requests is noise, and "no evidence of drift" is not evidence of no drift.

Above it, a distance alone is still noisy: PSI of two samples of one distribution averages about
``(k - 1)(1/n1 + 1/n2)``, 0.1 for ten bins at n of 150 and 220, and the worst of 30 such features passes
0.2 in most measurements. So a feature fails only when its difference is also *significant*: a test
whose null distribution is known (chi-square homogeneity on pooled bins for PSI, Jensen-Shannon and
chi-square; the KS p-value for KS), Holm-corrected over the features judged together, so that an
undrifted model fails a measurement with probability at most the false-alarm budget
(:data:`DEFAULT_FALSE_ALARM`) or ``min_pvalue``, however many features there are.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from modelrollout.analysis.histograms import Histogram, align_categories, check_same_edges
from modelrollout.api.models import TOP_FEATURES, DriftFeature, DriftFeatures, Measurement, Verdict

#: The floor for PSI's proportions. PSI has ``ln(p / q)``: one empty bin on one side makes it infinite.
#: The usual practice (Evidently's binning, the widely copied credit-scoring implementations) is to replace
#: such a proportion by 0.0001; here every proportion is floored at this value and each side is then renormalised
#: to sum to 1. Flooring (not only exact zeros) keeps the rule monotonic (a bin with 1 observation in 10^6 is
#: not treated as rarer than an empty one), and renormalising keeps both sides probability distributions, so
#: PSI stays the symmetrised Kullback-Leibler divergence ``KL(p'||q') + KL(q'||p')``. One one-sided empty bin
#: then contributes at most about ``q ln(q / 1e-4)`` (<= ln(10^4) ~ 9.2) instead of infinity. Bins empty on
#: *both* sides are dropped first: they carry no information, and flooring them would add a spurious term
#: of the order of 1e-12 whenever the two sides had different numbers of floored bins.
PSI_EPSILON: Final = 1e-4
#: Below this many observations on either side a feature is Inconclusive (about 10 per bin for deciles).
DEFAULT_MIN_COUNT: Final = 100.0
#: The false-alarm budget: the chance per measurement that a drift metric fails a model whose
#: distribution did not change, over all of its features together (``docs/analysis.md``, "False alarms").
DEFAULT_FALSE_ALARM: Final = 0.01
#: Sparse bins are pooled until each expects this many observations on the smaller side (Cochran's rule
#: for the chi-square approximation; see :func:`pooled_bins`).
MIN_EXPECTED: Final = 5.0
#: The share of the budget that tests read from the chi-square law may spend: the rest covers that
#: law's measured optimism in the far tail (:attr:`DriftCriteria.family_level`).
CHI_SQUARE_BUDGET_SHARE: Final = 0.5

FloatVector = npt.NDArray[np.float64]


class Statistic(enum.StrEnum):
    """A distribution distance or test; the values are what a spec names."""

    PSI = "psi"
    JENSEN_SHANNON = "jensenShannon"
    KS = "ks"
    CHI_SQUARE = "chiSquare"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def has_pvalue(self) -> bool:
        return self in (Statistic.KS, Statistic.CHI_SQUARE)


_LABELS: Final = {
    Statistic.PSI: "PSI",
    Statistic.JENSEN_SHANNON: "Jensen-Shannon distance",
    Statistic.KS: "KS statistic",
    Statistic.CHI_SQUARE: "chi-square",
}


class DriftInputError(ValueError):
    """Count vectors that cannot be compared: different lengths, negative or non-finite counts, no bins."""


def _vectors(
    candidate: Sequence[float] | FloatVector, reference: Sequence[float] | FloatVector
) -> tuple[FloatVector, FloatVector]:
    c = np.asarray(candidate, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if c.ndim != 1 or r.ndim != 1 or c.shape != r.shape:
        raise DriftInputError(f"count vectors must be one-dimensional and aligned: {c.shape} vs {r.shape}")
    if c.size == 0:
        raise DriftInputError("count vectors have no bins")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(r))):
        raise DriftInputError("counts must be finite")
    if np.any(c < 0) or np.any(r < 0):
        raise DriftInputError("counts must not be negative")
    if c.sum() <= 0 or r.sum() <= 0:
        raise DriftInputError(
            f"no observations on the {'candidate' if c.sum() <= 0 else 'reference'} side: the statistic is undefined"
        )
    return c, r


def psi(
    candidate: Sequence[float] | FloatVector, reference: Sequence[float] | FloatVector, *, epsilon: float = PSI_EPSILON
) -> float:
    """Population stability index of two aligned count vectors (see :data:`PSI_EPSILON` for empty bins).

    ``sum((p'_i - q'_i) * ln(p'_i / q'_i))`` where ``p'`` and ``q'`` are the proportions floored at
    ``epsilon`` and renormalised, after dropping bins empty on both sides. Symmetric, >= 0, 0 iff equal.
    """
    if not 0 < epsilon < 1:
        raise DriftInputError(f"epsilon must be between 0 and 1, got {epsilon}")
    return _psi(*_vectors(candidate, reference), epsilon)


def _psi(c: FloatVector, r: FloatVector, epsilon: float) -> float:
    keep = (c > 0) | (r > 0)
    p = _floored(c[keep] / c.sum(), epsilon)
    q = _floored(r[keep] / r.sum(), epsilon)
    # Each term is >= 0 on its own ((x - y) and ln(x / y) share their sign), so the sum is too.
    return float(np.sum((p - q) * np.log(p / q)))


def _floored(proportions: FloatVector, epsilon: float) -> FloatVector:
    floored = np.maximum(proportions, epsilon)
    return np.asarray(floored / floored.sum(), dtype=np.float64)


def jensen_shannon(candidate: Sequence[float] | FloatVector, reference: Sequence[float] | FloatVector) -> float:
    """Jensen-Shannon distance, base 2 (in [0, 1]): ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.

    Empty bins need no rule: ``0 * log(0)`` is 0 (``rel_entr``), and ``m`` is positive wherever either is.
    """
    c, r = _vectors(candidate, reference)
    p, q = c / c.sum(), r / r.sum()
    m = (p + q) / 2
    divergence = (float(np.sum(special.rel_entr(p, m))) + float(np.sum(special.rel_entr(q, m)))) / 2
    # Rounding can leave -1e-17 for equal inputs (sqrt would give NaN) or 1 + 1e-16 for disjoint ones.
    return math.sqrt(min(max(divergence / math.log(2), 0.0), 1.0))


@dataclass(frozen=True)
class StatisticResult:
    """A statistic with its p-value; ``dof`` for chi-square."""

    statistic: float
    pvalue: float
    dof: int | None = None


def ks_binned(candidate: Sequence[float] | FloatVector, reference: Sequence[float] | FloatVector) -> StatisticResult:
    """Two-sample Kolmogorov-Smirnov on binned data: ``D = max |P_i - Q_i|`` over cumulative proportions.

    The empirical CDFs are only known at the bucket edges, so D is the continuous statistic's value at
    those points: a lower bound of what the raw samples would give, and the test is conservative. The
    p-value is asymptotic, ``kstwobign.sf(sqrt(n_e) * D)`` with ``n_e = n1 n2 / (n1 + n2)``: the counts are
    ``increase()`` results, rarely integers, so an exact small-sample distribution (which needs integer n)
    does not apply, and below the minimum sample size the verdict is Inconclusive anyway.
    """
    c, r = _vectors(candidate, reference)
    n1, n2 = float(c.sum()), float(r.sum())
    statistic = float(np.max(np.abs(np.cumsum(c) / n1 - np.cumsum(r) / n2)))
    effective_n = n1 * n2 / (n1 + n2)
    pvalue = float(stats.kstwobign.sf(math.sqrt(effective_n) * statistic))
    return StatisticResult(statistic, min(max(pvalue, 0.0), 1.0))


def chi_square(
    candidate: Sequence[float] | FloatVector, reference: Sequence[float] | FloatVector, *, correction: bool = True
) -> StatisticResult:
    """Chi-square test of homogeneity on the 2 x K table ``[candidate; reference]`` (``chi2_contingency``).

    Columns empty on both sides are dropped (their expected count would be 0: the test is undefined with
    them and they carry nothing). With one column left the sides cannot differ: statistic 0, p 1, dof 0.
    ``correction`` is scipy's default Yates continuity correction, applied only when dof is 1 (two classes).
    """
    c, r = _vectors(candidate, reference)
    keep = (c > 0) | (r > 0)
    table = np.vstack([c[keep], r[keep]])
    if table.shape[1] < 2:
        return StatisticResult(0.0, 1.0, 0)
    try:
        result = stats.chi2_contingency(table, correction=correction)
    except ValueError as exc:  # an expected frequency that underflows to 0 (counts like 1e-300)
        raise DriftInputError(f"chi-square is undefined for these counts: {exc}") from None
    return StatisticResult(float(result.statistic), min(max(float(result.pvalue), 0.0), 1.0), int(result.dof))


# ---------------------------------------------------------------------------------------------
# Significance: how sure a verdict is, with many features judged at once
# ---------------------------------------------------------------------------------------------


def pooled_bins(
    candidate: Sequence[float] | FloatVector,
    reference: Sequence[float] | FloatVector,
    *,
    min_expected: float = MIN_EXPECTED,
) -> tuple[FloatVector, FloatVector]:
    """The two count vectors with neighbouring bins merged until every group expects ``min_expected``.

    A group's expected count is its pooled count times the smaller side's share of all observations: the
    smaller side is where the chi-square approximation breaks first. Bins are merged in order (adjacent
    bins of a histogram; categories in the given order), and a last group short of ``min_expected`` joins
    the one before it. The grouping depends only on the pooled counts, which the null hypothesis (both
    sides one distribution) leaves fixed, so the test on the groups keeps its level. Bins empty on both
    sides are dropped. Cochran's rule (expected >= 5) is the usual condition for the chi-square test.
    """
    return _pooled(*_vectors(candidate, reference), min_expected)


def _pooled(c: FloatVector, r: FloatVector, min_expected: float) -> tuple[FloatVector, FloatVector]:
    occupied = (c + r) > 0
    c, r = c[occupied], r[occupied]
    smaller_share = min(c.sum(), r.sum()) / (c.sum() + r.sum())
    groups = np.empty(c.size, dtype=np.intp)
    group, expected = 0, 0.0
    # A plain-float loop: a measurement pools every feature, and numpy scalars would cost 10x here.
    for index, pooled in enumerate((c + r).tolist()):
        groups[index] = group
        expected += pooled * smaller_share
        if expected >= min_expected:
            group, expected = group + 1, 0.0
    if expected > 0 and group > 0:  # the last group never filled up
        groups[groups == group] = group - 1
    return (
        np.asarray(np.bincount(groups, weights=c), dtype=np.float64),
        np.asarray(np.bincount(groups, weights=r), dtype=np.float64),
    )


def homogeneity_pvalue(
    candidate: Sequence[float] | FloatVector,
    reference: Sequence[float] | FloatVector,
    *,
    min_expected: float = MIN_EXPECTED,
    correction: bool = True,
) -> tuple[float, int]:
    """Pearson's chi-square test that both sides are one distribution, on :func:`pooled_bins`; (p, groups).

    The test behind PSI's and Jensen-Shannon's verdicts: both are, to second order, the chi-square
    distance ``sum((p - q)^2 / pi)`` (PSI about that, Jensen-Shannon's divergence about an eighth of it), so
    this test ranks samples as they do, but its null distribution is known, where PSI's own is not at
    canary sample sizes (its chi-square approximation ``(1/n1 + 1/n2) chi2(k-1)`` has tails several
    times too light below a few hundred observations: see ``docs/analysis.md``). Written with
    ``scipy.special.chdtrc`` rather than ``chi2_contingency`` to cost microseconds (a measurement runs
    it once per feature); the same statistic, Yates' correction included when one degree of freedom
    is left and ``correction`` is set.
    """
    return _homogeneity(*_vectors(candidate, reference), min_expected, correction)


def _homogeneity(c: FloatVector, r: FloatVector, min_expected: float, correction: bool) -> tuple[float, int]:
    c, r = _pooled(c, r, min_expected)
    if c.size < 2:
        return 1.0, int(c.size)
    n_c, n_r = float(c.sum()), float(r.sum())
    pooled = c + r
    expected_c = pooled * (n_c / (n_c + n_r))
    expected_r = pooled * (n_r / (n_c + n_r))
    deviation = np.abs(c - expected_c)
    if correction and c.size == 2:
        # scipy's Yates rule: subtract 0.5 from each |observed - expected|, never past zero.
        deviation = np.maximum(deviation - 0.5, 0.0)
    statistic = float(np.sum(deviation**2 / expected_c) + np.sum(deviation**2 / expected_r))
    return min(max(float(special.chdtrc(c.size - 1, statistic)), 0.0), 1.0), int(c.size)


def holm_adjusted(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input's order.

    ``adjusted_(i) = max over j <= i of min(1, (m - j + 1) p_(j))`` over the p-values sorted ascending: a
    feature is significant at family-wise level ``alpha`` exactly when its adjusted p-value is below
    ``alpha``. The chance that any feature of an undrifted model is flagged stays at most ``alpha``
    whatever the dependence between features; never less powerful than Bonferroni. Ties keep input order.
    """
    count = len(pvalues)
    order = sorted(range(count), key=lambda index: pvalues[index])
    adjusted = [1.0] * count
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (count - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class Significance:
    """The test behind a feature's verdict, corrected for the features judged with it."""

    test: str
    """What the p-value comes from: ``chi-square`` (homogeneity on pooled bins) or ``KS``."""
    pvalue: float
    adjusted: float
    """Holm-adjusted over ``family``: the number compared with ``level``."""
    family: int
    """How many features were judged together (those with enough data on both sides)."""
    level: float
    """The family-wise false-alarm level: the chance that an undrifted model fails this measurement."""
    groups: int
    """Bins (or categories) the test used after pooling sparse ones."""

    @property
    def significant(self) -> bool:
        return self.adjusted < self.level

    def describe(self) -> str:
        correction = f", Holm-adjusted {self.adjusted:.3g} over {self.family} features" if self.family > 1 else ""
        comparison = "<" if self.significant else ">="
        return f"{self.test} p={self.pvalue:.3g}{correction} {comparison} {self.level:g}"


# ---------------------------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftCriteria:
    """What drift fails a feature: a significant difference that is, if ``max`` is set, larger than ``max``.

    Significant means: the feature's p-value, Holm-adjusted over the features judged together, is below
    :attr:`family_level` (``min_pvalue`` if set, else the false-alarm budget). ``max`` is the size of a
    shift that matters; the significance test keeps sampling noise from reaching it at small samples.
    """

    statistic: Statistic
    max: float | None = None
    min_pvalue: float | None = None
    min_count: float = DEFAULT_MIN_COUNT
    epsilon: float = PSI_EPSILON
    correction: bool = True
    false_alarm: float = DEFAULT_FALSE_ALARM
    """The chance per measurement that an undrifted model fails, when ``min_pvalue`` does not set it."""
    min_expected: float = MIN_EXPECTED
    """Sparse bins are pooled until each expects this many observations (see :func:`pooled_bins`)."""

    def __post_init__(self) -> None:
        if self.max is None and self.min_pvalue is None:
            raise ValueError("set max, minPValue or both")
        if self.min_pvalue is not None and not self.statistic.has_pvalue:
            raise ValueError(f"minPValue applies to ks and chiSquare, not {self.statistic.value}")
        if self.statistic in (Statistic.PSI, Statistic.JENSEN_SHANNON) and self.max is None:
            raise ValueError(f"{self.statistic.value} needs max")
        if self.max is not None and not (math.isfinite(self.max) and self.max >= 0):
            raise ValueError(f"max must be a number >= 0, got {self.max}")
        if self.min_pvalue is not None and not 0 <= self.min_pvalue <= 1:
            raise ValueError(f"minPValue must be between 0 and 1, got {self.min_pvalue}")
        if not (math.isfinite(self.min_count) and self.min_count >= 0):
            raise ValueError(f"minCount must be a number >= 0, got {self.min_count}")
        if not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon must be between 0 and 1, got {self.epsilon}")
        if not 0 < self.false_alarm < 1:
            raise ValueError(f"the false-alarm budget must be between 0 and 1, got {self.false_alarm}")
        if not (math.isfinite(self.min_expected) and self.min_expected > 0):
            raise ValueError(f"min_expected must be a number > 0, got {self.min_expected}")

    @property
    def judged_on_pvalue(self) -> bool:
        """Whether the verdict-ready value is the p-value (only ``min_pvalue`` set) rather than the statistic."""
        return self.max is None

    @property
    def family_level(self) -> float:
        """The family-wise level the Holm-adjusted p-values are compared with.

        ``min_pvalue`` when set: the user chose the level. Otherwise the false-alarm budget, halved for
        the tests read from the chi-square distribution (PSI, Jensen-Shannon, chi-square): measured in
        ``bench/drift_calibration.py``, their asymptotic p-values are up to about 1.8 times too small in
        the far tail when one side is 50 times larger and the bins are skewed; the binned KS test is
        conservative (its p-values too large) and gets the whole budget.
        """
        if self.min_pvalue is not None:
            return self.min_pvalue
        if self.statistic == Statistic.KS:
            return self.false_alarm
        return self.false_alarm * CHI_SQUARE_BUDGET_SHARE


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's (or one distribution's) drift and verdict."""

    feature: str
    statistic: Statistic
    verdict: Verdict
    value: float | None
    """The statistic (PSI, distance, D, chi-square); None when Inconclusive."""
    pvalue: float | None
    """The statistic's own p-value (ks, chiSquare); None for PSI and Jensen-Shannon, and when Inconclusive."""
    candidate_n: float
    reference_n: float
    message: str
    notes: tuple[str, ...] = field(default=())
    severity: float = 0.0
    """How far past its limits (>1 means failed): ranks features for "worst"."""
    significance: Significance | None = None
    """How sure the verdict is; None when Inconclusive."""


def _n(count: float) -> str:
    return f"{count:,.0f}" if count >= 1 or count == 0 else f"{count:.2g}"


def _sizes(candidate_n: float, reference_n: float) -> str:
    return f"candidate n={_n(candidate_n)}, reference n={_n(reference_n)}"


@dataclass(frozen=True)
class _Measured:
    """A feature's statistic and test p-value before the family's correction; ``short`` if Inconclusive."""

    feature: str
    candidate_n: float
    reference_n: float
    notes: tuple[str, ...]
    short: str | None = None
    value: float = math.nan
    pvalue: float | None = None
    dof: int | None = None
    test: str = ""
    test_pvalue: float = 1.0
    groups: int = 0
    bins: int = 0


def _measure(
    feature: str,
    candidate: Sequence[float] | FloatVector,
    reference: Sequence[float] | FloatVector,
    criteria: DriftCriteria,
    notes: Iterable[str] = (),
) -> _Measured:
    c, r = np.asarray(candidate, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if c.shape != r.shape or c.ndim != 1 or c.size == 0:
        raise DriftInputError(
            f"feature {feature!r}: count vectors must be aligned and non-empty: {c.shape} vs {r.shape}"
        )
    candidate_n, reference_n = float(c.sum()), float(r.sum())
    kept_notes = tuple(notes)
    # `<=` 0 as well as `<` min_count: with min_count 0 an empty side still has no distribution to compare.
    short = [
        f"{side} n={_n(n)}"
        for side, n in (("candidate", candidate_n), ("reference", reference_n))
        if n < criteria.min_count or n <= 0
    ]
    if short:
        verb = "are" if len(short) > 1 else "is"
        message = f"{feature!r}: {' and '.join(short)} {verb} below the minimum sample size {_n(criteria.min_count)}"
        return _Measured(feature, candidate_n, reference_n, kept_notes, short=message)
    try:
        return _statistics(feature, c, r, criteria, candidate_n, reference_n, kept_notes)
    except DriftInputError as exc:
        raise DriftInputError(f"feature {feature!r}: {exc}") from None


def _statistics(
    feature: str,
    c: FloatVector,
    r: FloatVector,
    criteria: DriftCriteria,
    candidate_n: float,
    reference_n: float,
    notes: tuple[str, ...],
) -> _Measured:
    c, r = _vectors(c, r)  # validated once here; the helpers below trust it
    bins = int(np.count_nonzero((c + r) > 0))
    if criteria.statistic == Statistic.KS:
        ks = ks_binned(c, r)
        return _Measured(
            feature, candidate_n, reference_n, notes, None, ks.statistic, ks.pvalue, None, "KS", ks.pvalue, bins, bins
        )
    if criteria.statistic == Statistic.CHI_SQUARE:
        # The statistic itself on the pooled table: its p-value is then one the chi-square law can give.
        pooled_c, pooled_r = _pooled(c, r, criteria.min_expected)
        chi = chi_square(pooled_c, pooled_r, correction=criteria.correction)
        return _Measured(
            feature,
            candidate_n,
            reference_n,
            notes,
            None,
            chi.statistic,
            chi.pvalue,
            chi.dof,
            "chi-square",
            chi.pvalue,
            int(pooled_c.size),
            bins,
        )
    value = _psi(c, r, criteria.epsilon) if criteria.statistic == Statistic.PSI else jensen_shannon(c, r)
    test_pvalue, groups = _homogeneity(c, r, criteria.min_expected, criteria.correction)
    return _Measured(
        feature, candidate_n, reference_n, notes, None, value, None, None, "chi-square", test_pvalue, groups, bins
    )


def _judge_family(measured: Sequence[_Measured], criteria: DriftCriteria) -> list[FeatureDrift]:
    """Each feature's verdict, the p-values Holm-adjusted over the features that have enough data."""
    conclusive = [item for item in measured if item.short is None]
    adjusted = iter(holm_adjusted([item.test_pvalue for item in conclusive]))
    results: list[FeatureDrift] = []
    for item in measured:
        if item.short is not None:
            results.append(
                FeatureDrift(
                    item.feature,
                    criteria.statistic,
                    Verdict.INCONCLUSIVE,
                    None,
                    None,
                    item.candidate_n,
                    item.reference_n,
                    item.short,
                    item.notes,
                )
            )
            continue
        significance = Significance(
            item.test, item.test_pvalue, next(adjusted), len(conclusive), criteria.family_level, item.groups
        )
        results.append(_verdict(item, significance, criteria))
    return results


def _verdict(item: _Measured, significance: Significance, criteria: DriftCriteria) -> FeatureDrift:
    label = criteria.statistic.label
    value = item.value
    # Each condition's ratio is > 1 exactly when it is met; a feature fails when all of its are.
    ratios = [
        criteria.family_level / significance.adjusted
        if significance.adjusted > 0
        else (math.inf if criteria.family_level > 0 else 0.0)
    ]
    if criteria.max is not None:
        ratios.append(value / criteria.max if criteria.max > 0 else (math.inf if value > 0 else 0.0))
    severity = min(ratios)
    exceeds = criteria.max is None or value > criteria.max
    verdict = Verdict.FAILED if exceeds and significance.significant else Verdict.SUCCESSFUL
    details = [_sizes(item.candidate_n, item.reference_n)]
    if item.dof is not None:
        pooled = f", {item.bins} categories pooled into {item.groups}" if item.groups < item.bins else ""
        details.insert(0, f"dof {item.dof}{pooled}")
    if criteria.max is None:
        shown = significance.describe()
        details.insert(0, f"statistic {value:.3g}")
    elif not exceeds:
        shown = f"{label} {value:.3g} <= {criteria.max:g}"
        if item.pvalue is not None:
            details.insert(0, f"p={item.pvalue:.3g}")
    else:
        # Over the limit: whether that is more than sampling noise at this sample size decides.
        limit = f"{label} {value:.3g} > {criteria.max:g}"
        if criteria.min_pvalue is not None:
            shown = f"{limit} {'and' if significance.significant else 'but'} {significance.describe()}"
        elif significance.significant:
            shown = f"{limit}, beyond sampling noise: {significance.describe()}"
        else:
            shown = f"{limit} but within sampling noise: {significance.describe()}"
    message = f"{item.feature!r} {shown} ({', '.join(details)})"
    return FeatureDrift(
        item.feature,
        criteria.statistic,
        verdict,
        value,
        item.pvalue,
        item.candidate_n,
        item.reference_n,
        message,
        item.notes,
        severity,
        significance,
    )


def feature_drift(
    feature: str,
    candidate: Sequence[float] | FloatVector,
    reference: Sequence[float] | FloatVector,
    criteria: DriftCriteria,
    *,
    notes: Iterable[str] = (),
) -> FeatureDrift:
    """Judge one aligned pair of count vectors on its own (a family of one: no correction).

    Inconclusive below the minimum sample size; else Failed when the difference is significant at
    :attr:`DriftCriteria.family_level` and, if ``max`` is set, the statistic exceeds it.
    """
    return _judge_family([_measure(feature, candidate, reference, criteria, notes)], criteria)[0]


@dataclass(frozen=True)
class DriftResult:
    """The verdict over every compared feature, decided by the worst; ready to record as a measurement."""

    subject: str
    verdict: Verdict
    value: float | None
    """The worst feature's judged value: its statistic, or its Holm-adjusted p-value when only
    ``min_pvalue`` is set."""
    message: str
    worst: FeatureDrift | None
    features: tuple[FeatureDrift, ...]
    notes: tuple[str, ...] = field(default=())

    level: float = DEFAULT_FALSE_ALARM * CHI_SQUARE_BUDGET_SHARE
    """The family-wise level each feature's adjusted p-value was compared with."""
    limit: float | None = None
    """The criteria's ``max``."""

    def measurement(self, at: str, top: int = TOP_FEATURES) -> Measurement:
        """The measurement to record, carrying its ``top`` worst features (see :meth:`by_feature`)."""
        measurement = Measurement(phase=self.verdict, value=self.value, at=at, message=self.message)
        return measurement.with_features(self.by_feature(at, top) if self.features else None)

    def ranked(self) -> list[FeatureDrift]:
        """Every feature, worst first: by severity, so drifted ones lead (their severity is above 1), then
        by statistic; the first is the one the message names; ties in the caller's order; too few
        observations last."""
        conclusive = [result for result in self.features if result.verdict != Verdict.INCONCLUSIVE]
        inconclusive = [result for result in self.features if result.verdict == Verdict.INCONCLUSIVE]
        return [*sorted(conclusive, key=_closeness, reverse=True), *inconclusive]  # stable: ties keep order

    def by_feature(self, at: str, top: int = TOP_FEATURES) -> DriftFeatures:
        """The status form: counts over every feature, and the ``top`` worst with their statistics.

        Names and numbers only: a feature's name is a label value the model server chose to publish
        (the ``groupBy`` label), never an input's value."""
        shown = self.ranked()[: max(top, 0)]
        return DriftFeatures(
            at=at,
            statistic=self.features[0].statistic.value if self.features else "",
            max=self.limit,
            p_value_level=self.level,
            compared=len(self.features),
            drifted=sum(1 for result in self.features if result.verdict == Verdict.FAILED),
            inconclusive=sum(1 for result in self.features if result.verdict == Verdict.INCONCLUSIVE),
            features=[
                DriftFeature(
                    name=result.feature,
                    value=_finite(result.value),
                    p_value=_finite(result.significance.adjusted) if result.significance is not None else None,
                    drifted=result.verdict == Verdict.FAILED,
                )
                for result in shown
            ],
        )

    def feature(self, name: str) -> FeatureDrift:
        return next(result for result in self.features if result.feature == name)


def _closeness(result: FeatureDrift) -> tuple[float, float]:
    """How close a feature is to failing, for "worst": its severity, then its statistic. Severities tie
    when Holm's correction clips several adjusted p-values at 1 (common over 30 features): the larger
    statistic is then the one closer to its limit."""
    return result.severity, result.value if result.value is not None else -math.inf


def _finite(number: float | None) -> float | None:
    """A number status can hold: JSON has no infinity or NaN (a one-sided empty bin can make PSI large, never
    infinite, but a chi-square statistic over disjoint categories can overflow)."""
    return number if number is not None and math.isfinite(number) else None


_LISTED: Final = 3


def _names(results: Sequence[FeatureDrift]) -> str:
    names = [repr(result.feature) for result in results[:_LISTED]]
    more = len(results) - _LISTED
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def summarize(
    subject: str, results: Sequence[FeatureDrift], criteria: DriftCriteria, notes: Iterable[str] = ()
) -> DriftResult:
    """The overall verdict: Failed if any feature failed (the worst named), else Inconclusive if any is,
    else Successful (the closest to its limit named). No feature at all is Inconclusive."""
    kept_notes = tuple(notes)
    if not results:
        return DriftResult(
            subject,
            Verdict.INCONCLUSIVE,
            None,
            f"{subject}: no feature has data on both sides",
            None,
            (),
            kept_notes,
            criteria.family_level,
            criteria.max,
        )
    failed = [result for result in results if result.verdict == Verdict.FAILED]
    inconclusive = [result for result in results if result.verdict == Verdict.INCONCLUSIVE]
    conclusive = [result for result in results if result.verdict != Verdict.INCONCLUSIVE]
    # max() keeps the first of equals: the caller's feature order breaks ties reproducibly.
    worst = max(conclusive, key=_closeness) if conclusive else None
    many = len(results) > 1
    prefix = f"{subject}: worst feature " if many else f"{subject}: "
    if failed:
        assert worst is not None and worst.verdict == Verdict.FAILED
        message = prefix + worst.message
        if many:
            message += f"; {len(failed)} of {len(results)} features drifted"
        if inconclusive:
            message += f"; {len(inconclusive)} inconclusive"
        verdict = Verdict.FAILED
    elif inconclusive:
        if many:
            message = (
                f"{subject}: {len(inconclusive)} of {len(results)} features below the minimum sample size "
                f"{_n(criteria.min_count)}: {_names(inconclusive)}; first: {inconclusive[0].message}"
            )
        else:
            message = f"{subject}: {inconclusive[0].message}"
        return DriftResult(
            subject,
            Verdict.INCONCLUSIVE,
            None,
            message,
            worst,
            tuple(results),
            kept_notes,
            criteria.family_level,
            criteria.max,
        )
    else:
        assert worst is not None
        message = prefix + worst.message
        if many:
            message += f"; all {len(results)} features within limits"
        verdict = Verdict.SUCCESSFUL
    if criteria.judged_on_pvalue:
        # The number compared with minPValue: the Holm-adjusted p-value (the raw one for a single feature).
        value = worst.significance.adjusted if worst.significance is not None else worst.pvalue
    else:
        value = worst.value
    return DriftResult(
        subject, verdict, value, message, worst, tuple(results), kept_notes, criteria.family_level, criteria.max
    )


def _feature_order(candidate: Mapping[str, object], reference: Mapping[str, object]) -> list[str]:
    # The reference's order first (a feature-edges file lists features as the model reads them).
    return [*reference, *(name for name in candidate if name not in reference)]


def _one_sided(
    candidate: Mapping[str, object], reference: Mapping[str, object], features: Collection[str] | None
) -> tuple[list[str], list[str]]:
    """The features to compare, and notes on those skipped because only one side has them."""
    if features is not None:
        return list(features), []
    order = _feature_order(candidate, reference)
    both = [name for name in order if name in candidate and name in reference]
    notes: list[str] = []
    only_candidate = [name for name in order if name not in reference]
    only_reference = [name for name in order if name not in candidate]
    if only_candidate:
        notes.append(f"not compared, no reference series: {', '.join(map(repr, only_candidate))}")
    if only_reference:
        notes.append(f"not compared, no candidate series: {', '.join(map(repr, only_reference))}")
    return both, notes


def _no_series(name: str) -> _Measured:
    return _Measured(name, 0.0, 0.0, (), short=f"{name!r}: no series on either side")


def histogram_drift(
    candidate: Mapping[str, Histogram],
    reference: Mapping[str, Histogram],
    criteria: DriftCriteria,
    *,
    subject: str = "input drift",
    features: Collection[str] | None = None,
) -> DriftResult:
    """Drift of each numeric feature's histogram against the reference's, and the overall verdict.

    ``features`` None compares every feature both sides have; a feature only one side has is skipped
    with a note (a new model version may add or drop a feature). A feature named in ``features`` that a
    side lacks is compared as empty there, hence Inconclusive. Edges that differ raise
    :class:`~modelrollout.analysis.histograms.EdgeMismatchError`: a configuration error, not a measurement.
    """
    names, notes = _one_sided(candidate, reference, features)
    measured: list[_Measured] = []
    for name in names:
        cand, ref = candidate.get(name), reference.get(name)
        if cand is None and ref is None:
            measured.append(_no_series(name))
            continue
        cand = cand if cand is not None else Histogram.empty(ref.edges if ref is not None else ())
        ref = ref if ref is not None else Histogram.empty(cand.edges)
        check_same_edges(name, cand.edges, ref.edges)
        measured.append(_measure(name, cand.counts, ref.counts, criteria, (*cand.notes, *ref.notes)))
    return summarize(subject, _judge_family(measured, criteria), criteria, notes)


def categorical_drift(
    candidate: Mapping[str, Mapping[str, float]],
    reference: Mapping[str, Mapping[str, float]],
    criteria: DriftCriteria,
    *,
    subject: str = "output drift",
    features: Collection[str] | None = None,
) -> DriftResult:
    """Drift of category counts per feature (``{feature: {category: count}}``) over the union of categories.

    For predicted classes pass ``{"class": counts}``. KS is refused: categories have no order.
    """
    if criteria.statistic == Statistic.KS:
        raise ValueError("ks needs ordered bins; use chiSquare, psi or jensenShannon for categories")
    names, notes = _one_sided(candidate, reference, features)
    measured: list[_Measured] = []
    for name in names:
        aligned = align_categories(candidate.get(name, {}), reference.get(name, {}))
        if not aligned.categories:
            measured.append(_no_series(name))
            continue
        measured.append(_measure(name, aligned.candidate, aligned.reference, criteria))
    return summarize(subject, _judge_family(measured, criteria), criteria, notes)
