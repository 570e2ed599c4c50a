"""The status subresource and metadata.generation, for custom resources and Deployments."""

from __future__ import annotations

from tests.emulator.conftest import CR_PATH, Api, deployment, modelrollout

DEPLOY_PATH = "/apis/apps/v1/namespaces/default/deployments"


async def test_custom_resource_status_isolation_both_ways(crd_api: Api) -> None:
    body = modelrollout("mr")
    body["status"] = {"phase": "Sneaky"}
    created = await crd_api.ok("POST", CR_PATH, body)
    assert "status" not in created  # create ignores the status with the subresource enabled

    main = await crd_api.ok("PATCH", f"{CR_PATH}/mr", {"spec": {"replicas": 2}, "status": {"phase": "Ignored"}})
    assert main["spec"]["replicas"] == 2 and "status" not in main
    assert main["metadata"]["generation"] == 2

    status = await crd_api.ok(
        "PATCH",
        f"{CR_PATH}/mr/status",
        {"spec": {"replicas": 5}, "metadata": {"labels": {"ignored": "yes"}}, "status": {"phase": "Running"}},
    )
    assert status["status"] == {"phase": "Running"}
    assert status["spec"]["replicas"] == 2 and "labels" not in status["metadata"]
    assert status["metadata"]["generation"] == 2  # status writes never bump the generation

    stale = main["metadata"]["resourceVersion"]
    code, _ = await crd_api.patch(
        f"{CR_PATH}/mr/status", {"metadata": {"resourceVersion": stale}, "status": {"phase": "Late"}}
    )
    assert code == 409


async def test_generation_bumps_on_spec_only(crd_api: Api) -> None:
    await crd_api.ok("POST", CR_PATH, modelrollout("mr"))
    labelled = await crd_api.ok(
        "PATCH", f"{CR_PATH}/mr", {"metadata": {"labels": {"a": "b"}, "annotations": {"x": "y"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    changed = await crd_api.ok("PATCH", f"{CR_PATH}/mr", {"spec": {"model": "bert"}})
    assert changed["metadata"]["generation"] == 2


async def test_without_status_subresource_status_is_part_of_the_object(emu: object, api: Api) -> None:
    from modelrollout_devkit.emulator import EmulatorServer
    from tests.emulator.conftest import modelrollout_crd

    assert isinstance(emu, EmulatorServer)
    await emu.load([modelrollout_crd(status=False)])
    await api.ok("POST", CR_PATH, modelrollout("mr"))
    code, _ = await api.patch(f"{CR_PATH}/mr/status", {"status": {"phase": "x"}})
    assert code == 404
    patched = await api.ok("PATCH", f"{CR_PATH}/mr", {"status": {"phase": "x"}})
    assert patched["status"] == {"phase": "x"} and patched["metadata"]["generation"] == 2


async def test_deployment_status_isolation_and_generation(api: Api) -> None:
    await api.ok("POST", DEPLOY_PATH, deployment("web"))
    main = await api.ok("PATCH", f"{DEPLOY_PATH}/web", {"status": {"replicas": 3}})
    assert main["status"] == {}
    status = await api.ok(
        "PATCH",
        f"{DEPLOY_PATH}/web/status",
        {"spec": {"replicas": 7}, "status": {"replicas": 1, "readyReplicas": 1, "observedGeneration": 1}},
    )
    assert status["spec"]["replicas"] == 1 and status["status"]["readyReplicas"] == 1
    assert status["metadata"]["generation"] == 1
    annotated = await api.ok("PATCH", f"{DEPLOY_PATH}/web", {"metadata": {"annotations": {"a": "b"}}})
    assert annotated["metadata"]["generation"] == 1
    scaled = await api.ok("PATCH", f"{DEPLOY_PATH}/web", {"spec": {"replicas": 2}})
    assert scaled["metadata"]["generation"] == 2


async def test_deployment_scale_subresource(api: Api) -> None:
    await api.ok("POST", DEPLOY_PATH, deployment("web", replicas=2))
    scale = await api.ok("GET", f"{DEPLOY_PATH}/web/scale")
    assert scale["kind"] == "Scale" and scale["spec"] == {"replicas": 2}
    assert scale["status"]["selector"] == "app=web"
    scaled = await api.ok("PATCH", f"{DEPLOY_PATH}/web/scale", {"spec": {"replicas": 4}})
    assert scaled["spec"]["replicas"] == 4
    deploy = await api.ok("GET", f"{DEPLOY_PATH}/web")
    assert deploy["spec"]["replicas"] == 4 and deploy["metadata"]["generation"] == 2
