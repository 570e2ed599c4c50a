"""The data plane's HTTPRoute and VirtualService resolvers: pure tests on sample objects, then the
resolvers fed by watches on a running emulator, in front of real model-server processes."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelrollout.kube.api import DEPLOYMENTS, SERVICES, KubeApi, Resource
from modelrollout_devkit.emulator.server import EmulatorServer
from modelrollout_devkit.sandbox.dataplane import (
    Backend,
    DataPlane,
    RouteDecision,
    RouteRequest,
    pick_backend,
)
from modelrollout_devkit.sandbox.loadgen import LoadGenerator
from modelrollout_devkit.sandbox.registry import PodRegistry
from modelrollout_devkit.sandbox.routes import (
    HTTPROUTES,
    VIRTUALSERVICES,
    HTTPRouteResolver,
    VirtualServiceResolver,
    default_resolvers,
    route_crd_documents,
    service_of_host,
)
from modelrollout_devkit.sandbox.workloads import SimulatorOptions, WorkloadSimulator
from tests.sandbox.conftest import REVISION_LABEL, ROLLOUT_LABEL, deployment

NS = "default"
JsonDict = dict[str, Any]


def request(
    path: str = "/predict",
    service: str = "scorer",
    headers: dict[str, str] | None = None,
    method: str = "POST",
    query: dict[str, str] | None = None,
) -> RouteRequest:
    return RouteRequest(NS, service, method, path, headers or {}, query or {})


def httproute(
    name: str, rules: list[JsonDict], *, hostnames: list[str] | None = None, created: str = "2026-01-01T00:00:00Z"
) -> JsonDict:
    spec: JsonDict = {"parentRefs": [{"name": "gateway"}], "rules": rules}
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": created},
        "spec": spec,
    }


def virtualservice(name: str, hosts: list[str], http: list[JsonDict]) -> JsonDict:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"hosts": hosts, "http": http},
    }


def ref(name: str, weight: int | None = None) -> JsonDict:
    found: JsonDict = {"name": name, "port": 80}
    if weight is not None:
        found["weight"] = weight
    return found


def rule(
    *refs: JsonDict,
    path: JsonDict | None = None,
    headers: list[JsonDict] | None = None,
    filters: list[JsonDict] | None = None,
) -> JsonDict:
    made: JsonDict = {"backendRefs": list(refs)}
    match: JsonDict = {}
    if path is not None:
        match["path"] = path
    if headers is not None:
        match["headers"] = headers
    if match:
        made["matches"] = [match]
    if filters is not None:
        made["filters"] = filters
    return made


def targets(decision: RouteDecision | None) -> list[tuple[str, int]]:
    assert decision is not None
    return [(b.service, b.weight) for b in decision.backends]


def gateway(*routes: JsonDict) -> HTTPRouteResolver:
    resolver = HTTPRouteResolver()
    resolver.put(*routes)
    return resolver


def istio(*services: JsonDict) -> VirtualServiceResolver:
    resolver = VirtualServiceResolver()
    resolver.put(*services)
    return resolver


def shares(backends: tuple[Backend, ...], draws: int = 4000) -> Counter[str]:
    rng = random.Random(7)
    picked: Counter[str] = Counter()
    for _ in range(draws):
        backend = pick_backend(backends, rng)
        picked[backend.service if backend else "none"] += 1
    return picked


# --- Gateway API: pure ---------------------------------------------------------------------------


def test_httproute_found_by_name_or_hostname_and_otherwise_not_at_all() -> None:
    resolver = gateway(httproute("scorer-route", [rule(ref("scorer-stable"))], hostnames=["scorer", "*.example.com"]))
    for name in ("scorer-route", "scorer", "api.example.com"):
        assert targets(resolver.resolve(request(service=name))) == [("scorer-stable", 1)], name
    assert resolver.resolve(request(service="example.com")) is None  # a wildcard needs a label before it
    assert resolver.resolve(request(service="other")) is None  # not ours: the next resolver decides
    decision = resolver.resolve(request(service="scorer"))
    assert decision is not None and decision.source == f"httproute/{NS}/scorer-route/rules[0]"


def test_httproute_precedence_exact_then_longest_prefix_then_headers_then_rule_order() -> None:
    resolver = gateway(
        httproute(
            "scorer",
            [
                rule(ref("catch-all")),
                rule(ref("v1"), path={"type": "PathPrefix", "value": "/v1"}),
                rule(ref("v1-models"), path={"type": "PathPrefix", "value": "/v1/models/"}),
                rule(ref("v1-exact"), path={"type": "Exact", "value": "/v1/models"}),
                rule(
                    ref("tester"),
                    path={"type": "PathPrefix", "value": "/v1"},
                    headers=[{"name": "X-Tester", "value": "yes"}],
                ),
                rule(ref("v1-second"), path={"type": "PathPrefix", "value": "/v1"}),
            ],
        )
    )
    assert targets(resolver.resolve(request("/predict"))) == [("catch-all", 1)]
    assert targets(resolver.resolve(request("/v1/predict"))) == [("v1", 1)]  # rule order breaks the tie
    assert targets(resolver.resolve(request("/v1/models/a"))) == [("v1-models", 1)]  # the longer prefix
    assert targets(resolver.resolve(request("/v1/models"))) == [("v1-exact", 1)]  # exact beats any prefix
    # Header names match case-insensitively; more header matches win between equal paths.
    assert targets(resolver.resolve(request("/v1/predict", headers={"x-tester": "yes"}))) == [("tester", 1)]
    assert targets(resolver.resolve(request("/v1/predict", headers={"X-TESTER": "no"}))) == [("v1", 1)]
    # A prefix matches whole path elements only.
    assert targets(resolver.resolve(request("/v1x"))) == [("catch-all", 1)]


def test_httproute_oldest_route_wins_a_tie_between_routes_and_unmatched_requests_get_404() -> None:
    young = httproute("young", [rule(ref("young"))], hostnames=["scorer"], created="2026-02-01T00:00:00Z")
    old = httproute("old", [rule(ref("old"))], hostnames=["scorer"], created="2026-01-01T00:00:00Z")
    assert targets(gateway(young, old).resolve(request())) == [("old", 1)]

    only_v2 = gateway(httproute("scorer", [rule(ref("v2"), path={"type": "PathPrefix", "value": "/v2"})]))
    decision = only_v2.resolve(request("/predict"))
    assert decision is not None and decision.backends == () and decision.status == 404
    assert "no rule of HTTPRoute default/scorer matches POST /predict" in decision.message


def test_httproute_weights_0_20_100() -> None:
    def split(stable: int, canary: int) -> Counter[str]:
        resolver = gateway(httproute("scorer", [rule(ref("stable", stable), ref("canary", canary))]))
        decision = resolver.resolve(request())
        assert decision is not None
        return shares(decision.backends)

    assert split(100, 0) == {"stable": 4000}  # weight 0 gets nothing
    assert split(0, 100) == {"canary": 4000}
    twenty = split(80, 20)
    assert abs(twenty["canary"] / 4000 - 0.20) < 0.03, twenty
    # No weight given: 1 each (the API's default), so an even split.
    resolver = gateway(httproute("scorer", [rule(ref("a"), ref("b"))]))
    assert targets(resolver.resolve(request())) == [("a", 1), ("b", 1)]
    # Every weight 0: no backend at all (the data plane answers 503).
    zero = gateway(httproute("scorer", [rule(ref("a", 0))])).resolve(request())
    assert zero is not None and pick_backend(zero.backends, random.Random(1)) is None


def test_httproute_request_mirror_percent_fraction_and_default() -> None:
    def mirror(**config: Any) -> JsonDict:
        return {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "canary", "port": 80}, **config}}

    for config, percent in (
        ({"percent": 30}, 30.0),
        ({"fraction": {"numerator": 1, "denominator": 4}}, 25.0),
        ({"fraction": {"numerator": 5}}, 5.0),
        ({}, 100.0),
    ):
        resolver = gateway(httproute("scorer", [rule(ref("stable"), filters=[mirror(**config)])]))
        decision = resolver.resolve(request())
        assert decision is not None
        assert [(m.namespace, m.service, m.percent) for m in decision.mirrors] == [(NS, "canary", percent)], config
        assert targets(decision) == [("stable", 1)]  # a mirror takes no share of the answers
    other = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "a", "value": "b"}]}}
    plain = gateway(httproute("scorer", [rule(ref("stable"), filters=[other])])).resolve(request())
    assert plain is not None and plain.mirrors == ()


def test_httproute_backend_in_another_namespace_and_method_and_query_matches() -> None:
    resolver = gateway(
        httproute(
            "scorer",
            [
                {
                    "matches": [{"method": "GET", "queryParams": [{"name": "debug", "value": "1"}]}],
                    "backendRefs": [{"name": "debug", "namespace": "tools"}],
                },
                {"matches": [{"method": "GET"}], "backendRefs": [{"name": "reader"}]},
                {"backendRefs": [{"name": "writer"}]},
            ],
        )
    )
    get = resolver.resolve(request(method="GET", query={"debug": "1"}))
    assert get is not None and get.backends == (Backend("tools", "debug", 1),)
    assert targets(resolver.resolve(request(method="GET"))) == [("reader", 1)]
    assert targets(resolver.resolve(request(method="POST"))) == [("writer", 1)]


# --- Istio: pure ---------------------------------------------------------------------------------


def dest(host: str, weight: int | None = None) -> JsonDict:
    entry: JsonDict = {"destination": {"host": host, "port": {"number": 80}}}
    if weight is not None:
        entry["weight"] = weight
    return entry


def test_virtualservice_hosts_short_or_qualified() -> None:
    resolver = istio(virtualservice("scorer-vs", ["scorer"], [{"route": [dest("scorer-stable")]}]))
    for host in ("scorer", f"scorer.{NS}", f"scorer.{NS}.svc", f"scorer.{NS}.svc.cluster.local"):
        assert targets(resolver.resolve(request(service=host))) == [("scorer-stable", 100)], host
    assert resolver.resolve(request(service="scorer-vs")) is None  # a mesh routes by host, not by name
    assert resolver.resolve(request(service="scorer.other.svc.cluster.local")) is None
    qualified = istio(virtualservice("vs", [f"scorer.{NS}.svc.cluster.local"], [{"route": [dest("s")]}]))
    assert targets(qualified.resolve(request(service="scorer"))) == [("s", 100)]
    assert service_of_host("model.team.svc.cluster.local", NS) == ("team", "model")
    assert service_of_host("api.example.com", NS) is None


def test_virtualservice_first_matching_http_route_in_order() -> None:
    resolver = istio(
        virtualservice(
            "scorer",
            ["scorer"],
            [
                {
                    "name": "testers",
                    "match": [{"headers": {"x-tester": {"exact": "yes"}}}],
                    "route": [dest("scorer-canary")],
                },
                {"match": [{"uri": {"exact": "/v1/models"}}, {"uri": {"prefix": "/admin"}}], "route": [dest("admin")]},
                {"match": [{"uri": {"prefix": "/v1"}}], "route": [dest("v1")]},
                {"route": [dest("scorer-stable", 100), dest("scorer-canary", 0)]},
            ],
        )
    )
    assert targets(resolver.resolve(request("/v1/x", headers={"X-Tester": "yes"}))) == [("scorer-canary", 100)]
    assert targets(resolver.resolve(request("/v1/x", headers={"x-tester": "no"}))) == [("v1", 100)]
    assert targets(resolver.resolve(request("/v1/models"))) == [("admin", 100)]
    assert targets(resolver.resolve(request("/administer"))) == [("admin", 100)]  # Istio's prefix is plain
    assert targets(resolver.resolve(request("/predict"))) == [("scorer-stable", 100), ("scorer-canary", 0)]
    decision = resolver.resolve(request("/predict"))
    assert decision is not None and decision.source == f"virtualservice/{NS}/scorer/http[3]"


def test_virtualservice_weights_and_unmatched_request() -> None:
    def split(*entries: JsonDict) -> Counter[str]:
        decision = istio(virtualservice("scorer", ["scorer"], [{"route": list(entries)}])).resolve(request())
        assert decision is not None
        return shares(decision.backends)

    assert split(dest("stable")) == {"stable": 4000}  # a lone destination takes 100 whatever its weight
    assert split(dest("stable", 100), dest("canary", 0)) == {"stable": 4000}
    assert split(dest("stable", 0), dest("canary", 100)) == {"canary": 4000}
    twenty = split(dest("stable", 80), dest("canary", 20))
    assert abs(twenty["canary"] / 4000 - 0.20) < 0.03, twenty
    assert split(dest("stable", 100), dest("canary")) == {"stable": 4000}  # absent among several: 0

    narrow = istio(
        virtualservice("scorer", ["scorer"], [{"match": [{"uri": {"prefix": "/v2"}}], "route": [dest("v2")]}])
    )
    decision = narrow.resolve(request("/predict"))
    assert decision is not None and decision.status == 404 and decision.backends == ()


def test_virtualservice_mirror_and_percentage() -> None:
    def mirrors(http: JsonDict) -> list[tuple[str, str, float]]:
        decision = istio(virtualservice("scorer", ["scorer"], [http])).resolve(request())
        assert decision is not None
        return [(m.namespace, m.service, m.percent) for m in decision.mirrors]

    base = {"route": [dest("scorer-stable")]}
    assert mirrors({**base, "mirror": {"host": "scorer-canary"}}) == [(NS, "scorer-canary", 100.0)]
    assert mirrors({**base, "mirror": {"host": "scorer-canary"}, "mirrorPercentage": {"value": 12.5}}) == [
        (NS, "scorer-canary", 12.5)
    ]
    assert mirrors(
        {**base, "mirror": {"host": f"scorer-canary.{NS}.svc.cluster.local"}, "mirrorPercentage": {"value": 0.0}}
    ) == [(NS, "scorer-canary", 0.0)]
    assert mirrors({**base, "mirrors": [{"destination": {"host": "shadow.team"}, "percentage": {"value": 50}}]}) == [
        ("team", "shadow", 50.0)
    ]
    assert mirrors(base) == []


def test_route_crds_ship_with_the_package() -> None:
    documents = {doc["metadata"]["name"]: doc for doc in route_crd_documents()}
    assert set(documents) == {"httproutes.gateway.networking.k8s.io", "virtualservices.networking.istio.io"}
    served = {name: {v["name"] for v in doc["spec"]["versions"] if v["served"]} for name, doc in documents.items()}
    assert served == {
        "httproutes.gateway.networking.k8s.io": {"v1", "v1beta1"},
        "virtualservices.networking.istio.io": {"v1", "v1beta1"},
    }
    assert [type(r) for r in default_resolvers()] == [HTTPRouteResolver, VirtualServiceResolver]


# --- against the emulator, with real pods --------------------------------------------------------


@dataclass
class Routed:
    api: KubeApi
    dataplane: DataPlane
    registry: PodRegistry

    async def create(self, resource: Resource, obj: JsonDict) -> None:
        await self.api.create(resource, NS, obj)

    async def send(
        self, count: int, *, rate: float = 200.0, headers: dict[str, str] | None = None, url: str | None = None
    ) -> LoadGenerator:
        load = LoadGenerator(url or f"{self.dataplane.url}/{NS}/scorer", rate, count=count, headers=headers, seed=2)
        await load.run()
        return load

    async def wait_for(self, what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")

    def mirrored(self, version: str) -> int:
        rows = self.dataplane.stats.to_dict()["mirrored"]
        return sum(row["count"] for row in rows if row["version"] == version)


def role_service(name: str, revision: str) -> JsonDict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {ROLLOUT_LABEL: "scorer", REVISION_LABEL: revision},
            "ports": [{"port": 80, "targetPort": 8080}],
        },
    }


@pytest.fixture
async def routed(sandbox_workdir: Path, tmp_path: Path) -> AsyncIterator[Routed]:
    """An emulator with the route CRDs, the workload simulator, and a data plane with the route resolvers
    (the pods are started by each test: ``start_pods``)."""
    options = SimulatorOptions(backoff_base=0.5, backoff_cap=4.0, drain_delay=0.05, termination_grace=3.0)
    async with EmulatorServer(crds=route_crd_documents()) as emulator:
        kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
        registry = PodRegistry()
        simulator = WorkloadSimulator(kubeconfig, registry, sandbox_workdir, options)
        await simulator.start()
        dataplane = DataPlane(str(kubeconfig), registry, port=0, seed=1, resolvers=default_resolvers())
        await dataplane.start()
        api = await KubeApi.connect(str(kubeconfig))
        try:
            await simulator.wait_cache()
            yield Routed(api, dataplane, registry)
        finally:
            await dataplane.stop()
            await simulator.stop()
            await api.close()


async def start_pods(routed: Routed, **candidate_env: str) -> None:
    await routed.api.create(DEPLOYMENTS, NS, deployment("scorer-a", "1.0.0", 1))
    await routed.api.create(DEPLOYMENTS, NS, deployment("scorer-b", "2.0.0", 1, **candidate_env))
    await routed.api.create(SERVICES, NS, role_service("scorer-stable", "scorer-a"))
    await routed.api.create(SERVICES, NS, role_service("scorer-canary", "scorer-b"))
    await routed.wait_for(
        "both pods ready and known to the data plane",
        lambda: routed.dataplane.endpoints(NS, "scorer-stable") and routed.dataplane.endpoints(NS, "scorer-canary"),
        timeout=60,
    )


async def wait_routed(routed: Routed, source_prefix: str) -> None:
    """Until the data plane's informer has the route (a watch event away from the create)."""
    probe = RouteRequest(NS, "scorer", "POST", "/predict", {})
    await routed.wait_for(
        f"the data plane to see {source_prefix}",
        lambda: routed.dataplane._decide(probe).source.startswith(source_prefix),
    )


async def test_live_httproute_weight_20_sends_about_20_percent(routed: Routed) -> None:
    await start_pods(routed)
    await routed.create(HTTPROUTES, httproute("scorer", [rule(ref("scorer-stable", 80), ref("scorer-canary", 20))]))
    await wait_routed(routed, "httproute/")
    load = await routed.send(400)
    assert load.stats.ok == 400, load.stats.to_dict()
    assert abs(load.stats.share("2.0.0") - 0.20) < 0.07, load.stats.to_dict()
    stats = routed.dataplane.stats.to_dict()
    assert stats["by_version"][f"{NS}/scorer-canary/2.0.0"]["count"] == load.stats.by_version["2.0.0"]
    assert stats["routes"][f"httproute/{NS}/scorer/rules[0]"] == 400

    # An edit reaches the data plane through the watch: 100 % stable again.
    await routed.api.merge_patch(HTTPROUTES, NS, "scorer", {"spec": {"rules": [rule(ref("scorer-stable", 100))]}})
    await routed.wait_for(
        "the edit to be seen",
        lambda: targets(routed.dataplane._decide(request())) == [("scorer-stable", 100)],
    )
    again = await routed.send(100)
    assert again.stats.by_version == {"1.0.0": 100}


async def test_live_header_route_sends_everything_with_the_header_to_the_candidate(routed: Routed) -> None:
    await start_pods(routed)
    header = [{"type": "Exact", "name": "x-model-canary", "value": "always"}]
    await routed.create(
        HTTPROUTES,
        httproute("scorer", [rule(ref("scorer-canary", 100), headers=header), rule(ref("scorer-stable", 100))]),
    )
    await wait_routed(routed, "httproute/")
    testers = await routed.send(60, headers={"X-Model-Canary": "always"})
    others = await routed.send(60)
    assert testers.stats.by_version == {"2.0.0": 60}, testers.stats.to_dict()
    assert others.stats.by_version == {"1.0.0": 60}, others.stats.to_dict()


async def test_live_full_mirror_copies_every_request_and_callers_see_only_stable(routed: Routed) -> None:
    await start_pods(routed, FAULT_ERROR_RATE="1.0")  # a shadow that fails every request
    await routed.create(
        VIRTUALSERVICES,
        virtualservice(
            "scorer",
            ["scorer"],
            [
                {
                    "route": [dest("scorer-stable")],
                    "mirror": {"host": "scorer-canary"},
                    "mirrorPercentage": {"value": 100.0},
                }
            ],
        ),
    )
    await wait_routed(routed, "virtualservice/")
    # 25/s keeps the copies in flight below MAX_MIRRORS_IN_FLIGHT while each answers within 2.5 s.
    load = await routed.send(150, rate=25.0)
    assert load.stats.by_version == {"1.0.0": 150} and load.stats.ok == 150, load.stats.to_dict()
    dataplane = routed.dataplane
    await routed.wait_for(
        "every copy answered", lambda: routed.mirrored("2.0.0") + dataplane.stats.mirrors_dropped >= 150
    )
    stats = dataplane.stats.to_dict()
    # Every request was copied: answered by the shadow, or, on a machine so loaded that copies pile up
    # past MAX_MIRRORS_IN_FLIGHT, shed and counted as a mesh would shed them; never lost unseen.
    mirrored = routed.mirrored("2.0.0")
    assert mirrored + stats["mirrors_dropped"] == 150 and mirrored >= 75, stats
    assert {row["code"] for row in stats["mirrored"]} == {500}  # the shadow failed; no caller saw it
    assert all(row["version"] == "1.0.0" for row in stats["requests"]), stats["requests"]


async def test_live_slow_mirror_does_not_delay_callers(routed: Routed) -> None:
    await start_pods(routed, FAULT_LATENCY_MS="1500")
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "scorer-canary", "port": 80}}}
    await routed.create(HTTPROUTES, httproute("scorer", [rule(ref("scorer-stable"), filters=[mirror])]))
    await wait_routed(routed, "httproute/")
    load = await routed.send(60, rate=30.0)
    assert load.stats.by_version == {"1.0.0": 60}
    # Callers get stable's speed, not the shadow's 1.5 s.
    assert load.stats.latency_quantile(0.99) < 0.5, load.stats.to_dict()
    await routed.wait_for(
        "the slow copies to land",
        lambda: routed.mirrored("2.0.0") + routed.dataplane.stats.mirrors_dropped >= 60,
        timeout=30,
    )
    assert routed.mirrored("2.0.0") > 0


async def test_route_crds_installed_on_an_external_api_server_only_where_missing(tmp_path: Path) -> None:
    """``sandbox up --kubeconfig``: ours where none exists; a cluster's own CRD is left as it is."""
    from modelrollout.kube.api import CRDS
    from modelrollout_devkit.sandbox.supervisor import install_route_crds

    theirs = next(doc for doc in route_crd_documents() if doc["spec"]["names"]["kind"] == "VirtualService")
    theirs["spec"]["versions"] = [v for v in theirs["spec"]["versions"] if v["name"] == "v1beta1"]
    theirs["spec"]["versions"][0]["storage"] = True
    theirs["metadata"]["labels"] = {"owner": "istio"}
    async with EmulatorServer(crds=[theirs]) as emulator:
        kubeconfig = str(emulator.write_kubeconfig(tmp_path / "kubeconfig"))
        await install_route_crds(kubeconfig)
        await install_route_crds(kubeconfig)  # again: nothing to do
        api = await KubeApi.connect(kubeconfig)
        try:
            gateway_crd = await api.get(CRDS, None, "httproutes.gateway.networking.k8s.io")
            istio_crd = await api.get(CRDS, None, "virtualservices.networking.istio.io")
        finally:
            await api.close()
    assert gateway_crd is not None
    assert {v["name"] for v in gateway_crd["spec"]["versions"]} == {"v1", "v1beta1"}
    assert istio_crd is not None and istio_crd["metadata"]["labels"] == {"owner": "istio"}
    assert [v["name"] for v in istio_crd["spec"]["versions"]] == ["v1beta1"]


async def test_live_calls_of_the_shadow_comparator_count_as_shadow_work(routed: Routed) -> None:
    """The comparator's own requests (X-Modelrollout-Shadow) reach the candidate through the data plane, as
    in a cluster; no caller sees those answers, so they are counted with the mirrored copies."""
    from modelrollout.vocabulary.names import SHADOW_HEADER

    await start_pods(routed)
    url = f"{routed.dataplane.url}/{NS}/scorer-canary"
    shadow = await routed.send(30, headers={SHADOW_HEADER: "comparator"}, url=url)
    assert shadow.stats.by_version == {"2.0.0": 30}
    assert routed.mirrored("2.0.0") == 30
    stats = routed.dataplane.stats.to_dict()
    assert not [row for row in stats["requests"] if row["version"] == "2.0.0"], stats["requests"]
    callers = await routed.send(10, url=url)
    assert callers.stats.by_version == {"2.0.0": 10}
    assert sum(row["count"] for row in routed.dataplane.stats.to_dict()["requests"] if row["version"] == "2.0.0") == 10
