"""Resource types served by the emulator: built-ins, CRD-registered ones, and their discovery documents."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SUBRESOURCE_VERBS = ["get", "patch", "update"]


_LEASES = ("coordination.k8s.io", "leases")


@dataclass(frozen=True)
class ResourceType:
    """One resource as served at one group/version (storage is shared across versions)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False  # has the /status subresource
    scale: bool = False  # has the /scale subresource (Deployments only)
    custom: bool = False  # a custom resource (CRD-defined), not a built-in
    generation: bool = False  # tracks metadata.generation
    list_kind: str = ""
    schema: JsonDict | None = None  # openAPIV3Schema of a custom resource
    printer_columns: tuple[JsonDict, ...] = ()
    field_selectors: frozenset[str] = frozenset()  # beyond metadata.name/metadata.namespace

    @property
    def key(self) -> tuple[str, str]:
        """The storage key: objects are shared by all versions of a group/plural."""
        return self.group, self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def strategic_merge(self) -> bool:
        # The apiserver only knows patch strategies of compiled-in Go types.
        return not self.custom

    @property
    def unconditional_update(self) -> bool:
        # Custom resources, CRDs and Leases refuse PUT without metadata.resourceVersion.
        return not self.custom and self.kind != "CustomResourceDefinition" and self.key != _LEASES

    @property
    def create_on_update(self) -> bool:
        """A PUT of a missing object creates it (201), as the Lease strategy's AllowCreateOnUpdate says."""
        return self.key == _LEASES

    def discovery(self) -> list[JsonDict]:
        main: JsonDict = {
            "name": self.plural,
            "singularName": self.singular or self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(VERBS),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        entries = [main]
        if self.status:
            entries.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": list(SUBRESOURCE_VERBS),
                }
            )
        if self.scale:
            entries.append(
                {
                    "name": f"{self.plural}/scale",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": list(SUBRESOURCE_VERBS),
                }
            )
        return entries


_EVENT_FIELDS = frozenset(
    {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    }
)
_POD_FIELDS = frozenset(
    {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    }
)


def _core(plural: str, kind: str, namespaced: bool = True, **kwargs: Any) -> ResourceType:
    return ResourceType("", "v1", plural, kind, namespaced, singular=kind.lower(), **kwargs)


BUILTINS: tuple[ResourceType, ...] = (
    _core(
        "namespaces", "Namespace", False, short_names=("ns",), status=True, field_selectors=frozenset({"status.phase"})
    ),
    _core("services", "Service", short_names=("svc",), status=True, categories=("all",)),
    _core("pods", "Pod", short_names=("po",), status=True, categories=("all",), field_selectors=_POD_FIELDS),
    _core("configmaps", "ConfigMap", short_names=("cm",)),
    _core("secrets", "Secret", field_selectors=frozenset({"type"})),
    _core("events", "Event", short_names=("ev",), field_selectors=_EVENT_FIELDS),
    _core("serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _core("endpoints", "Endpoints", short_names=("ep",)),
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        singular="deployment",
        short_names=("deploy",),
        categories=("all",),
        status=True,
        scale=True,
        generation=True,
    ),
    ResourceType(
        "batch",
        "v1",
        "jobs",
        "Job",
        True,
        singular="job",
        categories=("all",),
        status=True,
        generation=True,
        field_selectors=frozenset({"status.successful"}),
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, singular="lease"),
    ResourceType(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        True,
        singular="event",
        short_names=("ev",),
        field_selectors=frozenset(
            {
                "regarding.kind",
                "regarding.namespace",
                "regarding.name",
                "regarding.uid",
                "reason",
                "type",
                "reportingController",
            }
        ),
    ),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        singular="customresourcedefinition",
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        status=True,
        generation=True,
    ),
)

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key of the Kubernetes version priority: GA > beta > alpha, higher numbers first."""
    match = _VERSION_RE.match(version)
    if match is None:
        return (3, 0, 0, version)  # non-conventional versions go last, alphabetically
    major, level, minor = match.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[level]
    return (rank, -int(major), -int(minor or 0), version)


def types_from_crd(crd: JsonDict) -> list[ResourceType]:
    """The resource types (one per served version) that a validated CRD declares."""
    spec = crd["spec"]
    names = spec["names"]
    result: list[ResourceType] = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        result.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular") or names["kind"].lower(),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in subresources,
                custom=True,
                generation=True,
                list_kind=names.get("listKind") or f"{names['kind']}List",
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            )
        )
    return result


@dataclass
class Registry:
    """All served resource types, indexed by group/version/plural and by storage key."""

    _types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)

    @classmethod
    def with_builtins(cls) -> Registry:
        registry = cls()
        registry.add(BUILTINS)
        return registry

    def add(self, types: Iterable[ResourceType]) -> None:
        for rtype in types:
            self._types[rtype.group, rtype.version, rtype.plural] = rtype

    def remove(self, group: str, plural: str) -> None:
        for key in [key for key in self._types if key[0] == group and key[2] == plural]:
            del self._types[key]

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self._types.values())

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def preferred(self, group: str, plural: str) -> ResourceType | None:
        candidates = [t for t in self._types.values() if t.group == group and t.plural == plural]
        return min(candidates, key=lambda t: version_priority(t.version), default=None)

    def resolve(self, spec: str) -> ResourceType:
        """Find a type by a kubectl-like spec: ``plural``, ``kind``, short name, with ``.group``."""
        wanted = spec.lower()
        # Like kubectl: the legacy groups win for bare names ("events" is core/v1, not events.k8s.io).
        ordered = sorted(
            self._types.values(),
            key=lambda t: (t.custom, t.group not in ("", "apps", "batch"), version_priority(t.version)),
        )
        for rtype in ordered:
            names = {rtype.plural, rtype.singular, rtype.kind.lower(), *rtype.short_names}
            if (
                wanted in names
                or wanted in {f"{name}.{rtype.group}" for name in names}
                or wanted == f"{rtype.api_version}/{rtype.plural}"
            ):
                return rtype
        raise KeyError(f"No such resource: {spec!r}")

    def groups(self) -> dict[str, list[str]]:
        """Group name to its versions, preferred version first (the core group excluded)."""
        versions: dict[str, set[str]] = {}
        for group, version, _ in self._types:
            if group:
                versions.setdefault(group, set()).add(version)
        return {group: sorted(vs, key=version_priority) for group, vs in sorted(versions.items())}

    def api_group(self, group: str) -> JsonDict | None:
        versions = self.groups().get(group)
        if not versions:
            return None
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
            "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
        }

    def api_group_list(self) -> JsonDict:
        groups = [self.api_group(group) for group in self.groups()]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [g for g in groups if g]}

    def api_resource_list(self, group: str, version: str) -> JsonDict | None:
        entries = [
            entry for t in self._types.values() if t.group == group and t.version == version for entry in t.discovery()
        ]
        if not entries:
            return None
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": entries,
        }
