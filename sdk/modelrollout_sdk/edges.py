"""Fixed per-feature histogram bucket edges, computed once from training data.

Drift statistics (PSI, Jensen-Shannon, binned KS) compare a live histogram with a reference histogram
bin by bin, which is only meaningful when both use the same bins. So the edges are fixed at training
time (quantiles of each training column, so that every bin holds a comparable share of the training
data) and shipped with the model as a small JSON file, together with the training-time counts per bin:
that reference is what the live ``model_input_feature_value_bucket`` series are compared against.

File format (``format: modelrollout.feature-edges/v1``)::

    {
      "format": "modelrollout.feature-edges/v1",
      "source": "free text: where the training data came from",
      "quantiles": [0.1, 0.2, ...],
      "features": {
        "<name>": {"edges": [e1, e2, ...],            # strictly increasing; the Prometheus `le` values
                   "reference_counts": [c0, ..., cn],  # n = len(edges); the last bin is (e_n, +Inf]
                   "count": N, "mean": m, "std": s, "min": lo, "max": hi}
      },
      "categorical": {
        "<name>": {"categories": ["a", "b"], "reference_counts": {"a": 10, "b": 3}}
      }
    }

Bins follow Prometheus ``le`` semantics: bin ``i`` holds values ``v`` with ``edges[i-1] < v <= edges[i]``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

FORMAT: Final = "modelrollout.feature-edges/v1"
#: Deciles: ten equally filled bins on training data, the usual choice for PSI.
DECILES: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Edges become `le` label values; rounding keeps them short and stable across numpy versions.
SIGNIFICANT_DIGITS: Final = 6


def _round_sig(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    if value == 0 or not math.isfinite(value):
        return float(value)
    return float(f"{value:.{digits}g}")


def bin_index(edges: Sequence[float], value: float) -> int:
    """The bin of ``value`` under Prometheus ``le`` semantics (``len(edges)`` is the +Inf bin)."""
    lo, hi = 0, len(edges)
    while lo < hi:  # bisect_left, spelled out so that it works on any sequence of floats
        mid = (lo + hi) // 2
        if edges[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class NumericFeature:
    """Bucket edges of one numeric feature and its training-time reference histogram."""

    edges: tuple[float, ...]
    reference_counts: tuple[int, ...] | None = None
    count: int | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if not self.edges:
            raise ValueError("a numeric feature needs at least one bucket edge")
        if any(not math.isfinite(e) for e in self.edges):
            raise ValueError(f"bucket edges must be finite: {self.edges!r}")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"bucket edges must be strictly increasing: {self.edges!r}")
        if self.reference_counts is not None and len(self.reference_counts) != len(self.edges) + 1:
            raise ValueError("reference_counts needs one count per bin: len(edges) + 1")

    @property
    def reference_fractions(self) -> tuple[float, ...] | None:
        """The reference histogram as shares of the training rows (None if no reference was saved)."""
        if self.reference_counts is None:
            return None
        total = sum(self.reference_counts)
        return tuple(c / total if total else 0.0 for c in self.reference_counts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"edges": list(self.edges)}
        for key in ("reference_counts", "count", "mean", "std", "min", "max"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericFeature:
        counts = data.get("reference_counts")
        return cls(
            edges=tuple(float(e) for e in data["edges"]),
            reference_counts=tuple(int(c) for c in counts) if counts is not None else None,
            count=int(data["count"]) if data.get("count") is not None else None,
            mean=float(data["mean"]) if data.get("mean") is not None else None,
            std=float(data["std"]) if data.get("std") is not None else None,
            min=float(data["min"]) if data.get("min") is not None else None,
            max=float(data["max"]) if data.get("max") is not None else None,
        )


@dataclass(frozen=True)
class CategoricalFeature:
    """The known categories of one categorical feature and their training-time counts."""

    categories: tuple[str, ...]
    reference_counts: Mapping[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"categories": list(self.categories)}
        if self.reference_counts is not None:
            out["reference_counts"] = dict(self.reference_counts)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalFeature:
        counts = data.get("reference_counts")
        return cls(
            categories=tuple(str(c) for c in data["categories"]),
            reference_counts={str(k): int(v) for k, v in counts.items()} if counts is not None else None,
        )


def numeric_feature_from_column(column: npt.ArrayLike, quantiles: Sequence[float] = DECILES) -> NumericFeature:
    """Edges at the given quantiles of one training column, with the column's reference histogram."""
    values = np.asarray(column, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("cannot compute bucket edges from a column without finite values")
    raw = np.quantile(values, list(quantiles))
    # Columns with many ties (zeros, small integers) give equal quantiles; Prometheus needs distinct `le`.
    edges = tuple(sorted({_round_sig(float(e)) for e in raw}))
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="left"), minlength=len(edges) + 1)
    return NumericFeature(
        edges=edges,
        reference_counts=tuple(int(c) for c in counts),
        count=int(values.size),
        mean=_round_sig(float(values.mean()), 10),
        std=_round_sig(float(values.std(ddof=0)), 10),
        min=float(values.min()),
        max=float(values.max()),
    )


@dataclass(frozen=True)
class FeatureEdges:
    """Per-feature bucket edges (and reference histograms) for the input metrics of one model."""

    numeric: Mapping[str, NumericFeature] = field(default_factory=dict)
    categorical: Mapping[str, CategoricalFeature] = field(default_factory=dict)
    quantiles: tuple[float, ...] | None = None
    source: str | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Every feature the model expects, numeric first, in insertion order."""
        return (*self.numeric, *(n for n in self.categorical if n not in self.numeric))

    def edges(self, feature: str) -> tuple[float, ...]:
        return self.numeric[feature].edges

    @classmethod
    def from_mapping(cls, edges: Mapping[str, Sequence[float]]) -> FeatureEdges:
        """Hand-written edges, without a reference histogram."""
        return cls(numeric={name: NumericFeature(edges=tuple(float(e) for e in es)) for name, es in edges.items()})

    @classmethod
    def from_training_data(
        cls,
        data: npt.ArrayLike | Mapping[str, npt.ArrayLike],
        feature_names: Sequence[str] | None = None,
        *,
        quantiles: Sequence[float] = DECILES,
        categorical: Mapping[str, Iterable[str]] | None = None,
        source: str | None = None,
    ) -> FeatureEdges:
        """Compute edges from a training matrix (rows x features, with ``feature_names``) or a column mapping.

        ``categorical`` maps a categorical feature to its training values; its categories become the
        known categories (others are published as ``__other__``).
        """
        if isinstance(data, Mapping):
            columns: dict[str, npt.ArrayLike] = dict(data)
        else:
            matrix = np.asarray(data, dtype=float)
            if matrix.ndim != 2:
                raise ValueError("training data must be two-dimensional: rows x features")
            if feature_names is None or len(feature_names) != matrix.shape[1]:
                raise ValueError("feature_names must name every column of the training matrix")
            columns = {name: matrix[:, i] for i, name in enumerate(feature_names)}
        numeric = {name: numeric_feature_from_column(col, quantiles) for name, col in columns.items()}
        cats: dict[str, CategoricalFeature] = {}
        for name, values in (categorical or {}).items():
            counter = Counter(str(v) for v in values)
            cats[name] = CategoricalFeature(
                categories=tuple(sorted(counter)), reference_counts=dict(sorted(counter.items()))
            )
        return cls(numeric=numeric, categorical=cats, quantiles=tuple(quantiles), source=source)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT}
        if self.source is not None:
            out["source"] = self.source
        if self.quantiles is not None:
            out["quantiles"] = list(self.quantiles)
        out["features"] = {name: feat.to_dict() for name, feat in self.numeric.items()}
        if self.categorical:
            out["categorical"] = {name: feat.to_dict() for name, feat in self.categorical.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEdges:
        fmt = data.get("format", FORMAT)
        if fmt != FORMAT:
            raise ValueError(f"unsupported feature-edges format {fmt!r} (expected {FORMAT!r})")
        quantiles = data.get("quantiles")
        return cls(
            numeric={str(n): NumericFeature.from_dict(f) for n, f in data.get("features", {}).items()},
            categorical={str(n): CategoricalFeature.from_dict(f) for n, f in data.get("categorical", {}).items()},
            quantiles=tuple(float(q) for q in quantiles) if quantiles is not None else None,
            source=data.get("source"),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON file atomically: replicas starting together may read it while it is written."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=1)
                fh.write("\n")
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; the file is shipped data, meant to be read by all
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureEdges:
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))
