"""Every manifest in examples/ is one the operator accepts as it stands.

* each ModelRollout passes the CRD's structural schema with nothing pruned (what `kubectl apply`
  against a real API server checks) and `parse_spec` (what the operator checks);
* each HTTPRoute / VirtualService is the route of a ModelRollout in the same file, and its router
  finds the rule to `<name>-stable` in it (`observe`), and can carry every step's routing
  (`desired`, then `verify` and `observe` on the result) and go back to 100% stable (`restore`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrollout.api.models import ModelRolloutSpec
from modelrollout.api.validation import parse_spec
from modelrollout.engine.canary import route_at
from modelrollout.traffic.base import RouteError
from modelrollout.traffic.factory import router_for
from modelrollout.traffic.gateway_api import GatewayApiRouter
from modelrollout.traffic.istio import IstioRouter
from modelrollout.vocabulary.routes import RouteState
from modelrollout_devkit.emulator.schema import admit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CRD = ROOT / "crds" / "modelrollouts.modelrollout.io.yaml"
ROUTE_KINDS = {"HTTPRoute": "gatewayAPI", "VirtualService": "istio"}

Document = dict[str, Any]


def documents(path: Path) -> list[Document]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def rollouts(path: Path) -> list[Document]:
    return [doc for doc in documents(path) if doc.get("kind") == "ModelRollout"]


def routes(path: Path) -> list[Document]:
    return [doc for doc in documents(path) if doc.get("kind") in ROUTE_KINDS]


def crd_schema() -> Document:
    crd = yaml.safe_load(CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def test_there_are_examples() -> None:
    names = {path.name for path in EXAMPLES}
    assert {
        "canary.yaml",
        "bluegreen.yaml",
        "shadow-then-canary-gateway-api.yaml",
        "canary-istio.yaml",
        "header-route.yaml",
        "manual-gates.yaml",
        "offline-evaluation.yaml",
        "shadow-agreement.yaml",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_document_is_known(path: Path) -> None:
    for doc in documents(path):
        assert doc.get("kind") in {"ModelRollout", *ROUTE_KINDS}, f"{path.name}: unexpected {doc.get('kind')}"
        assert doc.get("metadata", {}).get("name"), f"{path.name}: a {doc['kind']} without a name"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_rollouts_pass_the_crd_schema_and_the_validator(path: Path) -> None:
    found = rollouts(path)
    assert found, f"{path.name} holds no ModelRollout"
    schema = crd_schema()
    for doc in found:
        assert doc["apiVersion"] == "modelrollout.io/v1alpha1"
        outcome = admit(doc, schema)
        assert not outcome.causes, f"{path.name}: the API server would refuse it: {outcome.causes}"
        assert not outcome.pruned, f"{path.name}: unknown fields the API server would drop: {outcome.pruned}"
        spec = parse_spec(doc["spec"])
        for container in spec.template["spec"]["containers"]:
            assert container["image"] == "ghcr.io/modelrollout/reference-model-server:0.1.0"


def _route_of(rollout: Document) -> tuple[str, str] | None:
    routing = rollout["spec"].get("trafficRouting") or {}
    if "gatewayAPI" in routing:
        return "HTTPRoute", routing["gatewayAPI"]["httpRoute"]
    if "istio" in routing:
        return "VirtualService", routing["istio"]["virtualService"]
    return None


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_each_route_belongs_to_a_rollout_in_the_same_file(path: Path) -> None:
    wanted = {_route_of(rollout) for rollout in rollouts(path)} - {None}
    present = {(doc["kind"], doc["metadata"]["name"]) for doc in routes(path)}
    assert present == wanted, f"{path.name}: routes {sorted(present)}, rollouts name {sorted(wanted)}"  # type: ignore[type-var]
    for doc in routes(path):
        owner = next(r for r in rollouts(path) if _route_of(r) == (doc["kind"], doc["metadata"]["name"]))
        assert doc["metadata"].get("namespace") == owner["metadata"].get("namespace")


def _cases() -> list[tuple[str, Document, Document]]:
    cases = []
    for path in EXAMPLES:
        for rollout in rollouts(path):
            target = _route_of(rollout)
            if target is None:
                continue
            route = next(doc for doc in routes(path) if (doc["kind"], doc["metadata"]["name"]) == target)
            cases.append((f"{path.name}:{target[0]}", rollout, route))
    return cases


ROUTED = _cases()


def test_router_examples_exist() -> None:
    kinds = {case_id.split(":")[1] for case_id, _, _ in ROUTED}
    assert kinds == set(ROUTE_KINDS)


@pytest.mark.parametrize(("case_id", "rollout", "route"), ROUTED, ids=[case[0] for case in ROUTED])
def test_route_carries_every_step(case_id: str, rollout: Document, route: Document) -> None:
    name = rollout["metadata"]["name"]
    spec: ModelRolloutSpec = parse_spec(rollout["spec"])
    router = router_for(spec.traffic_routing, name)
    assert isinstance(router, GatewayApiRouter | IstioRouter)

    seen = router.observe(route)
    assert not isinstance(seen, RouteError), f"{case_id}: {seen}"
    assert seen == RouteState(), f"{case_id}: the route does not start at 100% stable"

    steps = spec.strategy.steps
    states = [route_at(steps, index) for index in range(len(steps))] + [route_at([], 0)]
    current = route
    for index, want in enumerate(states):
        edited = router.edit(current, want)
        assert not isinstance(edited, RouteError), f"{case_id} step {index}: {edited}"
        assert router.observe(edited) == want, f"{case_id} step {index}"
        assert router.edit(edited, want) == edited, f"{case_id} step {index}: the edit is not idempotent"
        current = edited
    restored = router.edit(current, RouteState())
    assert not isinstance(restored, RouteError)
    # Back at rest: the same route as the operator's first edit of the user's (stable weight 100 written out).
    assert restored == router.edit(route, RouteState()), case_id
    assert router.observe(restored) == RouteState()
