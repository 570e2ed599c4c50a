"""kopf's Body and Patch, as the operator installs them, are freed by reference counting and
behave as kopf's own."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import weakref
from collections.abc import Iterator

import pytest
from kopf._cogs.structs import bodies, patches

from modelrollout import kopf_acyclic

RAW = {
    "apiVersion": "modelrollout.io/v1alpha1",
    "kind": "ModelRollout",
    "metadata": {"name": "fraud", "namespace": "ml", "labels": {"team": "risk"}, "annotations": {"a": "1"}},
    "spec": {"model": {"version": "2"}},
    "status": {"phase": "Progressing"},
}


def json_patch_of_kopf_as_released() -> object:
    """The JSON patch kopf itself (not installed over) makes of the same changes, in a fresh process."""
    script = f"""
import json
from kopf._cogs.structs import bodies, patches
patch = patches.Patch(body=bodies.Body({RAW!r}))
patch.meta.annotations["modelrollout.io/x"] = "y"
patch.metadata.labels["team"] = None
patch.status["phase"] = "Paused"
patch.spec["replicas"] = 2
print(json.dumps(patch.as_json_patch()))
"""
    return json.loads(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True).stdout)


@pytest.fixture(autouse=True)
def installed() -> Iterator[None]:
    kopf_acyclic.install()
    gc.collect()
    gc.disable()  # only reference counting may free what these tests drop
    try:
        yield
    finally:
        gc.enable()


def test_a_body_used_as_kopf_uses_it_is_freed_when_dropped() -> None:
    body = bodies.Body(RAW)
    assert (body.meta.name, body.metadata.namespace, body.meta.uid) == ("fraud", "ml", None)
    assert dict(body.meta.labels) == {"team": "risk"} and body.meta.annotations["a"] == "1"
    assert body.spec["model"] == {"version": "2"} and body.status.get("phase") == "Progressing"
    gone = weakref.ref(body)
    del body
    assert gone() is None


def test_a_patch_used_as_kopf_uses_it_is_freed_when_dropped() -> None:
    body = bodies.Body(RAW)
    patch = patches.Patch(body=body)
    patch.meta.annotations["modelrollout.io/x"] = "y"
    patch.metadata.labels["team"] = None
    patch.status["phase"] = "Paused"
    patch.spec["replicas"] = 2
    assert patch == {
        "metadata": {"annotations": {"modelrollout.io/x": "y"}, "labels": {"team": None}},
        "status": {"phase": "Paused"},
        "spec": {"replicas": 2},
    }
    assert patch.as_json_patch() == json_patch_of_kopf_as_released()
    copied = patches.Patch(patch)
    assert copied == patch and copied.fns == patch.fns
    gone = weakref.ref(patch)
    del patch
    assert gone() is None


def test_views_read_through_a_replaced_body() -> None:
    body = bodies.Body(RAW)
    meta, status = body.meta, body.status
    body._replace_with({**RAW, "metadata": {"name": "other"}, "status": {"phase": "Succeeded"}})
    assert meta.name == "other" and status["phase"] == "Succeeded"
    assert dict(body.meta.labels) == {}
