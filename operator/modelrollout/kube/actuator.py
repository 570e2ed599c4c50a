"""Carry out the engine's actions against the API: idempotent, so a replayed pass changes nothing."""

from __future__ import annotations

from typing import Any, Protocol

from modelrollout.api.models import ModelRolloutSpec
from modelrollout.engine.types import (
    Action,
    DeleteComparator,
    DeleteDeployment,
    DeleteEvaluationJob,
    DeleteEvaluationJobs,
    DeploymentState,
    EnsureComparator,
    EnsureDeployment,
    EnsureEvaluationJob,
    EnsureService,
    FireHook,
    HookResult,
    RestartDeployment,
    ScaleDeployment,
    SetRoute,
)
from modelrollout.kube import comparator, manifests
from modelrollout.kube.api import DEPLOYMENTS, JOBS, SERVICES, KubeApi
from modelrollout.kube.hooks import HookRunner
from modelrollout.kube.routing import RouteTarget, apply_route
from modelrollout.vocabulary.names import RESTARTED_AT_ANNOTATION, comparator_name, deployment_name


class WriteLog(Protocol):
    """Where the answers of our writes go (`runtime.cache.OwnWrites`), so the next pass sees them
    before the watch does."""

    def deployment(self, key: tuple[str, str], revision: str, obj: dict[str, Any]) -> None: ...
    def deleted(self, key: tuple[str, str], revision: str) -> None: ...
    def service(self, key: tuple[str, str], name: str, obj: dict[str, Any]) -> None: ...


class _Forget:
    """A log that keeps nothing: for an actuator whose caller reads the cluster afresh."""

    def deployment(self, key: tuple[str, str], revision: str, obj: dict[str, Any]) -> None:
        return None

    def deleted(self, key: tuple[str, str], revision: str) -> None:
        return None

    def service(self, key: tuple[str, str], name: str, obj: dict[str, Any]) -> None:
        return None


class Actuator:
    def __init__(
        self,
        api: KubeApi,
        owner: manifests.Owner,
        spec: ModelRolloutSpec,
        route: RouteTarget | None,
        hooks: HookRunner | None = None,
        written: WriteLog | None = None,
    ):
        self._api = api
        self._owner = owner
        self._spec = spec
        self._route = route
        self._hooks = hooks or HookRunner()
        self._written: WriteLog = written or _Forget()
        self._key = (owner.namespace, owner.name)

    async def apply(self, actions: list[Action], deployments: dict[str, DeploymentState]) -> list[HookResult]:
        """Carry out the actions in order; return what the hooks fired in this pass gave."""
        hook_results: list[HookResult] = []
        for action in actions:
            if isinstance(action, EnsureService):
                await self._ensure_service(action.name, dict(action.selector))
            elif isinstance(action, SetRoute):
                if self._route is not None:
                    await apply_route(self._api, self._route, action.state)
            elif isinstance(action, EnsureDeployment):
                await self._ensure(action.revision, action.replicas, deployments.get(action.revision))
            elif isinstance(action, ScaleDeployment):
                await self._scale(action.revision, action.replicas, deployments.get(action.revision))
            elif isinstance(action, DeleteDeployment):
                await self._api.delete(DEPLOYMENTS, self._owner.namespace, self._name(action.revision))
                self._written.deleted(self._key, action.revision)
            elif isinstance(action, RestartDeployment):
                await self._restart(action)
            elif isinstance(action, FireHook):
                hook_results.append(await self._hooks.fire(self._api, self._owner, self._spec, action))
            elif isinstance(action, EnsureEvaluationJob):
                job = action.job
                body = manifests.evaluation_job(self._owner, self._spec, job.name, job.spec, job.timeout_seconds)
                await self._api.create_or_get(JOBS, self._owner.namespace, body)
            elif isinstance(action, DeleteEvaluationJob):
                await self._api.delete(JOBS, self._owner.namespace, action.name)
            elif isinstance(action, DeleteEvaluationJobs):
                selector = f"{manifests.EVALUATION_LABEL}={self._owner.name}"
                for left in await self._api.list(JOBS, self._owner.namespace, label_selector=selector):
                    await self._api.delete(JOBS, self._owner.namespace, left["metadata"]["name"])
            elif isinstance(action, EnsureComparator):
                await self._ensure_comparator(action)
            elif isinstance(action, DeleteComparator):
                await self._api.delete(DEPLOYMENTS, self._owner.namespace, comparator_name(self._owner.name))
                await self._api.delete(SERVICES, self._owner.namespace, comparator_name(self._owner.name))
        return hook_results

    async def _ensure_comparator(self, action: EnsureComparator) -> None:
        settings = self._spec.shadow_comparison()
        if settings is None:
            return
        body = comparator.deployment(
            self._owner,
            self._spec,
            settings,
            revision=action.revision,
            stable_version=action.stable_version,
            candidate_version=action.candidate_version,
        )
        namespace, name = self._owner.namespace, comparator_name(self._owner.name)
        # Asked for on every pass of a shadow: one read when it is there already (the usual case).
        existing = await self._api.get(DEPLOYMENTS, namespace, name) or await self._api.create_or_get(
            DEPLOYMENTS, namespace, body
        )
        annotations = (existing.get("metadata") or {}).get("annotations") or {}
        if annotations.get(comparator.FOR_ANNOTATION) != action.revision:
            # Another candidate's comparator: the same object, told the new versions (a new pod).
            metadata = {"annotations": body["metadata"]["annotations"]}
            await self._api.merge_patch(DEPLOYMENTS, namespace, name, {"metadata": metadata, "spec": body["spec"]})
        if await self._api.get(SERVICES, namespace, name) is None:
            await self._api.create_or_get(SERVICES, namespace, comparator.service(self._owner, self._spec))

    async def _ensure_service(self, name: str, selector: dict[str, str]) -> None:
        body = manifests.service(self._owner, self._spec, name, selector)
        existing = await self._api.create_or_get(SERVICES, self._owner.namespace, body)
        current = existing.get("spec", {}).get("selector") or {}
        if current != selector:
            # A merge patch merges maps: keys we no longer select on must be nulled explicitly.
            patch = {key: None for key in current if key not in selector} | selector
            existing = await self._api.merge_patch(SERVICES, self._owner.namespace, name, {"spec": {"selector": patch}})
        self._written.service(self._key, name, existing)

    def _name(self, revision: str) -> str:
        return deployment_name(self._owner.name, revision)

    async def _ensure(self, revision: str, replicas: int, known: DeploymentState | None) -> None:
        if known is not None:
            await self._scale(revision, replicas, known)
            return
        body = manifests.deployment(self._owner, self._spec, revision, replicas)
        existing = await self._api.create_or_get(DEPLOYMENTS, self._owner.namespace, body)
        self._written.deployment(self._key, revision, existing)
        if existing.get("spec", {}).get("replicas") != replicas:
            await self._scale(revision, replicas, None)

    async def _scale(self, revision: str, replicas: int, known: DeploymentState | None) -> None:
        if known is not None and known.replicas == replicas:
            return
        answer = await self._api.merge_patch(
            DEPLOYMENTS, self._owner.namespace, self._name(revision), {"spec": {"replicas": replicas}}
        )
        self._written.deployment(self._key, revision, answer)

    async def _restart(self, action: RestartDeployment) -> None:
        """New pods one at a time, as `kubectl rollout restart` does: a changed pod template annotation
        makes the Deployment replace its pods; a surge of one with none unavailable keeps every
        ready pod serving until its replacement is ready. The same `at` again changes nothing."""
        answer = await self._api.merge_patch(
            DEPLOYMENTS,
            self._owner.namespace,
            self._name(action.revision),
            {
                "spec": {
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                    "template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: action.at}}},
                }
            },
        )
        self._written.deployment(self._key, action.revision, answer)
