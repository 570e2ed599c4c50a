"""The request sequences of the differential test: every kind of call the operator, kopf, the CLI and
the sandbox make, each sent to both servers by :func:`tests.emulator.test_differential`.

Each scenario works in its own namespace (``r.namespace``, created by the test) and records only what
it means to compare; see :mod:`tests.emulator.differential` for what is normalised away.
"""

from __future__ import annotations

from typing import Any

from tests.emulator.differential import (
    ABSENT,
    GROUP,
    JSON_PATCH,
    MERGE,
    ROLLOUTS,
    STRATEGIC,
    WIDGETS,
    JsonDict,
    Recorder,
    pick,
    scenario,
)

WIDGET = WIDGETS + "/{name}"
CONFIGMAPS = "/api/v1/namespaces/{ns}/configmaps"
DEPLOYMENTS = "/apis/apps/v1/namespaces/{ns}/deployments"
EVENTS = "/api/v1/namespaces/{ns}/events"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
#: what matters of a custom resource's answer in most steps
CR_FIELDS = ("metadata.name", "metadata.generation", "metadata.resourceVersion", "spec", "status")


def widget_crd() -> JsonDict:
    """A test CRD with the constraints the project's CRDs use: types, enums, bounds, defaults,
    nullable, preserved unknown fields, and the status subresource."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {
                                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                        "colour": {"type": "string", "enum": ["red", "green"], "default": "red"},
                                        "note": {"type": "string", "nullable": True},
                                        "tags": {"type": "array", "items": {"type": "string"}},
                                        "nested": {"type": "object", "properties": {"keep": {"type": "string"}}},
                                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {"phase": {"type": "string"}, "count": {"type": "integer"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def widget(name: str, labels: dict[str, str] | None = None, **spec: Any) -> JsonDict:
    metadata: JsonDict = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": metadata, "spec": {"size": 1, **spec}}


def rollout(name: str) -> JsonDict:
    return {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelRollout",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "m", "version": "1"},
            "template": {"spec": {"containers": [{"name": "server", "image": "model:1"}]}},
        },
    }


def configmap(name: str, owner: JsonDict | None = None, **data: str) -> JsonDict:
    metadata: JsonDict = {"name": name}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def owner_ref(obj: JsonDict, **extra: Any) -> JsonDict:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        **extra,
    }


def deployment(name: str) -> JsonDict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "model:1", "env": [{"name": "A", "value": "1"}]},
                        {"name": "sidecar", "image": "proxy:1"},
                    ]
                },
            },
        },
    }


def _gone(r: Recorder, template: str) -> bool:
    return r.side.call("GET", r.path(template)).status == 404


# -- custom resources --------------------------------------------------------------------------------


@scenario
def custom_create_get_list(r: Recorder) -> None:
    r.call("create a", "POST", WIDGETS, widget("a", {"app": "x"}), fields=CR_FIELDS)
    r.call("create b", "POST", WIDGETS, widget("b", {"app": "y"}, colour="green"), fields=CR_FIELDS)
    made = r.call(
        "create with generateName",
        "POST",
        WIDGETS,
        {**widget(""), "metadata": {"generateName": "gen-"}},
        fields=("metadata.name", "metadata.generateName", "metadata.generation"),
    )
    r.call("get generated", "GET", WIDGET.replace("{name}", str(made.obj["metadata"]["name"])), fields=CR_FIELDS)
    r.call("get a", "GET", WIDGET.format(ns="{ns}", name="a"))
    r.call("get missing", "GET", WIDGET.format(ns="{ns}", name="missing"))
    r.call("create a again", "POST", WIDGETS, widget("a"))
    r.call("create without a name", "POST", WIDGETS, {**widget(""), "metadata": {}})
    r.call("list", "GET", WIDGETS, fields=("metadata.name", "kind", "apiVersion"))
    r.call("list label =", "GET", WIDGETS, params={"labelSelector": "app=x"})
    r.call("list label in", "GET", WIDGETS, params={"labelSelector": "app in (x,y)"})
    r.call("list label !=", "GET", WIDGETS, params={"labelSelector": "app!=x"})
    r.call("list label exists", "GET", WIDGETS, params={"labelSelector": "app"})
    r.call("list field name", "GET", WIDGETS, params={"fieldSelector": "metadata.name=b"})
    r.call("list field namespace", "GET", WIDGETS, params={"fieldSelector": f"metadata.namespace={r.namespace}"})
    r.call("list unsupported field", "GET", WIDGETS, params={"fieldSelector": "spec.size=1"})
    r.call("list limit", "GET", WIDGETS, params={"limit": "1"})
    r.call("wrong kind in body", "POST", WIDGETS, {**widget("c"), "kind": "Gadget"})
    r.call("wrong apiVersion in body", "POST", WIDGETS, {**widget("c"), "apiVersion": f"{GROUP}/v2"})
    r.call("body namespace differs", "POST", WIDGETS, {**widget("c"), "metadata": {"name": "c", "namespace": "x"}})
    r.call("create in a missing namespace", "POST", WIDGETS.replace("{ns}", "no-such-namespace"), widget("c"))


@scenario
def custom_schema_rejections_and_pruning(r: Recorder) -> None:
    r.call("wrong type", "POST", WIDGETS, widget("t", size="big"))
    r.call("enum", "POST", WIDGETS, widget("t", colour="blue"))
    r.call("minimum", "POST", WIDGETS, widget("t", size=0))
    r.call("maximum", "POST", WIDGETS, widget("t", size=11))
    r.call("required", "POST", WIDGETS, {**widget("t"), "spec": {"colour": "red"}})
    r.call("several at once", "POST", WIDGETS, widget("t", size=0, colour="blue", tags=[1]))
    r.call("null for a non-nullable", "POST", WIDGETS, widget("t", tags=None))
    r.call("null for a nullable", "POST", WIDGETS, widget("n", note=None), fields=("spec",))
    pruned = {
        **widget("p", nested={"keep": "k", "drop": "d"}, free={"any": {"thing": 1}}, bogus=1),
        "extra": {"top": True},
    }
    r.call("pruned on create", "POST", WIDGETS, pruned, fields=("spec", "extra", "status"))
    r.call("pruned on get", "GET", WIDGET.replace("{name}", "p"), fields=("spec", "extra"))
    r.call("strict unknown field", "POST", WIDGETS, widget("s", bogus=1), params={"fieldValidation": "Strict"})
    r.call("invalid merge patch", "PATCH", WIDGET.replace("{name}", "p"), {"spec": {"size": 0}}, content_type=MERGE)
    r.call(
        "pruned on patch",
        "PATCH",
        WIDGET.replace("{name}", "p"),
        {"spec": {"bogus": 2, "nested": {"other": 1}}},
        content_type=MERGE,
        fields=("spec", "metadata.generation", "metadata.resourceVersion"),
    )
    r.call("dry run", "POST", WIDGETS, widget("d"), params={"dryRun": "All"}, fields=("metadata.name", "spec"))
    r.call("dry run left nothing", "GET", WIDGET.replace("{name}", "d"))


@scenario
def custom_generation_and_status(r: Recorder) -> None:
    one = WIDGET.replace("{name}", "g")
    r.call("create", "POST", WIDGETS, {**widget("g"), "status": {"phase": "ignored"}}, fields=CR_FIELDS)
    r.call("spec merge patch", "PATCH", one, {"spec": {"size": 2}}, content_type=MERGE, fields=CR_FIELDS)
    r.call("labels only", "PATCH", one, {"metadata": {"labels": {"l": "1"}}}, content_type=MERGE, fields=CR_FIELDS)
    r.call("no-op patch", "PATCH", one, {"spec": {"size": 2}}, content_type=MERGE, fields=CR_FIELDS)
    r.call("status on main", "PATCH", one, {"status": {"phase": "main"}}, content_type=MERGE, fields=CR_FIELDS)
    r.call(
        "status subresource",
        "PATCH",
        one + "/status",
        {"spec": {"size": 9}, "status": {"phase": "Running", "count": 1}, "metadata": {"labels": {"s": "1"}}},
        content_type=MERGE,
        fields=(*CR_FIELDS, "metadata.labels"),
    )
    r.call("status invalid", "PATCH", one + "/status", {"status": {"count": "x"}}, content_type=MERGE)
    r.call("status pruned", "PATCH", one + "/status", {"status": {"bogus": 1}}, content_type=MERGE, fields=CR_FIELDS)
    current = r.call("get status", "GET", one + "/status", fields=CR_FIELDS)
    body = current.obj
    body["status"] = {"phase": "Put"}
    r.call("put status", "PUT", one + "/status", body, fields=CR_FIELDS)
    r.call("strategic merge on a custom resource", "PATCH", one, {"spec": {"size": 3}}, content_type=STRATEGIC)
    r.call("unknown patch type", "PATCH", one, {"spec": {"size": 3}}, content_type="application/x-unknown+json")
    r.call("subresource that is not there", "GET", one + "/scale")
    # kopf: the handler's merge patch of the main body, then the status patch on /status
    r.call(
        "kopf annotations",
        "PATCH",
        one,
        {"metadata": {"annotations": {"kopf.zalando.org/last-handled-configuration": '{"spec":{}}'}}},
        content_type=MERGE,
        fields=CR_FIELDS,
    )


@scenario
def custom_conflicts(r: Recorder) -> None:
    one = WIDGET.replace("{name}", "c")
    first = r.call("create", "POST", WIDGETS, widget("c"), fields=CR_FIELDS)
    stale = first.obj
    r.call("patch", "PATCH", one, {"spec": {"size": 2}}, content_type=MERGE, fields=CR_FIELDS)
    r.call("stale put", "PUT", one, {**stale, "spec": {"size": 3}})
    r.call(
        "stale merge patch",
        "PATCH",
        one,
        {"metadata": {"resourceVersion": stale["metadata"]["resourceVersion"]}, "spec": {"size": 3}},
        content_type=MERGE,
    )
    unconditional = {**stale, "metadata": {"name": "c"}, "spec": {"size": 3}}
    r.call("put without resourceVersion", "PUT", one, unconditional)
    fresh = r.call("get", "GET", one, fields=CR_FIELDS).obj
    r.call("put fresh", "PUT", one, {**fresh, "spec": {"size": 4}}, fields=CR_FIELDS)
    r.call("put name mismatch", "PUT", one, {**fresh, "metadata": {**fresh["metadata"], "name": "other"}})
    current = r.side.call("GET", r.path(one)).rv
    # kopf's finalizer patch: a JSON patch guarded by a test of the resourceVersion
    r.call(
        "kopf finalizer add",
        "PATCH",
        one,
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": current},
            {"op": "add", "path": "/metadata/finalizers", "value": ["kopf.zalando.org/KopfFinalizerMarker"]},
        ],
        content_type=JSON_PATCH,
        fields=("metadata.finalizers", "metadata.resourceVersion", "metadata.generation"),
    )
    r.call(
        "kopf finalizer with a stale resourceVersion",
        "PATCH",
        one,
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": current},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ],
        content_type=JSON_PATCH,
    )
    r.call(
        "json patch of a missing path",
        "PATCH",
        one,
        [{"op": "remove", "path": "/spec/nothing"}],
        content_type=JSON_PATCH,
    )
    r.call("json patch not a list", "PATCH", one, {"op": "add"}, content_type=JSON_PATCH)
    r.call("delete with a stale precondition", "DELETE", one, {"preconditions": {"resourceVersion": current}})


@scenario
def custom_finalizers_and_deletion(r: Recorder) -> None:
    one = WIDGET.replace("{name}", "f")
    start = r.side.call("GET", r.path(WIDGETS)).obj["metadata"]["resourceVersion"]
    made = r.call("create", "POST", WIDGETS, {**widget("f"), "metadata": {"name": "f", "finalizers": ["x/a"]}})
    fields = ("metadata.finalizers", "metadata.deletionTimestamp", "metadata.generation", "metadata.resourceVersion")
    r.call("delete", "DELETE", one, fields=("kind", *fields))
    r.call("still there", "GET", one, fields=fields)
    r.call("delete again", "DELETE", one, fields=("kind", *fields))
    r.call("new finalizer refused", "PATCH", one, {"metadata": {"finalizers": ["x/a", "x/b"]}}, content_type=MERGE)
    r.call("spec change while deleting", "PATCH", one, {"spec": {"size": 5}}, content_type=MERGE, fields=fields)
    current = r.side.call("GET", r.path(one)).rv
    r.call(
        "last finalizer removed",
        "PATCH",
        one,
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": current},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ],
        content_type=JSON_PATCH,
        fields=("kind", *fields),
    )
    r.call("gone", "GET", one)
    r.call("create plain", "POST", WIDGETS, widget("p"), fields=("metadata.name",))
    r.call("delete plain", "DELETE", WIDGET.replace("{name}", "p"), fields=("kind", "status", "metadata.name"))
    r.call("delete missing", "DELETE", WIDGET.replace("{name}", "p"))
    r.watch(
        "the watch saw it all",
        WIDGETS,
        {"resourceVersion": start, "timeoutSeconds": "2"},
        fields=("metadata.name", "metadata.resourceVersion", "metadata.finalizers", "metadata.deletionTimestamp"),
    )
    del made


@scenario
def watches(r: Recorder) -> None:
    r.call("create before", "POST", WIDGETS, widget("before", {"app": "w"}))
    listed = r.call("list", "GET", WIDGETS, params={"labelSelector": "app=w"})
    start = listed.obj["metadata"]["resourceVersion"]
    r.call("create in", "POST", WIDGETS, widget("in", {"app": "w"}))
    r.call("create out", "POST", WIDGETS, widget("out", {"app": "other"}))
    r.call("modify in", "PATCH", WIDGET.replace("{name}", "in"), {"spec": {"size": 2}}, content_type=MERGE)
    r.call(
        "status of in",
        "PATCH",
        WIDGET.replace("{name}", "in") + "/status",
        {"status": {"phase": "P"}},
        content_type=MERGE,
    )
    r.call(
        "out enters",
        "PATCH",
        WIDGET.replace("{name}", "out"),
        {"metadata": {"labels": {"app": "w"}}},
        content_type=MERGE,
    )
    r.call(
        "in leaves",
        "PATCH",
        WIDGET.replace("{name}", "in"),
        {"metadata": {"labels": {"app": "gone"}}},
        content_type=MERGE,
    )
    r.call("delete out", "DELETE", WIDGET.replace("{name}", "out"))
    fields = ("metadata.name", "metadata.resourceVersion", "spec.size", "status.phase", "metadata.labels")
    r.watch("from the list, all", WIDGETS, {"resourceVersion": start, "timeoutSeconds": "2"}, fields=fields)
    r.watch(
        "from the list, selected",
        WIDGETS,
        {"resourceVersion": start, "timeoutSeconds": "2", "labelSelector": "app=w"},
        fields=fields,
    )
    r.watch(
        "from the list, with bookmarks allowed (kopf, the sandbox)",
        WIDGETS,
        {"resourceVersion": start, "timeoutSeconds": "2", "allowWatchBookmarks": "true", "labelSelector": "app=w"},
        fields=fields,
    )
    r.watch(
        "one object",
        WIDGETS,
        {"resourceVersion": start, "timeoutSeconds": "2", "fieldSelector": "metadata.name=in"},
        fields=fields,
    )
    r.watch("too old", WIDGETS, {"resourceVersion": "1", "timeoutSeconds": "1"})


# -- built-ins ------------------------------------------------------------------------------------------


@scenario
def deployments_patches(r: Recorder) -> None:
    one = DEPLOYMENTS + "/web"
    containers = "spec.template.spec.containers"
    r.call("create", "POST", DEPLOYMENTS, deployment("web"), fields=("metadata.generation", "spec.replicas"))
    r.call(
        "strategic merge: containers merged by name",
        "PATCH",
        one,
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "model:2"}]}}}},
        content_type=STRATEGIC,
        fields=(
            "metadata.generation",
            containers + ".0.name",
            containers + ".0.image",
            containers + ".1.name",
            containers + ".0.env",
        ),
    )
    r.call(
        "strategic merge: env merged by name",
        "PATCH",
        one,
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "env": [{"name": "B", "value": "2"}]}]}}}},
        content_type=STRATEGIC,
        fields=(containers + ".0.env", containers + ".1.name"),
    )
    r.call(
        "merge patch: containers replaced",
        "PATCH",
        one,
        {"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "model:3"}]}}}},
        content_type=MERGE,
        fields=("metadata.generation", containers + ".0.name", containers + ".1.name"),
    )
    r.call(
        "scale by merge patch",
        "PATCH",
        one,
        {"spec": {"replicas": 3}},
        content_type=MERGE,
        fields=("metadata.generation", "spec.replicas"),
    )
    r.call(
        "labels only",
        "PATCH",
        one,
        {"metadata": {"labels": {"x": "1"}}},
        content_type=MERGE,
        fields=("metadata.generation",),
    )
    # the real Deployment controller writes the status too: compare only that ours was ignored
    ignored = r.side.call("PATCH", r.path(one), {"status": {"replicas": 7}}, content_type=MERGE)
    r.note("status on main ignored", (ignored.status, pick(ignored.obj, "status.replicas") != 7))
    r.call(
        "status subresource",
        "PATCH",
        one + "/status",
        {"status": {"replicas": 3, "readyReplicas": 3, "observedGeneration": 4}, "spec": {"replicas": 9}},
        content_type=MERGE,
        fields=("metadata.generation", "spec.replicas", "status.replicas", "status.readyReplicas"),
    )
    r.call(
        "a finalizer",
        "PATCH",
        one,
        {"metadata": {"finalizers": ["x/a"]}},
        content_type=MERGE,
        fields=("metadata.finalizers",),
    )
    r.call(
        "strategic merge: finalizers merged as a set",
        "PATCH",
        one,
        {"metadata": {"finalizers": ["x/b"]}},
        content_type=STRATEGIC,
        fields=("metadata.finalizers",),
    )
    r.call(
        "finalizers dropped",
        "PATCH",
        one,
        {"metadata": {"finalizers": None}},
        content_type=MERGE,
        fields=("metadata.finalizers",),
    )
    r.call("invalid replicas", "PATCH", one, {"spec": {"replicas": -1}}, content_type=MERGE)
    r.call(
        "selector mismatch",
        "POST",
        DEPLOYMENTS,
        {**deployment("bad"), "spec": {**deployment("bad")["spec"], "selector": {"matchLabels": {"app": "other"}}}},
    )
    r.call("create again", "POST", DEPLOYMENTS, deployment("web"))
    r.call("list", "GET", DEPLOYMENTS, params={"labelSelector": "app=web"})
    r.call("delete", "DELETE", one, fields=("kind", "status", "details"))
    r.call(
        "a service",
        "POST",
        "/api/v1/namespaces/{ns}/services",
        {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}},
        fields=("spec.ports", "spec.type", "spec.sessionAffinity"),
    )
    r.call("delete the service", "DELETE", "/api/v1/namespaces/{ns}/services/svc", fields=("kind", "status"))
    r.call(
        "a secret",
        "POST",
        "/api/v1/namespaces/{ns}/secrets",
        {"metadata": {"name": "s"}, "stringData": {"a": "b"}},
        fields=("data", "type", "stringData"),
    )
    r.call("delete the secret", "DELETE", "/api/v1/namespaces/{ns}/secrets/s", fields=("kind", "status"))
    r.call("wrong kind for a built-in", "POST", CONFIGMAPS, {**configmap("w"), "kind": "Secret"})


@scenario
def crds(r: Recorder) -> None:
    described = widget_crd()
    described["metadata"]["name"] = f"described.{GROUP}"
    described["spec"]["names"] = {"plural": "described", "singular": "describedone", "kind": "Described"}
    root = described["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    root["properties"]["metadata"] = {"type": "object", "description": "the generator's old output"}
    r.call("root metadata with a description", "POST", CRDS, described)
    root["properties"]["metadata"] = {"type": "object", "properties": {"labels": {"type": "object"}}}
    r.call("root metadata with other properties", "POST", CRDS, described)
    root["properties"]["metadata"] = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}}}
    r.call("root metadata with name only", "POST", CRDS, described, params={"dryRun": "All"}, fields=("kind",))
    r.call("already exists", "POST", CRDS, widget_crd())
    r.call("the project's own, already exists", "GET", CRDS + "/modelrollouts.modelrollout.io", fields=("kind",))
    untyped = widget_crd()
    untyped["metadata"]["name"] = f"untyped.{GROUP}"
    untyped["spec"]["names"] = {"plural": "untyped", "kind": "Untyped"}
    untyped["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] = {"properties": {}}
    r.call("not structural", "POST", CRDS, untyped)
    wrong_name = widget_crd()
    wrong_name["metadata"]["name"] = "wrong.example.com"
    r.call("name not plural.group", "POST", CRDS, wrong_name)
    kept = widget_crd()
    kept["metadata"]["name"] = f"kept.{GROUP}"
    kept["spec"]["names"] = {"plural": "kept", "kind": "Kept"}
    r.call("create another", "POST", CRDS, kept, fields=("metadata.finalizers", "spec.names"))
    r.call("delete it", "DELETE", CRDS + f"/kept.{GROUP}", fields=("kind", "metadata.finalizers"))
    r.eventually("it goes", lambda: _gone(r, CRDS + f"/kept.{GROUP}"), bool)


@scenario
def namespaces(r: Recorder) -> None:
    ns = f"{r.namespace}-x"
    r.call("create", "POST", "/api/v1/namespaces", {"metadata": {"name": ns}}, fields=("spec", "status"))
    r.call("create again", "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    r.call("put something in", "POST", f"/api/v1/namespaces/{ns}/configmaps", configmap("c"), fields=("data",))
    held_body = configmap("held", a="1")
    held_body["metadata"]["finalizers"] = ["x/hold"]
    r.call("something held", "POST", f"/api/v1/namespaces/{ns}/configmaps", held_body, fields=("data",))
    r.call(
        "delete",
        "DELETE",
        f"/api/v1/namespaces/{ns}",
        fields=("kind", "status.phase", "metadata.deletionTimestamp", "spec.finalizers"),
    )
    held = f"/api/v1/namespaces/{ns}/configmaps/held"
    r.eventually(
        "the held object is being deleted",
        lambda: r.side.call("GET", held),
        lambda reply: reply.status == 200 and bool(reply.obj["metadata"].get("deletionTimestamp")),
    )
    r.call("create in a terminating namespace", "POST", f"/api/v1/namespaces/{ns}/configmaps", configmap("d"))
    r.call("still terminating", "GET", f"/api/v1/namespaces/{ns}", fields=("status.phase",))
    r.call(
        "release the held object",
        "PATCH",
        held,
        {"metadata": {"finalizers": None}},
        content_type=MERGE,
        fields=("kind",),
    )
    r.eventually("namespace gone", lambda: _gone(r, f"/api/v1/namespaces/{ns}"), bool)
    r.call("invalid name", "POST", "/api/v1/namespaces", {"metadata": {"name": "Not_Valid"}})


@scenario
def events(r: Recorder) -> None:
    involved = {"apiVersion": "v1", "kind": "ConfigMap", "name": "subject", "namespace": r.namespace, "uid": "u-1"}
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "subject."},
        "involvedObject": involved,
        "reason": "Tested",
        "message": "a message",
        "type": "Normal",
        "source": {"component": "modelrollout"},
        "reportingComponent": "modelrollout",
        "firstTimestamp": "2025-01-01T00:00:00Z",
        "lastTimestamp": "2025-01-01T00:00:00Z",
        "count": 1,
    }
    fields = ("metadata.name", "reason", "type", "count", "involvedObject.name")
    r.call("create with generateName", "POST", EVENTS, body, fields=fields)
    r.call("create named", "POST", EVENTS, {**body, "metadata": {"name": "subject.named"}}, fields=fields)
    r.call("create named again", "POST", EVENTS, {**body, "metadata": {"name": "subject.named"}})
    r.call(
        "list by involvedObject.name",
        "GET",
        EVENTS,
        params={"fieldSelector": "involvedObject.name=subject"},
        fields=("reason",),
    )
    r.call(
        "list by reason and type",
        "GET",
        EVENTS,
        params={"fieldSelector": "reason=Tested,type=Normal"},
        fields=("reason",),
    )
    r.call("list by another name", "GET", EVENTS, params={"fieldSelector": "involvedObject.name=nobody"})
    r.call(
        "without involvedObject.namespace",
        "POST",
        EVENTS,
        {**body, "metadata": {"name": "bad"}, "involvedObject": {**involved, "namespace": "elsewhere"}},
    )


@scenario
def leases(r: Recorder) -> None:
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "l"},
        "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15},
    }
    made = r.call("create", "POST", LEASES, body, fields=("spec", "metadata.resourceVersion"))
    r.call(
        "renew",
        "PUT",
        LEASES + "/l",
        {
            **made.obj,
            "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15, "renewTime": "2025-01-01T00:00:00.000000Z"},
        },
        fields=("spec", "metadata.resourceVersion"),
    )
    r.call("stale renew", "PUT", LEASES + "/l", made.obj)


# -- garbage collection ----------------------------------------------------------------------------------


@scenario
def garbage_collection(r: Recorder) -> None:
    def cm_path(name: str) -> str:
        return CONFIGMAPS + "/" + name

    def dependents(owner: str, **extra: Any) -> None:
        made = r.call(f"owner {owner}", "POST", CONFIGMAPS, configmap(owner), fields=("metadata.name",))
        r.call(
            f"dependent of {owner}",
            "POST",
            CONFIGMAPS,
            configmap(f"{owner}-dep", owner_ref(made.obj, **extra)),
            fields=("metadata.ownerReferences",),
        )

    dependents("background")
    r.call("delete background", "DELETE", cm_path("background"), fields=("kind", "metadata.finalizers"))
    r.eventually("background: dependent collected", lambda: _gone(r, cm_path("background-dep")), bool)

    dependents("orphan")
    r.call("delete orphan", "DELETE", cm_path("orphan"), {"propagationPolicy": "Orphan"}, fields=("kind",))
    r.eventually("orphan: owner gone", lambda: _gone(r, cm_path("orphan")), bool)
    r.eventually(
        "orphan: dependent kept, its ownerReference dropped",
        lambda: r.side.call("GET", r.path(cm_path("orphan-dep"))),
        lambda reply: reply.status == 200 and not reply.obj["metadata"].get("ownerReferences"),
    )

    dependents("foreground", blockOwnerDeletion=True)
    r.call(
        "delete foreground",
        "DELETE",
        cm_path("foreground"),
        {"propagationPolicy": "Foreground"},
        fields=("kind", "metadata.finalizers", "metadata.deletionTimestamp"),
    )
    r.eventually("foreground: dependent collected", lambda: _gone(r, cm_path("foreground-dep")), bool)
    r.eventually("foreground: owner gone", lambda: _gone(r, cm_path("foreground")), bool)

    dangling = {"apiVersion": "v1", "kind": "ConfigMap", "name": "never", "uid": "00000000-0000-0000-0000-000000000000"}
    r.call("dependent of a missing owner", "POST", CONFIGMAPS, configmap("dangling", dangling), fields=("kind",))
    r.eventually("dangling: collected", lambda: _gone(r, cm_path("dangling")), bool)

    # The operator's own shape: a ModelRollout owns its Deployment.
    owner = r.call("rollout", "POST", ROLLOUTS, rollout("owner"), fields=("metadata.generation", "spec"))
    body = deployment("owned")
    body["metadata"]["ownerReferences"] = [owner_ref(owner.obj, controller=True, blockOwnerDeletion=True)]
    r.call("owned deployment", "POST", DEPLOYMENTS, body, fields=("metadata.ownerReferences",))
    r.call("delete the rollout", "DELETE", ROLLOUTS + "/owner", fields=("kind",))
    r.eventually("the deployment is collected", lambda: _gone(r, DEPLOYMENTS + "/owned"), bool)
    assert ABSENT  # the module's sentinel, imported for the field picks above
