"""The vocabulary of the engine: what it observes, and what it asks the actuators to do.

Plain frozen dataclasses, so a decision can be compared in tests and logged as it is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import ModelRolloutSpec, ModelRolloutStatus, WebHeader, WebMetric
from modelrollout.api.validation import InvalidSpec, parse_or_refusal
from modelrollout.vocabulary.routes import RouteState, RouteView


@dataclass(frozen=True)
class RolloutRef:
    """The identity and raw spec of one ModelRollout, as read from the API."""

    name: str
    namespace: str
    generation: int
    spec: dict[str, Any]
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)  # ModelAnalysisTemplates it names
    # `spec` parsed, when the caller has it already (the operator keeps each rollout's parsed spec
    # between passes); otherwise parsed on first use. A pass reads it several times.
    parsed: ModelRolloutSpec | InvalidSpec | None = field(default=None, compare=False, repr=False)

    def spec_model(self) -> ModelRolloutSpec:
        """The spec as a model, templates resolved; raises InvalidSpec naming every wrong field."""
        parsed = self.parsed
        if parsed is None:
            parsed = parse_or_refusal(self.spec, self.templates)
            object.__setattr__(self, "parsed", parsed)  # a cache: the ref's meaning does not change
        if isinstance(parsed, InvalidSpec):
            # A new exception each time: raising the kept one would chain every pass's traceback to it.
            raise InvalidSpec(parsed.errors)
        return parsed


@dataclass(frozen=True)
class DeploymentState:
    """What the cluster reports about one of the rollout's Deployments."""

    revision: str
    version: str
    replicas: int
    ready_replicas: int = 0
    resource_version: int = 0  # to tell the index's view from the answer to our own newer write

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
    RESTART = "restart"


@dataclass(frozen=True)
class Command:
    """A request from a person, carried by an annotation so that `spec` is never edited."""

    id: str
    action: CommandAction


Selector = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class HookResult:
    """What the last attempt to fire the retraining hook of an episode gave."""

    episode: str
    delivered: bool
    error: str = ""


@dataclass(frozen=True)
class Observations:
    deployments: dict[str, DeploymentState] = field(default_factory=dict)
    services: dict[str, Selector] = field(default_factory=dict)
    route: RouteView | None = None  # None: no traffic router configured
    # What the previous pass's FireHook gave: an outcome is news for the pass after the one that fired.
    hook_result: HookResult | None = None
    measurements: dict[tuple[str, str], Observation] = field(default_factory=dict)
    command: Command | None = None
    # The router's refusal of the previous pass's route write (e.g. an Istio route that mirrors
    # elsewhere already): the rollout freezes with it instead of retrying the same write for ever.
    route_refusal: str | None = None
    # The answers of the webhook gates `Needs.gates` asked for, by gate name.
    gate_answers: dict[str, GateAnswer] = field(default_factory=dict)


@dataclass(frozen=True)
class Needs:
    """What the observer must gather before the one `decide` of a pass (see `engine.machine.needs`)."""

    measurements: list[MeasurementRequest] = field(default_factory=list)
    # Read the Deployments from the API, not the watch-fed index: a progress deadline has passed and
    # the index shows pods not ready, so the decision may fail a version on what a lagging watch says.
    fresh_deployments: bool = False
    route: bool = False  # observe the traffic router's route (the spec names one)
    gates: list[GateRequest] = field(default_factory=list)  # webhook gates to ask (engine/gates.py)


@dataclass(frozen=True)
class GateRequest:
    """Ask a webhook gate whether the rollout may go on: POST `payload`; a 2xx answer is yes."""

    name: str
    type: str
    url: str
    scope: str
    payload: dict[str, Any] = field(compare=False)
    timeout_seconds: float = 5.0
    headers: list[WebHeader] = field(default_factory=list, compare=False)


@dataclass(frozen=True)
class GateAnswer:
    """A gate's answer: yes only for an HTTP 2xx; anything else (a timeout, an error) is not yet."""

    scope: str
    yes: bool
    message: str


@dataclass(frozen=True)
class MeasurementRequest:
    """A metric the handler must query before calling `decide`.

    `kind` says which analysis it is for (background, step or monitor); `queries` maps a role
    (value, candidate, stable, count, stableCount, reference) to rendered PromQL; `vector` asks for
    every series (drift) instead of one number; `training` names the ConfigMap and key of a
    training-time reference to read.
    """

    kind: str
    metric: str
    queries: dict[str, str]
    address: str | None
    vector: bool = False
    training: tuple[str, str] | None = None
    # Who answers (`metrics.factory`): prometheus; web (`address` is the rendered URL, `queries` the
    # JSONPath, `web` the rest of the request); job (`job`: the Job to look at, no query).
    provider: str = "prometheus"
    web: WebMetric | None = None
    job: EvaluationJob | None = None


@dataclass(frozen=True)
class EvaluationJob:
    """One measurement of a job metric: a Job of a name fixed by rollout, revision, analysis, metric and
    measurement index (so a restarted operator finds it), and its spec with the candidate filled in."""

    name: str
    metric: str
    spec: dict[str, Any] = field(compare=False)
    timeout_seconds: int = 900


# --- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnsureService:
    """Create the Service, or set its selector."""

    name: str
    selector: Selector


@dataclass(frozen=True)
class SetRoute:
    """Make the traffic router send this to the candidate (and the rest to stable)."""

    state: RouteState


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


@dataclass(frozen=True)
class RestartDeployment:
    """Replace a Deployment's pods one at a time (a restartedAt annotation on its pod template, as
    `kubectl rollout restart` does); `at` names the restart, so replaying it restarts nothing again."""

    revision: str
    at: str


@dataclass(frozen=True)
class EnsureEvaluationJob:
    """Create the evaluation Job if it is not there (owned by the rollout)."""

    job: EvaluationJob


@dataclass(frozen=True)
class DeleteEvaluationJob:
    """The measurement is taken: the Job and its pods go."""

    name: str


@dataclass(frozen=True)
class DeleteEvaluationJobs:
    """The candidate is out of analysis (rolled back, promoted, replaced): any evaluation Job left
    running by an analysis that ended for another reason goes too."""


@dataclass(frozen=True)
class EnsureComparator:
    """Run the shadow comparator for this candidate (a mirror step with compare): create it, or
    replace its pod when it compares another revision."""

    revision: str
    stable_version: str
    candidate_version: str


@dataclass(frozen=True)
class DeleteComparator:
    """The candidate left: its comparator (Deployment and Service) goes."""


@dataclass(frozen=True)
class FireHook:
    """Fire the retraining hook for a drift episode (a Job of a stable name, or a webhook POST)."""

    episode: str
    version: str
    reason: str
    kind: str = "ModelDrift"  # or ConceptDrift: the accuracy of the promoted model dropped


Action = (
    EnsureService
    | SetRoute
    | EnsureDeployment
    | ScaleDeployment
    | DeleteDeployment
    | RestartDeployment
    | FireHook
    | EnsureEvaluationJob
    | DeleteEvaluationJob
    | DeleteEvaluationJobs
    | EnsureComparator
    | DeleteComparator
)


@dataclass(frozen=True)
class EventRecord:
    type: str  # Normal or Warning, as Kubernetes Events
    reason: str
    message: str


@dataclass(frozen=True)
class Deadlines:
    """When the rollout must be looked at again, in seconds after the `now` that `decide` was given."""

    next: float | None = None  # the soonest anything falls due; None: nothing but the periodic resync
    urgent: float | None = None  # the soonest of what is not a background measurement (a pause ending, a
    # gate, a progress deadline): until then a busy operator may delay measurements

    @classmethod
    def at_once(cls) -> Deadlines:
        """Look again now: the previous pass left an observation (a hook outcome, a refusal) to decide on."""
        return cls(next=0.0, urgent=0.0)


@dataclass(frozen=True)
class Decision:
    actions: list[Action]
    status: ModelRolloutStatus
    events: list[EventRecord]
    deadlines: Deadlines = field(default_factory=Deadlines)
