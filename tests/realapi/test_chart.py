"""The Helm chart's rendered objects on the real API server, for the installs tests/chart judges
(defaults, namespaced, everything, sharded): `kubectl apply --dry-run=server --validate=strict` of every
object into its namespace, in Helm's order (CRDs in templates first and for real, hooks last)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest
import yaml

from tests.chart.conftest import CHART, NAMESPACE, RELEASE, SCENARIOS
from tests.realapi.conftest import Document, Kubectl, install_crds, remove_crds, server_warnings
from tests.support.control_plane import RealControlPlane

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is needed to render the chart")


@pytest.fixture(scope="module")
def rendered() -> Iterator[Callable[[dict[str, Any]], list[Document]]]:
    with helm.Chart.load(CHART) as chart:

        def render(values: dict[str, Any]) -> list[Document]:
            manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            return [
                doc
                for path, text in sorted(manifests.items())
                if path.endswith((".yaml", ".yml"))
                for doc in yaml.safe_load_all(text)
                if doc
            ]

        yield render


def is_hook(doc: Document) -> bool:
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.usefixtures("third_party_crds")
def test_every_rendered_object_is_accepted(
    scenario: str,
    rendered: Callable[[dict[str, Any]], list[Document]],
    kubectl: Kubectl,
    real_control_plane: RealControlPlane,
    admin: kubernetes.client.ApiClient,
    make_namespace: Callable[[str], str],
) -> None:
    objects = rendered(SCENARIOS[scenario])
    for name in sorted({NAMESPACE, *(doc["metadata"].get("namespace") or NAMESPACE for doc in objects)}):
        make_namespace(name)
    # CRDs among the templates (kopf's peering CRDs) are created for real before the rest, as Helm
    # does; the hook objects of those kinds can only be checked once they are served.
    crds = [doc for doc in objects if doc["kind"] == "CustomResourceDefinition"]
    created = install_crds(admin, crds)
    try:
        for crd in crds:
            assert kubectl("get", "crd", crd["metadata"]["name"]).returncode == 0
        rest = [doc for doc in objects if doc["kind"] != "CustomResourceDefinition"]
        ordered = [doc for doc in rest if not is_hook(doc)] + [doc for doc in rest if is_hook(doc)]
        done = kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=yaml.safe_dump_all(ordered))
        assert done.returncode == 0, f"{scenario}: {done.stderr}"
        assert server_warnings(done.stderr) == [], scenario
        accepted = [line for line in done.stdout.splitlines() if line.endswith("(server dry run)")]
        assert len(accepted) == len(ordered), done.stdout
        kinds = {doc["kind"] for doc in ordered}
        if scenario == "everything":
            assert {"ServiceMonitor", "PrometheusRule", "ClusterKopfPeering", "NetworkPolicy"} <= kinds
    finally:
        remove_crds(admin, created)
