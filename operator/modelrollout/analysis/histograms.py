"""Turn what Prometheus returns for a histogram or a labelled counter into aligned count vectors.

Pure: the inputs are the samples a backend already fetched (:class:`modelrollout.metrics.base.Sample`,
or plain ``(labels, value)`` pairs) and the SDK's feature-edges data; nothing here does I/O.

A Prometheus histogram is exposed as cumulative ``_bucket`` counters, one per upper bound ``le``, the
last being ``le="+Inf"`` (every observation). The drift statistics need the opposite: a count per bin.
For one feature with finite edges ``e_1 < ... < e_k`` the bins are, as in the SDK (``sdk/edges.py``)::

    bin 0: v <= e_1,   bin i: e_i < v <= e_{i+1},   bin k: e_k < v            (k + 1 bins)

so ``counts[i] = cumulative(e_{i+1}) - cumulative(e_i)``, with the ``+Inf`` bucket closing the last bin.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from modelrollout.vocabulary.samples import Sample
from modelrollout_sdk.edges import FeatureEdges
from modelrollout_sdk.names import LABEL_CATEGORY, LABEL_CLASS, LABEL_FEATURE, OTHER

#: What the functions below accept as one series: a backend sample, or a plain ``(labels, value)`` pair.
SampleLike = Sample | tuple[Mapping[str, str], float]

#: Edge lists in error messages are cut to this many values at each end: a feature may have dozens.
_SHOWN_EDGES: Final = 4
#: `le` values are printed by prometheus-client with Go's float formatting and parsed back here;
#: a relative tolerance absorbs the last-digit differences between that and a JSON file's decimals.
_EDGE_RTOL: Final = 1e-9


class HistogramError(ValueError):
    """The samples cannot be read as a histogram (no `le`, a NaN count, no buckets at all)."""


class EdgeMismatchError(HistogramError):
    """Candidate and reference bucket edges differ: a bin-by-bin comparison would be meaningless."""

    def __init__(self, feature: str, candidate: Sequence[float], reference: Sequence[float]) -> None:
        self.feature = feature
        self.candidate = tuple(candidate)
        self.reference = tuple(reference)
        super().__init__(
            f"feature {feature!r}: candidate bucket edges {format_edges(candidate)} differ from the "
            f"reference's {format_edges(reference)}; both must come from the same edges file"
        )


def format_edges(edges: Sequence[float]) -> str:
    """An edge list for a message, shortened in the middle when long: ``[1, 2, 3, 4, ... 9, 10] (12 edges)``."""
    shown = [f"{edge:g}" for edge in edges]
    if len(shown) <= 2 * _SHOWN_EDGES:
        return "[" + ", ".join(shown) + "]"
    head, tail = shown[:_SHOWN_EDGES], shown[-_SHOWN_EDGES:]
    return "[" + ", ".join(head) + ", ..., " + ", ".join(tail) + f"] ({len(shown)} edges)"


def parse_le(value: str) -> float:
    """A Prometheus `le` label value as a float (``+Inf``, ``1e+06`` and ``0.25`` all parse)."""
    try:
        parsed = float(value)
    except ValueError:
        raise HistogramError(f"bucket label le={value!r} is not a number") from None
    if math.isnan(parsed):
        raise HistogramError("bucket label le='NaN' is not a bucket bound")
    return parsed


@dataclass(frozen=True)
class Histogram:
    """Non-cumulative counts per bin: ``len(counts) == len(edges) + 1``, the last bin is ``(edges[-1], +Inf]``.

    Counts are floats because ``increase()`` extrapolates to the window's edges and rarely yields integers.
    ``notes`` says what the conversion had to repair (clamped negative bins, a missing ``+Inf`` bucket).
    """

    edges: tuple[float, ...]
    counts: tuple[float, ...]
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.edges) + 1:
            raise HistogramError(f"a histogram with {len(self.edges)} edges needs {len(self.edges) + 1} counts")
        if any(not math.isfinite(edge) for edge in self.edges):
            raise HistogramError(f"bucket edges must be finite (the +Inf bin is implicit): {list(self.edges)}")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise HistogramError(f"bucket edges must be strictly increasing: {format_edges(self.edges)}")
        if any(not math.isfinite(count) or count < 0 for count in self.counts):
            raise HistogramError(f"bin counts must be finite and non-negative: {list(self.counts)}")

    @property
    def total(self) -> float:
        return math.fsum(self.counts)

    @classmethod
    def empty(cls, edges: Sequence[float]) -> Histogram:
        """No observations: what a side without any series for a feature is compared as."""
        return cls(tuple(float(edge) for edge in edges), (0.0,) * (len(edges) + 1))


def _labels_and_value(sample: SampleLike) -> tuple[Mapping[str, str], float]:
    if isinstance(sample, Sample):
        return sample.labels, float(sample.value)
    labels, value = sample
    return labels, float(value)


def histogram_from_cumulative(buckets: Iterable[tuple[float, float]], *, name: str = "histogram") -> Histogram:
    """Per-bin counts from cumulative ``(le, count)`` pairs, in any order; repeated ``le`` values are summed.

    * A difference below 0 (a counter reset inside the window, or ``increase()``'s extrapolation and
      float noise making a lower bucket exceed a higher one) is clamped to 0 and reported in ``notes``:
      a negative count has no meaning as a bin and would break every statistic.
    * Without a ``+Inf`` bucket the observations above the last finite edge are unknown; the last bin is
      taken as 0 and a note says so (Prometheus' own ``histogram_quantile`` refuses such a histogram,
      but for a drift statistic the finite bins still carry the information).
    """
    cumulative: dict[float, float] = {}
    for le, count in buckets:
        if math.isnan(count) or math.isinf(count):
            raise HistogramError(f"{name}: bucket le={le:g} has the count {count}, not a finite number")
        cumulative[le] = cumulative.get(le, 0.0) + count
    if not cumulative:
        raise HistogramError(f"{name}: no buckets")
    notes: list[str] = []
    has_inf = math.inf in cumulative
    edges = sorted(le for le in cumulative if le != math.inf)
    if any(le == -math.inf for le in edges):
        raise HistogramError(f"{name}: bucket le=-Inf is not a bucket bound")
    if not edges:
        # Only `+Inf`: one bin and no edges cannot be compared bin by bin with anything.
        raise HistogramError(f"{name}: only the +Inf bucket, no finite bucket edges")
    ordered = [cumulative[le] for le in edges]
    if has_inf:
        ordered.append(cumulative[math.inf])
    else:
        notes.append(f'{name}: no le="+Inf" bucket; observations above {edges[-1]:g} are counted as 0')
    counts: list[float] = []
    clamped: list[str] = []
    previous = 0.0
    for index, value in enumerate(ordered):
        difference = value - previous
        if difference < 0:
            upper = f"{edges[index]:g}" if index < len(edges) else "+Inf"
            clamped.append(f"le={upper} ({difference:.3g})")
            difference = 0.0
        counts.append(difference)
        # The running maximum, not the last value: after a dip the next bin must not be inflated by it.
        previous = max(previous, value)
    if not has_inf:
        counts.append(0.0)
    if clamped:
        notes.append(f"{name}: negative bin count(s) clamped to 0 (counter reset or float noise): {', '.join(clamped)}")
    return Histogram(tuple(edges), tuple(counts), tuple(notes))


def histograms_by_label(samples: Iterable[SampleLike], label: str = LABEL_FEATURE) -> dict[str, Histogram]:
    """One histogram per value of ``label`` (default ``feature``) from ``_bucket`` samples with ``le``.

    This reads the result of ``sum by (le, feature) (increase(model_input_feature_value_bucket{...}[5m]))``.
    Series that differ in other labels (pods not aggregated by the query) are summed, as ``sum`` would.
    """
    grouped: dict[str, list[tuple[float, float]]] = {}
    for sample in samples:
        labels, value = _labels_and_value(sample)
        if "le" not in labels:
            raise HistogramError(f"a sample without an `le` label ({dict(labels)}): is the query `sum by (le, ...)`?")
        if label not in labels:
            raise HistogramError(f"a bucket sample without a {label!r} label: is the query `sum by (le, {label})`?")
        grouped.setdefault(labels[label], []).append((parse_le(labels["le"]), value))
    return {key: histogram_from_cumulative(buckets, name=f"{label} {key!r}") for key, buckets in grouped.items()}


def histogram_from_samples(samples: Iterable[SampleLike], *, name: str = "histogram") -> Histogram:
    """One histogram from ``_bucket`` samples (e.g. ``sum by (le) (increase(model_prediction_score_bucket[5m]))``)."""
    buckets: list[tuple[float, float]] = []
    for sample in samples:
        labels, value = _labels_and_value(sample)
        if "le" not in labels:
            raise HistogramError(
                f"{name}: a sample without an `le` label ({dict(labels)}): is the query `sum by (le)`?"
            )
        buckets.append((parse_le(labels["le"]), value))
    return histogram_from_cumulative(buckets, name=name)


def same_edges(candidate: Sequence[float], reference: Sequence[float]) -> bool:
    """Whether two edge lists are the same bins (equal length, each edge equal to ~1e-9 relative)."""
    return len(candidate) == len(reference) and all(
        math.isclose(a, b, rel_tol=_EDGE_RTOL, abs_tol=0.0) for a, b in zip(candidate, reference, strict=True)
    )


def check_same_edges(feature: str, candidate: Sequence[float], reference: Sequence[float]) -> None:
    """Raise :class:`EdgeMismatchError` naming the feature and both (shortened) edge lists if they differ."""
    if not same_edges(candidate, reference):
        raise EdgeMismatchError(feature, candidate, reference)


# ---------------------------------------------------------------------------------------------
# Categorical counts
# ---------------------------------------------------------------------------------------------


def category_counts(samples: Iterable[SampleLike], label: str = LABEL_CLASS) -> dict[str, float]:
    """Counts by ``label`` (e.g. ``sum by (class) (increase(model_predictions_total{...}[5m]))``).

    Series repeating a category (not aggregated by the query) are summed; a NaN or infinite count is an
    error; a negative one (``increase()`` never yields one, float noise can) is clamped to 0.
    """
    counts: dict[str, float] = {}
    for sample in samples:
        labels, value = _labels_and_value(sample)
        if label not in labels:
            raise HistogramError(
                f"a sample without a {label!r} label ({dict(labels)}): is the query `sum by ({label})`?"
            )
        if not math.isfinite(value):
            raise HistogramError(f"{label} {labels[label]!r} has the count {value}, not a finite number")
        counts[labels[label]] = counts.get(labels[label], 0.0) + value
    return {key: max(value, 0.0) for key, value in counts.items()}


def category_counts_by(
    samples: Iterable[SampleLike], label: str = LABEL_CATEGORY, by: str = LABEL_FEATURE
) -> dict[str, dict[str, float]]:
    """Counts by ``label`` per value of ``by``: ``model_input_category_total`` summed ``by (feature, category)``."""
    grouped: dict[str, list[SampleLike]] = {}
    for sample in samples:
        labels, value = _labels_and_value(sample)
        if by not in labels:
            raise HistogramError(
                f"a sample without a {by!r} label ({dict(labels)}): is the query `sum by ({by}, {label})`?"
            )
        grouped.setdefault(labels[by], []).append((labels, value))
    return {key: category_counts(group, label) for key, group in grouped.items()}


@dataclass(frozen=True)
class AlignedCounts:
    """Two count vectors over the same categories, in the same order."""

    categories: tuple[str, ...]
    candidate: tuple[float, ...]
    reference: tuple[float, ...]


def align_categories(candidate: Mapping[str, float], reference: Mapping[str, float]) -> AlignedCounts:
    """Both sides over the union of their categories (absent means 0), sorted, ``__other__`` last.

    The order does not change chi-square, PSI or Jensen-Shannon; it is fixed so that results and messages
    are reproducible.
    """
    union = sorted(set(candidate) | set(reference), key=lambda name: (name == OTHER, name))
    return AlignedCounts(
        tuple(union),
        tuple(float(candidate.get(name, 0.0)) for name in union),
        tuple(float(reference.get(name, 0.0)) for name in union),
    )


# ---------------------------------------------------------------------------------------------
# Training-time reference (the SDK's feature-edges file)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingReference:
    """The reference histograms saved at training time: per numeric feature, per categorical feature."""

    numeric: Mapping[str, Histogram]
    categorical: Mapping[str, Mapping[str, float]]


def training_reference(edges: FeatureEdges | Mapping[str, Any]) -> TrainingReference:
    """The reference histograms in a feature-edges file, already read (``FeatureEdges.load`` does the I/O).

    Accepts the loaded :class:`~modelrollout_sdk.FeatureEdges` or the parsed JSON document (validated by
    ``FeatureEdges.from_dict``). A feature saved without ``reference_counts`` cannot be a reference:
    that is an error naming the feature, not a silently empty histogram.
    """
    loaded = edges if isinstance(edges, FeatureEdges) else FeatureEdges.from_dict(edges)
    numeric: dict[str, Histogram] = {}
    for name, feature in loaded.numeric.items():
        if feature.reference_counts is None:
            raise HistogramError(f"feature {name!r} has no reference_counts in the feature-edges file")
        numeric[name] = Histogram(feature.edges, tuple(float(c) for c in feature.reference_counts))
    categorical: dict[str, dict[str, float]] = {}
    for name, cat in loaded.categorical.items():
        if cat.reference_counts is None:
            raise HistogramError(f"categorical feature {name!r} has no reference_counts in the feature-edges file")
        # Known categories never seen in training are still categories: keep them as explicit zeros.
        counts = {category: 0.0 for category in cat.categories}
        counts.update({category: float(count) for category, count in cat.reference_counts.items()})
        categorical[name] = counts
    return TrainingReference(numeric, categorical)
