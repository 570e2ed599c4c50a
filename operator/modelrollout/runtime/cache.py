"""The operator's view of the cluster: what the watches told, corrected by what our own writes answered.

kopf's watches feed the ModelRollout bodies and the Deployment and Service indexes, but they learn
of our writes only when the watch event arrives. Deciding from them right after a write would
replay it (create a Deployment again: a 409 and a read; patch the same replicas again; decide from
the status before the one just written). So the answer of each write is kept until the watch shows
something at least as new: its resourceVersion says which view is fresher.

The parsed forms of what rarely changes are kept too, one entry per live rollout, next to the raw
input they were parsed from: a pass reuses them while the input is the same (a dict comparison).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from modelrollout.api.models import ModelRolloutSpec, ModelRolloutStatus
from modelrollout.api.validation import InvalidSpec, parse_or_refusal
from modelrollout.engine.types import DeploymentState, Selector
from modelrollout.vocabulary.names import REVISION_LABEL, VERSION_LABEL

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # a rollout's (namespace, name)
Kept = TypeVar("Kept")


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


def deployment_states(items: list[DeploymentState]) -> dict[str, DeploymentState]:
    return {state.revision: state for state in items}


def fresher(body: Mapping[str, Any], written: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The fresher of kopf's view of a ModelRollout and the answer to our last status write.

    resourceVersions are opaque by contract but etcd's are integers; if they are not, trust the watch.
    """
    if written is None:
        return body
    try:
        seen = int(body.get("metadata", {}).get("resourceVersion", "0"))
        ours = int(written.get("metadata", {}).get("resourceVersion", "0"))
    except ValueError:
        return body
    return written if ours > seen else body


class OwnWrites:
    """What our own writes of Deployments and Services answered, per rollout, until the watch-fed
    indexes catch up; merged over the indexes, whichever view is newer wins."""

    def __init__(self) -> None:
        self.deployments: dict[Key, dict[str, DeploymentState]] = {}
        self.services: dict[Key, dict[str, tuple[int, Selector]]] = {}

    def deployment(self, key: Key, revision: str, obj: dict[str, Any]) -> None:
        self.deployments.setdefault(key, {})[revision] = deployment_state(obj, revision)

    def is_answer(self, namespace: str, rollout: str, seen: DeploymentState) -> bool:
        """Whether a watch event shows exactly what one of our writes answered (its echo)."""
        return self.deployments.get((namespace, rollout), {}).get(seen.revision) == seen

    def deleted(self, key: Key, revision: str) -> None:
        self.deployments.get(key, {}).pop(revision, None)

    def service(self, key: Key, name: str, obj: dict[str, Any]) -> None:
        selector: Selector = tuple(sorted((obj.get("spec", {}).get("selector") or {}).items()))
        self.services.setdefault(key, {})[name] = (resource_version(obj), selector)

    def merged_deployments(self, key: Key, indexed: dict[str, DeploymentState]) -> dict[str, DeploymentState]:
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

    def merged_services(self, key: Key, indexed: dict[str, tuple[int, Selector]]) -> dict[str, Selector]:
        merged = {name: selector for name, (_, selector) in indexed.items()}
        for name, (version, selector) in list(self.services.get(key, {}).items()):
            seen = indexed.get(name)
            if seen is None or version > seen[0]:
                merged[name] = selector
            else:
                self.services[key].pop(name, None)
        return merged

    def forget(self, key: Key) -> None:
        self.deployments.pop(key, None)
        self.services.pop(key, None)


class _KeptPerRollout(Generic[Kept]):
    """Per live rollout, a value worked out from a raw input, kept with that input: the next pass
    reuses the value while the input is the same (a dict comparison), and deletion forgets it."""

    def __init__(self) -> None:
        self._kept: dict[Key, tuple[object, Kept]] = {}

    def _get(self, key: Key, raw: object) -> Kept | None:
        kept = self._kept.get(key)
        return kept[1] if kept is not None and kept[0] == raw else None

    def _keep(self, key: Key, raw: object, value: Kept) -> None:
        self._kept[key] = (raw, value)

    def forget(self, key: Key) -> None:
        self._kept.pop(key, None)

    def __len__(self) -> int:
        return len(self._kept)


def read_status(raw: Mapping[str, Any] | None) -> ModelRolloutStatus:
    """The status as stored; one the operator cannot read (hand-edited) starts afresh, logged."""
    try:
        return ModelRolloutStatus.model_validate(dict(raw or {}))
    except ValidationError as error:
        logger.warning("status could not be read, starting from an empty one: %s", error)
        return ModelRolloutStatus()


class ParsedStatuses(_KeptPerRollout[ModelRolloutStatus]):
    """The status each rollout's last pass decided, with the dict it was written or held as.

    The next pass starts from the stored dict, which is that same dict unless someone else wrote
    status; parsing it again with pydantic was a third of the operator's CPU at 10,000 rollouts,
    where most passes are background measurements. `decide` works on a copy, so the parsed status
    is shared, never changed."""

    def read(self, key: Key, raw: dict[str, Any]) -> ModelRolloutStatus:
        kept = self._get(key, raw)
        return kept if kept is not None else read_status(raw)

    def remember(self, key: Key, status: ModelRolloutStatus) -> None:
        self._keep(key, status.wire(), status)


class ParsedSpecs(_KeptPerRollout[ModelRolloutSpec | InvalidSpec]):
    """Each rollout's spec as last parsed (or refused), with the raw spec and templates it came from.

    A rollout keeps its spec for many passes; comparing dicts is much cheaper than building a
    cache key from them, and one entry per live rollout cannot be evicted by the others (a shared
    4,096-entry cache missed at 10,000 rollouts)."""

    def read(
        self, key: Key, raw: dict[str, Any], templates: dict[str, dict[str, Any]]
    ) -> ModelRolloutSpec | InvalidSpec:
        kept = self._get(key, (raw, templates))
        if kept is not None:
            return kept
        parsed = parse_or_refusal(raw, templates)
        # A copy: what is compared next time must be what was parsed, whoever holds the dicts.
        self._keep(key, copy.deepcopy((raw, templates)), parsed)
        return parsed
