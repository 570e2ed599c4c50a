"""A small async client for the few API calls the operator makes, written for a real API server.

It is an aiohttp session of its own. kubernetes_asyncio's public config loaders read the kubeconfig
or the in-cluster account (server, TLS files, tokens, and the hooks that refresh expiring ones);
the session is built from what they found, and every request asks the configuration for its
credentials (so a refreshed token is used). The session does not trust the environment: the proxy
for the API server is resolved once, here, as the environment says (a session that trusts it reads
~/.netrc and the proxy variables for every request: 8 % of the operator's busy time at 1,000
rollouts). Every request has a timeout, so a hung connection fails a pass instead of hanging it.

It speaks plain dicts for any resource, built-in or custom, so every call states its patch type
explicitly: merge patches for custom resources (a real server refuses strategic merge on them),
status written only through the `/status` subresource.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config

from modelrollout import GROUP, PLURAL, VERSION

logger = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
# Answers worth another try: conflicts on writes that carry no precondition, throttling, and
# server-side hiccups. Anything else is a real answer.
RETRIABLE = {409, 429, 500, 502, 503, 504}
# The longest one request may take, connecting included. The operator's requests are small reads
# and writes that a healthy server answers in milliseconds; a minute is a hung connection.
REQUEST_TIMEOUT_SECONDS = 60.0
# Answers that say the server is overloaded rather than that the request was wrong.
OVERLOADED = {429, 500, 502, 503, 504}
# aiohttp's default read buffer is too small for the largest objects etcd stores (1.5 MiB).
READ_BUFFER_BYTES = 2**21


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/api/{self.version}" if self.group == "" else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
        if subresource is not None:
            base += f"/{subresource}"
        return base


MODELROLLOUTS = Resource(GROUP, VERSION, PLURAL)
DEPLOYMENTS = Resource("apps", "v1", "deployments")
SERVICES = Resource("", "v1", "services")
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False)
CONFIGMAPS = Resource("", "v1", "configmaps")
SECRETS = Resource("", "v1", "secrets")
JOBS = Resource("batch", "v1", "jobs")
PODS = Resource("", "v1", "pods")
LEASES = Resource("coordination.k8s.io", "v1", "leases")
TEMPLATES = Resource(GROUP, VERSION, "modelanalysistemplates")
CLUSTER_TEMPLATES = Resource(GROUP, VERSION, "clustermodelanalysistemplates", namespaced=False)


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None):
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"{status} {reason}: {message}")


class ApiTimeout(ApiError):
    """No answer in time. Not retried here: the write may or may not have been made, and the pass
    that asked is replayed as a whole (its actions are idempotent). The time counts the wait for a
    free connection in the client's pool too, so the message does not blame the API server alone."""

    def __init__(self, method: str, path: str, seconds: float):
        super().__init__(
            504,
            "Timeout",
            f"{method} {path}: no answer in {seconds:g} s (waiting for a free connection or for the API server)",
        )


class WriteFenced(ApiError):
    """A write not sent: this client's owner may no longer act (a sharded replica whose hold on its
    shard is in doubt). Not retried: the pass that asked is dropped, and the next one, here or on the
    replica that takes the shard over, starts from what the server has."""

    def __init__(self, method: str, path: str):
        super().__init__(0, "Fenced", f"{method} {path}: not sent, this replica may no longer hold the shard")


class KubeApi:
    """Plain-dict access to the API server with retries on transient answers."""

    def __init__(
        self,
        configuration: client.Configuration,
        attempts: int = 5,
        backoff: float = 0.2,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
    ):
        self._configuration = configuration
        self._host = (configuration.host or "").rstrip("/")
        self._attempts = attempts
        self._backoff = backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.proxy = configuration.proxy or _proxy_for(self._host)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=configuration.connection_pool_maxsize, ssl=_tls(configuration)),
            trust_env=False,
            read_bufsize=READ_BUFFER_BYTES,
        )
        self.requests = 0
        self.writes = 0
        # Told of every answer but a list's (a list's time grows with what it returns): how long it
        # took, whether it said the server is overloaded, and when it came (the loop's clock).
        self.on_answer: Callable[[float, bool, float], None] | None = None
        # Asked before every write, and every retry of one: False stops it (`WriteFenced`). A pass can
        # outlast a sharded replica's hold on its shard; this keeps its later writes from landing
        # after another replica may have taken the shard over.
        self.may_write: Callable[[], bool] | None = None

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeApi:
        """Connect with the given kubeconfig, else the in-cluster account, else the default kubeconfig."""
        return cls(await load_configuration(kubeconfig, context))

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
        timed: bool = True,
    ) -> dict[str, Any]:
        for attempt in range(self._attempts):
            try:
                return await self._once(method, path, body, content_type, query, timed)
            except ApiTimeout:
                raise
            except ApiError as error:
                last_try = attempt == self._attempts - 1
                # A 409 on create means "already exists", and on a write that carries a
                # resourceVersion it means "you read a stale object": final answers for the caller,
                # which must re-read, not a race to retry with the same body.
                preconditioned = isinstance(body, dict) and bool((body.get("metadata") or {}).get("resourceVersion"))
                if (
                    error.status not in RETRIABLE
                    or last_try
                    or (error.status == 409 and (method == "POST" or preconditioned))
                ):
                    raise
                delay = error.retry_after or self._backoff * (2**attempt) * (0.5 + random.random())
                logger.debug("retrying %s %s after %s in %.2fs", method, path, error, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _headers(self, content_type: str) -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        # Asked for every request: the configuration's refresh hook renews an expiring token here.
        for setting in (await self._configuration.auth_settings()).values():
            if setting["in"] == "header" and setting["value"]:
                headers[setting["key"]] = setting["value"]
        return headers

    async def _once(
        self, method: str, path: str, body: Any, content_type: str, query: dict[str, str] | None, timed: bool = True
    ) -> dict[str, Any]:
        if method != "GET" and self.may_write is not None and not self.may_write():
            raise WriteFenced(method, path)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            answer = await self._answer(method, path, body, content_type, query)
        except ApiError as error:
            if timed and self.on_answer is not None:
                self.on_answer(loop.time() - started, error.status in OVERLOADED, loop.time())
            raise
        if timed and self.on_answer is not None:
            self.on_answer(loop.time() - started, False, loop.time())
        return answer

    async def _answer(
        self, method: str, path: str, body: Any, content_type: str, query: dict[str, str] | None
    ) -> dict[str, Any]:
        self.requests += 1
        if method != "GET":
            self.writes += 1
        headers = await self._headers(content_type)
        url = self._host + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body) if body is not None else None
        try:
            async with self.session.request(
                method,
                url,
                data=data,
                headers=headers,
                proxy=self.proxy,
                proxy_headers=self._configuration.proxy_headers,
                timeout=self._timeout,
                server_hostname=self._configuration.tls_server_name,
            ) as response:
                text = await response.text()
                status = response.status
                reason = response.reason
                retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            raise ApiTimeout(method, path, self._timeout.total or 0.0) from None
        answer: dict[str, Any] = json.loads(text) if text.strip().startswith("{") else {}
        if not 200 <= status <= 299:
            raise ApiError(
                status,
                str(answer.get("reason") or reason or ""),
                str(answer.get("message") or text[:500]),
                float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None,
            )
        return answer

    # --- verbs -----------------------------------------------------------------------------------------

    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", resource.path(namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def list(
        self, resource: Resource, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        answer = await self.request("GET", resource.path(namespace), query=query, timed=False)
        items: list[dict[str, Any]] = answer.get("items", [])
        return items

    async def create(self, resource: Resource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", resource.path(namespace), body)

    async def create_or_get(self, resource: Resource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """Create, or accept that it exists already (the watch that would have told us was late)."""
        try:
            return await self.create(resource, namespace, body)
        except ApiError as error:
            if error.status != 409:
                raise
            existing = await self.get(resource, namespace, body["metadata"]["name"])
            if existing is None:
                raise
            return existing

    async def merge_patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        return await self.request("PATCH", resource.path(namespace, name, subresource), patch, MERGE_PATCH)

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> bool:
        """Delete in the background (owned objects go with it); False if it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            await self.request("DELETE", resource.path(namespace, name), body)
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def watch(
        self,
        resource: Resource,
        namespace: str | None,
        resource_version: str,
        timeout_seconds: int = 300,
        query: dict[str, str] | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The changes after `resource_version`, as (ADDED | MODIFIED | DELETED | BOOKMARK | ERROR, object),
        until the server ends the watch (after about `timeout_seconds`); the caller lists and watches again.

        Not retried: a watch that breaks is resumed by the caller from the last version it saw."""
        parameters = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
            **(query or {}),
        }
        url = self._host + resource.path(namespace) + "?" + urllib.parse.urlencode(parameters)
        # No total timeout (the server holds the watch open); a silent connection still ends.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout.total, sock_read=timeout_seconds + 30)
        self.requests += 1
        async with self.session.get(
            url,
            headers=await self._headers("application/json"),
            proxy=self.proxy,
            proxy_headers=self._configuration.proxy_headers,
            timeout=timeout,
            server_hostname=self._configuration.tls_server_name,
        ) as response:
            if not 200 <= response.status <= 299:
                text = await response.text()
                answer: dict[str, Any] = json.loads(text) if text.strip().startswith("{") else {}
                reason = str(answer.get("reason") or response.reason or "")
                raise ApiError(response.status, reason, str(answer.get("message") or text[:500]))
            async for line in response.content:
                if line.strip():
                    event = json.loads(line)
                    yield str(event.get("type")), event.get("object") or {}


async def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> client.Configuration:
    """The connection kubernetes_asyncio's public loaders find: the given kubeconfig, else the
    in-cluster account, else the default kubeconfig ($KUBECONFIG, ~/.kube/config)."""
    configuration = client.Configuration()
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            await config.load_kube_config(client_configuration=configuration, context=context)
    else:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration, context=context)
    return configuration


def _tls(configuration: client.Configuration) -> ssl.SSLContext:
    """The TLS context the configuration asks for: its CA, its client certificate, its verification."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.disable_strict_ssl_verification:
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context


def _proxy_for(host: str) -> str | None:
    """The proxy the environment names for the API server (None when there is none or it is bypassed)."""
    url = urllib.parse.urlsplit(host)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        return proxy
    return None


def merge_patch_between(old: Any, new: Any) -> Any:
    """The RFC 7386 merge patch that turns `old` into `new` (None when nothing changes).

    Keys that disappear become explicit nulls: a merge patch that simply omitted them would leave
    them in place on the server.
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None if old == new else new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
            continue
        inner = merge_patch_between(old[key], value)
        if inner is not None or (value is None and old[key] is not None):
            patch[key] = inner
    return patch or None
