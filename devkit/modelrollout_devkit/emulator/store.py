"""The object store: the apiserver's write semantics on top of an etcd-like versioned key space.

Every method here is synchronous and never awaits, so that each API operation, including the
fan-out of its watch event and the registration of a new watcher, is atomic in the event loop:
a watch started from a list's resourceVersion cannot miss or duplicate an event.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime
import functools
import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from modelrollout_devkit.emulator import builtins, crds, errors, leases, schema
from modelrollout_devkit.emulator.errors import Cause
from modelrollout_devkit.emulator.patching import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from modelrollout_devkit.emulator.resources import Registry, ResourceType, types_from_crd
from modelrollout_devkit.emulator.selectors import Selector

JsonDict = dict[str, Any]
StorageKey = tuple[str, str]  # (group, plural)
ObjectKey = tuple[StorageKey, str, str]  # (storage key, namespace or '', name)

NAMESPACES: StorageKey = ("", "namespaces")
CRDS: StorageKey = ("apiextensions.k8s.io", "customresourcedefinitions")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FOREGROUND = "foregroundDeletion"
_ORPHAN = "orphan"
_SYSTEM_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def clone(obj: Any) -> Any:
    """A deep copy of plain JSON data (faster than copy.deepcopy for it)."""
    return json.loads(json.dumps(obj))


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    obj: JsonDict
    old: JsonDict | None  # the previous state, to turn MODIFIED into ADDED/DELETED for selectors


@dataclass(eq=False)
class Watcher:
    """One watch stream's subscription; events are filtered at fan-out to keep its queue short."""

    namespace: str | None
    selector: Selector
    queue: asyncio.Queue[JsonDict | None] = field(default_factory=asyncio.Queue)

    def _visible(self, obj: JsonDict | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.selector.matches(obj)

    def offer(self, event: Event) -> None:
        now_visible = self._visible(event.obj)
        if event.type == "MODIFIED":
            was_visible = self._visible(event.old)
            # Like the apiserver's watch cache: entering/leaving the selection is ADDED/DELETED.
            kind = (
                "MODIFIED"
                if was_visible and now_visible
                else "ADDED"
                if now_visible
                else "DELETED"
                if was_visible
                else None
            )
        else:
            kind = event.type if now_visible else None
        if kind == "DELETED" and event.type == "MODIFIED" and event.old is not None:
            # The watch cache sends the previous state (the one that matched) at the new version.
            rv = event.obj["metadata"]["resourceVersion"]
            self.queue.put_nowait(
                {"type": kind, "object": dict(event.old, metadata=dict(event.old["metadata"], resourceVersion=rv))}
            )
        elif kind is not None:
            self.queue.put_nowait({"type": kind, "object": event.obj})

    def close(self) -> None:
        self.queue.put_nowait(None)


def _meta(obj: JsonDict) -> JsonDict:
    meta: JsonDict = obj["metadata"]
    return meta


#: ObjectMeta's collections and the built-ins' maps that Go serialises with omitempty: stored empty,
#: they come back absent from a real server.
_OMITTED_WHEN_EMPTY_META = ("labels", "annotations", "finalizers", "ownerReferences", "managedFields")
_OMITTED_WHEN_EMPTY: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "configmaps"): ("data", "binaryData"),
    ("", "secrets"): ("data", "stringData"),
}


def _drop_empty(rtype: ResourceType, obj: JsonDict) -> None:
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        for key in _OMITTED_WHEN_EMPTY_META:
            if meta.get(key) in ({}, []):
                del meta[key]
    for key in _OMITTED_WHEN_EMPTY.get(rtype.key, ()):
        if obj.get(key) in ({}, []):
            del obj[key]


def _spec_part(rtype: ResourceType, obj: JsonDict) -> Any:
    """The part of an object whose change bumps metadata.generation."""
    if rtype.custom:
        skipped = ("metadata", "status") if rtype.status else ("metadata",)
        return {k: v for k, v in obj.items() if k not in skipped}
    return obj.get("spec")


class Store:
    """All objects, the global resourceVersion, the per-resource event windows, and the controllers."""

    def __init__(
        self,
        registry: Registry,
        *,
        event_window: int = 10_000,
        schedule: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.registry = registry
        self.rv = 0
        self.event_window = event_window
        self._schedule = schedule or (lambda fn: asyncio.get_running_loop().call_soon(fn))
        self._objects: dict[StorageKey, dict[str, dict[str, JsonDict]]] = collections.defaultdict(dict)
        self._logs: dict[StorageKey, collections.deque[Event]] = collections.defaultdict(
            lambda: collections.deque(maxlen=self.event_window)
        )
        self._evicted: dict[StorageKey, int] = collections.defaultdict(int)
        self._watchers: dict[StorageKey, set[Watcher]] = collections.defaultdict(set)
        self._uids: dict[str, ObjectKey] = {}
        self._dependents: dict[str, set[ObjectKey]] = collections.defaultdict(set)
        self._next_ip = 1
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(self._type(NAMESPACES), None, {"metadata": {"name": name}})

    # -- reading ---------------------------------------------------------------------------------

    def _type(self, key: StorageKey) -> ResourceType:
        rtype = self.registry.preferred(*key)
        if rtype is None:
            raise errors.not_found_url()
        return rtype

    def find(self, key: StorageKey, namespace: str, name: str) -> JsonDict | None:
        return self._objects[key].get(namespace, {}).get(name)

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> JsonDict:
        obj = self.find(rtype.key, namespace or "", name)
        if obj is None:
            raise errors.not_found(rtype.plural, rtype.group, name)
        return obj

    def iterate(self, key: StorageKey, namespace: str | None) -> Iterator[JsonDict]:
        """Objects in etcd key order: by namespace, then by name."""
        buckets = self._objects[key]
        for ns in sorted(buckets) if namespace is None else [namespace]:
            bucket = buckets.get(ns, {})
            for name in sorted(bucket):
                yield bucket[name]

    def list_page(
        self, rtype: ResourceType, namespace: str | None, selector: Selector, limit: int = 0, token: str | None = None
    ) -> tuple[list[JsonDict], str, str | None, int]:
        """Items, the list's resourceVersion, the continue token, and the remaining item count."""
        list_rv, after = str(self.rv), None
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                list_rv, after = str(decoded["rv"]), tuple(decoded["start"])
            except (ValueError, KeyError, TypeError) as err:
                raise errors.bad_request(f"continue key is not valid: {err}") from err
        items: list[JsonDict] = []
        remaining = 0
        for obj in self.iterate(rtype.key, namespace):
            position = (_meta(obj).get("namespace", ""), _meta(obj)["name"])
            if (after is not None and position <= after) or not selector.matches(obj):
                continue
            if limit and len(items) >= limit:
                remaining += 1
            else:
                items.append(obj)
        next_token = None
        if remaining:
            last = _meta(items[-1])
            next_token = base64.urlsafe_b64encode(
                json.dumps({"rv": int(list_rv), "start": [last.get("namespace", ""), last["name"]]}).encode()
            ).decode()
        return items, list_rv, next_token, remaining

    def watch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        selector: Selector,
        since: int | None,
        *,
        initial_bookmark: bool = False,
    ) -> Watcher:
        """Subscribe: replay either the current state (since=None) or the events after ``since``."""
        watcher = Watcher(namespace, selector)
        if since is None:
            for obj in self.iterate(rtype.key, namespace):
                if selector.matches(obj):
                    watcher.queue.put_nowait({"type": "ADDED", "object": obj})
            if initial_bookmark:
                watcher.queue.put_nowait(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": rtype.kind,
                            "apiVersion": rtype.api_version,
                            "metadata": {
                                "resourceVersion": str(self.rv),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        },
                    }
                )
        else:
            if since < self._evicted[rtype.key]:
                raise errors.expired(since, self._evicted[rtype.key] + 1)
            for event in self._logs[rtype.key]:
                if event.rv > since:
                    watcher.offer(event)
        self._watchers[rtype.key].add(watcher)
        return watcher

    def unwatch(self, rtype: ResourceType, watcher: Watcher) -> None:
        self._watchers[rtype.key].discard(watcher)

    def close_watches(self) -> None:
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.close()
            watchers.clear()

    # -- commits (no validation here: callers validate) ---------------------------------------------

    def _emit(self, key: StorageKey, kind: str, obj: JsonDict, old: JsonDict | None) -> None:
        event = Event(self.rv, kind, obj, old)
        log = self._logs[key]
        if len(log) == log.maxlen:
            self._evicted[key] = log[0].rv
        log.append(event)
        for watcher in self._watchers[key]:
            watcher.offer(event)

    def _owners(self, obj: JsonDict | None) -> set[str]:
        if obj is None:
            return set()
        return {ref.get("uid", "") for ref in _meta(obj).get("ownerReferences") or [] if isinstance(ref, dict)}

    def _put(self, rtype: ResourceType, obj: JsonDict, old: JsonDict | None) -> JsonDict:
        self.rv += 1
        meta = _meta(obj)
        meta["resourceVersion"] = str(self.rv)
        namespace, name = meta.get("namespace", ""), meta["name"]
        self._objects[rtype.key].setdefault(namespace, {})[name] = obj
        object_key: ObjectKey = (rtype.key, namespace, name)
        self._uids[meta["uid"]] = object_key
        old_owners, new_owners = self._owners(old), self._owners(obj)
        for uid in old_owners - new_owners:
            self._forget_dependent(uid, object_key)
        for uid in new_owners - old_owners:
            self._dependents[uid].add(object_key)
        self._emit(rtype.key, "ADDED" if old is None else "MODIFIED", obj, old)
        if new_owners - old_owners:
            self._schedule(lambda: self._collect(object_key))
        return obj

    def _remove(self, rtype: ResourceType, obj: JsonDict) -> JsonDict:
        self.rv += 1
        gone = dict(obj, metadata=dict(_meta(obj), resourceVersion=str(self.rv)))
        meta = _meta(obj)
        namespace, name, uid = meta.get("namespace", ""), meta["name"], meta["uid"]
        del self._objects[rtype.key][namespace][name]
        if not self._objects[rtype.key][namespace]:
            del self._objects[rtype.key][namespace]
        self._uids.pop(uid, None)
        for owner in self._owners(obj):
            self._forget_dependent(owner, (rtype.key, namespace, name))
            self._schedule(functools.partial(self._release_foreground, owner))
        self._emit(rtype.key, "DELETED", gone, obj)
        for dependent in list(self._dependents.get(uid, ())):
            self._schedule(functools.partial(self._collect, dependent))
        if rtype.key == CRDS:
            self.registry.remove(obj["spec"]["group"], obj["spec"]["names"]["plural"])
        if namespace:
            self._schedule(lambda: self._finalize_namespace(namespace))
        if rtype.custom:
            self._schedule(lambda: self._finalize_crd(f"{rtype.plural}.{rtype.group}"))
        return gone

    def _forget_dependent(self, owner: str, dependent: ObjectKey) -> None:
        dependents = self._dependents.get(owner)
        if dependents is not None:
            dependents.discard(dependent)
            if not dependents:  # do not accumulate empty sets over hours of churn
                del self._dependents[owner]

    def _commit_update(self, rtype: ResourceType, old: JsonDict, new: JsonDict) -> JsonDict:
        """Store a validated new state; an unchanged object is not written, as in etcd."""
        comparable = dict(new, metadata={k: v for k, v in _meta(new).items() if k != "resourceVersion"})
        if comparable == dict(old, metadata={k: v for k, v in _meta(old).items() if k != "resourceVersion"}):
            return old
        meta = _meta(new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not self._blocked(rtype, new):
            # As the apiserver does: the object is deleted without its finalizer-less state being
            # written; the DELETED event carries the last stored state, the answer the new one at
            # the old resourceVersion.
            self._remove(rtype, old)
            meta["resourceVersion"] = _meta(old)["resourceVersion"]
            return new
        return self._put(rtype, new, old)

    def _blocked(self, rtype: ResourceType, obj: JsonDict) -> bool:
        """Namespaces also wait for their spec.finalizers (the namespace controller's cleanup)."""
        return rtype.key == NAMESPACES and bool((obj.get("spec") or {}).get("finalizers"))

    # -- writes as the API does them -------------------------------------------------------------------

    def create(
        self,
        rtype: ResourceType,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        field_validation: str = "Warn",
    ) -> tuple[JsonDict, list[str]]:
        obj = self._decode(rtype, body)
        meta = obj.setdefault("metadata", {})
        if rtype.namespaced:
            if namespace is None:
                raise errors.method_not_allowed()
            if meta.get("namespace") not in (None, "", namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
            self._check_namespace_open(namespace, meta.get("name") or meta.get("generateName", ""), rtype)
        else:
            meta.pop("namespace", None)
        if rtype.custom:
            self._check_crd_open(rtype)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generate_name(rtype.key, namespace or "", str(meta["generateName"]))
        if not meta.get("name"):
            raise errors.invalid(
                rtype.kind,
                rtype.group,
                "",
                [Cause("metadata.name", "FieldValueRequired", "Required value: name or generateName is required")],
            )
        for key in (*_SYSTEM_META, "resourceVersion", "selfLink", "managedFields"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if rtype.generation:
            meta["generation"] = 1
        if rtype.status:
            status = builtins.initial_status(rtype)
            obj.pop("status", None)
            if status is not None:
                obj["status"] = status
        warnings = self._admit(rtype, obj, None, field_validation)
        # As in the apiserver, validation comes first: an invalid duplicate is a 422, not a 409.
        if self.find(rtype.key, namespace or "", meta["name"]) is not None:
            raise errors.already_exists(rtype.plural, rtype.group, meta["name"])
        if dry_run:
            return obj, warnings
        result = self._put(rtype, obj, None)
        if rtype.key == CRDS:
            name = meta["name"]
            self._schedule(lambda: self._establish(name))
        return result, warnings

    def replace(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Warn",
    ) -> tuple[JsonDict, list[str]]:
        old = self.get(rtype, namespace, name)
        new = self._decode(rtype, body)
        meta = new.setdefault("metadata", {})
        if meta.get("name") != name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name', '')}) does not match the name on the URL ({name})"
            )
        if rtype.namespaced and meta.get("namespace") not in (None, "", namespace):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        if not meta.get("resourceVersion") and not rtype.unconditional_update:
            raise errors.invalid(
                rtype.kind,
                rtype.group,
                name,
                [
                    Cause(
                        "metadata.resourceVersion",
                        "FieldValueInvalid",
                        "Invalid value: 0: must be specified for an update",
                    )
                ],
            )
        return self._update(rtype, old, new, subresource, dry_run, field_validation)

    def create_on_update(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        dry_run: bool = False,
        field_validation: str = "Warn",
    ) -> tuple[JsonDict, list[str]]:
        """A PUT of an object that does not exist, of a type whose PUT creates (Leases): a create,
        whatever resourceVersion the body names, once the body's name is the URL's."""
        body_name = ((body or {}).get("metadata") or {}).get("name", "") if isinstance(body, dict) else ""
        if body_name != name:
            raise errors.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        return self.create(rtype, namespace, body, dry_run=dry_run, field_validation=field_validation)

    def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Warn",
    ) -> tuple[JsonDict, list[str]]:
        old = self.get(rtype, namespace, name)
        # Patch results share sub-dicts with the stored object, which must never be mutated.
        new = clone(self.apply_patch(rtype, old, content_type, body))
        if not isinstance(new.get("metadata"), dict):
            raise errors.bad_request("metadata must be an object")
        if rtype.key == leases.KEY:
            try:
                leases.check(new)
            except leases.LeaseDecodeError as error:
                raise errors.patch_invalid(new, str(error)) from None
        return self._update(rtype, old, new, subresource, dry_run, field_validation)

    @staticmethod
    def apply_patch(rtype: ResourceType, old: JsonDict, content_type: str, body: Any) -> JsonDict:
        accepted = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH] + ([STRATEGIC_MERGE_PATCH] if rtype.strategic_merge else [])
        if content_type == JSON_PATCH:
            return json_patch(old, body)
        if content_type == MERGE_PATCH:
            result = merge_patch(old, body)
            if not isinstance(result, dict):
                raise errors.bad_request("the patch replaced the whole object with a non-object")
            return result
        if content_type == STRATEGIC_MERGE_PATCH and rtype.strategic_merge:
            return strategic_merge_patch(old, body)
        if content_type == APPLY_PATCH:
            raise errors.ApiError(
                415,
                "server-side apply (application/apply-patch+yaml) is not supported by the"
                " modelrollout emulator; use a merge or JSON patch",
                "UnsupportedMediaType",
            )
        raise errors.unsupported_media(content_type, accepted)

    def _update(
        self,
        rtype: ResourceType,
        old: JsonDict,
        new: JsonDict,
        subresource: str | None,
        dry_run: bool,
        field_validation: str,
    ) -> tuple[JsonDict, list[str]]:
        meta, old_meta = _meta(new), _meta(old)
        name = old_meta["name"]
        if meta.get("resourceVersion") and meta["resourceVersion"] != old_meta["resourceVersion"]:
            raise errors.conflict(rtype.plural, rtype.group, name, errors.STALE)
        if meta.get("uid") and meta["uid"] != old_meta["uid"]:
            raise errors.conflict(
                rtype.plural,
                rtype.group,
                name,
                f"Precondition failed: UID in precondition: {meta['uid']}, UID in object meta: {old_meta['uid']}",
            )
        if meta.get("name") != name:
            raise errors.invalid(
                rtype.kind,
                rtype.group,
                name,
                [Cause("metadata.name", "FieldValueInvalid", 'Invalid value: "object": field is immutable')],
            )
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        for key in (*_SYSTEM_META, "namespace", "selfLink"):
            meta.pop(key, None)
            if key in old_meta:
                meta[key] = old_meta[key]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if subresource == "status":
            new = self._status_only(rtype, old, new)
        elif rtype.status:
            new.pop("status", None)
            if "status" in old:
                new["status"] = old["status"]
        warnings = self._admit(rtype, new, old, field_validation)
        if rtype.generation and subresource is None and _spec_part(rtype, new) != _spec_part(rtype, old):
            _meta(new)["generation"] = old_meta.get("generation", 0) + 1
        if old_meta.get("deletionTimestamp"):
            added = [f for f in _meta(new).get("finalizers") or [] if f not in (old_meta.get("finalizers") or [])]
            if added:
                raise errors.invalid(
                    rtype.kind,
                    rtype.group,
                    name,
                    [
                        Cause(
                            "metadata.finalizers",
                            "FieldValueForbidden",
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new"
                            f" finalizers {json.dumps(added)}",
                        )
                    ],
                )
        if dry_run:
            return new, warnings
        result = self._commit_update(rtype, old, new)
        if rtype.key == CRDS and result is not old and not _meta(result).get("deletionTimestamp"):
            self._schedule(lambda: self._establish(name))
        return result, warnings

    @staticmethod
    def _status_only(rtype: ResourceType, old: JsonDict, new: JsonDict) -> JsonDict:
        if rtype.custom:
            # Custom resources: a /status write changes .status and nothing else, metadata included.
            result: JsonDict = clone(old)
            result.pop("status", None)
            if "status" in new:
                result["status"] = new["status"]
            return result
        # Built-ins (e.g. apps/v1 Deployment): spec and labels are reset, other metadata goes through.
        new = dict(new)
        new.pop("spec", None)
        if "spec" in old:
            new["spec"] = clone(old["spec"])
        labels = _meta(old).get("labels")
        _meta(new).pop("labels", None)
        if labels is not None:
            _meta(new)["labels"] = dict(labels)
        return new

    def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        options: JsonDict | None = None,
        *,
        dry_run: bool = False,
    ) -> JsonDict:
        old = self.get(rtype, namespace, name)
        options = options or {}
        preconditions = options.get("preconditions") or {}
        old_meta = _meta(old)
        for field_name, what in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            if preconditions.get(field_name) and preconditions[field_name] != old_meta[field_name]:
                raise errors.conflict(
                    rtype.plural,
                    rtype.group,
                    name,
                    f"Precondition failed: {what} in precondition: {preconditions[field_name]},"
                    f" {what} in object meta: {old_meta[field_name]}",
                )
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise errors.invalid(
                "DeleteOptions",
                "",
                "",
                [
                    Cause(
                        "propagationPolicy",
                        "FieldValueNotSupported",
                        f'Unsupported value: {errors.invalid_value(policy)}: supported values: "Foreground",'
                        ' "Background", "Orphan", "nil"',
                    )
                ],
            )
        if dry_run:
            return old
        return self._delete(rtype, old, policy or "Background")

    def _delete(self, rtype: ResourceType, old: JsonDict, policy: str) -> JsonDict:
        old_meta = _meta(old)
        if old_meta.get("deletionTimestamp"):
            return old  # already being deleted: nothing changes
        finalizers = list(old_meta.get("finalizers") or [])
        uid = old_meta["uid"]
        # As the apiserver does, whatever the dependents: the policy is a finalizer, and the garbage
        # collector does the work and removes it (so the answer is the object, still there).
        if policy == "Orphan" and _ORPHAN not in finalizers:
            finalizers.append(_ORPHAN)
            self._schedule(functools.partial(self._finish_orphaning, uid))
        if policy == "Foreground" and _FOREGROUND not in finalizers:
            finalizers.append(_FOREGROUND)
            self._schedule(functools.partial(self._release_foreground, uid))
        if rtype.key == CRDS and crds.CLEANUP_FINALIZER not in finalizers:
            finalizers.append(crds.CLEANUP_FINALIZER)  # the CRD's own: its custom resources go first
        if not finalizers and not self._blocked(rtype, old):
            return self._remove(rtype, old)
        new = clone(old)
        meta = _meta(new)
        meta["deletionTimestamp"] = now()
        meta["deletionGracePeriodSeconds"] = 0
        meta["finalizers"] = finalizers
        if meta.get("generation"):
            meta["generation"] += 1
        if rtype.key == NAMESPACES:
            new.setdefault("status", {})["phase"] = "Terminating"
            namespace = meta["name"]
            self._schedule(lambda: self._empty_namespace(namespace))
        if rtype.key == CRDS:
            self._schedule(lambda: self._empty_crd(meta["name"]))
        if _FOREGROUND in finalizers:
            for dependent in list(self._dependents.get(meta["uid"], ())):
                self._schedule(functools.partial(self._delete_key, dependent, "Background"))
        return self._put(rtype, new, old)

    # -- helpers of the writes -------------------------------------------------------------------------

    def _decode(self, rtype: ResourceType, body: Any) -> JsonDict:
        if not isinstance(body, dict):
            raise errors.bad_request(f"Object 'Kind' is missing in '{json.dumps(body)[:200]}'")
        obj: JsonDict = {"apiVersion": rtype.api_version, "kind": rtype.kind, **clone(body)}
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if rtype.custom and (not kind or not api_version):
            missing = "Kind" if not kind else "apiVersion"
            raise errors.bad_request(f"Object '{missing}' is missing in '{json.dumps(body)[:200]}'")
        if rtype.custom and api_version == rtype.api_version and kind != rtype.kind:
            # The custom resource handler checks the kind as a field of the object: a 422, not a 400.
            name = (obj.get("metadata") or {}).get("name", "") if isinstance(obj.get("metadata"), dict) else ""
            wrong = Cause(
                "kind", "FieldValueInvalid", f"Invalid value: {errors.invalid_value(kind)}: must be {rtype.kind}"
            )
            raise errors.invalid(rtype.kind, rtype.group, name, [wrong])
        if (kind and kind != rtype.kind) or (api_version and api_version != rtype.api_version):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected"
                f" API version ({rtype.api_version})"
                if kind == rtype.kind
                else f"kind {kind} in the body does not match the resource kind {rtype.kind}"
            )
        builtins.check_field_types(obj)
        if rtype.key == leases.KEY:
            try:
                leases.check(obj)
            except leases.LeaseDecodeError as error:
                raise errors.bad_request(f'Lease in version "v1" cannot be handled as a Lease: {error}') from None
        obj["apiVersion"] = self._storage_version(rtype)
        obj["kind"] = rtype.kind
        return obj

    def _storage_version(self, rtype: ResourceType) -> str:
        if not rtype.custom:
            return rtype.api_version
        crd = self.find(CRDS, "", f"{rtype.plural}.{rtype.group}")
        versions = (crd or {}).get("spec", {}).get("versions") or []
        storage = next((v["name"] for v in versions if v.get("storage")), rtype.version)
        return f"{rtype.group}/{storage}"

    def _admit(self, rtype: ResourceType, obj: JsonDict, old: JsonDict | None, field_validation: str) -> list[str]:
        """Defaulting, pruning and validation; raises 422 (or 400 for strict unknown fields)."""
        _drop_empty(rtype, obj)
        causes = [c for c in builtins.validate_metadata(rtype, obj) if old is None or c.field != "metadata.name"]
        warnings: list[str] = []
        if rtype.custom:
            if rtype.schema is not None:
                outcome = schema.admit(obj, rtype.schema)
                obj.clear()
                obj.update(outcome.obj)
                causes.extend(outcome.causes)
                unknown = [f'unknown field "{path}"' for path in outcome.pruned]
                if unknown and field_validation == "Strict":
                    raise errors.bad_request("strict decoding error: " + ", ".join(unknown))
                if field_validation != "Ignore":
                    warnings.extend(unknown)
        else:
            if rtype.key == leases.KEY:
                unknown = [f'unknown field "{path}"' for path in leases.normalise(obj)]
                if unknown and field_validation == "Strict":
                    raise errors.bad_request(
                        'Lease in version "v1" cannot be handled as a Lease: strict decoding error: '
                        + ", ".join(unknown)
                    )
                if field_validation != "Ignore":
                    warnings.extend(unknown)
            builtins.apply_defaults(rtype, obj, old, self._allocate_ip)
            causes.extend(builtins.validate(rtype, obj, old))
            if rtype.key == CRDS:
                crds.apply_defaults(obj)
                causes.extend(crds.validate(obj))
                if old is not None and obj.get("spec", {}).get("group") != old["spec"].get("group"):
                    causes.append(
                        Cause("spec.group", "FieldValueInvalid", 'Invalid value: "object": field is immutable')
                    )
        if causes:
            raise errors.invalid(rtype.kind, rtype.group, _meta(obj).get("name", ""), causes)
        return warnings

    def _allocate_ip(self) -> str:
        number = self._next_ip
        self._next_ip += 1
        return f"10.96.{number // 250}.{number % 250 + 1}"

    def _generate_name(self, key: StorageKey, namespace: str, prefix: str) -> str:
        while True:
            name = prefix + "".join(random.choices(_GENERATE_ALPHABET, k=5))
            if self.find(key, namespace, name) is None:
                return name

    def _check_namespace_open(self, namespace: str, name: str, rtype: ResourceType) -> None:
        ns = self.find(NAMESPACES, "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if _meta(ns).get("deletionTimestamp"):
            raise errors.ApiError(
                403,
                f'{rtype.qualified} "{name}" is forbidden: unable to create new content in'
                f" namespace {namespace} because it is being terminated",
                "Forbidden",
                {"name": name, "kind": rtype.plural, "group": rtype.group},
            )

    def _check_crd_open(self, rtype: ResourceType) -> None:
        crd = self.find(CRDS, "", f"{rtype.plural}.{rtype.group}")
        if crd is not None and _meta(crd).get("deletionTimestamp"):
            raise errors.method_not_allowed("create not allowed while custom resource definition is terminating")

    # -- the controllers the apiserver's cluster runs: GC, namespace and CRD lifecycles --------------------

    def _delete_key(self, key: ObjectKey, policy: str) -> None:
        storage, namespace, name = key
        obj = self.find(storage, namespace, name)
        rtype = self.registry.preferred(*storage)
        if obj is not None and rtype is not None:
            self._delete(rtype, obj, policy)

    def _orphan(self, uid: str) -> None:
        for storage, namespace, name in list(self._dependents.get(uid, ())):
            obj, rtype = self.find(storage, namespace, name), self.registry.preferred(*storage)
            if obj is None or rtype is None:
                continue
            new = clone(obj)
            _meta(new)["ownerReferences"] = [r for r in _meta(new).get("ownerReferences") or [] if r.get("uid") != uid]
            if not _meta(new)["ownerReferences"]:
                del _meta(new)["ownerReferences"]
            self._commit_update(rtype, obj, new)

    def _owner_alive(self, ref: JsonDict, namespace: str) -> bool:
        key = self._uids.get(ref.get("uid", ""))
        if key is None:
            return False
        # A namespaced owner only counts in the dependent's own namespace (cluster-scoped ones anywhere).
        return key[1] in ("", namespace)

    def _collect(self, key: ObjectKey) -> None:
        """The garbage collector's verdict on one object whose owners may be gone."""
        storage, namespace, name = key
        obj, rtype = self.find(storage, namespace, name), self.registry.preferred(*storage)
        if obj is None or rtype is None:
            return
        refs = [r for r in _meta(obj).get("ownerReferences") or [] if isinstance(r, dict)]
        alive = [r for r in refs if self._owner_alive(r, namespace)]
        if refs and not alive:
            self._delete(rtype, obj, "Background")
        elif len(alive) < len(refs):
            new = clone(obj)
            _meta(new)["ownerReferences"] = alive
            self._commit_update(rtype, obj, new)

    def _finish_orphaning(self, uid: str) -> None:
        self._orphan(uid)
        key = self._uids.get(uid)
        obj = self.find(*key) if key is not None else None
        rtype = self.registry.preferred(*key[0]) if key is not None else None
        if obj is not None and rtype is not None and _ORPHAN in (_meta(obj).get("finalizers") or []):
            self._drop_finalizer(rtype, obj, _ORPHAN)

    def _release_foreground(self, uid: str) -> None:
        key = self._uids.get(uid)
        if key is None or self._dependents.get(uid):
            return
        obj, rtype = self.find(*key), self.registry.preferred(*key[0])
        if obj is not None and rtype is not None and _FOREGROUND in (_meta(obj).get("finalizers") or []):
            self._drop_finalizer(rtype, obj, _FOREGROUND)

    def _drop_finalizer(self, rtype: ResourceType, obj: JsonDict, finalizer: str) -> None:
        new = clone(obj)
        _meta(new)["finalizers"] = [f for f in _meta(new).get("finalizers") or [] if f != finalizer]
        self._commit_update(rtype, obj, new)

    def _namespaced_types(self) -> list[ResourceType]:
        seen = {t.key: t for t in self.registry if t.namespaced}
        return list(seen.values())

    def _empty_namespace(self, namespace: str) -> None:
        for rtype in self._namespaced_types():
            for obj in list(self.iterate(rtype.key, namespace)):
                self._delete(rtype, obj, "Background")
        self._finalize_namespace(namespace)

    def _finalize_namespace(self, namespace: str) -> None:
        ns = self.find(NAMESPACES, "", namespace)
        if ns is None or not _meta(ns).get("deletionTimestamp"):
            return
        if any(self._objects[t.key].get(namespace) for t in self._namespaced_types()):
            return
        new = clone(ns)
        new["spec"]["finalizers"] = []
        self._commit_update(self._type(NAMESPACES), ns, new)

    def _empty_crd(self, crd_name: str) -> None:
        crd = self.find(CRDS, "", crd_name)
        rtype = self.registry.preferred(crd["spec"]["group"], crd["spec"]["names"]["plural"]) if crd else None
        if rtype is not None:
            for obj in list(self.iterate(rtype.key, None)):
                self._delete(rtype, obj, "Background")
        self._finalize_crd(crd_name)

    def _finalize_crd(self, crd_name: str) -> None:
        crd = self.find(CRDS, "", crd_name)
        if crd is None or not _meta(crd).get("deletionTimestamp"):
            return
        if any(self._objects[(crd["spec"]["group"], crd["spec"]["names"]["plural"])].values()):
            return
        self._drop_finalizer(self._type(CRDS), crd, crds.CLEANUP_FINALIZER)

    def _establish(self, crd_name: str) -> None:
        """The CRD controllers: accept the names, mark Established, and start serving the resource."""
        crd = self.find(CRDS, "", crd_name)
        if crd is None or _meta(crd).get("deletionTimestamp"):
            return
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        if self.registry.preferred(group, plural) is None:
            # A real server's watch cache for the new resource starts now: older versions are 410.
            self._evicted[(group, plural)] = max(self._evicted[(group, plural)], self.rv)
        self.registry.remove(group, plural)
        self.registry.add(types_from_crd(crd))
        new = clone(crd)
        new["status"] = crds.established_status(crd, now(), crd.get("status"))
        for old_condition, condition in zip(
            (crd.get("status") or {}).get("conditions") or [], new["status"]["conditions"], strict=False
        ):
            if old_condition.get("status") == condition["status"]:
                condition["lastTransitionTime"] = old_condition.get("lastTransitionTime")
        self._commit_update(self._type(CRDS), crd, new)

    # -- direct access for tests (deep copies, never the stored dicts) --------------------------------

    def snapshot(self, key: StorageKey, namespace: str | None) -> list[JsonDict]:
        return [clone(obj) for obj in self.iterate(key, namespace)]
