"""CRDs: registration and discovery, schema validation, defaulting, pruning, structural checks."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from modelrollout_devkit.emulator import EmulatorServer
from tests.emulator.conftest import CR_PATH, GROUP, Api, modelrollout, modelrollout_crd

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


async def _established(api: Api, name: str) -> dict[str, Any]:
    for _ in range(100):
        crd = await api.ok("GET", f"{CRD_PATH}/{name}")
        conditions = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions", [])}
        if conditions.get("Established") == "True":
            return crd
        await asyncio.sleep(0.01)
    raise AssertionError("never established")


async def test_crd_registration_and_discovery(api: Api) -> None:
    status, crd = await api.post(CRD_PATH, modelrollout_crd())
    assert status == 201
    crd = await _established(api, f"modelrollouts.{GROUP}")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"Established": "True", "NamesAccepted": "True"}
    assert crd["status"]["acceptedNames"]["listKind"] == "ModelRolloutList"
    assert crd["status"]["storedVersions"] == ["v1alpha1"]

    groups = await api.ok("GET", "/apis")
    assert GROUP in {g["name"] for g in groups["groups"]}
    group = await api.ok("GET", f"/apis/{GROUP}")
    assert group["preferredVersion"]["version"] == "v1alpha1"
    resources = await api.ok("GET", f"/apis/{GROUP}/v1alpha1")
    by_name = {r["name"]: r for r in resources["resources"]}
    main = by_name["modelrollouts"]
    assert main["kind"] == "ModelRollout" and main["namespaced"] is True
    assert main["singularName"] == "modelrollout" and main["shortNames"] == ["mr"]
    assert set(main["verbs"]) >= {"create", "get", "list", "watch", "patch", "update", "delete"}
    assert "modelrollouts/status" in by_name

    listing = await api.ok("GET", CR_PATH)
    assert listing["kind"] == "ModelRolloutList" and listing["apiVersion"] == f"{GROUP}/v1alpha1"


async def test_schema_validation_422_with_causes(crd_api: Api) -> None:
    status, error = await crd_api.post(CR_PATH, modelrollout("mr", replicas=-1))
    assert status == 422 and error["reason"] == "Invalid"
    assert error["message"] == (
        'ModelRollout.modelrollout.io "mr" is invalid: spec.replicas: Invalid value: -1: '
        "spec.replicas in body should be greater than or equal to 0"
    )
    assert error["details"]["kind"] == "ModelRollout" and error["details"]["group"] == GROUP

    bad = modelrollout("mr", replicas="two", strategy="yolo", weights=[1, 2, 3, 4])
    bad["spec"]["model"] = "Has Spaces"
    status, error = await crd_api.post(CR_PATH, bad)
    fields = {cause["field"]: cause["reason"] for cause in error["details"]["causes"]}
    assert status == 422
    assert fields == {
        "spec.replicas": "FieldValueTypeInvalid",
        "spec.strategy": "FieldValueNotSupported",
        "spec.weights": "FieldValueTooMany",
        "spec.model": "FieldValueInvalid",
    }
    assert error["message"].startswith('ModelRollout.modelrollout.io "mr" is invalid: [')

    no_model = modelrollout("mr")
    del no_model["spec"]["model"]
    status, error = await crd_api.post(CR_PATH, no_model)
    assert status == 422 and error["details"]["causes"][0]["message"] == "Required value"

    await crd_api.ok("POST", CR_PATH, modelrollout("ok"))
    status, error = await crd_api.patch(f"{CR_PATH}/ok", {"spec": {"replicas": 11}})
    assert status == 422 and "less than or equal to 10" in error["message"]


async def test_defaults_pruning_and_nullable(crd_api: Api) -> None:
    body = modelrollout("mr", unknown="dropped", extra={"free": {"form": 1}}, note=None, labels={"a": "b"})
    body["topLevel"] = "dropped too"
    status, created = await crd_api.post(CR_PATH, body)
    assert status == 201
    assert created["spec"] == {
        "model": "resnet",
        "replicas": 1,
        "strategy": "canary",
        "note": None,
        "extra": {"free": {"form": 1}},
        "labels": {"a": "b"},
    }
    assert "topLevel" not in created

    status, _ = await crd_api.post(CR_PATH, modelrollout("strict", unknown=1), fieldValidation="Strict")
    assert status == 400
    async with crd_api.session.post(CR_PATH, json=modelrollout("warned", unknown=1)) as response:
        assert response.status == 201
        assert 'unknown field \\"spec.unknown\\"' in response.headers["Warning"]


async def test_non_structural_crds_are_refused(api: Api) -> None:
    def variant(mutate: Any) -> dict[str, Any]:
        crd = copy.deepcopy(modelrollout_crd())
        mutate(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
        return crd

    def untyped(schema: dict[str, Any]) -> None:
        del schema["properties"]["spec"]["properties"]["model"]["type"]

    def ref(schema: dict[str, Any]) -> None:
        schema["properties"]["spec"]["properties"]["model"] = {"$ref": "#/definitions/Model"}

    def typed_any_of(schema: dict[str, Any]) -> None:
        schema["properties"]["spec"]["properties"]["replicas"]["anyOf"] = [{"type": "integer"}, {"type": "string"}]

    for mutate, field in (
        (untyped, "properties[spec].properties[model].type"),
        (ref, "properties[spec].properties[model].$ref"),
        (typed_any_of, "properties[spec].properties[replicas].anyOf[0].type"),
    ):
        status, error = await api.post(CRD_PATH, variant(mutate))
        assert status == 422, mutate
        assert error["details"]["kind"] == "CustomResourceDefinition"
        fields = [c["field"] for c in error["details"]["causes"]]
        # one version: its schema is hoisted to spec.validation, and a real server names that path
        assert f"spec.validation.openAPIV3Schema.{field}" in fields

    misnamed = modelrollout_crd()
    misnamed["metadata"]["name"] = "wrong.modelrollout.io"
    status, error = await api.post(CRD_PATH, misnamed)
    assert status == 422 and 'must be spec.names.plural+"."+spec.group' in error["message"]


async def test_cr_resources_are_404_until_established_and_after_crd_deletion(emu: EmulatorServer, api: Api) -> None:
    status, _ = await api.get(CR_PATH)
    assert status == 404
    await emu.load([modelrollout_crd()])
    await api.ok("POST", CR_PATH, modelrollout("mr"))
    deleted = await api.ok("DELETE", f"{CRD_PATH}/modelrollouts.{GROUP}")
    assert deleted["metadata"]["deletionTimestamp"]
    for _ in range(100):
        status, _ = await api.get(f"{CRD_PATH}/modelrollouts.{GROUP}")
        if status == 404:
            break
        await asyncio.sleep(0.01)
    assert status == 404
    status, _ = await api.get(CR_PATH)
    assert status == 404
    assert emu.list_objects("customresourcedefinitions") == []


async def test_cluster_scoped_custom_resources(emu: EmulatorServer, api: Api) -> None:
    await emu.load([modelrollout_crd(scope="Cluster")])
    path = f"/apis/{GROUP}/v1alpha1/modelrollouts"
    created = await api.ok("POST", path, modelrollout("global"))
    assert "namespace" not in created["metadata"]
    status, _ = await api.post(CR_PATH, modelrollout("nested"))
    assert status == 404
