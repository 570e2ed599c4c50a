"""The routers' one I/O path against the strict API emulator: read, edit, conditional write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from modelrollout.kube.api import ApiError, KubeApi, Resource
from modelrollout.traffic import (
    Applied,
    GatewayApiFeatures,
    GatewayApiRouter,
    HeaderMatch,
    IstioRouter,
    NotVerified,
    RouteError,
    RouteState,
    Verified,
    detect_features,
)
from modelrollout.traffic.gateway_api import HTTPROUTES
from modelrollout_devkit.emulator import EmulatorServer

from .crds import httproute_crd, typed_httproute_crd, virtualservice_crd
from .test_gateway_api import httproute, stable_ref
from .test_istio import dest, virtualservice

JsonDict = dict[str, Any]
STATE = RouteState("fraud-scorer-stable", "fraud-scorer-canary", 10, 25, HeaderMatch("x-tester", "yes"))
GATEWAY = GatewayApiRouter("fraud-scorer")


def connect(server: EmulatorServer, attempts: int = 1) -> KubeApi:
    configuration = client.Configuration()
    configuration.host = server.url
    # One attempt by default: the router's own conflict loop is what these tests are about.
    return KubeApi(client.ApiClient(configuration), attempts=attempts, backoff=0.001)


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
    assert await GATEWAY.apply(api, "ml", "fraud-scorer", STATE) == Applied(changed=True)
    stored = stored_route(server)
    assert stored["spec"] == GATEWAY.desired(created, STATE)["spec"]  # type: ignore[index]
    assert await GATEWAY.verify_live(api, "ml", "fraud-scorer", STATE) == Verified()

    writes = api.writes
    assert await GATEWAY.apply(api, "ml", "fraud-scorer", STATE) == Applied(changed=False)
    assert api.writes == writes, "no write when the route already says it"
    assert stored_route(server)["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]

    assert await GATEWAY.apply(
        api, "ml", "fraud-scorer", RouteState.at_rest(STATE.stable_service, STATE.candidate_service)
    ) == Applied(True)
    assert stored_route(server)["spec"]["rules"] == [{"backendRefs": [stable_ref(100)]}]


async def test_a_conflict_is_read_again_and_retried(server: EmulatorServer, api: KubeApi) -> None:
    create_route(server)
    rule = server.inject_faults(409, verbs=["patch"], resources=["httproutes.gateway.networking.k8s.io"], limit=2)
    assert await GATEWAY.apply(api, "ml", "fraud-scorer", STATE) == Applied(changed=True, attempts=3)
    assert rule.injected == 2
    assert await GATEWAY.verify_live(api, "ml", "fraud-scorer", STATE) == Verified()


async def test_endless_conflicts_surface_as_the_api_error(server: EmulatorServer, api: KubeApi) -> None:
    create_route(server)
    server.inject_faults(409, verbs=["patch"])
    with pytest.raises(ApiError) as raised:
        await GATEWAY.apply(api, "ml", "fraud-scorer", STATE)
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
    racing = RacingApi(client.ApiClient(configuration), attempts=2, backoff=0.001)
    try:
        assert await GATEWAY.apply(racing, "ml", "fraud-scorer", STATE) == Applied(changed=True, attempts=2)
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
    assert await GATEWAY.apply(api, "ml", "fraud-scorer", STATE) == RouteError(
        "HTTPRoute", "ml", "fraud-scorer", message
    )
    assert await GATEWAY.verify_live(api, "ml", "fraud-scorer", STATE) == RouteError(
        "HTTPRoute", "ml", "fraud-scorer", message
    )
    istio = IstioRouter("fraud-scorer")
    assert await istio.apply(api, "ml", "fraud-scorer", STATE) == RouteError(
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
    result = await GATEWAY.apply(api, "ml", "fraud-scorer", STATE)
    assert isinstance(result, RouteError)
    assert "has no rule with a backendRef to Service" in result.message
    assert api.writes == writes


@pytest.mark.parametrize("version", ["v1beta1", "v1"])
async def test_istio_apply_on_either_version(server: EmulatorServer, api: KubeApi, version: str) -> None:
    body = virtualservice({"name": "primary", "route": [dest()]}, version=version)
    del body["metadata"]["resourceVersion"]
    server.emulator.create_object(body)
    router = IstioRouter("fraud-scorer", version)
    assert await router.apply(api, "ml", "fraud-scorer", STATE) == Applied(changed=True)
    assert await router.verify_live(api, "ml", "fraud-scorer", STATE) == Verified()
    assert await router.apply(api, "ml", "fraud-scorer", STATE) == Applied(changed=False)
    stored = server.get_object("virtualservices.networking.istio.io", "fraud-scorer", "ml")
    assert stored is not None
    assert [h["name"] for h in stored["spec"]["http"]] == ["modelrollout-header-route", "primary"]
    later = RouteState(STATE.stable_service, STATE.candidate_service, 50)
    assert isinstance(await router.verify_live(api, "ml", "fraud-scorer", later), NotVerified)


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
    assert HTTPROUTES.path("ml", "x") == "/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes/x"
