"""Minimal structural CRDs for the route kinds the routers edit, for the API emulator.

Only the shape a structural schema needs: `spec` keeps whatever it is given, so the routers' writes
are stored as sent (a real Gateway API CRD would also default and prune; `gateway_crd(...)` can
leave out the fields an older Gateway API lacks, for `detect_features`).
"""

from __future__ import annotations

from typing import Any

JsonDict = dict[str, Any]

_OPEN_SPEC: JsonDict = {
    "type": "object",
    "properties": {
        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


def _crd(group: str, kind: str, plural: str, versions: list[JsonDict]) -> JsonDict:
    metadata: JsonDict = {"name": f"{plural}.{group}"}
    if group.endswith((".k8s.io", ".kubernetes.io")):
        # A real API server refuses a CRD in a protected group without it (the Gateway API's own
        # CRDs carry the URL of the pull request that approved them).
        metadata["annotations"] = {
            "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/1538"
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": metadata,
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
            "versions": versions,
        },
    }


def _version(name: str, storage: bool, schema: JsonDict | None = None) -> JsonDict:
    return {
        "name": name,
        "served": True,
        "storage": storage,
        "subresources": {"status": {}},
        "schema": {"openAPIV3Schema": schema or _OPEN_SPEC},
    }


def httproute_crd() -> JsonDict:
    return _crd("gateway.networking.k8s.io", "HTTPRoute", "httproutes", [_version("v1", True)])


def virtualservice_crd() -> JsonDict:
    """Istio serves v1beta1 and v1 of the same objects (v1 stored, conversion None)."""
    return _crd(
        "networking.istio.io", "VirtualService", "virtualservices", [_version("v1beta1", False), _version("v1", True)]
    )


def typed_httproute_crd(*, mirror_percent: bool, rule_names: bool) -> JsonDict:
    """An HTTPRoute CRD whose schema spells out rules, as the real ones do, with or without the
    fields Gateway API v1.2+ added, for `detect_features`."""
    mirror: JsonDict = {"backendRef": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    if mirror_percent:
        mirror["percent"] = {"type": "integer"}
    rule: JsonDict = {
        "matches": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        "backendRefs": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        "filters": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "requestMirror": {"type": "object", "properties": mirror},
                },
            },
        },
    }
    if rule_names:
        rule["name"] = {"type": "string"}
    schema: JsonDict = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "parentRefs": {
                        "type": "array",
                        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    },
                    "hostnames": {"type": "array", "items": {"type": "string"}},
                    "rules": {"type": "array", "items": {"type": "object", "properties": rule}},
                },
            },
        },
    }
    return _crd("gateway.networking.k8s.io", "HTTPRoute", "httproutes", [_version("v1", True, schema)])
