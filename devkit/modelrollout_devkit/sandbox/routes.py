"""Route resolvers for the sandbox's data plane: Gateway API ``HTTPRoute`` and Istio ``VirtualService``.

Each resolver keeps the routing objects of one kind, fed by an :class:`~modelrollout_devkit.sandbox.kube.Informer`
(the data plane starts one per resource in :attr:`watches`), and answers a request the way a gateway
or a mesh sidecar would:

* :class:`HTTPRouteResolver`: ``/<namespace>/<name>/<path>`` where ``<name>`` is an HTTPRoute's name or
  one of its ``spec.hostnames``. The rules of every such route are matched in Gateway API precedence
  (exact path, then the longest prefix, then a method match, then the most header matches, then the
  most query matches; ties go to the oldest route, then ``namespace/name``, then rule order). The
  chosen rule's ``backendRefs`` are weighted Services; its ``RequestMirror`` filters add mirrors.
* :class:`VirtualServiceResolver`: ``/<namespace>/<host>/<path>`` where ``<host>`` is one of a
  VirtualService's ``spec.hosts`` (short name or ``name.ns.svc.cluster.local``). ``spec.http[]`` is tried
  in order, the first match wins (Istio semantics); its ``route[]`` destinations are weighted
  Services, ``mirror`` + ``mirrorPercentage`` (and the newer ``mirrors``) add mirrors.

A request that names a route but matches none of its rules is answered 404, as a gateway does,
rather than falling through to a Service of the same name. Everything here is pure given the
objects, so the precedence rules are tested without a server (``tests/sandbox/test_routes.py``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from modelrollout.kube.api import Resource
from modelrollout_devkit.sandbox.dataplane import Backend, Mirror, RouteDecision, RouteRequest
from modelrollout_devkit.sandbox.kube import Obj

log = logging.getLogger("modelrollout_devkit.sandbox.routes")

HTTPROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes")
# Istio serves the same objects as v1beta1 and v1; v1beta1 is the version every Istio since 1.x has.
VIRTUALSERVICES = Resource("networking.istio.io", "v1beta1", "virtualservices")
CLUSTER_DOMAIN = "cluster.local"


def route_crd_documents() -> list[dict[str, Any]]:
    """The minimal HTTPRoute and VirtualService CRDs shipped under ``sandbox/crds/``."""
    folder = resources.files("modelrollout_devkit.sandbox").joinpath("crds")
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".yaml"))
    return [yaml.safe_load(folder.joinpath(name).read_text()) for name in names]


def default_resolvers() -> list[HTTPRouteResolver | VirtualServiceResolver]:
    """The resolvers the sandbox registers, in the order they are asked."""
    return [HTTPRouteResolver(), VirtualServiceResolver()]


# --- shared --------------------------------------------------------------------------------------


class _ObjectIndex:
    """Objects of one kind by namespace, kept from an informer's events."""

    def __init__(self) -> None:
        self.by_namespace: dict[str, dict[str, Obj]] = {}

    async def on_event(self, kind: str, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if kind == "DELETED":
            self.by_namespace.get(namespace, {}).pop(name, None)
        else:
            self.by_namespace.setdefault(namespace, {})[name] = obj

    def put(self, *objs: Obj) -> None:
        """Add objects directly (tests, and callers without an API server)."""
        for obj in objs:
            meta = obj.get("metadata") or {}
            self.by_namespace.setdefault(str(meta.get("namespace") or "default"), {})[str(meta.get("name"))] = obj

    def in_namespace(self, namespace: str) -> Iterable[Obj]:
        return list(self.by_namespace.get(namespace, {}).values())


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names are case-insensitive; with a repeated header, the first value is the one matched."""
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), value)
    return lowered


def _regex(pattern: Any, value: str) -> bool:
    try:
        return re.fullmatch(str(pattern), value) is not None
    except re.error:
        return False  # an invalid pattern matches nothing, as Envoy refuses the config


def _age_key(obj: Obj) -> tuple[str, str]:
    """Gateway API's tie-break between routes: the oldest first, then namespace/name."""
    meta = obj.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _not_found(source: str, message: str) -> RouteDecision:
    return RouteDecision(backends=(), source=source, status=404, message=message)


# --- Gateway API ---------------------------------------------------------------------------------


def _path_match(match: Mapping[str, Any], path: str) -> tuple[int, int] | None:
    """(kind rank, value length) when the path matches; None when it does not.

    Exact ranks above PathPrefix, which ranks above RegularExpression (implementation-specific in the
    Gateway API, and the least specific here). PathPrefix matches whole path elements: ``/foo`` matches
    ``/foo`` and ``/foo/bar``, not ``/foobar``, and a trailing slash in the prefix is ignored.
    """
    spec = match.get("path") or {}
    kind = str(spec.get("type") or "PathPrefix")
    value = str(spec.get("value") if spec.get("value") is not None else "/")
    if kind == "Exact":
        return (2, len(value)) if path == value else None
    if kind == "RegularExpression":
        return (0, len(value)) if _regex(value, path) else None
    prefix = value.rstrip("/")
    if not prefix or path == prefix or path.startswith(prefix + "/"):
        return 1, len(prefix)
    return None


def _string_match(kind: str | None, expected: Any, actual: str | None) -> bool:
    if actual is None:
        return False
    if (kind or "Exact") == "RegularExpression":
        return _regex(expected, actual)
    return actual == str(expected)


def _gateway_match(
    match: Mapping[str, Any], request: RouteRequest, headers: Mapping[str, str]
) -> tuple[int, ...] | None:
    """The precedence of one ``matches[]`` entry against the request (higher wins), None if no match."""
    path = _path_match(match, request.path)
    if path is None:
        return None
    method = match.get("method")
    if method and str(method).upper() != request.method.upper():
        return None
    header_matches = match.get("headers") or []
    seen: set[str] = set()
    for item in header_matches:
        name = str(item.get("name", "")).lower()
        if name in seen:
            continue  # "only the first entry with an equivalent name MUST be considered"
        seen.add(name)
        if not _string_match(item.get("type"), item.get("value"), headers.get(name)):
            return None
    query_matches = match.get("queryParams") or []
    for item in query_matches:
        if not _string_match(item.get("type"), item.get("value"), request.query.get(str(item.get("name", "")))):
            return None
    return (*path, 1 if method else 0, len(seen), len(query_matches))


def _service_ref(ref: Mapping[str, Any], namespace: str) -> tuple[str, str]:
    """(namespace, Service name) of a backendRef; a ref without namespace means the route's."""
    return str(ref.get("namespace") or namespace), str(ref.get("name", ""))


def _mirror_percent(mirror: Mapping[str, Any]) -> float:
    if mirror.get("percent") is not None:
        return float(mirror["percent"])
    fraction = mirror.get("fraction")
    if isinstance(fraction, Mapping):
        denominator = float(fraction.get("denominator", 100) or 0)
        return 0.0 if denominator <= 0 else 100.0 * float(fraction.get("numerator", 0)) / denominator
    return 100.0


def _hostname_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower(), host.lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return pattern == host


@dataclass(frozen=True)
class _Candidate:
    precedence: tuple[int, ...]
    route: Obj
    rule_index: int
    rule: Mapping[str, Any]


class HTTPRouteResolver(_ObjectIndex):
    """Routes as a Gateway API implementation would, for the HTTPRoutes in the cluster."""

    watches: tuple[Resource, ...] = (HTTPROUTES,)

    def routes_for(self, namespace: str, name: str) -> list[Obj]:
        """The HTTPRoutes a request to ``/<namespace>/<name>/...`` reaches: by name or by hostname."""
        found = []
        for route in self.in_namespace(namespace):
            hostnames = (route.get("spec") or {}).get("hostnames") or []
            if (route.get("metadata") or {}).get("name") == name or any(
                _hostname_matches(str(host), name) for host in hostnames
            ):
                found.append(route)
        return found

    def resolve(self, request: RouteRequest) -> RouteDecision | None:
        routes = self.routes_for(request.namespace, request.service)
        if not routes:
            return None
        headers = _lower_headers(request.headers)
        best: tuple[tuple[Any, ...], _Candidate] | None = None
        for route in routes:
            for index, rule in enumerate((route.get("spec") or {}).get("rules") or []):
                # A rule without matches matches everything: the API's default PathPrefix "/".
                for match in rule.get("matches") or [{}]:
                    precedence = _gateway_match(match, request, headers)
                    if precedence is None:
                        continue
                    # Sorted ascending: higher precedence first, then the oldest route, then rule order.
                    key = (tuple(-p for p in precedence), _age_key(route), index)
                    if best is None or key < best[0]:
                        best = (key, _Candidate(precedence, route, index, rule))
        names = ", ".join(sorted(str((r.get("metadata") or {}).get("name")) for r in routes))
        if best is None:
            return _not_found(
                f"httproute/{request.namespace}/{names}",
                f"no rule of HTTPRoute {request.namespace}/{names} matches {request.method} {request.path}",
            )
        chosen = best[1]
        namespace = str((chosen.route.get("metadata") or {}).get("namespace") or request.namespace)
        backends = tuple(
            Backend(*_service_ref(ref, namespace), weight=max(0, int(ref.get("weight", 1))))
            for ref in chosen.rule.get("backendRefs") or []
        )
        mirrors = tuple(
            Mirror(
                *_service_ref(item["requestMirror"]["backendRef"], namespace),
                percent=_mirror_percent(item["requestMirror"]),
            )
            for item in chosen.rule.get("filters") or []
            if item.get("type") == "RequestMirror"
            and isinstance((item.get("requestMirror") or {}).get("backendRef"), Mapping)
        )
        source = f"httproute/{namespace}/{(chosen.route.get('metadata') or {}).get('name')}/rules[{chosen.rule_index}]"
        return RouteDecision(backends=backends, mirrors=mirrors, source=source)


# --- Istio ---------------------------------------------------------------------------------------


def service_of_host(host: str, namespace: str) -> tuple[str, str] | None:
    """(namespace, Service) a mesh host names: ``svc`` (in ``namespace``), ``svc.ns``, ``svc.ns.svc`` or
    ``svc.ns.svc.<cluster domain>``; None for other names (external hosts, wildcards)."""
    parts = host.lower().split(".")
    if len(parts) == 1 and parts[0] and parts[0] != "*":
        return namespace, parts[0]
    if len(parts) == 2 or (len(parts) >= 3 and parts[2] == "svc"):
        return parts[1], parts[0]
    return None


def _host_matches(pattern: str, host: str, namespace: str) -> bool:
    """Whether a ``spec.hosts`` entry covers the host named in the URL (both may be short or qualified)."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.lower().endswith(pattern[1:].lower())
    wanted, given = service_of_host(pattern, namespace), service_of_host(host, namespace)
    if wanted is not None and given is not None:
        return wanted == given
    return pattern.lower() == host.lower()


def _istio_string(condition: Any, actual: str | None) -> bool:
    """An Istio StringMatch (``exact``, ``prefix`` or ``regex``) against a value (None: absent)."""
    if not isinstance(condition, Mapping):
        return False
    if actual is None:
        return False
    if "exact" in condition:
        return actual == str(condition["exact"])
    if "prefix" in condition:
        return actual.startswith(str(condition["prefix"]))
    if "regex" in condition:
        return _regex(condition["regex"], actual)
    return True  # an empty StringMatch only asks for presence


def _istio_match(match: Mapping[str, Any], request: RouteRequest, headers: Mapping[str, str]) -> bool:
    """One HTTPMatchRequest: every condition it sets must hold."""
    uri = match.get("uri")
    if uri is not None:
        path = request.path.lower() if match.get("ignoreUriCase") else request.path
        condition = {k: str(v).lower() for k, v in uri.items()} if match.get("ignoreUriCase") else uri
        if not _istio_string(condition, path):
            return False
    method = match.get("method")
    if method is not None and not _istio_string(method, request.method.upper()):
        return False
    for name, condition in (match.get("headers") or {}).items():
        if not _istio_string(condition, headers.get(str(name).lower())):
            return False
    for name, condition in (match.get("withoutHeaders") or {}).items():
        if _istio_string(condition, headers.get(str(name).lower())):
            return False
    for name, condition in (match.get("queryParams") or {}).items():
        if not _istio_string(condition, request.query.get(str(name))):
            return False
    return True


def _destination(host: Any, namespace: str) -> tuple[str, str]:
    found = service_of_host(str(host or ""), namespace)
    # A host that is not a cluster Service is sent to as a Service of that name: the data plane then
    # answers 503 "no Service", much as a mesh without a ServiceEntry would fail it.
    return found if found is not None else (namespace, str(host or ""))


class VirtualServiceResolver(_ObjectIndex):
    """Routes as an Istio sidecar would, for the VirtualServices in the cluster."""

    watches: tuple[Resource, ...] = (VIRTUALSERVICES,)

    def services_for(self, namespace: str, host: str) -> list[Obj]:
        """The VirtualServices whose ``spec.hosts`` cover ``host``, the oldest first (Istio's merge order)."""
        found = [
            vs
            for vs in self.in_namespace(namespace)
            if any(_host_matches(str(h), host, namespace) for h in (vs.get("spec") or {}).get("hosts") or [])
        ]
        return sorted(found, key=_age_key)

    def resolve(self, request: RouteRequest) -> RouteDecision | None:
        services = self.services_for(request.namespace, request.service)
        if not services:
            return None
        headers = _lower_headers(request.headers)
        for vs in services:
            namespace = str((vs.get("metadata") or {}).get("namespace") or request.namespace)
            name = (vs.get("metadata") or {}).get("name")
            for index, http in enumerate((vs.get("spec") or {}).get("http") or []):
                matches = http.get("match") or []
                if matches and not any(_istio_match(m, request, headers) for m in matches):
                    continue
                return self._decision(http, namespace, f"virtualservice/{namespace}/{name}/http[{index}]")
        names = ", ".join(str((vs.get("metadata") or {}).get("name")) for vs in services)
        return _not_found(
            f"virtualservice/{request.namespace}/{names}",
            f"no http route of VirtualService {request.namespace}/{names} matches {request.method} {request.path}",
        )

    @staticmethod
    def _decision(http: Mapping[str, Any], namespace: str, source: str) -> RouteDecision:
        entries = [e for e in http.get("route") or [] if isinstance(e, Mapping)]
        if not entries:
            return RouteDecision(
                backends=(),
                source=source,
                status=501,
                message=f"{source} has no route destinations (redirect, directResponse and delegate are not "
                "simulated by the sandbox)",
            )
        # A lone destination takes all the traffic; among several, an absent weight is 0.
        weights = [100] if len(entries) == 1 else [max(0, int(e.get("weight", 0))) for e in entries]
        backends = tuple(
            Backend(*_destination((e.get("destination") or {}).get("host"), namespace), weight=w)
            for e, w in zip(entries, weights, strict=True)
        )
        mirrors: list[Mirror] = []
        mirror = http.get("mirror")
        if isinstance(mirror, Mapping) and mirror.get("host"):
            percentage = http.get("mirrorPercentage")
            if isinstance(percentage, Mapping) and percentage.get("value") is not None:
                percent = float(percentage["value"])
            elif http.get("mirrorPercent") is not None:  # the deprecated integer field
                percent = float(http["mirrorPercent"])
            else:
                percent = 100.0
            mirrors.append(Mirror(*_destination(mirror["host"], namespace), percent=percent))
        for item in http.get("mirrors") or []:
            host = ((item or {}).get("destination") or {}).get("host")
            if host:
                value = (item.get("percentage") or {}).get("value")
                mirrors.append(Mirror(*_destination(host, namespace), percent=100.0 if value is None else float(value)))
        return RouteDecision(backends=backends, mirrors=tuple(mirrors), source=source)
