"""The calls sharded operators make (issue 20), as differential scenarios: each is run on the emulator
and on a real kube-apiserver by :mod:`tests.emulator.test_sharding_calls`, and the answers compared
step by step (:mod:`tests.emulator.differential`).

* Each replica lists and watches ModelRollouts, Deployments and Services of its shards with the
  selector ``modelrollout.io/shard=K,modelrollout.io/shards=N``, and what still needs labels with
  ``modelrollout.io/shards!=N`` (which also matches objects without the label).
* The operator labels an object with a merge patch, which moves it out of the second selection and
  into the first: the real server's watch cache sends ``ADDED`` to a watch the object enters and
  ``DELETED`` (carrying the last state that matched, at the new resourceVersion) to one it leaves,
  never ``MODIFIED``.
* Shard and member Leases (coordination.k8s.io/v1): create (409 AlreadyExists twice), get, list by
  label, PUT with the current resourceVersion and with a stale one (409 Conflict), the MicroTime
  fields ``acquireTime`` and ``renewTime`` in the precisions a client may send, and delete.
"""

from __future__ import annotations

from typing import Any

from tests.emulator.differential import MERGE, ROLLOUTS, JsonDict, Recorder, Scenario, pick

SHARD = "modelrollout.io/shard"
SHARDS = "modelrollout.io/shards"
DEPLOYMENTS = "/apis/apps/v1/namespaces/{ns}/deployments"
SERVICES = "/api/v1/namespaces/{ns}/services"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
IN_SHARD_1 = f"{SHARD}=1,{SHARDS}=2"
UNSHARDED = f"{SHARDS}!=2"
WATCHED = ("metadata.name", "metadata.resourceVersion", "metadata.labels")

SHARDING_SCENARIOS: dict[str, Scenario] = {}


def sharding_scenario(fn: Scenario) -> Scenario:
    SHARDING_SCENARIOS[fn.__name__] = fn
    return fn


def labels(shard: int | None, shards: int | None) -> dict[str, str]:
    made = {"app": "m"}
    if shard is not None:
        made[SHARD] = str(shard)
    if shards is not None:
        made[SHARDS] = str(shards)
    return made


def rollout(name: str, labelled: dict[str, str]) -> JsonDict:
    return {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelRollout",
        "metadata": {"name": name, "labels": labelled},
        "spec": {
            "model": {"name": "m", "version": "1"},
            "template": {"spec": {"containers": [{"name": "server", "image": "model:1"}]}},
        },
    }


def deployment(name: str, labelled: dict[str, str]) -> JsonDict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labelled},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "server", "image": "model:1"}]},
            },
        },
    }


def service(name: str, labelled: dict[str, str]) -> JsonDict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labelled},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def names_listed(r: Recorder, step: str, collection: str, selector: str) -> str:
    """List with a selector; record the code, the kind and the names (not the items' versions, which
    a real controller may have moved meanwhile); return the list's resourceVersion."""
    reply = r.side.call("GET", r.path(collection), params={"labelSelector": selector})
    listed = reply.obj if reply.status == 200 else {}
    names = sorted(item["metadata"]["name"] for item in listed.get("items", []))
    r.note(step, {"code": reply.status, "kind": listed.get("kind"), "names": names})
    return str(listed.get("metadata", {}).get("resourceVersion", ""))


def own_events(r: Recorder, step: str, collection: str, params: dict[str, str], written: set[str]) -> None:
    """A watch's events that this scenario's own writes caused: on a real server the Deployment
    controller also writes (status), and the emulator runs no such controller. A MODIFIED is ours when
    it carries a version one of our writes answered; ADDED and DELETED are always ours (the
    controllers here never add, delete or relabel the objects)."""
    status, events = r.side.watch(r.path(collection), params)
    seen = []
    for event in events:
        obj = event.get("object") or {}
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        if event.get("type") == "BOOKMARK" or (event.get("type") == "MODIFIED" and version not in written):
            continue
        normalised = r.norm.object(obj)
        seen.append({"type": event.get("type"), **{name: pick(normalised, name) for name in WATCHED}})
    r.note(step, {"code": status, "events": seen})


def selections_and_relabelling(r: Recorder, collection: str, make: Any) -> None:
    """Objects in every state of labelling, listed with both selectors, then relabelled so that they
    enter and leave each selection; both selections' watches replayed from the list."""
    made = {
        "in-1": labels(1, 2),
        "in-0": labels(0, 2),
        "bare": labels(None, None),
        "old-generation": labels(2, 3),
        "shard-only": labels(1, None),
    }
    written: set[str] = set()
    for name, labelled in made.items():
        reply = r.call(f"create {name}", "POST", collection, make(name, labelled), fields=("metadata.labels",))
        written.add(reply.rv)
    start = names_listed(r, "list shard 1 of 2", collection, IN_SHARD_1)
    names_listed(r, "list unsharded", collection, UNSHARDED)
    names_listed(r, "list shard 1, set form", collection, f"{SHARD} in (1),{SHARDS} in (2)")
    names_listed(r, "list not yet labelled at all", collection, f"!{SHARD}")

    def relabel(step: str, name: str, change: dict[str, str | None]) -> None:
        reply = r.call(
            step,
            "PATCH",
            f"{collection}/{name}",
            {"metadata": {"labels": change}},
            content_type=MERGE,
            fields=("metadata.labels", "metadata.resourceVersion", "metadata.generation"),
        )
        written.add(reply.rv)

    relabel("bare is labelled into shard 1", "bare", {SHARD: "1", SHARDS: "2"})
    relabel("old generation is relabelled into shard 1", "old-generation", {SHARD: "1", SHARDS: "2"})
    relabel("in-1 moves to shard 0 (resharding)", "in-1", {SHARD: "0"})
    relabel("in-0 loses its labels", "in-0", {SHARD: None, SHARDS: None})
    relabel("shard-only gets its generation", "shard-only", {SHARDS: "2"})
    relabel("a change that moves nothing", "bare", {"app": "n"})
    r.call("delete bare", "DELETE", f"{collection}/bare", fields=("kind", "status"))
    names_listed(r, "list shard 1 of 2 after", collection, IN_SHARD_1)
    names_listed(r, "list unsharded after", collection, UNSHARDED)
    for selector in (IN_SHARD_1, UNSHARDED):
        own_events(
            r,
            f"watch {selector} from the list",
            collection,
            {"resourceVersion": start, "timeoutSeconds": "2", "labelSelector": selector, "allowWatchBookmarks": "true"},
            written,
        )


@sharding_scenario
def rollouts_by_shard(r: Recorder) -> None:
    selections_and_relabelling(r, ROLLOUTS, rollout)


@sharding_scenario
def deployments_by_shard(r: Recorder) -> None:
    selections_and_relabelling(r, DEPLOYMENTS, deployment)


@sharding_scenario
def services_by_shard(r: Recorder) -> None:
    selections_and_relabelling(r, SERVICES, service)


@sharding_scenario
def watch_of_a_shard_while_it_is_relabelled(r: Recorder) -> None:
    """A watch begun before the writes (at the list's version), as kopf's is, not only a replay."""
    listed = r.call("list", "GET", ROLLOUTS, params={"labelSelector": IN_SHARD_1})
    start = listed.obj["metadata"]["resourceVersion"]
    r.call("create unlabelled", "POST", ROLLOUTS, rollout("late", labels(None, None)), fields=("metadata.labels",))
    r.call(
        "create labelled into shard 1", "POST", ROLLOUTS, rollout("born-in", labels(1, 2)), fields=("metadata.labels",)
    )
    r.call(
        "create labelled into shard 0", "POST", ROLLOUTS, rollout("born-out", labels(0, 2)), fields=("metadata.labels",)
    )
    r.call(
        "label it into shard 1",
        "PATCH",
        ROLLOUTS + "/late",
        {"metadata": {"labels": {SHARD: "1", SHARDS: "2"}}},
        content_type=MERGE,
        fields=("metadata.labels",),
    )
    r.call("spec change inside the shard", "PATCH", ROLLOUTS + "/late", {"spec": {"replicas": 3}}, content_type=MERGE)
    r.call(
        "status change inside the shard",
        "PATCH",
        ROLLOUTS + "/late/status",
        {"status": {"phase": "Progressing"}},
        content_type=MERGE,
        fields=("status",),
    )
    r.call(
        "relabel out to 3 shards",
        "PATCH",
        ROLLOUTS + "/late",
        {"metadata": {"labels": {SHARD: "1", SHARDS: "3"}}},
        content_type=MERGE,
    )
    r.call("delete it outside the shard", "DELETE", ROLLOUTS + "/late", fields=("kind", "status"))
    r.call("delete one inside the shard", "DELETE", ROLLOUTS + "/born-in", fields=("kind", "status"))
    fields = (*WATCHED, "metadata.generation", "spec.replicas", "status.phase")
    for selector in (IN_SHARD_1, UNSHARDED, f"{SHARDS}!=3"):
        r.watch(
            f"watch {selector}",
            ROLLOUTS,
            {"resourceVersion": start, "timeoutSeconds": "2", "labelSelector": selector},
            fields=fields,
        )


# -- Leases --------------------------------------------------------------------------------------------

LEASE_FIELDS = ("metadata.name", "metadata.labels", "metadata.annotations", "metadata.resourceVersion", "spec")


def lease(name: str, kind: str, **spec: Any) -> JsonDict:
    metadata: JsonDict = {"name": name, "labels": {"modelrollout.io/lease": kind}}
    if kind == "shard":
        metadata["labels"][SHARD] = name.rsplit("-", 1)[-1]
        metadata["annotations"] = {SHARDS: "2"}
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


@sharding_scenario
def shard_leases(r: Recorder) -> None:
    shard_0 = LEASES + "/mr-shard-0"
    before = r.call("list before", "GET", LEASES, params={"labelSelector": "modelrollout.io/lease=shard"})
    taken = r.call(
        "acquire shard 0",
        "POST",
        LEASES,
        lease(
            "mr-shard-0",
            "shard",
            holderIdentity="replica-a",
            leaseDurationSeconds=30,
            acquireTime="2026-12-02T18:00:00.123456Z",
            renewTime="2026-12-02T18:00:00.123456Z",
            leaseTransitions=0,
        ),
        fields=LEASE_FIELDS,
    )
    r.call(
        "a second replica creates it too",
        "POST",
        LEASES,
        lease("mr-shard-0", "shard", holderIdentity="replica-b", leaseDurationSeconds=30),
    )
    r.call("create shard 1, never held", "POST", LEASES, lease("mr-shard-1", "shard"), fields=LEASE_FIELDS)
    r.call(
        "create a member Lease",
        "POST",
        LEASES,
        lease("mr-member-0123456789ab", "member", holderIdentity="replica-a", leaseDurationSeconds=30),
        fields=LEASE_FIELDS,
    )
    r.call("get", "GET", shard_0, fields=LEASE_FIELDS)
    r.call("get missing", "GET", LEASES + "/mr-shard-9")
    r.call("list shard Leases", "GET", LEASES, params={"labelSelector": "modelrollout.io/lease=shard"})
    r.call("list member Leases", "GET", LEASES, params={"labelSelector": "modelrollout.io/lease=member"})
    r.call("list one shard's Lease", "GET", LEASES, params={"labelSelector": f"modelrollout.io/lease=shard,{SHARD}=1"})
    renewed = r.call(
        "renew with the current resourceVersion",
        "PUT",
        shard_0,
        {**taken.obj, "spec": {**taken.obj["spec"], "renewTime": "2026-12-02T18:00:10.654321Z"}},
        fields=LEASE_FIELDS,
    )
    r.call(
        "another replica takes it from a stale read",
        "PUT",
        shard_0,
        {**taken.obj, "spec": {**taken.obj["spec"], "holderIdentity": "replica-b", "leaseTransitions": 1}},
    )
    released = r.call(
        "release: no holder",
        "PUT",
        shard_0,
        {**renewed.obj, "spec": {"leaseDurationSeconds": 30, "leaseTransitions": 0}},
        fields=LEASE_FIELDS,
    )
    r.call(
        "taken by another from the released one",
        "PUT",
        shard_0,
        {
            **released.obj,
            "spec": {
                "holderIdentity": "replica-b",
                "leaseDurationSeconds": 30,
                "acquireTime": "2026-12-02T18:00:20.000001Z",
                "renewTime": "2026-12-02T18:00:20.000001Z",
                "leaseTransitions": 1,
            },
        },
        fields=LEASE_FIELDS,
    )
    current = r.call("get after", "GET", shard_0, fields=LEASE_FIELDS)
    without_version = {
        **current.obj,
        "metadata": {k: v for k, v in current.obj["metadata"].items() if k != "resourceVersion"},
    }
    r.call(
        "PUT without a resourceVersion (unconditional)",
        "PUT",
        shard_0,
        {**without_version, "spec": {**current.obj["spec"], "leaseTransitions": 2}},
        fields=LEASE_FIELDS,
    )
    r.call(
        "PUT of a Lease that does not exist",
        "PUT",
        LEASES + "/mr-shard-7",
        lease("mr-shard-7", "shard", holderIdentity="replica-a", leaseDurationSeconds=30),
        fields=LEASE_FIELDS,
    )
    r.call("delete with a stale precondition", "DELETE", shard_0, {"preconditions": {"resourceVersion": taken.rv}})
    r.call("delete", "DELETE", shard_0, fields=("kind", "status", "details.name", "details.kind"))
    r.call("get deleted", "GET", shard_0)
    r.call("delete again", "DELETE", shard_0)
    r.call("list shard Leases after", "GET", LEASES, params={"labelSelector": "modelrollout.io/lease=shard"})
    r.watch(
        "watch of the shard Leases from the first list",
        LEASES,
        {
            "resourceVersion": before.obj["metadata"]["resourceVersion"],
            "timeoutSeconds": "2",
            "labelSelector": "modelrollout.io/lease=shard",
        },
        fields=("metadata.name", "metadata.resourceVersion", "spec.holderIdentity", "spec.renewTime"),
    )


#: what a client may send in a MicroTime field; each is stored (or refused) and read back
MICRO_TIMES = {
    "microseconds": "2026-12-02T18:00:00.123456Z",
    "no fraction": "2026-12-02T18:00:00Z",
    "milliseconds": "2026-12-02T18:00:00.123Z",
    "nanoseconds": "2026-12-02T18:00:00.123456789Z",
    "one digit": "2026-12-02T18:00:00.5Z",
    "offset": "2026-12-02T19:00:00.123456+01:00",
    "lower-case z": "2026-12-02t18:00:00.123456z",
    "space for T": "2026-12-02 18:00:00.123456Z",
    "date only": "2026-12-02",
    "garbage": "yesterday",
    "empty": "",
    "a number": 1764698400,
    "null": None,
}


@sharding_scenario
def lease_micro_times(r: Recorder) -> None:
    for index, (what, value) in enumerate(MICRO_TIMES.items()):
        name = f"times-{index}"
        r.call(
            f"create with renewTime and acquireTime {what}",
            "POST",
            LEASES,
            lease(name, "member", holderIdentity="a", renewTime=value, acquireTime=value),
            fields=("spec",),
        )
        r.call(f"read back {what}", "GET", f"{LEASES}/{name}", fields=("spec",))
        base = r.call(f"base for the PUT of {what}", "POST", LEASES, lease(f"put-{index}", "member"), fields=())
        if base.status == 201:
            r.call(
                f"PUT with renewTime {what}",
                "PUT",
                f"{LEASES}/put-{index}",
                {**base.obj, "spec": {"holderIdentity": "a", "renewTime": value}},
                fields=("spec",),
            )
        r.call(
            f"merge patch renewTime {what}",
            "PATCH",
            f"{LEASES}/put-{index}",
            {"spec": {"renewTime": value}},
            content_type=MERGE,
            fields=("spec",),
        )


@sharding_scenario
def lease_validation(r: Recorder) -> None:
    r.call("duration 0", "POST", LEASES, lease("v-0", "shard", holderIdentity="a", leaseDurationSeconds=0))
    r.call("duration negative", "POST", LEASES, lease("v-1", "shard", holderIdentity="a", leaseDurationSeconds=-1))
    r.call("transitions negative", "POST", LEASES, lease("v-2", "shard", holderIdentity="a", leaseTransitions=-1))
    r.call("duration a string", "POST", LEASES, lease("v-3", "shard", holderIdentity="a", leaseDurationSeconds="30"))
    r.call("holder a number", "POST", LEASES, lease("v-4", "shard", holderIdentity=7))
    r.call(
        "an unknown spec field", "POST", LEASES, lease("v-5", "shard", holderIdentity="a", owner="b"), fields=("spec",)
    )
    r.call("a name with capitals", "POST", LEASES, lease("Shard-0", "shard", holderIdentity="a"))
    long_identity = "replica-" + "x" * 300
    r.call("a very long holder", "POST", LEASES, lease("v-6", "member", holderIdentity=long_identity), fields=("spec",))
