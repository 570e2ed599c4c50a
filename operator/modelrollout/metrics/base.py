"""The metric-backend protocol: fetch numbers, never judge them.

Modelled on Flagger's `pkg/metrics/providers/provider.go` (RunQuery, IsOnline). A backend never
raises for anything a query or the network can do; it returns an outcome whose `status` tells
the analysis which verdict family it belongs to, and whose `message` is written to status as is.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from modelrollout.vocabulary.samples import Sample

NAN_MESSAGE = "query returned NaN (e.g. 0/0: no traffic in the window)"


class QueryStatus(enum.StrEnum):
    """What a query produced, as far as the analysis is concerned."""

    VALUE = "value"
    """A number (possibly +Inf/-Inf) to be judged against a threshold."""
    EMPTY = "empty"
    """No usable number: no series, or NaN. Inconclusive, never a pass."""
    ERROR = "error"
    """The measurement could not be taken: unreachable, timeout, bad query, bad answer."""


@dataclass(frozen=True)
class QueryOutcome:
    """The result of a query expected to yield one number."""

    status: QueryStatus
    value: float | None
    message: str

    @classmethod
    def of_value(cls, value: float, message: str = "") -> QueryOutcome:
        # NaN is routed to EMPTY here so that no caller can judge NaN against a threshold by mistake
        # (every comparison with NaN is False, which would read as "within bounds" to some code).
        if math.isnan(value):
            return cls.empty(NAN_MESSAGE)
        return cls(QueryStatus.VALUE, value, message)

    @classmethod
    def empty(cls, message: str) -> QueryOutcome:
        return cls(QueryStatus.EMPTY, None, message)

    @classmethod
    def error(cls, message: str) -> QueryOutcome:
        return cls(QueryStatus.ERROR, None, message)


@dataclass(frozen=True)
class VectorOutcome:
    """The result of a query expected to yield a set of series (e.g. histogram buckets by `le`)."""

    status: QueryStatus
    samples: tuple[Sample, ...] = field(default=())
    message: str = ""

    @classmethod
    def error(cls, message: str) -> VectorOutcome:
        return cls(QueryStatus.ERROR, (), message)


@runtime_checkable
class MetricBackend(Protocol):
    """Where measurements come from. Implementations must not raise for query or network trouble."""

    async def query_scalar(
        self, address: str, query: str, at: datetime | None = None, *, domain: str = ""
    ) -> QueryOutcome:
        """Evaluate `query` at `at` (default: the server's now); exactly one number is expected.

        `domain` names who the query is for (the rollout's namespace): a backend that sends several
        queries as one request sends together only queries of one domain, so that one team's slow
        or broken query never costs another's measurement."""
        ...

    async def query_vector(
        self, address: str, query: str, at: datetime | None = None, *, domain: str = ""
    ) -> VectorOutcome:
        """Evaluate `query` and return every series with its labels (NaN values are kept as NaN)."""
        ...

    async def is_online(self, address: str) -> bool:
        """Whether the server at `address` answers queries."""
        ...
