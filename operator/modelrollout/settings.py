"""The operator's options, from flags or environment variables (MODELROLLOUT_*)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def in_cluster_namespace() -> str | None:
    """The namespace of the pod the operator runs in, as its service account's token volume says."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: list[str] = field(default_factory=list)  # empty: every namespace
    prometheus_url: str | None = None
    prometheus_timeout: float = 10.0
    prometheus_batch_seconds: float = 0.05
    kubeconfig: str | None = None
    peering: str | None = None
    peering_lifetime: int = 60
    resync_seconds: float = 60.0
    quiet_write_seconds: float = 60.0
    api_answer_target_seconds: float = 0.25  # the pass limit's target (runtime.pacing.AnswerTimeLimit)
    operator_namespace: str | None = None  # where the operator-wide notification ConfigMap/Secret are
    log_format: str = "text"
    metrics_port: int | None = 8080
    metrics_host: str = "0.0.0.0"
    liveness_endpoint: str | None = "http://0.0.0.0:8081/healthz"
