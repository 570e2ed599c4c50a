"""The vocabulary of the engine: what it observes, and what it asks the actuators to do.

Plain frozen dataclasses, so a decision can be compared in tests and logged as it is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import ModelRolloutStatus


@dataclass(frozen=True)
class RolloutRef:
    """The identity and raw spec of one ModelRollout, as read from the API."""

    name: str
    namespace: str
    generation: int
    spec: dict[str, Any]


@dataclass(frozen=True)
class DeploymentState:
    """What the cluster reports about one of the rollout's Deployments."""

    revision: str
    version: str
    replicas: int
    ready_replicas: int = 0

    @property
    def ready(self) -> int:
        # A Deployment being scaled down still counts its old pods as ready for a moment; only
        # the pods it is asked to keep serve.
        return min(self.ready_replicas, self.replicas)


class CommandAction(enum.StrEnum):
    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    ABORT = "abort"
    RETRY = "retry"
    PAUSE = "pause"
    RESUME = "resume"


@dataclass(frozen=True)
class Command:
    """A request from a person, carried by an annotation so that `spec` is never edited."""

    id: str
    action: CommandAction


@dataclass(frozen=True)
class Observations:
    deployments: dict[str, DeploymentState] = field(default_factory=dict)
    service_exists: bool = True
    measurements: dict[tuple[str, str], Observation] = field(default_factory=dict)
    command: Command | None = None


@dataclass(frozen=True)
class MeasurementRequest:
    """A metric the handler must query before calling `decide` (kind: background or step)."""

    kind: str
    metric: str
    query: str
    address: str | None


# --- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnsureService:
    """Create the rollout's Service if it is missing."""


@dataclass(frozen=True)
class EnsureDeployment:
    """Create the Deployment of the spec's revision if missing, else set its replicas."""

    revision: str
    replicas: int


@dataclass(frozen=True)
class ScaleDeployment:
    revision: str
    replicas: int


@dataclass(frozen=True)
class DeleteDeployment:
    revision: str


Action = EnsureService | EnsureDeployment | ScaleDeployment | DeleteDeployment


@dataclass(frozen=True)
class EventRecord:
    type: str  # Normal or Warning, as Kubernetes Events
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    actions: list[Action]
    status: ModelRolloutStatus
    events: list[EventRecord]
    requeue_after: float | None
