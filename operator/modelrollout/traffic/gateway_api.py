"""Gateway API `HTTPRoute` (gateway.networking.k8s.io/v1): weights on backendRefs, a RequestMirror
filter for shadow traffic, and one added rule for header-routed steps.

What the operator owns in a user's HTTPRoute, and nothing else:

* every rule with a backendRef to the rollout's stable Service (a "managed rule"): its backendRefs
  become the stable Service (weight 100-w) and, when w > 0, the candidate Service (weight w), the
  candidate's ref copied from the stable one (port, namespace, per-backend filters as the user wrote
  them); a `RequestMirror` filter whose backendRef is the candidate Service; the rule's other
  filters, matches, timeouts stay as they are, in order;
* one rule for a header route, placed just before the first managed rule, named
  `modelrollout-header-route` when the installed Gateway API has `rules[].name`, else recognised by
  its backends (only the candidate Service, which no user rule should send to alone).

Gateway API versions (what the installed CRDs accept decides what we may write; a field the CRD
does not know is pruned silently by the API server):

* `requestMirror.percent` (GEP-3171) is experimental in v1.2 and standard from v1.3. With
  `GatewayApiFeatures(mirror_percent=False)` the filter is written without it, so a partial mirror
  becomes a full one: the only thing an older RequestMirror can do (answers are still dropped).
* `rules[].name` (GEP-995) is experimental in v1.2 and standard from v1.4; off by default, since
  recognising the header rule by its backends works on every version.

`features_of` reads both from the installed CRD's schema (`kube.routing` fetches the CRD).
"""

from __future__ import annotations

from collections.abc import Iterator
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
    set_or_drop,
    share,
)
from modelrollout.vocabulary.routes import HeaderMatch, RouteState

HTTPROUTES = RouteResource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")
HTTPROUTE_CRD = "httproutes.gateway.networking.k8s.io"
MIRROR = "RequestMirror"
# Fields of a backendRef that say *which* backend (BackendObjectReference), as opposed to how much
# traffic (weight) or what to do on the way (filters); a RequestMirror's backendRef has only these.
_OBJECT_REF_FIELDS = ("group", "kind", "namespace", "port")
# The API server's default for an absent path match: written out in the header rule so that the
# object reads back as we wrote it and the next pass sees no change.
_DEFAULT_PATH = {"type": "PathPrefix", "value": "/"}


@dataclass(frozen=True)
class GatewayApiFeatures:
    """Optional HTTPRoute fields the installed Gateway API CRDs accept (see the module docstring)."""

    mirror_percent: bool = True
    rule_names: bool = False


def _title(route: JsonDict) -> str:
    return f"HTTPRoute {route_namespace(route)}/{(route.get('metadata') or {}).get('name', '?')}"


def _refers_to(ref: JsonDict | None, service: str, namespace: str) -> bool:
    """Whether a backendRef is the Service `service` in the route's namespace (group "" and kind
    Service are the API's defaults, and a ref without namespace means the route's)."""
    if not isinstance(ref, dict):
        return False
    return (
        (ref.get("group") or "") == ""
        and (ref.get("kind") or "Service") == "Service"
        and ref.get("name") == service
        and (ref.get("namespace") or namespace) == namespace
    )


def _weight(ref: JsonDict) -> int:
    return int(ref.get("weight", 1))  # the API's default weight


def _mirror_target(item: JsonDict) -> JsonDict | None:
    if item.get("type") != MIRROR:
        return None
    backend = (item.get("requestMirror") or {}).get("backendRef")
    return backend if isinstance(backend, dict) else None


def _mirrored_percent(item: JsonDict) -> float:
    mirror = item.get("requestMirror") or {}
    if "percent" in mirror:
        return float(mirror["percent"])
    if "fraction" in mirror:
        fraction = mirror["fraction"] or {}
        return share(float(fraction.get("numerator", 0)), float(fraction.get("denominator", 100)))
    return 100.0


def _with_header(match: JsonDict, header: HeaderMatch) -> JsonDict:
    edited = clone(match)
    edited.setdefault("path", dict(_DEFAULT_PATH))
    # Header names are case-insensitive in HTTP and in the Gateway API: ours replaces a same-named one.
    headers = [item for item in edited.get("headers") or [] if str(item.get("name", "")).lower() != header.name.lower()]
    headers.append({"type": "Exact", "name": header.name, "value": header.value})
    edited["headers"] = headers
    return edited


@dataclass(frozen=True)
class GatewayApiRouter(ObjectRouter):
    features: GatewayApiFeatures = field(default_factory=GatewayApiFeatures)
    #: Where the mirror goes when not to the candidate: the rollout's comparator (a shadow step with compare).
    mirror_service: str = ""
    #: The rollout's comparator Service: a mirror to it is ours even when this spec mirrors to the candidate.
    comparator_service: str = field(default="", compare=False)

    kind: ClassVar[str] = HTTPROUTES.kind

    @property
    def mirror_to(self) -> str:
        return self.mirror_service or self.candidate_service

    def _our_mirror(self, item: JsonDict, namespace: str) -> bool:
        """A RequestMirror filter of ours: to the candidate, or to the comparator."""
        target = _mirror_target(item)
        return any(
            _refers_to(target, service, namespace)
            for service in (self.candidate_service, self.mirror_to, self.comparator_service)
            if service
        )

    @property
    def resource(self) -> RouteResource:
        return HTTPROUTES

    # --- recognising what is ours ------------------------------------------------------------------

    def _is_header_rule(self, rule: JsonDict, namespace: str) -> bool:
        if rule.get("name") == HEADER_ROUTE_NAME:
            return True
        refs = rule.get("backendRefs") or []
        return bool(refs) and all(_refers_to(ref, self.candidate_service, namespace) for ref in refs)

    def _managed(self, route: JsonDict) -> Iterator[tuple[int, JsonDict, JsonDict]]:
        """(index, rule, its first stable backendRef) for every managed rule."""
        namespace = route_namespace(route)
        for index, rule in enumerate((route.get("spec") or {}).get("rules") or []):
            if self._is_header_rule(rule, namespace):
                continue
            stable = next(
                (ref for ref in rule.get("backendRefs") or [] if _refers_to(ref, self.stable_service, namespace)),
                None,
            )
            if stable is not None:
                yield index, rule, stable

    def _no_rule(self, route: JsonDict) -> RouteError:
        return self._error(
            route,
            f'{_title(route)} has no rule with a backendRef to Service "{self.stable_service}"; add one, '
            "the operator manages its weights",
        )

    def _foreign(self, route: JsonDict, index: int, rule: JsonDict) -> str | None:
        namespace = route_namespace(route)
        for ref in rule.get("backendRefs") or []:
            if not (
                _refers_to(ref, self.stable_service, namespace) or _refers_to(ref, self.candidate_service, namespace)
            ):
                other = ref.get("name", "?")
                return (
                    f'{_title(route)} rules[{index}] sends traffic to "{other}" besides Service '
                    f'"{self.stable_service}"; the operator sets every backendRef of a rule it manages, '
                    f'so move "{other}" to a rule of its own'
                )
        return None

    # --- reading it back ---------------------------------------------------------------------------

    def observe(self, route: JsonDict) -> RouteState | RouteError:
        """What the route does now for the managed rules: the candidate's share of traffic, the share
        mirrored to it, and the header rule, read from the first managed rule (the edit keeps them
        all alike)."""
        namespace = route_namespace(route)
        managed = list(self._managed(route))
        if not managed:
            return self._no_rule(route)
        for index, rule, _ in managed:
            problem = self._foreign(route, index, rule)
            if problem is not None:
                return self._error(route, problem)
        _, rule, _ = managed[0]
        stable_weight = candidate_weight = 0
        for ref in rule.get("backendRefs") or []:
            if _refers_to(ref, self.candidate_service, namespace):
                candidate_weight += _weight(ref)
            else:
                stable_weight += _weight(ref)
        total = stable_weight + candidate_weight
        weight = round(100 * candidate_weight / total) if total else 0
        mirror = 0
        for item in rule.get("filters") or []:
            target = _mirror_target(item)
            if target is not None and _refers_to(target, self.mirror_to, namespace):
                mirror = round(_mirrored_percent(item))
        header: HeaderMatch | None = None
        for other in (route.get("spec") or {}).get("rules") or []:
            if self._is_header_rule(other, namespace):
                # Ours is the last header of each match (`_with_header` appends it after the
                # user's own header matches, which the header rule copies).
                headers = ((other.get("matches") or [{}])[0].get("headers")) or []
                if headers and headers[-1].get("type", "Exact") == "Exact":
                    header = HeaderMatch(str(headers[-1].get("name")), str(headers[-1].get("value")))
                break
        return RouteState(weight, mirror, header)

    # --- the edit ----------------------------------------------------------------------------------

    def _candidate_ref(self, stable: JsonDict) -> JsonDict:
        return {**clone(stable), "name": self.candidate_service}

    def _mirror_filter(self, stable: JsonDict, state: RouteState) -> JsonDict:
        backend = {"name": self.mirror_to, **{key: stable[key] for key in _OBJECT_REF_FIELDS if key in stable}}
        mirror: JsonDict = {"backendRef": backend}
        if state.mirror_percent < 100 and self.features.mirror_percent:
            mirror["percent"] = state.mirror_percent
        return {"type": MIRROR, "requestMirror": mirror}

    def _edit_rule(self, rule: JsonDict, stable: JsonDict, state: RouteState, namespace: str) -> JsonDict:
        edited = clone(rule)
        weight = state.candidate_weight
        # Stable stays listed even at weight 0: it is how the next pass finds this rule again.
        refs = [{**clone(stable), "weight": 100 - weight}]
        if weight > 0:
            refs.append({**self._candidate_ref(stable), "weight": weight})
        edited["backendRefs"] = refs

        filters: list[JsonDict] = []
        placed = False
        for item in rule.get("filters") or []:
            if self._our_mirror(item, namespace):
                # Replace ours where it stands (or drop it), so the user's filter order is kept.
                if state.mirror_percent > 0 and not placed:
                    filters.append(self._mirror_filter(stable, state))
                    placed = True
                continue
            filters.append(clone(item))
        if state.mirror_percent > 0 and not placed:
            filters.append(self._mirror_filter(stable, state))
        # A `filters` list that held only our mirror goes with it: the rule reads as the user wrote it.
        before = rule.get("filters") or []
        only_ours = bool(before) and all(self._our_mirror(item, namespace) for item in before)
        set_or_drop(edited, "filters", filters, "filters" in rule and not only_ours)
        return edited

    def _header_rule(self, managed: list[tuple[JsonDict, JsonDict]], header: HeaderMatch, namespace: str) -> JsonDict:
        """One rule that sends requests with the header to the candidate: the managed rules' matches,
        each with the header added (more header matches win in Gateway API precedence), and the first
        managed rule's filters and timeouts, so the candidate gets requests shaped as stable does."""
        first, stable = managed[0]
        rule: JsonDict = {"name": HEADER_ROUTE_NAME} if self.features.rule_names else {}
        matches: list[JsonDict] = []
        for source, _ in managed:
            for match in source.get("matches") or [{}]:
                edited = _with_header(match, header)
                if edited not in matches:
                    matches.append(edited)
        rule["matches"] = matches
        filters = [clone(item) for item in first.get("filters") or [] if not self._our_mirror(item, namespace)]
        if filters:
            rule["filters"] = filters
        rule.update(
            {
                key: clone(value)
                for key, value in first.items()
                if key not in ("name", "matches", "filters", "backendRefs")
            }
        )
        rule["backendRefs"] = [{**self._candidate_ref(stable), "weight": 100}]
        return rule

    def edit(self, route: JsonDict, state: RouteState) -> JsonDict | RouteError:
        namespace = route_namespace(route)
        managed = list(self._managed(route))
        if not managed:
            return self._no_rule(route)
        for index, rule, _ in managed:
            problem = self._foreign(route, index, rule)
            if problem is not None:
                return self._error(route, problem)

        edits = {index: self._edit_rule(rule, stable, state, namespace) for index, rule, stable in managed}
        rules: list[JsonDict] = []
        for index, rule in enumerate(route["spec"].get("rules") or []):
            if index == managed[0][0] and state.header is not None:
                sources = [(edits[i], stable) for i, _, stable in managed]
                rules.append(self._header_rule(sources, state.header, namespace))
            if index in edits:
                rules.append(edits[index])
            elif not self._is_header_rule(rule, namespace):
                rules.append(clone(rule))
        result = clone(route)
        result["spec"]["rules"] = rules
        return result


# --- what the installed CRD accepts -----------------------------------------------------------------


def _schema_allows(schema: Any, path: list[str]) -> bool:
    """Whether the structural schema keeps a field at `path` ("[]" steps into array items)."""
    node = schema
    for step in path:
        if not isinstance(node, dict):
            return False
        if node.get("x-kubernetes-preserve-unknown-fields") and step not in (node.get("properties") or {}):
            return True  # the server keeps unknown fields here
        node = node.get("items") if step == "[]" else (node.get("properties") or {}).get(step)
    return isinstance(node, dict)


def features_of(crd: JsonDict | None) -> GatewayApiFeatures:
    """Which optional fields the installed HTTPRoute CRD keeps (defaults when the CRD could not be
    read: the operator may lack the permission, and the defaults suit current versions)."""
    if crd is None:
        return GatewayApiFeatures()
    versions = (crd.get("spec") or {}).get("versions") or []
    version = next((item for item in versions if item.get("name") == HTTPROUTES.version), None)
    if version is None:
        return GatewayApiFeatures()
    schema = (version.get("schema") or {}).get("openAPIV3Schema") or {}
    rules = ["spec", "rules", "[]"]
    return GatewayApiFeatures(
        mirror_percent=_schema_allows(schema, [*rules, "filters", "[]", "requestMirror", "percent"]),
        rule_names=_schema_allows(schema, [*rules, "name"]),
    )
