"""No traffic router: one Service in front of every version, and the split is the replica ratio.

The engine already sizes the Deployments for the weight (`engine.machine.replica_split`), so there
is nothing to write here, and nothing to read back either: `verify` says so as a value.
Mirroring and header routes need a router; the API validation refuses them without one.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelrollout.kube.api import KubeApi
from modelrollout.traffic.base import Applied, JsonDict, NotSupported, RouteError, RouteState, Verification, clone


@dataclass(frozen=True)
class ReplicaRouter:
    @property
    def route_name(self) -> str | None:
        return None

    def desired(self, route: JsonDict, state: RouteState) -> JsonDict | RouteError:
        return clone(route)

    def verify(self, route: JsonDict, state: RouteState) -> Verification:
        return NotSupported()

    def restore(self, route: JsonDict, stable_service: str, candidate_service: str) -> JsonDict | RouteError:
        return clone(route)

    def observe(self, route: JsonDict, stable_service: str, candidate_service: str) -> RouteState | RouteError:
        # No route: the Service sends traffic by replica count, which the engine reads itself.
        return RouteState.at_rest(stable_service, candidate_service)

    async def apply(self, api: KubeApi, namespace: str, name: str, state: RouteState) -> Applied | RouteError:
        return Applied(changed=False, attempts=0)

    async def verify_live(
        self, api: KubeApi, namespace: str, name: str, state: RouteState
    ) -> Verification | RouteError:
        return NotSupported()
