"""JSON patch, merge patch, and strategic merge patch as the apiserver applies them."""

from __future__ import annotations

from typing import Any

from tests.emulator.conftest import CR_PATH, Api, deployment, modelrollout

DEPLOY_PATH = "/apis/apps/v1/namespaces/default/deployments"
SMP = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return containers


async def test_merge_patch_null_deletes_and_lists_are_replaced(api: Api) -> None:
    await api.ok("POST", DEPLOY_PATH, deployment("web"))
    patched = await api.ok(
        "PATCH",
        f"{DEPLOY_PATH}/web",
        {
            "metadata": {"labels": {"app": None, "tier": "front"}},
            "spec": {"template": {"spec": {"containers": [{"name": "other", "image": "busybox:1"}]}}},
        },
        content_type="application/merge-patch+json",
    )
    assert patched["metadata"]["labels"] == {"tier": "front"}
    assert [c["name"] for c in _containers(patched)] == ["other"]


async def test_json_patch_with_a_passing_and_a_failing_test(api: Api) -> None:
    obj = await api.ok("POST", DEPLOY_PATH, deployment("web"))
    rv = obj["metadata"]["resourceVersion"]
    patched = await api.ok(
        "PATCH",
        f"{DEPLOY_PATH}/web",
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/f"]},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
        ],
        content_type=JSON_PATCH,
    )
    assert patched["metadata"]["finalizers"] == ["example.com/f"] and patched["spec"]["replicas"] == 3

    status, error = await api.patch(
        f"{DEPLOY_PATH}/web",
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "remove", "path": "/metadata/finalizers"},
        ],
        content_type=JSON_PATCH,
    )
    assert status == 422 and error["reason"] == "Invalid"

    status, _ = await api.patch(f"{DEPLOY_PATH}/web", [{"op": "remove", "path": "/spec/nope"}], content_type=JSON_PATCH)
    assert status == 422
    status, _ = await api.patch(f"{DEPLOY_PATH}/web", [{"op": "explode", "path": "/spec"}], content_type=JSON_PATCH)
    assert status == 400


async def test_strategic_merge_patch_merges_by_keys(api: Api) -> None:
    await api.ok("POST", DEPLOY_PATH, deployment("web"))
    patched = await api.ok(
        "PATCH",
        f"{DEPLOY_PATH}/web",
        {
            "metadata": {"finalizers": ["example.com/a"]},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "image": "nginx:1.28",
                                "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
                                "ports": [{"containerPort": 8080}],
                            },
                            {"name": "sidecar", "image": "envoy:1"},
                        ]
                    }
                }
            },
        },
        content_type=SMP,
    )
    main, sidecar = _containers(patched)
    assert main["image"] == "nginx:1.28" and sidecar["name"] == "sidecar"
    assert main["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}]
    # as a real server orders a merged list: the patch's new items before the server-only ones
    assert [p["containerPort"] for p in main["ports"]] == [8080, 80]

    patched = await api.ok(
        "PATCH",
        f"{DEPLOY_PATH}/web",
        {
            "metadata": {"finalizers": ["example.com/b"]},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "sidecar", "$patch": "delete"},
                            {"name": "main", "env": [{"name": "A", "$patch": "delete"}]},
                        ]
                    }
                }
            },
        },
        content_type=SMP,
    )
    # merged as a set, the new one first: the order a real server gives (checked by test_differential)
    assert patched["metadata"]["finalizers"] == ["example.com/b", "example.com/a"]
    assert [c["name"] for c in _containers(patched)] == ["main"]
    assert [e["name"] for e in _containers(patched)[0]["env"]] == ["B", "C"]

    patched = await api.ok(
        "PATCH",
        f"{DEPLOY_PATH}/web",
        {
            "spec": {"template": {"metadata": {"labels": {"$patch": "replace", "app": "web", "new": "x"}}}},
        },
        content_type=SMP,
    )
    assert patched["spec"]["template"]["metadata"]["labels"] == {"app": "web", "new": "x"}


async def test_service_ports_merge_on_port(api: Api) -> None:
    path = "/api/v1/namespaces/default/services"
    await api.ok("POST", path, {"metadata": {"name": "svc"}, "spec": {"ports": [{"name": "http", "port": 80}]}})
    patched = await api.ok(
        "PATCH", f"{path}/svc", {"spec": {"ports": [{"name": "metrics", "port": 9090}]}}, content_type=SMP
    )
    assert [p["port"] for p in patched["spec"]["ports"]] == [9090, 80]


async def test_strategic_merge_patch_of_a_custom_resource_is_415(crd_api: Api) -> None:
    await crd_api.ok("POST", CR_PATH, modelrollout("mr"))
    status, error = await crd_api.patch(f"{CR_PATH}/mr", {"spec": {"replicas": 2}}, content_type=SMP)
    assert status == 415 and error["reason"] == "UnsupportedMediaType"
    status, error = await crd_api.patch(
        f"{CR_PATH}/mr", {"spec": {"replicas": 2}}, content_type="application/apply-patch+yaml"
    )
    assert status == 415 and "server-side apply" in error["message"]
