"""Fixtures: a running emulator per test and a thin HTTP client that talks to it as a client would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from modelrollout_devkit.emulator import EmulatorServer, ThreadedEmulator
from modelrollout_devkit.sandbox.control_plane import HOW_TO_GET_BINARIES
from tests.emulator.differential import Side
from tests.support.cluster import crd_documents
from tests.support.control_plane import RealControlPlane

JsonDict = dict[str, Any]

GROUP = "modelrollout.io"
CR_PATH = f"/apis/{GROUP}/v1alpha1/namespaces/default/modelrollouts"


def modelrollout_crd(*, status: bool = True, scope: str = "Namespaced") -> JsonDict:
    """A CRD close to the operator's own: typed spec with constraints, defaults, a free-form status."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"modelrollouts.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "plural": "modelrollouts",
                "singular": "modelrollout",
                "kind": "ModelRollout",
                "shortNames": ["mr"],
            },
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}} if status else {},
                    "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["model"],
                                    "properties": {
                                        "model": {
                                            "type": "string",
                                            "minLength": 1,
                                            "maxLength": 20,
                                            "pattern": "^[a-z][a-z0-9-]*$",
                                        },
                                        "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                                        "strategy": {
                                            "type": "string",
                                            "enum": ["canary", "shadow", "blue-green"],
                                            "default": "canary",
                                        },
                                        "weights": {"type": "array", "maxItems": 3, "items": {"type": "number"}},
                                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                        "note": {"type": "string", "nullable": True},
                                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    },
                                },
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }


def modelrollout(name: str, **spec: Any) -> JsonDict:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "ModelRollout",
        "metadata": {"name": name},
        "spec": {"model": "resnet", **spec},
    }


def deployment(name: str, replicas: int = 1) -> JsonDict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 80}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        },
                    ]
                },
            },
        },
    }


class Api:
    """Raw HTTP to the emulator: every call answers (status, parsed JSON body)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def call(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json", **params: Any
    ) -> tuple[int, JsonDict]:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        query = {k: str(v) for k, v in params.items()}
        async with self.session.request(method, path, data=data, headers=headers, params=query) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else {}

    async def get(self, path: str, **params: Any) -> tuple[int, JsonDict]:
        return await self.call("GET", path, **params)

    async def post(self, path: str, body: Any, **params: Any) -> tuple[int, JsonDict]:
        return await self.call("POST", path, body, **params)

    async def put(self, path: str, body: Any, **params: Any) -> tuple[int, JsonDict]:
        return await self.call("PUT", path, body, **params)

    async def patch(
        self, path: str, body: Any, content_type: str = "application/merge-patch+json", **params: Any
    ) -> tuple[int, JsonDict]:
        return await self.call("PATCH", path, body, content_type=content_type, **params)

    async def delete(self, path: str, body: Any = None, **params: Any) -> tuple[int, JsonDict]:
        return await self.call("DELETE", path, body, **params)

    async def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> JsonDict:
        if method == "PATCH":
            kwargs.setdefault("content_type", "application/merge-patch+json")
        status, result = await self.call(method, path, body, **kwargs)
        assert status in (200, 201), (status, result)
        return result


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer() as server:
        yield server


@pytest.fixture
async def api(emu: EmulatorServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(base_url=emu.url) as session:
        yield Api(session)


@pytest.fixture
async def crd_api(emu: EmulatorServer, api: Api) -> Api:
    """The API with the ModelRollout CRD registered and established."""
    await emu.load([modelrollout_crd()])
    return api


# -- the differential tests' two servers (tests/emulator/differential.py) -------------------------------


@pytest.fixture(scope="module")
def real_side(control_plane: RealControlPlane | None) -> Side:
    """The session's real kube-apiserver, spoken to as its admin; skipped without the binaries."""
    if control_plane is None:
        pytest.skip(f"no control plane binaries: {HOW_TO_GET_BINARIES}")
    plane = control_plane.plane
    return Side("real", plane.server, token=plane.admin_token, ca_file=plane.ca_file)


@pytest.fixture(scope="module")
def emulator_side(real_side: Side) -> Iterator[Side]:
    """An emulator with the project's CRDs, started only when there is a real side to compare with."""
    threaded = ThreadedEmulator(EmulatorServer(crds=crd_documents()))
    threaded.start()
    try:
        yield Side("emulator", threaded.url)
    finally:
        threaded.stop()
