"""Drift gates' false alarms and power: how often an unchanged model fails, and how often a shift is caught.

    python bench/drift_calibration.py [--replicates 20000] [--seed 21] [--quick] [--no-check]

Pure (no cluster, no network) and seeded. For each statistic (PSI, Jensen-Shannon, binned KS, chi-square)
at its bench limits, for sample sizes from the minimum to 10,000 (the reference the same size as the
candidate, as for a 50 % canary against stable, or five times larger, as for a canary at ~17 %), and for
1, 10, 30 and 50 features:

* the **false-alarm rate**: the share of measurements in which a model whose inputs did not change fails
  (every feature, candidate and reference, drawn from one distribution);
* the **power**: the share of measurements that fail when one feature's mean moved by 0.5 standard
  deviations (at 1 SD every rule catches nearly everything from the minimum sample on).

Both for the old rule (any feature over the limit; raw p-values) and the current one
(:mod:`modelrollout.analysis.drift`: a significant difference, Holm-corrected over the features, that is
larger than the limit). Then, at the built-in templates' default minimum sample: the power for shifts of
0.25, 0.5 and 1 SD, for changed class mixes (``output-drift``), and for the sandbox's own traffic (the
load generator's rows of the breast-cancer data set binned at the shipped deciles: good canaries, and
the ``drifted`` preset).

Features are standard normal, binned at the standard normal deciles: the built-in templates bin at the
training deciles, so an unchanged model fills the bins about equally. The statistics are evaluated on
whole batches of replicates with numpy (a Python call per feature would take hours); ``check_mirror``
first runs the operator's own :func:`~modelrollout.analysis.drift.histogram_drift` and
:func:`~modelrollout.analysis.drift.categorical_drift` on a few hundred of the replicates and stops if
one verdict differs, so the table measures the operator's rule and not a copy of it.

The default run (5,000 replicates a cell) takes about two minutes of CPU on one core; ``--quick`` (1,000)
a fraction of that. The tables are Markdown, as copied into ``docs/analysis.md``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from modelrollout.analysis.drift import (
    CHI_SQUARE_BUDGET_SHARE,
    DEFAULT_FALSE_ALARM,
    MIN_EXPECTED,
    PSI_EPSILON,
    DriftCriteria,
    Statistic,
    categorical_drift,
    histogram_drift,
)
from modelrollout.analysis.histograms import Histogram
from modelrollout.api.models import Verdict
from modelrollout.vocabulary import builtin_templates

Counts = npt.NDArray[np.float64]
"""Replicates x features x bins."""
Flags = npt.NDArray[np.bool_]

BINS = 10
NORMAL_DECILES = tuple(float(edge) for edge in stats.norm.ppf(np.arange(1, BINS) / BINS))
FAMILIES = (1, 10, 30, 50)
SIZES = (100, 200, 500, 1000, 10000)
REFERENCE_RATIOS = (1, 5)
SHIFTS_SD = (0.25, 0.5, 1.0)
GRID_SHIFT_SD = 0.5
#: The share of predictions that are ``malignant`` for the sandbox's baseline model (~37 %), and the
#: changed mixes tried: a modest change, a large one, and the sandbox's ``drifted`` variant (~75 %).
BASELINE_MALIGNANT = 0.37
CHANGED_MALIGNANT = (0.45, 0.5, 0.75)


@dataclass(frozen=True)
class Gate:
    """A drift metric's limits, as a rollout would set them."""

    name: str
    statistic: Statistic
    max: float | None
    min_pvalue: float | None
    min_count: float

    def criteria(self) -> DriftCriteria:
        return DriftCriteria(self.statistic, max=self.max, min_pvalue=self.min_pvalue, min_count=self.min_count)

    def describe(self) -> str:
        limits = [
            f"max {self.max:g}" if self.max is not None else "",
            f"minPValue {self.min_pvalue:g}" if self.min_pvalue is not None else "",
        ]
        return f"{self.name} ({', '.join(part for part in limits if part)}, minCount {self.min_count:g})"


def _template_gate(template: str, statistic: Statistic) -> Gate:
    limits = builtin_templates.instantiate(template)["drift"]
    return Gate(template, statistic, limits.get("max"), limits.get("minPValue"), limits["minCount"])


def default_gates() -> tuple[Gate, ...]:
    """Per statistic, limits for features binned at deciles: ``input-drift``'s defaults for PSI; Jensen-Shannon,
    KS and chi-square have no such template, so bench limits at the same minimum sample."""
    psi_gate = _template_gate("input-drift", Statistic.PSI)
    return (
        psi_gate,
        # A Jensen-Shannon distance of 0.1 is about PSI 0.055 (PSI ~ 8 ln 2 JS^2): a moderate shift.
        Gate("jensenShannon", Statistic.JENSEN_SHANNON, 0.1, None, psi_gate.min_count),
        Gate("ks", Statistic.KS, None, DEFAULT_FALSE_ALARM, psi_gate.min_count),
        Gate("chiSquare", Statistic.CHI_SQUARE, None, output_drift_gate().min_pvalue, psi_gate.min_count),
    )


def output_drift_gate() -> Gate:
    return _template_gate("output-drift", Statistic.CHI_SQUARE)


def old_gates() -> tuple[Gate, ...]:
    """The same, with the defaults before the false-alarm budget (judged by the old rule: any feature)."""
    return (
        Gate("input-drift", Statistic.PSI, 0.2, None, 100.0),
        Gate("jensenShannon", Statistic.JENSEN_SHANNON, 0.1, None, 100.0),
        Gate("ks", Statistic.KS, None, 0.01, 100.0),
        Gate("chiSquare", Statistic.CHI_SQUARE, None, 0.01, 100.0),
    )


OLD_OUTPUT_DRIFT: Final = Gate("output-drift", Statistic.CHI_SQUARE, None, 0.01, 100.0)


# ---------------------------------------------------------------------------------------------
# The statistics over batches: mirrors of modelrollout.analysis.drift, checked by check_mirror
# ---------------------------------------------------------------------------------------------


def batch_psi(c: Counts, r: Counts, epsilon: float = PSI_EPSILON) -> Counts:
    occupied = (c + r) > 0
    p = np.where(occupied, np.maximum(c / c.sum(-1, keepdims=True), epsilon), 0.0)
    q = np.where(occupied, np.maximum(r / r.sum(-1, keepdims=True), epsilon), 0.0)
    p, q = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(occupied, (p - q) * np.log(p / q), 0.0)
    return np.asarray(terms.sum(-1), dtype=np.float64)


def batch_jensen_shannon(c: Counts, r: Counts) -> Counts:
    p, q = c / c.sum(-1, keepdims=True), r / r.sum(-1, keepdims=True)
    m = (p + q) / 2
    divergence = (special.rel_entr(p, m).sum(-1) + special.rel_entr(q, m).sum(-1)) / 2
    return np.asarray(np.sqrt(np.clip(divergence / np.log(2), 0.0, 1.0)), dtype=np.float64)


def batch_ks_pvalue(c: Counts, r: Counts) -> Counts:
    n1, n2 = c.sum(-1), r.sum(-1)
    statistic = np.abs(np.cumsum(c, -1) / n1[..., None] - np.cumsum(r, -1) / n2[..., None]).max(-1)
    return np.asarray(np.clip(special.kolmogorov(np.sqrt(n1 * n2 / (n1 + n2)) * statistic), 0.0, 1.0))


def batch_pooled(c: Counts, r: Counts, min_expected: float = MIN_EXPECTED) -> tuple[Counts, Counts]:
    """:func:`~modelrollout.analysis.drift.pooled_bins` on every row: groups padded with zeros."""
    n1, n2 = c.sum(-1), r.sum(-1)
    share = np.minimum(n1, n2) / (n1 + n2)
    bins = c.shape[-1]
    group = np.zeros(c.shape[:-1], dtype=np.intp)
    expected = np.zeros(c.shape[:-1])
    groups = np.zeros(c.shape, dtype=np.intp)
    for index in range(bins):
        pooled = c[..., index] + r[..., index]
        # Bins empty on both sides are dropped: they neither open nor fill a group.
        groups[..., index] = group
        expected = expected + pooled * share
        closes = expected >= min_expected
        group = np.where(closes, group + 1, group)
        expected = np.where(closes, 0.0, expected)
    unfinished = (expected > 0) & (group > 0)
    groups = np.where(unfinished[..., None] & (groups == group[..., None]), groups - 1, groups)
    pooled_c, pooled_r = np.zeros(c.shape), np.zeros(r.shape)
    slots = np.arange(bins)
    for index in range(bins):
        # One-hot on the group of bin `index` (np.add.at would do the same, 50 times slower).
        into = groups[..., index, None] == slots
        pooled_c += into * c[..., index, None]
        pooled_r += into * r[..., index, None]
    return pooled_c, pooled_r


def batch_homogeneity(c: Counts, r: Counts, correction: bool = True) -> tuple[Counts, Counts]:
    """Pearson's chi-square on the pooled groups, Yates' correction at one degree of freedom: (statistic, p)."""
    pooled_c, pooled_r = batch_pooled(c, r)
    occupied = (pooled_c + pooled_r) > 0
    groups = occupied.sum(-1)
    n1, n2 = c.sum(-1, keepdims=True), r.sum(-1, keepdims=True)
    total = pooled_c + pooled_r
    expected_c, expected_r = total * n1 / (n1 + n2), total * n2 / (n1 + n2)
    deviation = np.abs(pooled_c - expected_c)
    if correction:
        deviation = np.where((groups == 2)[..., None], np.maximum(deviation - 0.5, 0.0), deviation)
    with np.errstate(divide="ignore", invalid="ignore"):
        cells = np.where(occupied, deviation**2 / expected_c + deviation**2 / expected_r, 0.0)
    statistic = cells.sum(-1)
    pvalue = np.where(groups >= 2, special.chdtrc(np.maximum(groups - 1, 1), statistic), 1.0)
    return statistic, np.clip(pvalue, 0.0, 1.0)


def batch_holm(pvalues: Counts) -> Counts:
    """:func:`~modelrollout.analysis.drift.holm_adjusted` along the last axis."""
    count = pvalues.shape[-1]
    order = np.argsort(pvalues, axis=-1, kind="stable")
    ranked = np.take_along_axis(pvalues, order, -1) * (count - np.arange(count))
    ranked = np.maximum.accumulate(np.minimum(ranked, 1.0), axis=-1)
    adjusted = np.empty_like(ranked)
    np.put_along_axis(adjusted, order, ranked, -1)
    return adjusted


@dataclass(frozen=True)
class Measured:
    """Per replicate and feature: the statistic, its own p-value (or NaN), and the test p-value judged."""

    value: Counts
    pvalue: Counts
    test_pvalue: Counts


def measure(gate: Gate, c: Counts, r: Counts) -> Measured:
    nan = np.full(c.shape[:-1], np.nan)
    if gate.statistic == Statistic.KS:
        n1, n2 = c.sum(-1), r.sum(-1)
        value = np.abs(np.cumsum(c, -1) / n1[..., None] - np.cumsum(r, -1) / n2[..., None]).max(-1)
        ks_p = batch_ks_pvalue(c, r)
        return Measured(value, ks_p, ks_p)
    statistic, homogeneity_p = batch_homogeneity(c, r)
    if gate.statistic == Statistic.CHI_SQUARE:
        return Measured(statistic, homogeneity_p, homogeneity_p)
    value = batch_psi(c, r) if gate.statistic == Statistic.PSI else batch_jensen_shannon(c, r)
    return Measured(value, nan, homogeneity_p)


def new_rule_fails(gate: Gate, measured: Measured, family: int) -> Flags:
    """Whether each replicate's measurement over its first ``family`` features fails (the operator's rule)."""
    level = gate.criteria().family_level
    adjusted = batch_holm(measured.test_pvalue[..., :family])
    failing = adjusted < level
    if gate.max is not None:
        failing &= measured.value[..., :family] > gate.max
    return np.asarray(failing.any(-1))


def old_rule_fails(gate: Gate, c: Counts, r: Counts, family: int) -> Flags:
    """The rule before the false-alarm budget: any feature over ``max`` or under ``minPValue``, uncorrected."""
    c, r = c[..., :family, :], r[..., :family, :]
    failing = np.zeros(c.shape[:-1], dtype=bool)
    if gate.max is not None:
        if gate.statistic == Statistic.PSI:
            value = batch_psi(c, r)
        elif gate.statistic == Statistic.JENSEN_SHANNON:
            value = batch_jensen_shannon(c, r)
        else:
            value = measure(gate, c, r).value
        failing |= value > gate.max
    if gate.min_pvalue is not None:
        # KS's own p-value; chi-square's from chi2_contingency on the unpooled table, as before.
        pvalue = batch_ks_pvalue(c, r) if gate.statistic == Statistic.KS else _unpooled_chi_square_pvalue(c, r)
        failing |= pvalue < gate.min_pvalue
    return np.asarray(failing.any(-1))


def _unpooled_chi_square_pvalue(c: Counts, r: Counts) -> Counts:
    occupied = (c + r) > 0
    groups = occupied.sum(-1)
    n1, n2 = c.sum(-1, keepdims=True), r.sum(-1, keepdims=True)
    total = c + r
    expected_c, expected_r = total * n1 / (n1 + n2), total * n2 / (n1 + n2)
    deviation = np.abs(c - expected_c)
    deviation = np.where((groups == 2)[..., None], np.maximum(deviation - 0.5, 0.0), deviation)
    with np.errstate(divide="ignore", invalid="ignore"):
        cells = np.where(occupied, deviation**2 / expected_c + deviation**2 / expected_r, 0.0)
    return np.asarray(np.where(groups >= 2, special.chdtrc(np.maximum(groups - 1, 1), cells.sum(-1)), 1.0))


# ---------------------------------------------------------------------------------------------
# Populations
# ---------------------------------------------------------------------------------------------


def shifted_decile_probabilities(shift_sd: float) -> Counts:
    """The share of N(shift, 1) in each standard normal decile bin (Prometheus `le`: right-closed)."""
    cumulative = stats.norm.cdf(np.asarray(NORMAL_DECILES) - shift_sd)
    return np.diff(np.concatenate([[0.0], cumulative, [1.0]]))


def draw(rng: np.random.Generator, replicates: int, features: int, n: int, probabilities: Sequence[Counts]) -> Counts:
    """Replicates x features x bins multinomial counts; feature i from ``probabilities[i]`` (the last repeats)."""
    out = np.empty((replicates, features, len(probabilities[0])))
    for feature in range(features):
        chosen = probabilities[min(feature, len(probabilities) - 1)]
        out[:, feature, :] = rng.multinomial(n, chosen, size=replicates)
    return out


UNIFORM = np.full(BINS, 1.0 / BINS)


def rate(flags: Flags) -> float:
    return float(np.mean(flags))


# ---------------------------------------------------------------------------------------------
# The check that the mirrors are the operator's rule
# ---------------------------------------------------------------------------------------------


def operator_verdicts(gate: Gate, c: Counts, r: Counts, family: int) -> Flags:
    """The operator's own verdict (Failed or not) for each replicate, through the public functions."""
    criteria = gate.criteria()
    failed = np.zeros(c.shape[0], dtype=bool)
    for replicate in range(c.shape[0]):
        if gate.statistic == Statistic.CHI_SQUARE:
            result = categorical_drift(
                {f"f{i}": {str(b): float(x) for b, x in enumerate(c[replicate, i])} for i in range(family)},
                {f"f{i}": {str(b): float(x) for b, x in enumerate(r[replicate, i])} for i in range(family)},
                criteria,
            )
        else:
            result = histogram_drift(
                {f"f{i}": Histogram(NORMAL_DECILES, tuple(map(float, c[replicate, i]))) for i in range(family)},
                {f"f{i}": Histogram(NORMAL_DECILES, tuple(map(float, r[replicate, i]))) for i in range(family)},
                criteria,
            )
        failed[replicate] = result.verdict == Verdict.FAILED
    return failed


def check_mirror(gates: Sequence[Gate], seed: int, replicates: int = 300) -> None:
    """Stop unless the batch rule gives the operator's verdict on every replicate (null and shifted)."""
    rng = np.random.default_rng(seed)
    for gate in gates:
        n = int(gate.min_count)
        for probabilities in ([UNIFORM], [shifted_decile_probabilities(0.75), UNIFORM]):
            c = draw(rng, replicates, 10, n, probabilities)
            r = draw(rng, replicates, 10, int(n * 1.5), [UNIFORM])
            batch = new_rule_fails(gate, measure(gate, c, r), 10)
            exact = operator_verdicts(gate, c, r, 10)
            if not np.array_equal(batch, exact):
                differing = np.flatnonzero(batch != exact)
                raise SystemExit(f"{gate.name}: the batch rule differs from the operator's at replicates {differing}")


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def _percent(value: float) -> str:
    return f"{100 * value:.2f}" if value < 0.1 else f"{100 * value:.1f}"


def _old_new(old: float | None, new: float | None) -> str:
    """A cell: None where the sample is below that gate's minCount (every measurement Inconclusive)."""
    return " → ".join("—" if value is None else _percent(value) for value in (old, new))


def calibration_tables(
    gates: Sequence[Gate], old_gates: Sequence[Gate], replicates: int, seed: int
) -> tuple[list[str], list[str]]:
    """False alarms, and power at a 0.5 SD shift of one feature, for every gate, sample size and family size.

    0.5 SD rather than 1: at 1 SD every rule catches nearly every shift from the minimum sample on (the
    table at the minimum shows it), so 1 SD would tell the sizes apart by nothing.

    Old and new limits are judged on the same draws, at the same sizes (from the smaller of the two
    minimums): the old rule's column shows what the old defaults did there.
    """
    rng = np.random.default_rng(seed)
    family_columns = " | ".join(f"{m} feature{'s' if m > 1 else ''}" for m in FAMILIES)
    header = f"| statistic | n (candidate / reference) | {family_columns} |"
    rule = "|" + "---|" * (2 + len(FAMILIES))
    alarms, powers = [header, rule], [header, rule]
    widest = max(FAMILIES)
    shifted = [shifted_decile_probabilities(GRID_SHIFT_SD), UNIFORM]
    smallest = min(min(gate.min_count for gate in gates), min(gate.min_count for gate in old_gates))
    sizes = sorted({int(smallest), *(int(gate.min_count) for gate in gates), *SIZES})
    for n in sizes:
        for ratio in REFERENCE_RATIOS:
            null_c = draw(rng, replicates, widest, n, [UNIFORM])
            null_r = draw(rng, replicates, widest, n * ratio, [UNIFORM])
            drift_c = draw(rng, replicates, widest, n, shifted)
            for gate, old_gate in zip(gates, old_gates, strict=True):
                if n < min(gate.min_count, old_gate.min_count):
                    continue
                null, drifted = measure(gate, null_c, null_r), measure(gate, drift_c, null_r)
                alarm_cells, power_cells = [], []
                for m in FAMILIES:
                    # Below a gate's minCount its measurement is Inconclusive: it never fails there.
                    old_ok, new_ok = n >= old_gate.min_count, n >= gate.min_count
                    alarm_cells.append(
                        _old_new(
                            rate(old_rule_fails(old_gate, null_c, null_r, m)) if old_ok else None,
                            rate(new_rule_fails(gate, null, m)) if new_ok else None,
                        )
                    )
                    power_cells.append(
                        _old_new(
                            rate(old_rule_fails(old_gate, drift_c, null_r, m)) if old_ok else None,
                            rate(new_rule_fails(gate, drifted, m)) if new_ok else None,
                        )
                    )
                row = f"| {gate.name} | {n:,} / {n * ratio:,} | "
                alarms.append(row + " | ".join(alarm_cells) + " |")
                powers.append(row + " | ".join(power_cells) + " |")
    return alarms, powers


def power_table(gates: Sequence[Gate], old_gates: Sequence[Gate], replicates: int, seed: int) -> list[str]:
    """Each gate at its own default minimum sample on both sides (old gates at theirs), 30 and 50 features:
    false alarms, and power for a shift of one feature."""
    rng = np.random.default_rng(seed)
    shift_columns = " | ".join(f"power % at {shift:g} SD" for shift in SHIFTS_SD)
    lines = [
        f"| statistic | features | n, old → new | false alarm % | {shift_columns} |",
        "|" + "---|" * (4 + len(SHIFTS_SD)),
    ]
    for gate, old_gate in zip(gates, old_gates, strict=True):
        for features in (30, 50):
            sides = {}
            for which, n in (("old", int(old_gate.min_count)), ("new", int(gate.min_count))):
                reference = draw(rng, replicates, features, n, [UNIFORM])
                candidates = [
                    draw(rng, replicates, features, n, [shifted_decile_probabilities(shift), UNIFORM])
                    for shift in (0.0, *SHIFTS_SD)
                ]
                if which == "old":
                    sides[which] = [rate(old_rule_fails(old_gate, c, reference, features)) for c in candidates]
                else:
                    sides[which] = [
                        rate(new_rule_fails(gate, measure(gate, c, reference), features)) for c in candidates
                    ]
            cells = [_old_new(old, new) for old, new in zip(sides["old"], sides["new"], strict=True)]
            sizes = f"{int(old_gate.min_count)} → {int(gate.min_count)}"
            lines.append(f"| {gate.name} | {features} | {sizes} | " + " | ".join(cells) + " |")
    return lines


def class_mix_table(gate: Gate, old_gate: Gate, replicates: int, seed: int) -> list[str]:
    """``output-drift`` (chi-square over the two predicted classes) at its minimum sample and at 2x and 5x it."""
    rng = np.random.default_rng(seed)
    mixes = (BASELINE_MALIGNANT, *CHANGED_MALIGNANT)
    columns = " | ".join(
        "false alarm %" if mix == BASELINE_MALIGNANT else f"power % at {100 * mix:.0f} % malignant" for mix in mixes
    )
    lines = [f"| n (candidate / reference) | {columns} |", "|" + "---|" * (1 + len(mixes))]
    for multiple in (1, 2, 5):
        n = int(gate.min_count) * multiple
        reference = draw(rng, replicates, 1, n, [np.array([BASELINE_MALIGNANT, 1 - BASELINE_MALIGNANT])])
        cells = []
        for mix in mixes:
            candidate = draw(rng, replicates, 1, n, [np.array([mix, 1 - mix])])
            old = rate(old_rule_fails(old_gate, candidate, reference, 1))
            new = rate(new_rule_fails(gate, measure(gate, candidate, reference), 1))
            cells.append(_old_new(old, new))
        lines.append(f"| {n} / {n} | " + " | ".join(cells) + " |")
    return lines


def sandbox_counts(
    rng: np.random.Generator, replicates: int, n: int, shift: dict[str, float]
) -> tuple[Counts, list[str]]:
    """Counts of the load generator's inputs, binned at the shipped deciles: replicates x 30 x 11.

    The same arithmetic as ``FeatureSampler.sample_array``: a training row, plus Gaussian noise of 0.05
    training standard deviations and the shift (in standard deviations), floored at 0 for physical
    quantities; binned as Prometheus buckets them (``le``: value <= edge).
    """
    from modelrollout_devkit.sandbox.loadgen import FeatureSampler
    from modelrollout_devkit.sandbox.model_server import load_dataset, load_feature_edges

    dataset = load_dataset()
    sampler = FeatureSampler(dataset, shift=shift)
    edges = load_feature_edges()
    names = list(dataset.feature_names)
    std = dataset.X.std(axis=0)
    floor = np.where(dataset.X.min(axis=0) >= 0, 0.0, -np.inf)
    shift_vector = np.array([sampler.shift.get(name, 0.0) for name in names])
    rows = dataset.X[rng.integers(len(dataset.X), size=(replicates, n))]
    values = rows + (rng.standard_normal(rows.shape) * sampler.noise + shift_vector) * std
    values = np.maximum(values, floor)
    counts = np.zeros((replicates, len(names), len(edges.numeric[names[0]].edges) + 1))
    for index, name in enumerate(names):
        feature_edges = np.asarray(edges.numeric[name].edges)
        bins = np.searchsorted(feature_edges, values[:, :, index], side="left")
        for replicate in range(replicates):
            counts[replicate, index] = np.bincount(bins[replicate], minlength=feature_edges.size + 1)
    return counts, names


def sandbox_table(gate: Gate, old_gate: Gate, replicates: int, seed: int) -> list[str]:
    """``input-drift`` on the sandbox's own traffic: good canaries, and the ``drifted`` preset.

    Sizes: each minimum, and the candidate / stable counts the issue saw at 10 requests/s over a 5 minute
    window (150 / 220) and twice that. Below a gate's minCount its measurement is Inconclusive (—).
    """
    from modelrollout_devkit.sandbox.loadgen import PRESETS

    rng = np.random.default_rng(seed)
    lines = [
        "| candidate / reference n | unchanged inputs: false alarm % | `drifted` preset: power % |",
        "|---|---|---|",
    ]
    sizes = sorted({(int(old_gate.min_count),) * 2, (int(gate.min_count),) * 2, (150, 220), (300, 450)})
    for n_c, n_r in sizes:
        good, _ = sandbox_counts(rng, replicates, n_c, {})
        stable, _ = sandbox_counts(rng, replicates, n_r, {})
        drifted, _ = sandbox_counts(rng, replicates, n_c, dict(PRESETS["drifted"]))
        cells = []
        for candidate in (good, drifted):
            features = candidate.shape[1]
            old = rate(old_rule_fails(old_gate, candidate, stable, features)) if n_c >= old_gate.min_count else None
            new = (
                rate(new_rule_fails(gate, measure(gate, candidate, stable), features))
                if n_c >= gate.min_count
                else None
            )
            cells.append(_old_new(old, new))
        lines.append(f"| {n_c} / {n_r} | " + " | ".join(cells) + " |")
    return lines


def _section(title: str, lines: list[str], started: float) -> None:
    print(f"\n### {title}\n")
    print("\n".join(lines))
    print(f"\n({time.perf_counter() - started:.0f} s so far, {time.process_time():.0f} s of CPU)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=5000, help="measurements simulated per cell")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--quick", action="store_true", help="1,000 replicates: rough numbers, under a minute")
    parser.add_argument("--no-check", action="store_true", help="skip the check against the operator's functions")
    args = parser.parse_args(argv)
    replicates = 1000 if args.quick else args.replicates
    gates, before = default_gates(), old_gates()
    started = time.perf_counter()
    print(
        f"false-alarm budget {DEFAULT_FALSE_ALARM:g} per measurement; chi-square tests at "
        f"{DEFAULT_FALSE_ALARM * CHI_SQUARE_BUDGET_SHARE:g} family-wise (Holm), bins pooled to >= {MIN_EXPECTED:g} "
        f"expected; {replicates:,} measurements per cell, seed {args.seed}"
    )
    print("new: " + "; ".join(gate.describe() for gate in gates))
    print("old: " + "; ".join(gate.describe() for gate in before) + " (any feature over max / under minPValue)")
    print("cells: old → new, in % of measurements; — where n is below that rule's minCount (Inconclusive)")
    if not args.no_check:
        check_mirror([*gates, output_drift_gate()], args.seed)
        elapsed = time.perf_counter() - started
        print(f"batch rule = the operator's verdict on every checked replicate ({elapsed:.0f} s)")
    alarms, powers = calibration_tables(gates, before, replicates, args.seed)
    _section("False alarms (% of measurements of an unchanged model that fail)", alarms, started)
    _section(f"Power (% of measurements that fail when one feature moved by {GRID_SHIFT_SD:g} SD)", powers, started)
    sections: list[tuple[str, Callable[[], list[str]]]] = [
        (
            "At the default minimum sample: power by shift",
            lambda: power_table(gates, before, replicates, args.seed + 1),
        ),
        (
            "output-drift: changed class mix (two classes; the stable model predicts 37 % malignant)",
            lambda: class_mix_table(output_drift_gate(), OLD_OUTPUT_DRIFT, replicates, args.seed + 2),
        ),
        (
            "input-drift on the sandbox's traffic (30 features of the breast-cancer set, shipped deciles)",
            lambda: sandbox_table(gates[0], before[0], max(replicates // 5, 200), args.seed + 3),
        ),
    ]
    for title, build in sections:
        _section(title, build(), started)


if __name__ == "__main__":
    main()
