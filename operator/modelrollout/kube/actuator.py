"""Carry out the engine's actions against the API: idempotent, so a replayed pass changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelrollout.api.models import ModelRolloutSpec
from modelrollout.engine.types import (
    Action,
    DeleteDeployment,
    DeploymentState,
    EnsureDeployment,
    EnsureService,
    FireHook,
    HookResult,
    ScaleDeployment,
    Selector,
    SetRoute,
)
from modelrollout.kube import manifests
from modelrollout.kube.api import DEPLOYMENTS, SERVICES, KubeApi
from modelrollout.kube.hooks import HookRunner
from modelrollout.kube.routing import RouteTarget, apply_route
from modelrollout.vocabulary.names import REVISION_LABEL, VERSION_LABEL, deployment_name


def resource_version(obj: Mapping[str, Any]) -> int:
    """An object's resourceVersion as a number (etcd's are; 0 if a server's are not)."""
    try:
        return int(obj.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def deployment_state(obj: Mapping[str, Any], revision: str | None = None) -> DeploymentState:
    """What the engine needs of a Deployment object (its revision from its label unless given)."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return DeploymentState(
        revision=revision if revision is not None else labels.get(REVISION_LABEL, ""),
        version=labels.get(VERSION_LABEL, ""),
        replicas=int(obj.get("spec", {}).get("replicas", 1)),  # the API server defaults it to 1
        ready_replicas=int((obj.get("status") or {}).get("readyReplicas") or 0),
        resource_version=resource_version(obj),
    )


class WrittenObjects:
    """What our own writes answered, per rollout, until the watch-fed indexes catch up.

    kopf's indexes learn of our writes only when the watch event arrives; deciding from them right
    after a write would create a Deployment again (a 409 and a read) or patch the same replicas
    again. The answer of the write carries the object's new resourceVersion: whichever of the two
    views is newer wins.
    """

    def __init__(self) -> None:
        self.deployments: dict[tuple[str, str], dict[str, DeploymentState]] = {}
        self.services: dict[tuple[str, str], dict[str, tuple[int, Selector]]] = {}

    def deployment(self, key: tuple[str, str], revision: str, obj: dict[str, Any]) -> None:
        self.deployments.setdefault(key, {})[revision] = deployment_state(obj, revision)

    def is_answer(self, namespace: str, rollout: str, seen: DeploymentState) -> bool:
        """Whether a watch event shows exactly what one of our writes answered (its echo)."""
        return self.deployments.get((namespace, rollout), {}).get(seen.revision) == seen

    def deleted(self, key: tuple[str, str], revision: str) -> None:
        self.deployments.get(key, {}).pop(revision, None)

    def service(self, key: tuple[str, str], name: str, obj: dict[str, Any]) -> None:
        selector: Selector = tuple(sorted((obj.get("spec", {}).get("selector") or {}).items()))
        self.services.setdefault(key, {})[name] = (resource_version(obj), selector)

    def merged_deployments(
        self, key: tuple[str, str], indexed: dict[str, DeploymentState]
    ) -> dict[str, DeploymentState]:
        merged = dict(indexed)
        for revision, written in list(self.deployments.get(key, {}).items()):
            seen = indexed.get(revision)
            if seen is None or written.resource_version > seen.resource_version:
                # Readiness comes from the cluster; our write only knows what it asked for.
                ready = seen.ready_replicas if seen is not None else written.ready_replicas
                merged[revision] = DeploymentState(
                    revision, written.version, written.replicas, ready, written.resource_version
                )
            else:
                self.deployments[key].pop(revision, None)  # the index caught up
        return merged

    def merged_services(self, key: tuple[str, str], indexed: dict[str, tuple[int, Selector]]) -> dict[str, Selector]:
        merged = {name: selector for name, (_, selector) in indexed.items()}
        for name, (version, selector) in list(self.services.get(key, {}).items()):
            seen = indexed.get(name)
            if seen is None or version > seen[0]:
                merged[name] = selector
            else:
                self.services[key].pop(name, None)
        return merged

    def forget(self, key: tuple[str, str]) -> None:
        self.deployments.pop(key, None)
        self.services.pop(key, None)


class Actuator:
    def __init__(
        self,
        api: KubeApi,
        owner: manifests.Owner,
        spec: ModelRolloutSpec,
        route: RouteTarget | None,
        hooks: HookRunner | None = None,
        written: WrittenObjects | None = None,
    ):
        self._api = api
        self._owner = owner
        self._spec = spec
        self._route = route
        self._hooks = hooks or HookRunner()
        self._written = written or WrittenObjects()
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
            elif isinstance(action, FireHook):
                hook_results.append(await self._hooks.fire(self._api, self._owner, self._spec, action))
        return hook_results

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
