"""One series of an instant vector: what a metric backend returns and the analysis judges."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector: its labels (`__name__` included when the query keeps it) and value."""

    labels: Mapping[str, str]
    value: float
