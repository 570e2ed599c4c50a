"""Names and labels of what the operator creates; kept in one place so every reader agrees."""

from __future__ import annotations

from modelrollout import GROUP

ROLLOUT_LABEL = f"{GROUP}/rollout"
REVISION_LABEL = f"{GROUP}/revision"
VERSION_LABEL = f"{GROUP}/version"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "modelrollout"
COMMAND_ANNOTATION = f"{GROUP}/command"
# On a Deployment's pod template: when a person asked for its pods to be replaced (`modelrollout restart`).
RESTARTED_AT_ANNOTATION = f"{GROUP}/restartedAt"
FINALIZER = f"{GROUP}/finalizer"


def deployment_name(rollout: str, revision: str) -> str:
    return f"{rollout}-{revision}"


def service_name(rollout: str) -> str:
    return rollout


def selector_for(rollout: str) -> dict[str, str]:
    return {ROLLOUT_LABEL: rollout}


def label_selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def stable_service_name(rollout: str) -> str:
    """The Service a user's HTTPRoute or VirtualService sends stable traffic to."""
    return f"{rollout}-stable"


def candidate_service_name(rollout: str, blue_green: bool = False) -> str:
    return f"{rollout}-preview" if blue_green else f"{rollout}-canary"


def comparator_name(rollout: str) -> str:
    """The shadow comparator's Deployment and Service (a mirror step with compare)."""
    return f"{rollout}-comparator"


#: On every request the shadow comparator sends (to stable and candidate): shadow work, never a caller's;
#: a comparator refuses a request that carries it, so a route that mirrors its calls cannot loop.
SHADOW_HEADER = "X-Modelrollout-Shadow"

#: Headers that belong to one connection, not to the request (RFC 9110 7.6.1), plus the ones a proxy
#: recomputes for the body it sends: neither the comparator nor the sandbox's data plane forwards them.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)
