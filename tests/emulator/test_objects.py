"""Object semantics of the emulator, checked over HTTP against what a real apiserver answers."""

from __future__ import annotations

import asyncio

from tests.emulator.conftest import CR_PATH, Api, deployment, modelrollout

CM_PATH = "/api/v1/namespaces/default/configmaps"
DEPLOY_PATH = "/apis/apps/v1/namespaces/default/deployments"


async def test_create_answers_201_with_system_fields(api: Api) -> None:
    status, obj = await api.post(CM_PATH, {"metadata": {"name": "cm"}, "data": {"a": "b"}})
    assert status == 201
    meta = obj["metadata"]
    assert obj["kind"] == "ConfigMap" and obj["apiVersion"] == "v1"
    assert meta["namespace"] == "default"
    assert len(meta["uid"]) == 36
    assert meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    assert "generation" not in meta  # configmaps do not track generations


async def test_resource_versions_increase_globally(api: Api) -> None:
    versions = []
    for index in range(3):
        obj = await api.ok("POST", CM_PATH, {"metadata": {"name": f"cm{index}"}})
        versions.append(int(obj["metadata"]["resourceVersion"]))
    obj = await api.ok("PATCH", f"{CM_PATH}/cm0", {"data": {"x": "y"}}, content_type="application/merge-patch+json")
    versions.append(int(obj["metadata"]["resourceVersion"]))
    assert versions == sorted(versions) and len(set(versions)) == 4


async def test_noop_patch_keeps_the_resource_version(api: Api) -> None:
    obj = await api.ok("POST", CM_PATH, {"metadata": {"name": "cm"}, "data": {"a": "b"}})
    same = await api.ok("PATCH", f"{CM_PATH}/cm", {"data": {"a": "b"}}, content_type="application/merge-patch+json")
    assert same["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


async def test_generate_name_gives_unique_names(api: Api) -> None:
    names = set()
    for _ in range(5):
        status, obj = await api.post(
            "/api/v1/namespaces/default/events",
            {
                "metadata": {"generateName": "kopf-event-"},
                "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
                "reason": "Test",
            },
        )
        assert status == 201
        assert obj["metadata"]["name"].startswith("kopf-event-")
        names.add(obj["metadata"]["name"])
    assert len(names) == 5
    status, listing = await api.get("/api/v1/namespaces/default/events")
    assert len(listing["items"]) == 5


async def test_duplicate_create_is_409_already_exists(api: Api) -> None:
    await api.ok("POST", CM_PATH, {"metadata": {"name": "cm"}})
    status, error = await api.post(CM_PATH, {"metadata": {"name": "cm"}})
    assert status == 409
    assert error["kind"] == "Status" and error["reason"] == "AlreadyExists"
    assert error["message"] == 'configmaps "cm" already exists'


async def test_missing_object_is_404_with_status_details(api: Api) -> None:
    status, error = await api.get(f"{DEPLOY_PATH}/nope")
    assert status == 404
    assert error == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "code": 404,
        "reason": "NotFound",
        "message": 'deployments.apps "nope" not found',
        "details": {"name": "nope", "group": "apps", "kind": "deployments"},
    }


async def test_namespace_comes_from_the_url(api: Api) -> None:
    status, error = await api.post(CM_PATH, {"metadata": {"name": "cm", "namespace": "other"}})
    assert status == 400
    status, error = await api.post("/api/v1/namespaces/missing/configmaps", {"metadata": {"name": "cm"}})
    assert status == 404 and error["message"] == 'namespaces "missing" not found'
    status, _ = await api.post("/api/v1/configmaps", {"metadata": {"name": "cm", "namespace": "default"}})
    assert status == 405


async def test_namespaces_are_listable_and_cluster_scoped(api: Api) -> None:
    status, listing = await api.get("/api/v1/namespaces")
    assert status == 200
    assert {"default", "kube-system"} <= {ns["metadata"]["name"] for ns in listing["items"]}
    ns = await api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "team"}})
    assert "namespace" not in ns["metadata"] and ns["status"] == {"phase": "Active"}
    status, _ = await api.get("/api/v1/namespaces/team")
    assert status == 200


async def test_invalid_names_are_422(api: Api) -> None:
    status, error = await api.post(CM_PATH, {"metadata": {"name": "Not_Valid"}})
    assert status == 422 and error["reason"] == "Invalid"
    assert error["details"]["causes"][0]["field"] == "metadata.name"
    status, error = await api.post(CM_PATH, {"metadata": {}})
    assert status == 422
    assert "name or generateName is required" in error["message"]


async def test_stale_resource_version_is_409_conflict(api: Api) -> None:
    obj = await api.ok("POST", DEPLOY_PATH, deployment("web"))
    stale = obj["metadata"]["resourceVersion"]
    await api.ok("PATCH", f"{DEPLOY_PATH}/web", {"spec": {"replicas": 2}}, content_type="application/merge-patch+json")

    obj["spec"]["replicas"] = 5
    status, error = await api.put(f"{DEPLOY_PATH}/web", obj)
    assert status == 409 and error["reason"] == "Conflict"
    assert "the object has been modified" in error["message"]

    status, error = await api.patch(
        f"{DEPLOY_PATH}/web", {"metadata": {"resourceVersion": stale}, "spec": {"replicas": 3}}
    )
    assert status == 409


async def test_put_replaces_and_allows_unconditional_updates_of_builtins(api: Api) -> None:
    obj = await api.ok("POST", CM_PATH, {"metadata": {"name": "cm", "labels": {"a": "b"}}, "data": {"x": "1"}})
    del obj["metadata"]["resourceVersion"]
    obj["data"] = {"y": "2"}
    replaced = await api.ok("PUT", f"{CM_PATH}/cm", obj)
    assert replaced["data"] == {"y": "2"}
    assert replaced["metadata"]["uid"] == obj["metadata"]["uid"]
    status, _ = await api.put(f"{CM_PATH}/other", dict(obj, metadata={"name": "other"}))
    assert status == 404
    status, _ = await api.put(f"{CM_PATH}/cm", dict(obj, metadata={"name": "renamed"}))
    assert status == 400


async def test_put_of_custom_resources_requires_a_resource_version(crd_api: Api) -> None:
    obj = await crd_api.ok("POST", CR_PATH, modelrollout("mr"))
    del obj["metadata"]["resourceVersion"]
    status, error = await crd_api.put(f"{CR_PATH}/mr", obj)
    assert status == 422
    assert "metadata.resourceVersion" in error["message"]


async def test_finalizers_block_deletion_until_removed(api: Api) -> None:
    await api.ok("POST", CM_PATH, {"metadata": {"name": "cm", "finalizers": ["example.com/x"]}})
    status, marked = await api.delete(f"{CM_PATH}/cm")
    assert status == 200
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    status, still = await api.get(f"{CM_PATH}/cm")
    assert status == 200 and still["metadata"]["finalizers"] == ["example.com/x"]

    status, error = await api.patch(f"{CM_PATH}/cm", {"metadata": {"finalizers": ["example.com/x", "new"]}})
    assert status == 422 and "no new finalizers" in error["message"]

    status, _ = await api.patch(f"{CM_PATH}/cm", {"metadata": {"finalizers": None}})
    assert status == 200
    status, _ = await api.get(f"{CM_PATH}/cm")
    assert status == 404


async def test_deletion_marks_bump_generation(crd_api: Api) -> None:
    body = modelrollout("mr")
    body["metadata"]["finalizers"] = ["example.com/x"]
    obj = await crd_api.ok("POST", CR_PATH, body)
    assert obj["metadata"]["generation"] == 1
    marked = await crd_api.ok("DELETE", f"{CR_PATH}/mr")
    assert marked["metadata"]["generation"] == 2


async def test_delete_answers_a_status_and_accepts_propagation_policy(api: Api) -> None:
    await api.ok("POST", CM_PATH, {"metadata": {"name": "cm"}})
    # deleted at once: a Status naming the object, as a real server answers (pods and services: the object)
    status, deleted = await api.delete(f"{CM_PATH}/cm", {"kind": "DeleteOptions", "apiVersion": "v1"})
    assert status == 200 and deleted["kind"] == "Status" and deleted["status"] == "Success"
    assert deleted["details"]["name"] == "cm" and deleted["details"]["kind"] == "configmaps"
    status, _ = await api.delete(f"{CM_PATH}/cm")
    assert status == 404
    # Foreground: the policy becomes a finalizer (dependents or not), which the collector then lifts
    await api.ok("POST", CM_PATH, {"metadata": {"name": "cm"}})
    status, deleted = await api.delete(
        f"{CM_PATH}/cm", {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}
    )
    assert status == 200 and deleted["metadata"]["finalizers"] == ["foregroundDeletion"]
    for _ in range(100):
        if (await api.get(f"{CM_PATH}/cm"))[0] == 404:
            break
        await asyncio.sleep(0.01)
    assert (await api.get(f"{CM_PATH}/cm"))[0] == 404


async def test_delete_preconditions(api: Api) -> None:
    await api.ok("POST", CM_PATH, {"metadata": {"name": "cm"}})
    status, error = await api.delete(f"{CM_PATH}/cm", {"preconditions": {"uid": "wrong"}})
    assert status == 409 and "Precondition failed" in error["message"]


async def test_dry_run_does_not_persist(api: Api) -> None:
    status, obj = await api.post(CM_PATH, {"metadata": {"name": "cm"}}, dryRun="All")
    assert status == 201 and obj["metadata"]["name"] == "cm"
    status, _ = await api.get(f"{CM_PATH}/cm")
    assert status == 404


async def test_builtin_defaults_and_validation(api: Api) -> None:
    obj = await api.ok("POST", DEPLOY_PATH, deployment("web"))
    assert obj["spec"]["strategy"]["type"] == "RollingUpdate"
    container = obj["spec"]["template"]["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["ports"][0]["protocol"] == "TCP"
    assert obj["status"] == {}

    bad = deployment("bad")
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    status, error = await api.post(DEPLOY_PATH, bad)
    assert status == 422 and "`selector` does not match template `labels`" in error["message"]

    status, error = await api.patch(f"{DEPLOY_PATH}/web", {"spec": {"selector": {"matchLabels": {"x": "y"}}}})
    assert status == 422 and "field is immutable" in error["message"]

    svc = await api.ok(
        "POST",
        "/api/v1/namespaces/default/services",
        {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
    )
    assert svc["spec"]["clusterIP"].startswith("10.96.")
    assert svc["spec"]["ports"][0]["targetPort"] == 80

    secret = await api.ok(
        "POST", "/api/v1/namespaces/default/secrets", {"metadata": {"name": "s"}, "stringData": {"token": "abc"}}
    )
    assert secret["data"] == {"token": "YWJj"} and "stringData" not in secret and secret["type"] == "Opaque"


async def test_size_limits(api: Api) -> None:
    status, error = await api.post(CM_PATH, {"metadata": {"name": "big"}, "data": {"x": "a" * (1024 * 1024 + 1)}})
    assert status == 422 and "must have at most 1048576 bytes" in error["message"]
    status, error = await api.post(CM_PATH, {"metadata": {"name": "huge"}, "data": {"x": "a" * (4 * 1024 * 1024)}})
    assert status == 413 and error["reason"] == "RequestEntityTooLarge"
