"""The routing a canary wants, in one vocabulary for the engine, the routers and `kube.routing`.

The engine decides a `RouteState` per pass; a router (`traffic/`) writes it into the user's route
object and reads it back from there; `kube.routing` hands the reading to the engine as a
`RouteView`. The Services the split is between are the router's business (it is built for one
rollout), so the state carries only what changes from step to step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HeaderMatch:
    """Requests whose header `name` equals `value` exactly go to the candidate.

    HTTP header names are case-insensitive, so the name is kept in lower case (Istio requires that
    in its matches): the route read back then equals the state the engine asked for.
    """

    name: str
    value: str

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a header route needs a header name")
        object.__setattr__(self, "name", self.name.lower())


@dataclass(frozen=True)
class RouteState:
    """What a traffic router sends to the candidate, in percent; the rest goes to stable.

    `candidate_weight` is the share of live traffic answered by the candidate; `mirror_percent` the
    share of requests copied to the candidate (its answers dropped); `header` sends matching
    requests to the candidate whatever the weights say. `RouteState()` is at rest: all traffic on
    stable, where a rollout starts and an abort ends.
    """

    candidate_weight: int = 0
    mirror_percent: int = 0
    header: HeaderMatch | None = None

    def __post_init__(self) -> None:
        for field_name in ("candidate_weight", "mirror_percent"):
            value = getattr(self, field_name)
            if not 0 <= value <= 100:
                raise ValueError(f"{field_name} must be within 0..100, got {value}")


@dataclass(frozen=True)
class RouteView:
    """The route object as observed: its managed part read back, or why it cannot be used."""

    error: str | None = None
    state: RouteState | None = None
