"""Pure builders of the objects the operator owns: given the spec, return plain dicts."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from modelrollout import GROUP, KIND, VERSION
from modelrollout.api.models import ModelRolloutSpec
from modelrollout.vocabulary.names import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    REVISION_LABEL,
    ROLLOUT_LABEL,
    VERSION_LABEL,
    deployment_name,
)


@dataclass(frozen=True)
class Owner:
    """The ModelRollout that owns an object, for ownerReferences and names."""

    name: str
    namespace: str
    uid: str
    #: the rollout's shard labels (sharded operators), copied onto its Deployments and Services so
    #: that their watches can be sharded too; never onto pods, whose template would change on resharding
    shard_labels: tuple[tuple[str, str], ...] = ()

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def _labels(owner: Owner) -> dict[str, str]:
    return {ROLLOUT_LABEL: owner.name, MANAGED_BY_LABEL: MANAGED_BY}


def _inject_env(container: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    env = [item for item in container.get("env", []) if item.get("name") not in values]
    env.extend({"name": name, "value": value} for name, value in values.items())
    return {**container, "env": env}


def _inject_model_env(container: dict[str, Any], owner: Owner, spec: ModelRolloutSpec) -> dict[str, Any]:
    """The model server's and the evaluation Job's containers are told the same: which model, which rollout."""
    env = {
        "MODEL_NAME": spec.model.name,
        "MODEL_VERSION": spec.model.version,
        "MODEL_URI": spec.model.uri or "",
        "ROLLOUT_NAME": owner.name,
        "ROLLOUT_NAMESPACE": owner.namespace,
    }
    return _inject_env(container, env)


def deployment(owner: Owner, spec: ModelRolloutSpec, revision: str, replicas: int) -> dict[str, Any]:
    """The Deployment of one revision of the model server."""
    template = copy.deepcopy(spec.template)
    metadata = template.setdefault("metadata", {})
    pod_labels = {
        **metadata.get("labels", {}),
        **_labels(owner),
        REVISION_LABEL: revision,
        VERSION_LABEL: spec.model.version,
    }
    metadata["labels"] = pod_labels
    pod_spec = template.setdefault("spec", {})
    pod_spec["containers"] = [_inject_model_env(container, owner, spec) for container in pod_spec.get("containers", [])]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(owner.name, revision),
            "namespace": owner.namespace,
            "labels": {
                **_labels(owner),
                **dict(owner.shard_labels),
                REVISION_LABEL: revision,
                VERSION_LABEL: spec.model.version,
            },
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {ROLLOUT_LABEL: owner.name, REVISION_LABEL: revision}},
            "template": template,
        },
    }


def service(owner: Owner, spec: ModelRolloutSpec, name: str, selector: dict[str, str]) -> dict[str, Any]:
    """One of the rollout's Services; the engine decides which versions it selects."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": {**_labels(owner), **dict(owner.shard_labels)},
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "selector": selector,
            "ports": [
                {"name": "http", "port": spec.service.port, "targetPort": spec.service.target_port, "protocol": "TCP"}
            ],
        },
    }


EVALUATION_LABEL = f"{GROUP}/evaluation-of"


def evaluation_job(
    owner: Owner, spec: ModelRolloutSpec, name: str, job_spec: dict[str, Any], timeout: int
) -> dict[str, Any]:
    """The Job of one offline-evaluation measurement: the candidate's model in its env, a deadline,
    no retries unless asked. Its pods carry no rollout label: no Service of the rollout selects them."""
    body = copy.deepcopy(job_spec)
    body["activeDeadlineSeconds"] = timeout
    body.setdefault("backoffLimit", 0)
    template = body.setdefault("template", {})
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {**metadata.get("labels", {}), EVALUATION_LABEL: owner.name}
    pod_spec = template.setdefault("spec", {})
    pod_spec.setdefault("restartPolicy", "Never")
    pod_spec["containers"] = [_inject_model_env(container, owner, spec) for container in pod_spec.get("containers", [])]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": {EVALUATION_LABEL: owner.name, MANAGED_BY_LABEL: MANAGED_BY},
            "ownerReferences": [owner.reference()],
        },
        "spec": body,
    }
