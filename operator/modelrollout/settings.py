"""The operator's options, from flags or environment variables (MODELROLLOUT_*)."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    log_format: str = "text"
    metrics_port: int | None = 8080
    metrics_host: str = "0.0.0.0"
    liveness_endpoint: str | None = "http://0.0.0.0:8081/healthz"
