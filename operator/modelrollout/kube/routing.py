"""Between the engine's view of routing (weights, mirror, header) and the traffic routers.

Reading happens before a pass (what does the user's route do now?), writing when the engine asks
for a SetRoute. Blue-green switches Services, not routes, so it reads and writes no route.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelrollout.api.models import ModelRolloutSpec
from modelrollout.engine.types import RouteState, RouteView
from modelrollout.kube.api import KubeApi
from modelrollout.kube.names import candidate_service_name, stable_service_name
from modelrollout.traffic import base as traffic
from modelrollout.traffic.factory import router_for
from modelrollout.traffic.gateway_api import GatewayApiFeatures, GatewayApiRouter, detect_features
from modelrollout.traffic.istio import IstioRouter


@dataclass(frozen=True)
class RouteTarget:
    router: GatewayApiRouter | IstioRouter
    namespace: str
    stable_service: str
    candidate_service: str

    @property
    def name(self) -> str:
        return self.router.route_name

    def to_router(self, state: RouteState) -> traffic.RouteState:
        header = traffic.HeaderMatch(*state.header) if state.header is not None else None
        return traffic.RouteState(
            self.stable_service, self.candidate_service, state.candidate_weight, state.mirror_percent, header
        )


def route_target(
    spec: ModelRolloutSpec, rollout: str, namespace: str, gateway_api: GatewayApiFeatures | None = None
) -> RouteTarget | None:
    """The route this rollout's canary steers, if it has one."""
    if spec.strategy.blue_green is not None or spec.traffic_routing is None:
        return None
    router = router_for(spec.traffic_routing, gateway_api=gateway_api)
    if not isinstance(router, GatewayApiRouter | IstioRouter):
        return None
    return RouteTarget(router, namespace, stable_service_name(rollout), candidate_service_name(rollout))


async def observe_route(api: KubeApi, target: RouteTarget) -> RouteView:
    current = await api.get(target.router.resource, target.namespace, target.name)
    if current is None:
        return RouteView(error=str(traffic.missing_route(target.router.kind, target.namespace, target.name)))
    seen = target.router.observe(current, target.stable_service, target.candidate_service)
    if isinstance(seen, traffic.RouteError):
        return RouteView(error=str(seen))
    header = (seen.header_route.name, seen.header_route.value) if seen.header_route is not None else None
    return RouteView(state=RouteState(seen.candidate_weight, seen.mirror_percent, header))


class RouteWriteError(Exception):
    """The router refused the edit (the route changed shape between reading and writing)."""


async def apply_route(api: KubeApi, target: RouteTarget, state: RouteState) -> None:
    result = await target.router.apply(api, target.namespace, target.name, target.to_router(state))
    if isinstance(result, traffic.RouteError):
        raise RouteWriteError(str(result))


class GatewayFeatures:
    """What the installed Gateway API accepts (RequestMirror percent, rule names), read once.

    Reading the CRD needs no extra permission (kopf already reads CRDs); the answer is kept for the
    operator's life, as CRDs change only with an upgrade of the Gateway API.
    """

    def __init__(self) -> None:
        self._features: GatewayApiFeatures | None = None

    async def get(self, api: KubeApi) -> GatewayApiFeatures:
        if self._features is None:
            self._features = await detect_features(api)
        return self._features
