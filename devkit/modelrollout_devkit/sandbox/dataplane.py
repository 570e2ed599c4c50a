"""The sandbox's data plane: one HTTP entry point that routes as the cluster's routing objects say.

``http://127.0.0.1:8000/<namespace>/<service>/<path...>`` is a request to Service ``<service>`` in
``<namespace>`` for ``/<path...>``. Routing is two stages, so that Gateway API and Istio can be added
without touching the proxy:

1. **Route resolvers** (:class:`RouteResolver`), asked in order, turn the request into a
   :class:`RouteDecision`: weighted backend Services and mirror targets. The first that answers wins;
   :class:`ServiceResolver`, last, sends everything to the Service named in the URL. The HTTPRoute
   and VirtualService resolvers (``modelrollout_devkit.sandbox.routes``) answer with a rule's ``backendRefs``
   weights and ``RequestMirror`` filters, or a VirtualService's route weights and
   ``mirror``/``mirrorPercentage``. A resolver that has objects to watch (:class:`WatchingResolver`)
   gets an informer per resource, started with the data plane.
2. **Endpoints**: a backend Service becomes its READY pods, one picked uniformly at random, as
   kube-proxy does: the split across versions behind one Service follows the replica ratio. On a real
   control plane (``endpoint_slices=True``) they are the ready endpoints of the Service's
   EndpointSlices, made by the real EndpointSlice controller; each address (pod range, existing only
   in the API) is mapped through the registry to the loopback port its process listens on, and an
   address the registry does not know (another sandbox's pod) is skipped. On the emulator (no
   controllers) they are the registry's ready pods whose labels match ``spec.selector``.

The request (method, path, query, headers, body) goes to the pod; its answer comes back as is. No
ready endpoint: 503 with a JSON error; the pod does not answer: 502.

Mirrored copies are fire and forget: sent on a session of their own (so that slow shadows cannot
take the primary requests' connections), at most :data:`MAX_MIRRORS_IN_FLIGHT` at a time (copies
beyond that are dropped and counted, as an overloaded mesh would shed them), with answers discarded.

Counters: requests answered per (namespace, service, version of the pod that answered, status code),
mirrored copies separately, and with them the shadow comparator's own calls (``X-Modelrollout-Shadow``:
no caller sees those answers either); ``GET /_dataplane/stats`` (JSON, with the time each version last served)
and ``GET /_dataplane/metrics`` (Prometheus: ``sandbox_dataplane_requests_total``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import aiohttp
from aiohttp import web
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelrollout.kube.api import SERVICES, KubeApi, Resource
from modelrollout.vocabulary.names import HOP_BY_HOP, SHADOW_HEADER
from modelrollout_devkit.sandbox.kube import ENDPOINTSLICES, Informer, Obj, cancel_and_wait, connect, key_of
from modelrollout_devkit.sandbox.registry import Pod, PodRegistry

log = logging.getLogger("modelrollout_devkit.sandbox.dataplane")

STATS_PATH = "/_dataplane/stats"
METRICS_PATH = "/_dataplane/metrics"
#: Response header naming the pod that answered (for people debugging a split).
POD_HEADER = "X-Sandbox-Pod"
#: Response header naming the route (resolver and rule) that decided.
ROUTE_HEADER = "X-Sandbox-Route"
#: The label the EndpointSlice controller puts on a Service's slices.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: Mirrored copies in flight at once; more are dropped, so a slow shadow cannot pile up work.
MAX_MIRRORS_IN_FLIGHT = 64
#: A mirrored copy is abandoned after this long (its answer is never used anyway).
MIRROR_TIMEOUT_S = 10.0


# --- routing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteRequest:
    """What a resolver may look at."""

    namespace: str
    service: str
    method: str
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Backend:
    """A Service to send a share of the traffic to (weights are relative, as in backendRefs)."""

    namespace: str
    service: str
    weight: int = 1


@dataclass(frozen=True)
class Mirror:
    """A Service that gets a copy of ``percent`` % of the requests; its answers are dropped."""

    namespace: str
    service: str
    percent: float = 100.0


@dataclass(frozen=True)
class RouteDecision:
    backends: tuple[Backend, ...]
    mirrors: tuple[Mirror, ...] = ()
    #: Which resolver decided, for the stats (e.g. "service", "httproute/ns/name").
    source: str = "service"
    #: With no backends: the status and message to answer with (a route that matches nothing is a 404
    #: at a gateway; the default, 503, is for "there are backends but none takes traffic").
    status: int = 503
    message: str = ""


class RouteResolver(Protocol):
    """Turns a request into backends and mirrors, or None to let the next resolver decide."""

    def resolve(self, request: RouteRequest) -> RouteDecision | None: ...


@runtime_checkable
class WatchingResolver(Protocol):
    """A resolver that keeps cluster objects: the data plane runs an informer for each of ``watches``
    and hands every event to ``on_event``, on the data plane's loop (so no locking is needed)."""

    watches: tuple[Resource, ...]

    def resolve(self, request: RouteRequest) -> RouteDecision | None: ...

    async def on_event(self, kind: str, obj: Obj) -> None: ...


class ServiceResolver:
    """The default: the Service named in the URL gets every request."""

    def resolve(self, request: RouteRequest) -> RouteDecision | None:
        return RouteDecision(backends=(Backend(request.namespace, request.service),))


def pick_backend(backends: Sequence[Backend], rng: random.Random) -> Backend | None:
    """A backend chosen with probability proportional to its weight (None when all weights are 0)."""
    total = sum(max(0, b.weight) for b in backends)
    if total <= 0:
        return None
    point = rng.uniform(0, total)
    for backend in backends:
        point -= max(0, backend.weight)
        if point <= 0:
            return backend
    return backends[-1]


# --- counters ------------------------------------------------------------------------------------


@dataclass
class _Tally:
    count: int = 0
    last_at: float = 0.0


@dataclass
class DataPlaneStats:
    """Requests by (namespace, service, version, code); mirrored copies apart."""

    served: dict[tuple[str, str, str, int], _Tally] = field(default_factory=dict)
    mirrored: dict[tuple[str, str, str, int], _Tally] = field(default_factory=dict)
    #: Requests by the route that decided them (RouteDecision.source).
    routes: dict[str, int] = field(default_factory=dict)
    #: Mirrored copies not sent because MAX_MIRRORS_IN_FLIGHT were already in flight.
    mirrors_dropped: int = 0
    #: Callers' requests sent on to a pod and not answered yet, by (namespace, version): an answer
    #: is counted when it comes back, so a slow version can still answer callers for a while after
    #: the route has left it, and this says when it no longer can.
    in_flight: dict[tuple[str, str], int] = field(default_factory=dict)

    def sent(self, namespace: str, version: str, change: int) -> None:
        key = (namespace, version)
        self.in_flight[key] = self.in_flight.get(key, 0) + change
        if not self.in_flight[key]:
            del self.in_flight[key]

    def record(self, namespace: str, service: str, version: str, code: int, *, mirror: bool = False) -> None:
        table = self.mirrored if mirror else self.served
        tally = table.setdefault((namespace, service, version, code), _Tally())
        tally.count += 1
        tally.last_at = time.time()

    @staticmethod
    def _rows(table: dict[tuple[str, str, str, int], _Tally]) -> list[dict[str, Any]]:
        return [
            {"namespace": ns, "service": svc, "version": ver, "code": code, "count": t.count, "last_at": t.last_at}
            for (ns, svc, ver, code), t in sorted(table.items())
        ]

    def to_dict(self) -> dict[str, Any]:
        by_version: dict[str, dict[str, Any]] = {}
        for (ns, svc, ver, _code), tally in self.served.items():
            entry = by_version.setdefault(f"{ns}/{svc}/{ver}", {"count": 0, "last_at": 0.0})
            entry["count"] += tally.count
            entry["last_at"] = max(entry["last_at"], tally.last_at)
        return {
            "now": time.time(),
            "requests": self._rows(self.served),
            "mirrored": self._rows(self.mirrored),
            "by_version": by_version,
            "routes": dict(sorted(self.routes.items())),
            "mirrors_dropped": self.mirrors_dropped,
            "in_flight": [
                {"namespace": ns, "version": ver, "count": count} for (ns, ver), count in sorted(self.in_flight.items())
            ],
        }


def count_for(stats: Mapping[str, Any], namespace: str, service: str, version: str) -> int:
    """Requests answered by ``version`` behind a Service, from a ``/_dataplane/stats`` document."""
    entry = (stats.get("by_version") or {}).get(f"{namespace}/{service}/{version}") or {}
    return int(entry.get("count", 0))


def served_in_namespace(stats: Mapping[str, Any], namespace: str, version: str) -> int:
    """Responses callers got from ``version`` in a namespace, whichever Service (or route) led there."""
    return sum(
        int(row["count"])
        for row in stats.get("requests") or []
        if row["namespace"] == namespace and row["version"] == version
    )


def in_flight_in_namespace(stats: Mapping[str, Any], namespace: str, version: str) -> int:
    """Callers' requests on their way to ``version`` in a namespace, not answered yet."""
    return sum(
        int(row["count"])
        for row in stats.get("in_flight") or []
        if row["namespace"] == namespace and row["version"] == version
    )


def mirrored_in_namespace(stats: Mapping[str, Any], namespace: str, version: str) -> int:
    """Mirrored copies ``version`` received in a namespace (answers nobody saw)."""
    return sum(
        int(row["count"])
        for row in stats.get("mirrored") or []
        if row["namespace"] == namespace and row["version"] == version
    )


# --- the server ----------------------------------------------------------------------------------


class DataPlane:
    """The entry point: ``await start()`` serves on ``host:port`` (0 picks one), ``await stop()``."""

    def __init__(
        self,
        kubeconfig: str,
        registry: PodRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        resolvers: Sequence[RouteResolver] = (),
        upstream_timeout: float = 30.0,
        seed: int | None = None,
        endpoint_slices: bool = False,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.registry = registry
        self.host = host
        self._requested_port = port
        self.resolvers: list[RouteResolver] = [*resolvers, ServiceResolver()]
        self.stats = DataPlaneStats()
        self._rng = random.Random(seed)
        self._timeout = aiohttp.ClientTimeout(total=upstream_timeout)
        self._services: Informer | None = None
        self.endpoint_slices = endpoint_slices
        self._slices: Informer | None = None
        #: (namespace, service) -> {slice name: slice}, kept from the EndpointSlice informer
        self._slices_by_service: dict[tuple[str, str], dict[str, Obj]] = {}
        self._route_informers: list[tuple[Resource, Informer]] = []
        self._api: KubeApi | None = None
        self._raw: client.ApiClient | None = None  # the informers' watches
        self._session: aiohttp.ClientSession | None = None
        self._mirror_session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._mirrors_in_flight: set[asyncio.Task[Any]] = set()
        self._port: int | None = None
        self._metrics = CollectorRegistry(auto_describe=True)
        self._requests_total = Counter(
            "sandbox_dataplane_requests_total",
            "Requests the sandbox data plane answered, by the version of the pod that answered.",
            ["namespace", "service", "version", "code"],
            registry=self._metrics,
        )
        self._mirrored_total = Counter(
            "sandbox_dataplane_mirrored_requests_total",
            "Mirrored copies of requests, by the version of the pod that got them.",
            ["namespace", "service", "version", "code"],
            registry=self._metrics,
        )

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the data plane is not running")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, timeout: float = 30.0) -> None:
        self._api, raw = await connect(self.kubeconfig)
        self._raw = raw
        self._services = Informer(self._api, raw, SERVICES, self._on_service, name="services")
        self._tasks.append(asyncio.create_task(self._services.run(), name="service informer"))
        await asyncio.wait_for(self._services.synced.wait(), timeout)
        if self.endpoint_slices:
            self._slices = Informer(self._api, raw, ENDPOINTSLICES, self._on_slice, name="endpointslices")
            self._tasks.append(asyncio.create_task(self._slices.run(), name="endpointslice informer"))
            await asyncio.wait_for(self._slices.synced.wait(), timeout)
        for resolver in self.resolvers:
            if isinstance(resolver, WatchingResolver):
                for resource in resolver.watches:
                    informer = Informer(self._api, raw, resource, resolver.on_event, name=resource.plural)
                    self._route_informers.append((resource, informer))
                    self._tasks.append(asyncio.create_task(informer.run(), name=f"{resource.plural} informer"))
        for resource, informer in self._route_informers:
            try:
                await asyncio.wait_for(informer.synced.wait(), timeout)
            except TimeoutError:
                raise RuntimeError(
                    f"the data plane could not list {resource.plural}.{resource.group}: is its CRD installed?"
                ) from None
        # No connection reuse limits: the pods are local and come and go; a pooled connection to a
        # stopped pod fails once and is dropped.
        self._session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=False)
        # Mirrors get their own pool, no larger than the copies allowed in flight, so that a slow
        # shadow never holds a connection a caller's request is waiting for.
        self._mirror_session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=MIRROR_TIMEOUT_S),
            connector=aiohttp.TCPConnector(limit=MAX_MIRRORS_IN_FLIGHT),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get(STATS_PATH, self._handle_stats)
        app.router.add_get(METRICS_PATH, self._handle_metrics)
        app.router.add_route("*", "/{namespace}/{service}/{tail:.*}", self._handle_proxy)
        app.router.add_route("*", "/{namespace}/{service}", self._handle_proxy)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port, reuse_address=True)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await cancel_and_wait([*self._tasks, *self._mirrors_in_flight])
        self._tasks.clear()
        for session in (self._session, self._mirror_session):
            if session is not None:
                await session.close()
        if self._api is not None:
            await self._api.close()
        if self._raw is not None:
            await self._raw.close()

    async def _on_service(self, kind: str, obj: Obj) -> None:
        """The informer keeps the cache; nothing else to do on a change."""

    def service_selector(self, namespace: str, service: str) -> dict[str, str] | None:
        """The Service's ``spec.selector`` (None: no such Service)."""
        assert self._services is not None
        obj = self._services.objects.get((namespace, service))
        if obj is None:
            return None
        return {str(k): str(v) for k, v in ((obj.get("spec") or {}).get("selector") or {}).items()}

    async def _on_slice(self, kind: str, obj: Obj) -> None:
        namespace, name = key_of(obj)
        service = ((obj.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not service:
            return
        slices = self._slices_by_service.setdefault((namespace, str(service)), {})
        if kind == "DELETED":
            slices.pop(name, None)
        else:
            slices[name] = obj

    def endpoints(self, namespace: str, service: str) -> list[Pod]:
        if self.endpoint_slices:
            return self._slice_endpoints(namespace, service)
        selector = self.service_selector(namespace, service)
        return self.registry.ready_endpoints(namespace, selector) if selector else []

    def _slice_endpoints(self, namespace: str, service: str) -> list[Pod]:
        """The Service's ready endpoints, as the processes the registry maps their addresses to."""
        pods: list[Pod] = []
        seen: set[str] = set()
        for obj in (self._slices_by_service.get((namespace, service)) or {}).values():
            for endpoint in obj.get("endpoints") or []:
                # discovery.k8s.io/v1: an unset `ready` means ready.
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                target = endpoint.get("targetRef") or {}
                for address in endpoint.get("addresses") or []:
                    pod = self.registry.by_ip(str(address))
                    # The slice may still name a pod that is gone, whose address a new pod now has:
                    # only the pod the endpoint names gets its traffic.
                    if pod is not None and target.get("uid") and target.get("uid") != pod.uid:
                        continue
                    if pod is not None and address not in seen:
                        seen.add(address)
                        pods.append(pod)
        return pods

    # --- handlers ---------------------------------------------------------------------------------

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.to_dict())

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self._metrics), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _decide(self, route: RouteRequest) -> RouteDecision:
        for resolver in self.resolvers:
            decision = resolver.resolve(route)
            if decision is not None:
                return decision
        raise AssertionError("ServiceResolver always decides")

    async def _handle_proxy(self, request: web.Request) -> web.StreamResponse:
        namespace, service = request.match_info["namespace"], request.match_info["service"]
        path = "/" + request.match_info.get("tail", "")
        route = RouteRequest(namespace, service, request.method, path, request.headers, request.rel_url.query)
        decision = self._decide(route)
        self.stats.routes[decision.source] = self.stats.routes.get(decision.source, 0) + 1
        body = await request.read()
        # Copied now: the mirror tasks outlive this handler, and with it aiohttp's request object.
        upstream = _Upstream(
            request.method,
            path,
            list(request.rel_url.query.items()),
            [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP],
            body,
        )
        for mirror in decision.mirrors:
            if mirror.percent >= 100 or self._rng.uniform(0, 100) < mirror.percent:
                self._send_mirror(mirror, upstream)
        backend = pick_backend(decision.backends, self._rng)
        if backend is None:
            message = decision.message or "the route has no backend with a weight above 0"
            return self._error(namespace, service, decision.status, message, decision.source)
        if self.service_selector(backend.namespace, backend.service) is None:
            return self._error(
                backend.namespace,
                backend.service,
                503,
                f"no Service {backend.namespace}/{backend.service}",
                decision.source,
            )
        pods = self.endpoints(backend.namespace, backend.service)
        if not pods:
            return self._error(
                backend.namespace,
                backend.service,
                503,
                f"no ready endpoints for Service {backend.namespace}/{backend.service}",
                decision.source,
            )
        pod = self._rng.choice(pods)
        assert self._session is not None
        # The shadow comparator's own calls (to stable and candidate) are shadow work: counted with the
        # mirrored copies, since no caller sees their answers.
        shadow = bool(request.headers.get(SHADOW_HEADER))
        if not shadow:
            self.stats.sent(backend.namespace, pod.version, +1)
        try:  # counted before it leaves the in-flight tally: at 0 in flight, the count is final
            try:
                status, headers, payload = await self._forward(self._session, pod, upstream)
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                self._count(backend, pod.version, 502, shadow=shadow)
                return web.json_response(
                    {"error": f"pod {pod.name} did not answer: {error.__class__.__name__}: {error}"},
                    status=502,
                    headers={POD_HEADER: pod.name, ROUTE_HEADER: decision.source},
                )
            self._count(backend, pod.version, status, shadow=shadow)
        finally:
            if not shadow:
                self.stats.sent(backend.namespace, pod.version, -1)
        response = web.Response(status=status, body=payload)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                response.headers.add(name, value)
        response.headers[POD_HEADER] = pod.name
        response.headers[ROUTE_HEADER] = decision.source
        return response

    @staticmethod
    async def _forward(
        session: aiohttp.ClientSession, pod: Pod, upstream: _Upstream
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        url = f"http://{pod.address}{upstream.path}"
        async with session.request(
            upstream.method, url, params=upstream.query, headers=upstream.headers, data=upstream.body or None
        ) as answer:
            payload = await answer.read()
            return answer.status, list(answer.headers.items()), payload

    def _send_mirror(self, mirror: Mirror, upstream: _Upstream) -> None:
        """Start a mirrored copy without waiting for it; drop it when too many are in flight."""
        if len(self._mirrors_in_flight) >= MAX_MIRRORS_IN_FLIGHT:
            self.stats.mirrors_dropped += 1
            return
        task = asyncio.create_task(self._mirror(mirror, upstream))
        self._mirrors_in_flight.add(task)
        task.add_done_callback(self._mirrors_in_flight.discard)

    async def _mirror(self, mirror: Mirror, upstream: _Upstream) -> None:
        """Fire and forget: the caller never waits for, nor sees, the shadow's answer."""
        pods = self.endpoints(mirror.namespace, mirror.service)
        if not pods or self._mirror_session is None:
            return
        pod = self._rng.choice(pods)
        try:
            status, _headers, _payload = await self._forward(self._mirror_session, pod, upstream)
        except (aiohttp.ClientError, TimeoutError, OSError):
            status = 502
        except Exception:  # a background task's error would only be logged as "never retrieved"
            log.exception("mirroring to %s/%s failed", mirror.namespace, mirror.service)
            status = 502
        self.stats.record(mirror.namespace, mirror.service, pod.version, status, mirror=True)
        self._mirrored_total.labels(mirror.namespace, mirror.service, pod.version, str(status)).inc()

    def _count(self, backend: Backend, version: str, code: int, *, shadow: bool = False) -> None:
        self.stats.record(backend.namespace, backend.service, version, code, mirror=shadow)
        counter = self._mirrored_total if shadow else self._requests_total
        counter.labels(backend.namespace, backend.service, version, str(code)).inc()

    def _error(self, namespace: str, service: str, code: int, message: str, source: str) -> web.Response:
        # Counted under version "none": what callers saw matters, even when no pod answered.
        self.stats.record(namespace, service, "none", code)
        self._requests_total.labels(namespace, service, "none", str(code)).inc()
        return web.json_response(
            {"error": message, "namespace": namespace, "service": service, "route": source},
            status=code,
            headers={ROUTE_HEADER: source},
        )


@dataclass(frozen=True)
class _Upstream:
    """What is sent to a pod: the caller's request without its hop-by-hop headers."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: list[tuple[str, str]]
    body: bytes
