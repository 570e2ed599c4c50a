"""Metric backends behind a small protocol: they fetch numbers; `analysis/` judges them."""

from modelrollout.metrics.base import MetricBackend, QueryOutcome, QueryStatus, Sample, VectorOutcome
from modelrollout.metrics.prometheus import Credentials, PrometheusBackend

__all__ = [
    "Credentials",
    "MetricBackend",
    "PrometheusBackend",
    "QueryOutcome",
    "QueryStatus",
    "Sample",
    "VectorOutcome",
]
