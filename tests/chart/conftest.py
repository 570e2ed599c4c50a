"""Render the Helm chart offline with helm-python-sdk (Helm v4's Go SDK; no helm binary, no cluster)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

try:
    import helm_python as helm
except ImportError:  # the test modules that need it skip themselves (pytest.importorskip)
    helm = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelrollout-operator"
RELEASE = "modelrollout"
NAMESPACE = "modelrollout-system"

# The installs the tests judge.
DEFAULTS: dict[str, Any] = {}
NAMESPACED: dict[str, Any] = {"watchNamespaces": ["team-a", "team-b"]}
SHARDED: dict[str, Any] = {"shards": 3}
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
EVERYTHING: dict[str, Any] = {
    "replicaCount": 2,
    "leaderElection": {"enabled": True},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}},
    "prometheusRule": {"enabled": True},
    "dashboard": {"enabled": True},
    "networkPolicy": {
        "enabled": True,
        "ingress": {"from": [MONITORING]},
        "egress": {
            "restrict": True,
            "apiServer": {"cidrs": ["10.96.0.1/32", "172.18.0.2/32"]},
            "prometheus": {"to": [MONITORING]},
        },
    },
}
SCENARIOS = {"defaults": DEFAULTS, "namespaced": NAMESPACED, "everything": EVERYTHING, "sharded": SHARDED}

Render = Callable[[dict[str, Any]], list[dict[str, Any]]]


@pytest.fixture(scope="session")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: Any) -> Render:
    """Values in, the rendered Kubernetes objects out (templates only: Helm installs crds/ apart)."""
    cache: dict[str, list[dict[str, Any]]] = {}

    def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
        key = yaml.safe_dump(values, sort_keys=True)
        if key not in cache:
            manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            cache[key] = [
                document
                for path, text in sorted(manifests.items())
                if path.endswith((".yaml", ".yml"))
                for document in yaml.safe_load_all(text)
                if document
            ]
        return cache[key]

    return _render


def find(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = find(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
