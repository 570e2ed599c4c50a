"""The shadow comparator's Deployment and Service (pure builders), as the operator deploys them.

One per rollout whose mirror steps ask for `compare`, named `<rollout>-comparator`, owned by the
ModelRollout (garbage-collected with it) and deleted when the candidate leaves analysis. Its labels
are its own (`modelrollout.io/comparator`), never the rollout's: no Service of the rollout selects its
pod, and the operator's Deployment index does not take it for a model version.

The image is the operator's own (`modelrollout comparator`): `$MODELROLLOUT_COMPARATOR_IMAGE` (the Helm
chart sets it to the operator's image), else the operator image of this version.
"""

from __future__ import annotations

import os
from typing import Any

from modelrollout import GROUP, __version__
from modelrollout.api.models import ModelRolloutSpec, ShadowComparison
from modelrollout.kube.manifests import Owner
from modelrollout.vocabulary.names import candidate_service_name, comparator_name, stable_service_name

COMPARATOR_LABEL = f"{GROUP}/comparator"
COMPONENT_LABEL = "app.kubernetes.io/component"
COMPONENT = "comparator"
#: On the Deployment: the candidate revision it compares, so a new candidate replaces its pod.
FOR_ANNOTATION = f"{GROUP}/comparator-for"
IMAGE_ENV = "MODELROLLOUT_COMPARATOR_IMAGE"
DEFAULT_IMAGE = f"ghcr.io/modelrollout/modelrollout-operator:{__version__}"
PORT = 8080


def comparator_image() -> str:
    return os.environ.get(IMAGE_ENV, "").strip() or DEFAULT_IMAGE


def labels(rollout: str) -> dict[str, str]:
    return {COMPARATOR_LABEL: rollout, COMPONENT_LABEL: COMPONENT, "app.kubernetes.io/part-of": "modelrollout"}


def service_url(service: str, namespace: str, port: int) -> str:
    """A Service's in-cluster URL (the sandbox's kubelet maps it to its data plane, as DNS would)."""
    return f"http://{service}.{namespace}.svc:{port}"


def comparator_env(
    owner: Owner, spec: ModelRolloutSpec, settings: ShadowComparison, stable_version: str, candidate_version: str
) -> dict[str, str]:
    port = spec.service.port
    return {
        "COMPARATOR_STABLE_URL": service_url(stable_service_name(owner.name), owner.namespace, port),
        "COMPARATOR_CANDIDATE_URL": service_url(candidate_service_name(owner.name), owner.namespace, port),
        "COMPARATOR_STABLE_SOURCE": settings.stable_answers,
        "COMPARATOR_REQUEST_ID_HEADER": settings.request_id_header,
        "COMPARATOR_CLASS_FIELD": settings.class_field,
        "COMPARATOR_SCORE_FIELD": settings.score_field,
        "COMPARATOR_JOIN_TTL_SECONDS": str(settings.join_ttl_seconds),
        "ROLLOUT_NAME": owner.name,
        "ROLLOUT_NAMESPACE": owner.namespace,
        "MODEL_NAME": spec.model.name,
        "STABLE_VERSION": stable_version,
        "CANDIDATE_VERSION": candidate_version,
        "PORT": str(PORT),
    }


def deployment(
    owner: Owner,
    spec: ModelRolloutSpec,
    settings: ShadowComparison,
    *,
    revision: str,
    stable_version: str,
    candidate_version: str,
) -> dict[str, Any]:
    env = comparator_env(owner, spec, settings, stable_version, candidate_version)
    container = {
        "name": COMPONENT,
        "image": comparator_image(),
        "args": ["comparator"],
        "ports": [{"name": "http", "containerPort": PORT}],
        "env": [{"name": name, "value": value} for name, value in env.items()],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": PORT}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": comparator_name(owner.name),
            "namespace": owner.namespace,
            "labels": labels(owner.name),
            "annotations": {FOR_ANNOTATION: revision},
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {COMPARATOR_LABEL: owner.name}},
            "template": {
                "metadata": {"labels": labels(owner.name), "annotations": {FOR_ANNOTATION: revision}},
                "spec": {"containers": [container], "automountServiceAccountToken": False},
            },
        },
    }


def service(owner: Owner, spec: ModelRolloutSpec) -> dict[str, Any]:
    """On the port of the rollout's Services: a route's mirror copies the stable backendRef's port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": comparator_name(owner.name),
            "namespace": owner.namespace,
            "labels": labels(owner.name),
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "selector": {COMPARATOR_LABEL: owner.name},
            "ports": [{"name": "http", "port": spec.service.port, "targetPort": PORT}],
        },
    }
