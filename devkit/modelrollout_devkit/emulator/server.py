"""The HTTP face of the emulator: routing, discovery, watch streaming, and the server lifecycles."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import pathlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp.web
import attrs
import kmock
import yaml
from multidict import CIMultiDict

from modelrollout_devkit.emulator import errors, tables
from modelrollout_devkit.emulator.errors import ApiError
from modelrollout_devkit.emulator.faults import FaultInjector, FaultRule
from modelrollout_devkit.emulator.resources import Registry, ResourceType
from modelrollout_devkit.emulator.selectors import FieldRequirement, Selector
from modelrollout_devkit.emulator.store import CRDS, JsonDict, Store, Watcher

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONTEXT_NAME = "modelrollout-sandbox"
DEFAULT_WATCH_TIMEOUT = 1800.0  # the apiserver's --min-request-timeout
MAX_BODY = 3 * 1024 * 1024
_SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-modelrollout-emulator",
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class RequestRecord:
    """One served request, kept in a bounded history for assertions and debugging."""

    method: str
    path: str
    query: str
    status: int
    duration: float


@dataclass(frozen=True)
class ApiPath:
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_api_path(path: str) -> ApiPath | None:
    """Resource URLs only; ``None`` for discovery and other URLs."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    # "/api/v1/namespaces/NAME/status" is the namespace's own subresource, not a resource in NAME.
    own_subresource = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    if rest[0] == "namespaces" and len(rest) >= 3 and not own_subresource:
        namespace, rest = rest[1], rest[2:]
    return ApiPath(group, version, rest[0], namespace, rest[1] if len(rest) > 1 else None, "/".join(rest[2:]) or None)


def _verb(method: str, path: ApiPath, query: Mapping[str, str]) -> str:
    watch = query.get("watch", "").lower() in ("true", "1")
    if path.name is None:
        verbs = {"GET": "watch" if watch else "list", "POST": "create", "DELETE": "deletecollection"}
    else:
        verbs = {"GET": "watch" if watch else "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    verb = verbs.get(method)
    if verb is None:
        raise errors.method_not_allowed()
    return verb


def _json(payload: Any, status: int = 200, warnings: Iterable[str] = ()) -> aiohttp.web.Response:
    headers: CIMultiDict[str] = CIMultiDict()
    for warning in warnings:
        headers.add("Warning", f"299 - {json.dumps(warning)}")
    return aiohttp.web.Response(
        body=json.dumps(payload).encode(), status=status, headers=headers, content_type="application/json"
    )


def _error(err: ApiError) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=err.body(), status=err.code, headers=err.headers, content_type="application/json")


def _render(rtype: ResourceType, obj: JsonDict) -> JsonDict:
    """Serve a stored object at the requested version (CRD conversion strategy "None")."""
    return obj if obj.get("apiVersion") == rtype.api_version else dict(obj, apiVersion=rtype.api_version)


def _list_item(rtype: ResourceType, obj: JsonDict) -> JsonDict:
    # Typed lists of the built-ins carry no kind/apiVersion in their items; custom resources do.
    if rtype.custom:
        return _render(rtype, obj)
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


#: the resources whose registry sets ReturnDeletedObject in the apiserver
_RETURNS_DELETED = frozenset({("", "pods"), ("", "services")})


def _deleted_status(rtype: ResourceType, obj: JsonDict) -> JsonDict:
    details: JsonDict = {"name": obj["metadata"]["name"], "kind": rtype.plural, "uid": obj["metadata"]["uid"]}
    if rtype.group:
        details["group"] = rtype.group
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _flag(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("true", "1")


def _int_param(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise errors.bad_request(f'invalid value for {name}: "{raw}"') from None


@attrs.define(kw_only=True)
class KubernetesApiEmulator(kmock.KubernetesEmulator):
    """A stricter Kubernetes API emulator: kmock's handler protocol with our own object semantics.

    kmock's request matching, payload DSL and request history are bypassed: every request is served
    from the indexed :class:`Store` in O(1)/O(log n) per object, and the history is a bounded deque.
    So kmock's own ``objects`` and ``requests`` views stay empty: use :meth:`get_object`,
    :meth:`list_objects`, ``store`` and ``history`` instead.
    """

    event_window: int = 10_000
    history_size: int = 1000
    registry: Registry = attrs.field(factory=Registry.with_builtins)
    store: Store = attrs.field(init=False)
    faults: FaultInjector = attrs.field(factory=FaultInjector)
    history: collections.deque[RequestRecord] = attrs.field(init=False)
    host_port: str = "127.0.0.1:0"

    def __attrs_post_init__(self) -> None:
        # Deliberately not the parent's: its DSL fallbacks scan all objects and all requests per call.
        self.store = Store(self.registry, event_window=self.event_window)
        self.history = collections.deque(maxlen=self.history_size)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        started = time.monotonic()
        try:
            response = await self._dispatch(raw_request)
        except ApiError as err:
            response = _error(err)
        except Exception as err:
            logger.exception("Emulator failure on %s %s", raw_request.method, raw_request.path_qs)
            response = _error(ApiError(500, f"Internal error occurred: {err!r}", "InternalError"))
        self.history.append(
            RequestRecord(
                raw_request.method,
                raw_request.path,
                raw_request.query_string,
                response.status,
                time.monotonic() - started,
            )
        )
        return response

    # -- routing -------------------------------------------------------------------------------------

    async def _dispatch(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        path = parse_api_path(raw.path)
        if path is None:
            if raw.method != "GET":
                raise errors.method_not_allowed()
            if raw.path in ("/healthz", "/livez", "/readyz"):
                return aiohttp.web.Response(text="ok")
            return _json(self._discovery(raw.path.rstrip("/") or "/"))
        query = {key: raw.query.getone(key) for key in raw.query}
        verb = _verb(raw.method, path, query)
        fault = self.faults.pick(verb, raw.method, (path.plural, path.group, path.subresource), path.namespace)
        if fault is not None:
            raise fault
        rtype = self.registry.get(path.group, path.version, path.plural)
        if rtype is None or (path.namespace is not None and not rtype.namespaced):
            raise errors.not_found_url()
        if rtype.namespaced and path.name is not None and path.namespace is None:
            raise errors.not_found_url()
        if path.subresource not in (None, *(["status"] if rtype.status else []), *(["scale"] if rtype.scale else [])):
            raise errors.not_found_url()
        if verb in ("watch", "list", "create", "deletecollection") and path.subresource is not None:
            raise errors.method_not_allowed()
        if verb == "watch":
            return await self._watch(raw, query, rtype, path)
        body = await self._body(raw, verb)
        return self._serve(raw, query, verb, rtype, path, body)

    async def _body(self, raw: aiohttp.web.BaseRequest, verb: str) -> Any:
        if verb not in ("create", "update", "patch", "delete", "deletecollection"):
            return None
        try:
            data = await raw.read()
        except aiohttp.web.HTTPRequestEntityTooLarge:
            raise ApiError(413, f"Request entity too large: limit is {MAX_BODY}", "RequestEntityTooLarge") from None
        if not data.strip():
            if verb in ("delete", "deletecollection"):
                return None
            raise errors.bad_request("the body of the request is empty")
        content_type = raw.content_type
        if "protobuf" in content_type:
            # kubectl's generators (e.g. "kubectl create namespace") send protobuf; we only speak JSON.
            raise errors.unsupported_media(content_type, ["application/json", "application/yaml"])
        if content_type.endswith("yaml") and verb != "patch":
            try:
                return yaml.safe_load(data)
            except yaml.YAMLError as err:
                raise errors.bad_request(f"error converting YAML to JSON: {err}") from err
        try:
            return json.loads(data)
        except ValueError as err:
            if verb == "patch" and content_type.endswith("yaml"):
                raise errors.unsupported_media(content_type, []) from err
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {err}") from err

    def _serve(
        self,
        raw: aiohttp.web.BaseRequest,
        query: Mapping[str, str],
        verb: str,
        rtype: ResourceType,
        path: ApiPath,
        body: Any,
    ) -> aiohttp.web.Response:
        store = self.store
        dry_run = query.get("dryRun") == "All"
        validation = query.get("fieldValidation") or "Warn"
        if validation not in ("Ignore", "Warn", "Strict"):
            raise errors.bad_request(f'fieldValidation must be one of "Ignore", "Warn", or "Strict", got {validation}')
        name, namespace = path.name or "", path.namespace
        warnings: list[str] = []
        if path.subresource == "scale":
            return _json(self._scale(raw, verb, rtype, namespace, name, body))
        match verb:
            case "get":
                obj = store.get(rtype, namespace, name)
                if path.subresource is None and tables.wants_table(raw.headers.get("Accept", "")):
                    return _json(tables.table(rtype, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}))
                return _json(_render(rtype, obj))
            case "list":
                return self._list(raw, query, rtype, namespace)
            case "create":
                obj, warnings = store.create(rtype, namespace, body, dry_run=dry_run, field_validation=validation)
                return _json(_render(rtype, obj), 201, warnings)
            case "update" if (
                rtype.create_on_update
                and path.subresource is None
                and store.find(rtype.key, namespace or "", name) is None
            ):
                obj, warnings = store.create_on_update(
                    rtype, namespace, name, body, dry_run=dry_run, field_validation=validation
                )
                return _json(_render(rtype, obj), 201, warnings)
            case "update":
                obj, warnings = store.replace(
                    rtype,
                    namespace,
                    name,
                    body,
                    subresource=path.subresource,
                    dry_run=dry_run,
                    field_validation=validation,
                )
                return _json(_render(rtype, obj), 200, warnings)
            case "patch":
                obj, warnings = store.patch(
                    rtype,
                    namespace,
                    name,
                    raw.content_type,
                    body,
                    subresource=path.subresource,
                    dry_run=dry_run,
                    field_validation=validation,
                )
                return _json(_render(rtype, obj), 200, warnings)
            case "delete":
                answer = store.delete(rtype, namespace, name, self._delete_options(query, body), dry_run=dry_run)
                if dry_run or rtype.key in _RETURNS_DELETED or store.find(rtype.key, namespace or "", name) is not None:
                    return _json(_render(rtype, answer))
                # Gone at once: most resources answer a Status, not the object (pods and services
                # answer the object, and so does anything that waits for finalizers).
                return _json(_deleted_status(rtype, answer))
            case "deletecollection":
                selector = self._selector(query, rtype, None)
                options = self._delete_options(query, body)
                deleted = [
                    _list_item(rtype, store.delete(rtype, namespace, _name_of(obj), options, dry_run=dry_run))
                    for obj in list(store.iterate(rtype.key, namespace))
                    if selector.matches(obj)
                ]
                return _json(
                    {
                        "kind": rtype.list_kind or f"{rtype.kind}List",
                        "apiVersion": rtype.api_version,
                        "metadata": {"resourceVersion": str(store.rv)},
                        "items": deleted,
                    }
                )
        raise errors.method_not_allowed()  # pragma: no cover  # all verbs are enumerated above

    @staticmethod
    def _delete_options(query: Mapping[str, str], body: Any) -> JsonDict:
        options: JsonDict = dict(body) if isinstance(body, dict) else {}
        if "propagationPolicy" in query:
            options["propagationPolicy"] = query["propagationPolicy"]
        if "orphanDependents" in query:
            options["orphanDependents"] = _flag(query, "orphanDependents")
        return options

    @staticmethod
    def _selector(query: Mapping[str, str], rtype: ResourceType, name: str | None) -> Selector:
        selector = Selector.parse(query.get("labelSelector"), query.get("fieldSelector"), rtype.field_selectors)
        if name is not None:
            selector = Selector(selector.labels, (*selector.fields, FieldRequirement("metadata.name", True, name)))
        return selector

    def _list(
        self, raw: aiohttp.web.BaseRequest, query: Mapping[str, str], rtype: ResourceType, namespace: str | None
    ) -> aiohttp.web.Response:
        requested = _int_param(query, "resourceVersion")
        if requested is not None and requested > self.store.rv:
            raise ApiError(
                504,
                f"Too large resource version: {requested}, current: {self.store.rv}",
                "Timeout",
                {
                    "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                    "retryAfterSeconds": 1,
                },
            )
        selector = self._selector(query, rtype, None)
        items, list_rv, token, remaining = self.store.list_page(
            rtype, namespace, selector, _int_param(query, "limit") or 0, query.get("continue")
        )
        metadata: JsonDict = {"resourceVersion": list_rv}
        if token:
            metadata["continue"] = token
            metadata["remainingItemCount"] = remaining
        if tables.wants_table(raw.headers.get("Accept", "")):
            return _json(tables.table(rtype, items, metadata))
        return _json(
            {
                "kind": rtype.list_kind or f"{rtype.kind}List",
                "apiVersion": rtype.api_version,
                "metadata": metadata,
                "items": [_list_item(rtype, obj) for obj in items],
            }
        )

    def _scale(
        self, raw: aiohttp.web.BaseRequest, verb: str, rtype: ResourceType, namespace: str | None, name: str, body: Any
    ) -> JsonDict:
        if verb not in ("get", "update", "patch"):
            raise errors.method_not_allowed()
        if verb != "get":
            scale = self._scale_of(self.store.get(rtype, namespace, name))
            if verb == "patch":
                content_type = raw.content_type
                body = self.store.apply_patch(rtype, scale, content_type, body)
            replicas = ((body or {}).get("spec") or {}).get("replicas")
            version = ((body or {}).get("metadata") or {}).get("resourceVersion")
            patch: JsonDict = {"spec": {"replicas": replicas}}
            if version:
                patch["metadata"] = {"resourceVersion": version}
            self.store.patch(rtype, namespace, name, "application/merge-patch+json", patch)
        return self._scale_of(self.store.get(rtype, namespace, name))

    @staticmethod
    def _scale_of(obj: JsonDict) -> JsonDict:
        meta = obj["metadata"]
        match_labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                key: meta[key]
                for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if key in meta
            },
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": ",".join(f"{k}={v}" for k, v in sorted(match_labels.items())),
            },
        }

    # -- watching ------------------------------------------------------------------------------------

    async def _watch(
        self, raw: aiohttp.web.BaseRequest, query: Mapping[str, str], rtype: ResourceType, path: ApiPath
    ) -> aiohttp.web.StreamResponse:
        selector = self._selector(query, rtype, path.name)
        requested = _int_param(query, "resourceVersion")
        since = None if not requested or _flag(query, "sendInitialEvents") else requested
        timeout = _int_param(query, "timeoutSeconds")
        response = aiohttp.web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        try:
            watcher = self.store.watch(
                rtype, path.namespace, selector, since, initial_bookmark=_flag(query, "sendInitialEvents")
            )
        except ApiError as err:
            # As the apiserver does: the watch "succeeds" with HTTP 200 and reports the error in-stream.
            await response.prepare(raw)
            await response.write(json.dumps({"type": "ERROR", "object": err.status()}).encode() + b"\n")
            await response.write_eof()
            return response
        try:
            await response.prepare(raw)
            await self._stream(response, watcher, rtype, float(timeout) if timeout else DEFAULT_WATCH_TIMEOUT)
        except ConnectionError:
            pass  # the client went away: nothing to tell it
        finally:
            self.store.unwatch(rtype, watcher)
        return response

    @staticmethod
    async def _stream(
        response: aiohttp.web.StreamResponse, watcher: Watcher, rtype: ResourceType, timeout: float
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        closed = False
        while not closed:
            try:
                item = await asyncio.wait_for(watcher.queue.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                break
            batch = [item]
            while not watcher.queue.empty():
                batch.append(watcher.queue.get_nowait())
            lines = []
            for event in batch:
                if event is None:
                    closed = True
                    break
                lines.append(json.dumps({"type": event["type"], "object": _render(rtype, event["object"])}))
            if lines:
                await response.write(("\n".join(lines) + "\n").encode())
        await response.write_eof()

    # -- discovery -----------------------------------------------------------------------------------

    def _discovery(self, path: str) -> JsonDict:
        parts = [part for part in path.split("/") if part]
        document: JsonDict | None = None
        if path == "/":
            groups = [
                f"/apis/{group}/{version}" for group, versions in self.registry.groups().items() for version in versions
            ]
            document = {
                "paths": sorted(
                    [
                        "/api",
                        "/api/v1",
                        "/apis",
                        "/version",
                        "/healthz",
                        "/livez",
                        "/readyz",
                        *groups,
                        *{g.rsplit("/", 1)[0] for g in groups},
                    ]
                )
            }
        elif path == "/version":
            document = dict(_SERVER_VERSION)
        elif path == "/api":
            document = {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.host_port}],
            }
        elif path == "/apis":
            document = self.registry.api_group_list()
        elif parts[:1] == ["api"] and len(parts) == 2:
            document = self.registry.api_resource_list("", parts[1])
        elif parts[:1] == ["apis"] and len(parts) == 2:
            document = self.registry.api_group(parts[1])
        elif parts[:1] == ["apis"] and len(parts) == 3:
            document = self.registry.api_resource_list(parts[1], parts[2])
        if document is None:
            raise errors.not_found_url()
        return document

    # -- direct access for tests and tools -------------------------------------------------------------

    def get_object(self, resource: str, name: str, namespace: str | None = None) -> JsonDict | None:
        """A copy of a stored object, e.g. ``get_object('deployments.apps', 'web', 'default')``."""
        rtype = self.registry.resolve(resource)
        obj = self.store.find(rtype.key, namespace or "" if rtype.namespaced else "", name)
        return None if obj is None else _render(rtype, json.loads(json.dumps(obj)))

    def list_objects(self, resource: str, namespace: str | None = None) -> list[JsonDict]:
        """Copies of all stored objects of a resource, in one namespace or in all."""
        rtype = self.registry.resolve(resource)
        return [_render(rtype, obj) for obj in self.store.snapshot(rtype.key, namespace if rtype.namespaced else None)]

    def create_object(self, body: JsonDict) -> JsonDict:
        """Create an object as if POSTed (validation included); the namespace comes from its metadata."""
        api_version, kind = body.get("apiVersion", ""), body.get("kind", "")
        group, _, version = api_version.rpartition("/")
        rtype = next((t for t in self.registry if t.group == group and t.version == version and t.kind == kind), None)
        if rtype is None:
            raise errors.not_found_url()
        namespace = (body.get("metadata") or {}).get("namespace") or "default" if rtype.namespaced else None
        obj, _ = self.store.create(rtype, namespace, body)
        return json.loads(json.dumps(obj))  # type: ignore[no-any-return]

    def inject_faults(
        self,
        status: int,
        *,
        ratio: float = 1.0,
        verbs: Iterable[str] | None = None,
        methods: Iterable[str] | None = None,
        resources: Iterable[str] | None = None,
        namespaces: Iterable[str] | None = None,
        limit: int | None = None,
        retry_after: int = 1,
    ) -> FaultRule:
        """Make a share of matching requests fail with 409, 429 (with Retry-After), 500, 503 or 504."""
        return self.faults.add(
            status,
            ratio=ratio,
            verbs=verbs,
            methods=methods,
            resources=resources,
            namespaces=namespaces,
            limit=limit,
            retry_after=retry_after,
        )

    def clear_faults(self) -> None:
        self.faults.rules.clear()


def _name_of(obj: JsonDict) -> str:
    name: str = obj["metadata"]["name"]
    return name


def _make_request(
    message: Any, payload: Any, protocol: Any, writer: Any, task: asyncio.Task[None]
) -> aiohttp.web.BaseRequest:
    # The apiserver accepts request bodies up to 3 MiB; aiohttp's default would refuse above 1 MiB.
    return aiohttp.web.BaseRequest(
        message, payload, protocol, writer, task, asyncio.get_running_loop(), client_max_size=MAX_BODY
    )


def _load_manifests(sources: Iterable[JsonDict | str | pathlib.Path]) -> list[JsonDict]:
    documents: list[JsonDict] = []
    for source in sources:
        if isinstance(source, dict):
            documents.append(source)
        else:
            documents.extend(doc for doc in yaml.safe_load_all(pathlib.Path(source).read_text()) if doc)
    return documents


def kubeconfig(url: str, *, context: str = CONTEXT_NAME, namespace: str = "default") -> JsonDict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": {}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
        "current-context": context,
        "preferences": {},
    }


class EmulatorServer:
    """The emulator on a local TCP port, as an async context manager::

    async with EmulatorServer(crds=['crds/modelrollout.yaml']) as emu:
        emu.write_kubeconfig(tmp_path / 'kubeconfig')
        ...  # talk to emu.url
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        crds: Iterable[JsonDict | str | pathlib.Path] = (),
        event_window: int = 10_000,
        history_size: int = 1000,
    ) -> None:
        self.host = host
        self.emulator = KubernetesApiEmulator(event_window=event_window, history_size=history_size)
        self._requested_port = port
        self._manifests = list(crds)
        self._runner: aiohttp.web.ServerRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("The emulator is not running.")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        server = aiohttp.web.Server(self.emulator, handler_cancellation=True, request_factory=_make_request)
        self._runner = aiohttp.web.ServerRunner(server, shutdown_timeout=5)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, self.host, self._requested_port, reuse_address=True)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        self.emulator.host_port = f"{self.host}:{self._port}"
        await self.load(_load_manifests(self._manifests))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.emulator.store.close_watches()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._port = None

    async def load(self, documents: Iterable[JsonDict]) -> None:
        """Create objects (CRDs first, then waiting for them to be established, then the rest)."""
        documents = list(documents)
        for doc in documents:
            if doc.get("kind") == "CustomResourceDefinition":
                self.emulator.create_object(doc)
        # The CRD controller establishes them in a callback soon after the create: let it run.
        for _ in range(10):
            if all((crd.get("status") or {}).get("conditions") for crd in self.emulator.store.snapshot(CRDS, None)):
                break
            await asyncio.sleep(0)
        for doc in documents:
            if doc.get("kind") != "CustomResourceDefinition":
                self.emulator.create_object(doc)

    def write_kubeconfig(
        self, path: str | pathlib.Path, *, context: str = CONTEXT_NAME, namespace: str = "default"
    ) -> pathlib.Path:
        """Write a no-auth kubeconfig for this server; its context is named ``modelrollout-sandbox``."""
        target = pathlib.Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(kubeconfig(self.url, context=context, namespace=namespace)))
        return target

    # Shortcuts to the emulator's direct access, for assertions in tests.
    def get_object(self, resource: str, name: str, namespace: str | None = None) -> JsonDict | None:
        return self.emulator.get_object(resource, name, namespace)

    def list_objects(self, resource: str, namespace: str | None = None) -> list[JsonDict]:
        return self.emulator.list_objects(resource, namespace)

    def inject_faults(self, status: int, **kwargs: Any) -> FaultRule:
        return self.emulator.inject_faults(status, **kwargs)

    def clear_faults(self) -> None:
        self.emulator.clear_faults()

    @property
    def history(self) -> collections.deque[RequestRecord]:
        return self.emulator.history


class ThreadedEmulator:
    """An :class:`EmulatorServer` running in a background thread with its own event loop."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="modelrollout-emulator", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            async with self.server:
                self._ready.set()
                await self._stopping.wait()
        except BaseException as err:
            self._failure = err
            self._ready.set()
            raise

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout) or self._failure is not None:
            raise RuntimeError("The emulator failed to start.") from self._failure

    def call(self, fn: Callable[[EmulatorServer], T], timeout: float = 10.0) -> T:
        """Run ``fn(server)`` in the emulator's loop thread (its state is not thread-safe)."""
        if self._loop is None:
            raise RuntimeError("The emulator is not running.")

        async def invoke() -> T:
            return fn(self.server)

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)


def start_in_thread(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    crds: Iterable[JsonDict | str | pathlib.Path] = (),
    kubeconfig_path: str | pathlib.Path | None = None,
) -> ThreadedEmulator:
    """Start the emulator for synchronous callers; ``.url`` is ready, ``.stop()`` shuts it down."""
    threaded = ThreadedEmulator(EmulatorServer(host=host, port=port, crds=crds))
    threaded.start()
    if kubeconfig_path is not None:
        threaded.server.write_kubeconfig(kubeconfig_path)
    return threaded
