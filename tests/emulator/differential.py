"""The differential harness: the same requests to the emulator and to a real API server, answers compared.

A scenario is a function of a :class:`Recorder`. It makes raw HTTP calls (no client library in between,
so nothing is smoothed over) and records, for each call it wants compared, an observation: the status
code, the ``Status`` reason and the 422 causes' fields, and the fields that matter of the answer, all
normalised (:class:`Normaliser`) so that what legitimately differs between two servers (uids,
timestamps, resourceVersion values, managedFields, generated name suffixes) does not count. The test
runs each scenario once on each server and compares the two lists of observations step by step.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3

JsonDict = dict[str, Any]
ABSENT = "<absent>"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
GROUP = "differential.modelrollout.io"
WIDGETS = f"/apis/{GROUP}/v1/namespaces/{{ns}}/widgets"
ROLLOUTS = "/apis/modelrollout.io/v1alpha1/namespaces/{ns}/modelrollouts"


@dataclass
class Reply:
    status: int
    body: Any

    @property
    def obj(self) -> JsonDict:
        assert isinstance(self.body, dict), self.body
        return self.body

    @property
    def rv(self) -> str:
        return str(self.obj["metadata"]["resourceVersion"])


class Side:
    """One API server, spoken to over plain HTTP(S) as a client library would."""

    def __init__(self, name: str, server: str, *, token: str | None = None, ca_file: Path | None = None) -> None:
        self.name = name
        self.server = server.rstrip("/")
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        if ca_file is not None:
            self.pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(ca_file), retries=False)
        else:
            self.pool = urllib3.PoolManager(retries=False)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Reply:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        url = self.server + path + ("?" + urllib.parse.urlencode(params) if params else "")
        response = self.pool.request(
            method, url, body=data, headers=headers, timeout=urllib3.Timeout(connect=10, read=60)
        )
        text = response.data.decode()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return Reply(response.status, parsed)

    def watch(self, path: str, params: dict[str, str]) -> tuple[int, list[JsonDict]]:
        """A watch that ends by itself (``timeoutSeconds`` is required): its status and every event."""
        assert "timeoutSeconds" in params
        query = urllib.parse.urlencode({"watch": "true", **params})
        response = self.pool.request(
            "GET",
            f"{self.server}{path}?{query}",
            headers=self.headers,
            preload_content=False,
            timeout=urllib3.Timeout(connect=10, read=int(params["timeoutSeconds"]) + 60),
        )
        events: list[JsonDict] = []
        buffer = b""
        try:
            for chunk in response.stream(4096):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        events.append(json.loads(line))
            if buffer.strip():
                events.append(json.loads(buffer))
        finally:
            response.release_conn()
        return response.status, events


class Normaliser:
    """Makes two servers' answers comparable: what may legitimately differ becomes a placeholder.

    resourceVersions become labels in order of first sight (``rv1``, ``rv2``...), so that "the write
    changed the resourceVersion" and "the watch event carries the version the write answered" still
    compare, while the numbers themselves do not.
    """

    def __init__(self) -> None:
        self.versions: dict[str, str] = {}

    def rv(self, value: Any) -> str:
        if not value:
            return ABSENT
        return self.versions.setdefault(str(value), f"rv{len(self.versions) + 1}")

    def object(self, obj: Any) -> Any:
        if not isinstance(obj, dict):
            return obj
        result = json.loads(json.dumps(obj))
        if isinstance(result.get("items"), list):
            result["items"] = [self.object(item) for item in result["items"]]
        details = result.get("details")
        if result.get("kind") == "Status" and isinstance(details, dict) and "uid" in details:
            details["uid"] = "<uid>"
        meta = result.get("metadata")
        if isinstance(meta, dict) and isinstance(result.get("items"), list) and meta.get("resourceVersion"):
            meta["resourceVersion"] = "<list>"  # the store's current version: other writes move it
        if isinstance(meta, dict):
            meta.pop("managedFields", None)
            meta.pop("selfLink", None)
            for key in ("uid",):
                if key in meta:
                    meta[key] = "<uid>"
            for key in ("creationTimestamp", "deletionTimestamp"):
                if meta.get(key):
                    meta[key] = "<time>"
            if "resourceVersion" in meta:
                meta["resourceVersion"] = self.rv(meta["resourceVersion"])
            prefix, name = meta.get("generateName"), meta.get("name")
            if isinstance(prefix, str) and isinstance(name, str) and name.startswith(prefix):
                meta["name"] = prefix + "<generated>" if len(name) == len(prefix) + 5 else name
            for ref in meta.get("ownerReferences") or []:
                if isinstance(ref, dict) and "uid" in ref:
                    ref["uid"] = "<uid>"
        return result


def pick(obj: Any, path: str) -> Any:
    """A dotted path into an object (``metadata.generation``); ABSENT when any step is missing."""
    value = obj
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return ABSENT
    return value


def status_of(reply: Reply) -> JsonDict:
    """What counts in a failure: the code, the reason, and the 422 causes' fields and reasons."""
    body = reply.body if isinstance(reply.body, dict) else {}
    observed: JsonDict = {"code": reply.status}
    if body.get("kind") == "Status":
        observed["reason"] = body.get("reason", "")
        causes = (body.get("details") or {}).get("causes") or []
        if reply.status == 422:
            observed["causes"] = sorted({(c.get("field", ""), c.get("reason", "")) for c in causes})
    return observed


@dataclass
class Recorder:
    """Runs a scenario's calls on one side and keeps the normalised observations."""

    side: Side
    namespace: str
    log: list[tuple[str, Any]] = field(default_factory=list)
    norm: Normaliser = field(default_factory=Normaliser)

    @property
    def name(self) -> str:
        return self.side.name

    def path(self, template: str) -> str:
        return template.format(ns=self.namespace)

    def note(self, step: str, value: Any) -> None:
        self.log.append((step, value))

    def call(
        self,
        step: str,
        method: str,
        template: str,
        body: Any = None,
        *,
        fields: Sequence[str] | None = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Reply:
        """Make a call and record it; ``fields`` picks what to compare of a success (None: all of it)."""
        if isinstance(body, dict):
            body = json.loads(json.dumps(body).replace("{ns}", self.namespace))
        reply = self.side.call(method, self.path(template), body, content_type=content_type, params=params)
        observed = status_of(reply)
        if reply.status < 400 and isinstance(reply.body, dict):
            normalised = self.norm.object(reply.body)
            if normalised.get("kind", "").endswith("List") and "items" in normalised:
                normalised = self.list_view(normalised, fields)
            elif fields is None:
                observed["object"] = normalised
            else:
                observed.update({name: pick(normalised, name) for name in fields})
            if isinstance(normalised, dict) and "items" in normalised:
                observed["list"] = normalised
        self.log.append((step, observed))
        return reply

    def list_view(self, listed: JsonDict, fields: Sequence[str] | None) -> JsonDict:
        return {
            "kind": listed.get("kind"),
            "apiVersion": listed.get("apiVersion"),
            "hasResourceVersion": bool(pick(listed, "metadata.resourceVersion")),
            "items": [{name: pick(item, name) for name in (fields or ("metadata.name",))} for item in listed["items"]],
        }

    def watch(
        self, step: str, template: str, params: dict[str, str], *, fields: Sequence[str] = ("metadata.name",)
    ) -> list[JsonDict]:
        status, events = self.side.watch(self.path(template), params)
        seen = []
        for event in events:
            obj = self.norm.object(event.get("object"))
            if event.get("type") == "BOOKMARK":
                seen.append({"type": "BOOKMARK", "kind": pick(obj, "kind")})
            elif event.get("type") == "ERROR":
                seen.append({"type": "ERROR", "code": pick(obj, "code"), "reason": pick(obj, "reason")})
            else:
                seen.append(
                    {
                        "type": event.get("type"),
                        "kind": pick(obj, "kind"),
                        **{name: pick(obj, name) for name in fields},
                    }
                )
        self.log.append((step, {"code": status, "events": seen}))
        return events

    def eventually(
        self, step: str, probe: Callable[[], Any], until: Callable[[Any], bool], timeout: float = 90.0
    ) -> Any:
        """Poll ``probe`` until ``until`` holds (an eventual outcome, e.g. of garbage collection); record it."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if until(value) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.log.append((step, {"reached": until(value)}))
        return value


Scenario = Callable[[Recorder], None]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


def differences(a: Recorder, b: Recorder) -> Iterator[str]:
    """Each step where the two sides' observations disagree, both answers shown."""
    for index in range(max(len(a.log), len(b.log))):
        left = a.log[index] if index < len(a.log) else ("<missing>", None)
        right = b.log[index] if index < len(b.log) else ("<missing>", None)
        if left != right:
            yield (
                f"step {index} {left[0]!r}:\n  {a.name}: {json.dumps(left[1], sort_keys=True, default=str)}"
                f"\n  {b.name}: {json.dumps(right[1], sort_keys=True, default=str)}"
            )


def assert_same_answers(sides: Sequence[Side], prefix: str, scenario: Callable[[Recorder], None]) -> None:
    """Play one scenario on each side, each in a namespace of its own, and fail on any difference."""
    recorders = []
    for side in sides:
        recorder = Recorder(side, prefix)
        made = side.call("POST", "/api/v1/namespaces", {"metadata": {"name": recorder.namespace}})
        assert made.status == 201, made
        scenario(recorder)
        recorders.append(recorder)
    found = list(differences(*recorders))
    assert not found, f"{len(found)} difference(s) between the real API server and the emulator:\n" + "\n".join(found)
