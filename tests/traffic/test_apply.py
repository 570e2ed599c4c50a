"""The routers' one I/O path (`kube.routing`) against the strict API emulator: read, edit, conditional write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from modelrollout.kube.api import ApiError, KubeApi, Resource
from modelrollout.kube.routing import (
    Applied,
    RouteTarget,
    RouteWriteError,
    apply_route,
    detect_features,
    observe_route,
    resource_of,
)
from modelrollout.traffic import GatewayApiFeatures, GatewayApiRouter, IstioRouter, RouteError
from modelrollout.traffic.gateway_api import HTTPROUTES
from modelrollout.vocabulary.routes import HeaderMatch, RouteState, RouteView
from modelrollout_devkit.emulator import EmulatorServer

from .crds import httproute_crd, typed_httproute_crd, virtualservice_crd
from .test_gateway_api import httproute, stable_ref
from .test_istio import dest, virtualservice

JsonDict = dict[str, Any]
STATE = RouteState(10, 25, HeaderMatch("x-tester", "yes"))
SERVICES = ("fraud-scorer-stable", "fraud-scorer-canary")
GATEWAY_ROUTER = GatewayApiRouter("fraud-scorer", *SERVICES)
GATEWAY = RouteTarget(GATEWAY_ROUTER, "ml")


def connect(server: EmulatorServer, attempts: int = 1) -> KubeApi:
    configuration = client.Configuration()
    configuration.host = server.url
    # One attempt by default: the router's own conflict loop is what these tests are about.
    return KubeApi(configuration, attempts=attempts, backoff=0.001)


@pytest.fixture
async def server() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(crds=[httproute_crd(), virtualservice_crd()]) as emu:
        emu.emulator.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml"}})
        yield emu


@pytest.fixture
async def api(server: EmulatorServer) -> AsyncIterator[KubeApi]:
    made = connect(server)
    yield made
    await made.close()


def stored_route(server: EmulatorServer) -> JsonDict:
    obj = server.get_object("httproutes.gateway.networking.k8s.io", "fraud-scorer", "ml")
    assert obj is not None
    return obj


def create_route(server: EmulatorServer) -> JsonDict:
    body = httproute({"backendRefs": [stable_ref()]}, hostnames=["scorer.example.com"])
    del body["metadata"]["resourceVersion"], body["status"]
    return server.emulator.create_object(body)


async def test_apply_writes_once_then_nothing(server: EmulatorServer, api: KubeApi) -> None:
    created = create_route(server)
    assert await apply_route(api, GATEWAY, STATE) == Applied(changed=True)
    stored = stored_route(server)
    assert stored["spec"] == GATEWAY_ROUTER.edit(created, STATE)["spec"]  # type: ignore[index]
    assert await observe_route(api, GATEWAY) == RouteView(state=STATE)

    writes = api.writes
    assert await apply_route(api, GATEWAY, STATE) == Applied(changed=False)
    assert api.writes == writes, "no write when the route already says it"
    assert stored_route(server)["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]

    assert await apply_route(api, GATEWAY, RouteState()) == Applied(True)
    assert stored_route(server)["spec"]["rules"] == [{"backendRefs": [stable_ref(100)]}]


async def test_a_conflict_is_read_again_and_retried(server: EmulatorServer, api: KubeApi) -> None:
    create_route(server)
    rule = server.inject_faults(409, verbs=["patch"], resources=["httproutes.gateway.networking.k8s.io"], limit=2)
    assert await apply_route(api, GATEWAY, STATE) == Applied(changed=True, attempts=3)
    assert rule.injected == 2
    assert await observe_route(api, GATEWAY) == RouteView(state=STATE)


async def test_endless_conflicts_surface_as_the_api_error(server: EmulatorServer, api: KubeApi) -> None:
    create_route(server)
    server.inject_faults(409, verbs=["patch"])
    with pytest.raises(ApiError) as raised:
        await apply_route(api, GATEWAY, STATE)
    assert raised.value.status == 409


class RacingApi(KubeApi):
    """Someone edits the route between our first read and our write."""

    raced = False

    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        obj = await super().get(resource, namespace, name)
        if not self.raced:
            self.raced = True
            edit = {
                "spec": {"hostnames": ["scorer.example.com", "scorer.internal"]},
                "metadata": {"annotations": {"edited-by": "someone"}},
            }
            await super().merge_patch(resource, namespace, name, edit)
        return obj


async def test_a_concurrent_edit_is_kept(server: EmulatorServer) -> None:
    create_route(server)
    configuration = client.Configuration()
    configuration.host = server.url
    # KubeApi's own retries resend the same stale resourceVersion; they fail too, then ours re-read.
    racing = RacingApi(configuration, attempts=2, backoff=0.001)
    try:
        assert await apply_route(racing, GATEWAY, STATE) == Applied(changed=True, attempts=2)
    finally:
        await racing.close()
    stored = stored_route(server)
    assert stored["spec"]["hostnames"] == ["scorer.example.com", "scorer.internal"]
    assert stored["metadata"]["annotations"]["edited-by"] == "someone"
    assert len(stored["spec"]["rules"]) == 2


async def test_a_missing_route_is_a_route_error(api: KubeApi) -> None:
    message = (
        "HTTPRoute ml/fraud-scorer does not exist; create it, or name an existing HTTPRoute in spec.trafficRouting"
    )
    with pytest.raises(RouteWriteError) as refused:
        await apply_route(api, GATEWAY, STATE)
    assert refused.value.error == RouteError("HTTPRoute", "ml", "fraud-scorer", message)
    assert str(refused.value) == message
    assert await observe_route(api, GATEWAY) == RouteView(error=message)
    istio = RouteTarget(IstioRouter("fraud-scorer", *SERVICES), "ml")
    with pytest.raises(RouteWriteError) as refused:
        await apply_route(api, istio, STATE)
    assert refused.value.error == RouteError(
        "VirtualService",
        "ml",
        "fraud-scorer",
        "VirtualService ml/fraud-scorer does not exist; create it, or name an existing VirtualService in "
        "spec.trafficRouting",
    )


async def test_a_route_without_our_rule_is_left_alone(server: EmulatorServer, api: KubeApi) -> None:
    body = httproute({"backendRefs": [{"name": "other", "port": 80}]})
    del body["metadata"]["resourceVersion"], body["status"]
    server.emulator.create_object(body)
    writes = api.writes
    with pytest.raises(RouteWriteError, match="has no rule with a backendRef to Service"):
        await apply_route(api, GATEWAY, STATE)
    assert api.writes == writes


@pytest.mark.parametrize("version", ["v1beta1", "v1"])
async def test_istio_apply_on_either_version(server: EmulatorServer, api: KubeApi, version: str) -> None:
    body = virtualservice({"name": "primary", "route": [dest()]}, version=version)
    del body["metadata"]["resourceVersion"]
    server.emulator.create_object(body)
    target = RouteTarget(IstioRouter("fraud-scorer", *SERVICES, version), "ml")
    path = f"/apis/networking.istio.io/{version}/namespaces/ml/virtualservices"
    assert resource_of(target.router.resource).path("ml") == path
    assert await apply_route(api, target, STATE) == Applied(changed=True)
    assert await observe_route(api, target) == RouteView(state=STATE)
    assert await apply_route(api, target, STATE) == Applied(changed=False)
    stored = server.get_object("virtualservices.networking.istio.io", "fraud-scorer", "ml")
    assert stored is not None
    assert [h["name"] for h in stored["spec"]["http"]] == ["modelrollout-header-route", "primary"]
    later = RouteState(50)
    assert await observe_route(api, target) != RouteView(state=later)
    assert await apply_route(api, target, later) == Applied(changed=True)
    assert await observe_route(api, target) == RouteView(state=later)


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ({"mirror_percent": True, "rule_names": True}, GatewayApiFeatures(mirror_percent=True, rule_names=True)),
        ({"mirror_percent": True, "rule_names": False}, GatewayApiFeatures(mirror_percent=True, rule_names=False)),
        ({"mirror_percent": False, "rule_names": False}, GatewayApiFeatures(mirror_percent=False, rule_names=False)),
    ],
)
async def test_detect_features_from_the_installed_crd(features: dict[str, bool], expected: GatewayApiFeatures) -> None:
    async with EmulatorServer(crds=[typed_httproute_crd(**features)]) as emu:
        api = connect(emu)
        try:
            assert await detect_features(api) == expected
        finally:
            await api.close()


async def test_detect_features_defaults_without_the_crd_and_with_an_open_schema(server: EmulatorServer) -> None:
    async with EmulatorServer() as bare:
        api = connect(bare)
        try:
            assert await detect_features(api) == GatewayApiFeatures()
        finally:
            await api.close()
    api = connect(server)
    try:
        assert await detect_features(api) == GatewayApiFeatures(mirror_percent=True, rule_names=True)
    finally:
        await api.close()
    assert resource_of(HTTPROUTES).path("ml", "x") == "/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes/x"
