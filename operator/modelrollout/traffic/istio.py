"""Istio `VirtualService` (networking.istio.io v1beta1, or v1 from Istio 1.22): route weights,
`mirror` + `mirrorPercentage` for shadow traffic, one added http route for header-routed steps.

What the operator owns in a user's VirtualService, and nothing else:

* every `http` route with a destination whose host is the rollout's stable Service, by short name
  or any qualified form (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`): its `route`
  becomes the stable destination (weight 100-w) and, when w > 0, the candidate (weight w, host in
  the same form as the stable one, same port, no subset: a subset names a DestinationRule entry of
  the stable host, which the candidate host does not have); its `mirror` / `mirrorPercentage` when
  the mirror is the candidate;
* one http route named `modelrollout-header-route`, placed just before the first managed route
  (Istio takes the first route that matches, so before the routes it derives from, and after the
  user's routes that come earlier and send elsewhere).

Istio's `mirror` holds one target: a managed route that already mirrors somewhere else is reported
as bad input rather than overwritten. The newer `mirrors` list is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelrollout.traffic.base import (
    HEADER_ROUTE_NAME,
    JsonDict,
    ObjectRouter,
    RouteError,
    RouteResource,
    clone,
    route_namespace,
)
from modelrollout.vocabulary.routes import HeaderMatch, RouteState

GROUP = "networking.istio.io"
KIND = "VirtualService"
PLURAL = "virtualservices"
VERSIONS = ("v1beta1", "v1")
_MIRROR_KEYS = ("mirror", "mirrorPercentage")


def _title(route: JsonDict) -> str:
    return f"VirtualService {route_namespace(route)}/{(route.get('metadata') or {}).get('name', '?')}"


def _is_host(host: Any, service: str, namespace: str) -> bool:
    """Whether a destination host names `service` in the VirtualService's namespace, where Istio
    resolves short names (any cluster domain after `.svc.`)."""
    if not isinstance(host, str):
        return False
    qualified = f"{service}.{namespace}.svc"
    return host in (service, f"{service}.{namespace}", qualified) or host.startswith(qualified + ".")


def _host_like(stable_host: str, stable: str, candidate: str) -> str:
    """The candidate's host written the way the user wrote the stable one (short, or qualified)."""
    return candidate + stable_host[len(stable) :]


def _destination_host(entry: Any) -> Any:
    return ((entry or {}).get("destination") or {}).get("host") if isinstance(entry, dict) else None


def _weights(entries: list[JsonDict]) -> list[float]:
    # A lone destination takes all traffic whatever its weight; otherwise an absent weight is 0.
    if len(entries) == 1:
        return [100.0]
    return [float(entry.get("weight", 0)) for entry in entries]


@dataclass(frozen=True)
class IstioRouter(ObjectRouter):
    version: str = "v1beta1"
    #: Where the mirror goes when not to the candidate: the rollout's comparator (a shadow step with compare).
    mirror_service: str = ""
    #: The rollout's comparator Service: a mirror to it is ours even when this spec mirrors to the candidate.
    comparator_service: str = field(default="", compare=False)

    kind: ClassVar[str] = KIND

    @property
    def mirror_to(self) -> str:
        return self.mirror_service or self.candidate_service

    def _our_mirror_host(self, host: Any, namespace: str) -> bool:
        return any(
            _is_host(host, service, namespace)
            for service in (self.candidate_service, self.mirror_to, self.comparator_service)
            if service
        )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.version not in VERSIONS:
            raise ValueError(f"networking.istio.io version must be one of {', '.join(VERSIONS)}, got {self.version}")

    @property
    def resource(self) -> RouteResource:
        return RouteResource(GROUP, self.version, PLURAL, KIND)

    # --- recognising what is ours ------------------------------------------------------------------

    @staticmethod
    def _is_header_route(http: JsonDict) -> bool:
        return http.get("name") == HEADER_ROUTE_NAME

    def _managed(self, route: JsonDict) -> list[tuple[int, JsonDict, JsonDict]]:
        """(index, http route, its first stable route entry) for every managed http route."""
        namespace = route_namespace(route)
        found = []
        for index, http in enumerate((route.get("spec") or {}).get("http") or []):
            if self._is_header_route(http):
                continue
            stable = next(
                (e for e in http.get("route") or [] if _is_host(_destination_host(e), self.stable_service, namespace)),
                None,
            )
            if stable is not None:
                found.append((index, http, stable))
        return found

    def _no_route(self, route: JsonDict) -> RouteError:
        return self._error(
            route,
            f'{_title(route)} has no http route with a destination host "{self.stable_service}"; add one, '
            "the operator manages its weights",
        )

    def _problem(self, route: JsonDict, index: int, http: JsonDict, mirror_percent: int) -> str | None:
        """Parts of a managed route we would have to overwrite to do our job."""
        namespace = route_namespace(route)
        where = f"{_title(route)} http[{index}]"
        for entry in http.get("route") or []:
            host = _destination_host(entry)
            if not (
                _is_host(host, self.stable_service, namespace) or _is_host(host, self.candidate_service, namespace)
            ):
                return (
                    f'{where} sends traffic to "{host}" besides "{self.stable_service}"; the operator sets every '
                    f'destination of a route it manages, so move "{host}" to an http route of its own'
                )
        mirror_host = (http.get("mirror") or {}).get("host")
        if mirror_host is not None and mirror_percent > 0 and not self._our_mirror_host(mirror_host, namespace):
            return (
                f'{where} already mirrors to "{mirror_host}" and Istio\'s mirror holds one target; remove it to '
                "shadow the candidate"
            )
        return None

    # --- the edit ----------------------------------------------------------------------------------

    def observe(self, route: JsonDict) -> RouteState | RouteError:
        """What the managed http routes do now: the candidate's weight, the mirrored share and the
        managed header route, read from the first managed route (the edit keeps them all alike)."""
        namespace = route_namespace(route)
        managed = self._managed(route)
        if not managed:
            return self._no_route(route)
        for index, http, _ in managed:
            problem = self._problem(route, index, http, mirror_percent=0)
            if problem is not None:
                return self._error(route, problem)
        _, http, _ = managed[0]
        entries = http.get("route") or []
        weights = _weights(entries)
        total = sum(weights)
        candidate = sum(
            weight
            for entry, weight in zip(entries, weights, strict=True)
            if _is_host(_destination_host(entry), self.candidate_service, namespace)
        )
        weight = round(100 * candidate / total) if total else 0
        mirror = 0
        if _is_host((http.get("mirror") or {}).get("host"), self.mirror_to, namespace):
            mirror = round(float((http.get("mirrorPercentage") or {}).get("value", 100)))
        header: HeaderMatch | None = None
        for other in (route.get("spec") or {}).get("http") or []:
            if self._is_header_route(other):
                # Ours is the last header of each match (`_header_route` puts it after the user's
                # own header matches, which the header route copies).
                headers = list(((other.get("match") or [{}])[0].get("headers") or {}).items())
                if headers and isinstance(headers[-1][1], dict) and "exact" in headers[-1][1]:
                    header = HeaderMatch(str(headers[-1][0]), str(headers[-1][1]["exact"]))
                break
        return RouteState(weight, mirror, header)

    def _candidate_entry(self, stable: JsonDict) -> JsonDict:
        entry = clone(stable)
        destination = entry["destination"]
        destination["host"] = _host_like(destination["host"], self.stable_service, self.candidate_service)
        destination.pop("subset", None)
        return entry

    def _edit_http(self, http: JsonDict, stable: JsonDict, state: RouteState, namespace: str) -> JsonDict:
        edited = clone(http)
        weight = state.candidate_weight
        # Stable stays listed even at weight 0: it is how the next pass finds this route again.
        entries = [{**clone(stable), "weight": 100 - weight}]
        if weight > 0:
            entries.append({**self._candidate_entry(stable), "weight": weight})
        edited["route"] = entries

        ours = self._our_mirror_host((http.get("mirror") or {}).get("host"), namespace)
        if state.mirror_percent > 0:
            target = clone(stable["destination"])
            target["host"] = _host_like(target["host"], self.stable_service, self.mirror_to)
            edited["mirror"] = {key: target[key] for key in ("host", "port") if key in target}
            edited["mirrorPercentage"] = {"value": float(state.mirror_percent)}
        elif ours:
            for key in _MIRROR_KEYS:
                edited.pop(key, None)
        return edited

    def _header_route(self, managed: list[tuple[JsonDict, JsonDict]], header: HeaderMatch) -> JsonDict:
        """The managed routes' match conditions, each with the header added (or just the header for
        a route that matches everything), sent whole to the candidate; the first managed route's
        rewrites, timeouts and retries come along so the candidate gets requests as stable does."""
        first, stable = managed[0]
        name = header.name.lower()  # Istio requires lower-case header names in matches
        matches: list[JsonDict] = []
        for source, _ in managed:
            for match in source.get("match") or [{}]:
                condition = clone(match)
                # Ours goes last (replacing a same-named one), which is how `observe` tells it apart.
                headers = {key: value for key, value in (condition.get("headers") or {}).items() if key != name}
                condition["headers"] = {**headers, name: {"exact": header.value}}
                if condition not in matches:
                    matches.append(condition)
        http: JsonDict = {"name": HEADER_ROUTE_NAME, "match": matches}
        http.update(
            {
                key: clone(value)
                for key, value in first.items()
                if key not in ("name", "match", "route", "mirrors", *_MIRROR_KEYS)
            }
        )
        http["route"] = [{**self._candidate_entry(stable), "weight": 100}]
        return http

    def edit(self, route: JsonDict, state: RouteState) -> JsonDict | RouteError:
        namespace = route_namespace(route)
        managed = self._managed(route)
        if not managed:
            return self._no_route(route)
        for index, http, _ in managed:
            problem = self._problem(route, index, http, state.mirror_percent)
            if problem is not None:
                return self._error(route, problem)

        edits = {index: self._edit_http(http, stable, state, namespace) for index, http, stable in managed}
        routes: list[JsonDict] = []
        for index, http in enumerate(route["spec"].get("http") or []):
            if index == managed[0][0] and state.header is not None:
                sources = [(edits[i], stable) for i, _, stable in managed]
                routes.append(self._header_route(sources, state.header))
            if index in edits:
                routes.append(edits[index])
            elif not self._is_header_route(http):
                routes.append(clone(http))
        result = clone(route)
        result["spec"]["http"] = routes
        return result
