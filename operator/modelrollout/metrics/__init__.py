"""Metric backends behind a small protocol: they fetch numbers; `analysis/` judges them."""

from modelrollout.metrics.base import MetricBackend, QueryOutcome, QueryStatus, VectorOutcome
from modelrollout.metrics.prometheus import Credentials, PrometheusBackend
from modelrollout.vocabulary.samples import Sample

__all__ = [
    "Credentials",
    "MetricBackend",
    "PrometheusBackend",
    "QueryOutcome",
    "QueryStatus",
    "Sample",
    "VectorOutcome",
]
