"""A pure stand-in for the cluster, to drive the engine pass by pass in unit tests.

It applies the engine's actions to a dict of Deployments and, unless told otherwise, makes every
requested replica ready by the next pass, the way a healthy cluster would.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import ModelRolloutStatus, Phase
from modelrollout.engine.machine import decide, needs
from modelrollout.engine.types import (
    Command,
    CommandAction,
    Decision,
    DeleteDeployment,
    DeploymentState,
    EnsureDeployment,
    EnsureService,
    EventRecord,
    HookResult,
    Needs,
    Observations,
    RolloutRef,
    ScaleDeployment,
    Selector,
    SetRoute,
)
from modelrollout.vocabulary.routes import RouteState, RouteView

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
CONTAINER = {"name": "server", "image": "registry.example/fraud-scorer:serve"}


def make_spec(version: str = "1.0.0", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": 4,
        "model": {"name": "fraud-scorer", "version": version},
        "template": {"spec": {"containers": [dict(CONTAINER)]}},
        "strategy": {"canary": {"steps": [{"setWeight": 25}, {"pause": {"duration": "30s"}}, {"setWeight": 50}]}},
        "analysis": {
            "interval": "10s",
            "metrics": [
                {
                    "name": "error-rate",
                    "prometheus": {"query": 'error_rate{version="{{candidate}}"}'},
                    "threshold": {"max": 0.05},
                }
            ],
        },
    }
    spec.update(overrides)
    return spec


@dataclass
class World:
    spec: dict[str, Any]
    status: ModelRolloutStatus = field(default_factory=ModelRolloutStatus)
    now: datetime = T0
    generation: int = 1
    deployments: dict[str, DeploymentState] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    services: dict[str, Selector] = field(default_factory=dict)
    route: RouteState | None = None  # None: no traffic router
    unready: set[str] = field(default_factory=set)
    metric_values: dict[str, Observation] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    pending_command: Command | None = None
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    command_counter: int = 0
    needed: list[Needs] = field(default_factory=list)  # what each pass asked to be observed
    # Observations a pass's actions gave, for the next pass (as the reconciler carries them).
    hook_result: HookResult | None = None
    route_refusal: str | None = None

    def ref(self) -> RolloutRef:
        return RolloutRef("fraud-scorer", "ml", self.generation, copy.deepcopy(self.spec), dict(self.templates))

    def change_spec(self, **changes: Any) -> None:
        self.spec = {**self.spec, **changes}
        self.generation += 1

    def command(self, action: CommandAction) -> None:
        self.command_counter += 1
        self.pending_command = Command(id=f"cmd-{self.command_counter}", action=action)

    def observations(self) -> Observations:
        measurements = {}
        wanted = needs(self.ref(), self.status, self.now, self.deployments)
        self.needed.append(wanted)
        for request in wanted.measurements:
            self.queries.extend(request.queries.values())
            outcome = self.metric_values.get(request.metric, Observation(value=0.0))
            measurements[(request.kind, request.metric)] = outcome
        return Observations(
            deployments=dict(self.deployments),
            services=dict(self.services),
            route=RouteView(state=self.route) if self.route is not None else None,
            measurements=measurements,
            command=self.pending_command,
            hook_result=self.hook_result,
            route_refusal=self.route_refusal,
        )

    def step(self, seconds: float = 0.0) -> Decision:
        self.now += timedelta(seconds=seconds)
        decision = decide(self.ref(), self.status, self.observations(), self.now)
        self.hook_result = self.route_refusal = None  # observed once, by the pass after the actions
        self._apply(decision)
        # What Kubernetes stores is JSON: the next pass reads the status back from the wire.
        self.status = ModelRolloutStatus.model_validate(decision.status.wire())
        self.events.extend(decision.events)
        self.decisions.append(decision)
        return decision

    def _apply(self, decision: Decision) -> None:
        version = self.spec["model"]["version"]
        for action in decision.actions:
            if isinstance(action, EnsureService):
                self.services[action.name] = action.selector
            elif isinstance(action, SetRoute):
                self.route = action.state
            elif isinstance(action, EnsureDeployment):
                self.versions.setdefault(action.revision, version)
                self._set(action.revision, action.replicas)
            elif isinstance(action, ScaleDeployment):
                if action.revision in self.deployments:
                    self._set(action.revision, action.replicas)
            elif isinstance(action, DeleteDeployment):
                self.deployments.pop(action.revision, None)

    def _set(self, revision: str, replicas: int) -> None:
        ready = 0 if revision in self.unready else replicas
        self.deployments[revision] = DeploymentState(revision, self.versions[revision], replicas, ready)

    def run(self, until: Phase | set[Phase], seconds: float = 1.0, passes: int = 200) -> None:
        wanted = {until} if isinstance(until, Phase) else until
        for _ in range(passes):
            self.step(seconds)
            if self.status.phase in wanted:
                return
        raise AssertionError(f"never reached {wanted}; phase {self.status.phase}: {self.status.message}")

    def replicas(self, version: str) -> int:
        return sum(d.replicas for d in self.deployments.values() if d.version == version)

    def reasons(self) -> list[str]:
        return [event.reason for event in self.events]
