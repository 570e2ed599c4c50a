"""The Argo CD health check and custom actions, run in Lua 5.1 (what Argo CD's gopher-lua speaks)
with Argo CD's restrictions: no `require`, no `io`, and only `os.time`, `os.date`, `os.clock`."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

lupa = pytest.importorskip("lupa.lua51", reason="lupa (with Lua 5.1) is needed to run the Argo CD Lua")

from modelrollout.engine.machine import command_of  # noqa: E402
from modelrollout.engine.types import CommandAction  # noqa: E402
from modelrollout.vocabulary.names import COMMAND_ANNOTATION  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "gitops" / "argocd"
WAITING = "Waiting for rollout to be observed"
ACTIONS = ("promote", "abort", "retry")


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, Mapping):
        return runtime.table_from({key: _to_lua(runtime, item) for key, item in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, item) for item in value])
    return value


def _from_lua(value: Any) -> Any:
    if lupa.lua_type(value) == "table":
        items = {key: _from_lua(item) for key, item in value.items()}
        if items and all(isinstance(key, int) for key in items):
            return [items[index] for index in sorted(items)]
        return items
    return value


def run_lua(script: Path, obj: Mapping[str, Any]) -> Any:
    """Evaluate one Argo CD script the way Argo CD does: `obj` global in, a table out."""
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua_globals = runtime.globals()
    safe_os = runtime.eval("{time = os.time, date = os.date, clock = os.clock}")
    for name in ("require", "io", "dofile", "loadfile", "package", "debug"):
        lua_globals[name] = None
    lua_globals.os = safe_os
    lua_globals.obj = _to_lua(runtime, obj)
    return _from_lua(runtime.execute(script.read_text()))


def rollout(status: dict[str, Any] | None = None, generation: int = 2, **metadata: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelRollout",
        "metadata": {"name": "fraud-scorer", "namespace": "ml", "generation": generation, **metadata},
        "spec": {"replicas": 4, "model": {"name": "fraud-scorer", "version": "2.1.0"}},
    }
    if status is not None:
        body["status"] = status
    return body


# --- health ------------------------------------------------------------------------------------


def test_no_status_is_progressing_waiting_to_be_observed() -> None:
    assert run_lua(ARGOCD / "health.lua", rollout()) == {"status": "Progressing", "message": WAITING}


@pytest.mark.parametrize("observed", [None, 1])
def test_stale_or_missing_observed_generation_is_progressing(observed: int | None) -> None:
    status: dict[str, Any] = {"phase": "Succeeded", "message": "2.0.3 is stable"}
    if observed is not None:
        status["observedGeneration"] = observed
    health = run_lua(ARGOCD / "health.lua", rollout(status, generation=2))
    assert health == {"status": "Progressing", "message": WAITING}


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Succeeded", "Healthy"),
        ("Progressing", "Progressing"),
        ("Pending", "Progressing"),
        ("Paused", "Suspended"),
        ("RolledBack", "Degraded"),
        ("Failed", "Degraded"),
        ("SomethingNew", "Progressing"),
    ],
)
def test_phase_maps_to_health_with_the_status_message(phase: str, expected: str) -> None:
    message = f"rollout says: {phase}"
    status = {"phase": phase, "message": message, "observedGeneration": 2}
    health = run_lua(ARGOCD / "health.lua", rollout(status, generation=2))
    assert health == {"status": expected, "message": message}


def test_empty_message_gets_a_readable_default() -> None:
    health = run_lua(ARGOCD / "health.lua", rollout({"phase": "RolledBack", "observedGeneration": 3}, generation=3))
    assert health == {"status": "Degraded", "message": "Rollout is RolledBack"}


# --- actions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS)
def test_action_writes_the_command_annotation_as_the_cli_does(action: str) -> None:
    before = rollout(
        {"phase": "Paused", "observedGeneration": 2}, resourceVersion="4711", annotations={"team": "fraud"}
    )
    after = run_lua(ARGOCD / "actions" / action / "action.lua", before)

    annotations = after["metadata"]["annotations"]
    assert annotations["team"] == "fraud"
    command = json.loads(annotations[COMMAND_ANNOTATION])
    assert set(command) == {"id", "action", "at"}
    assert command["action"] == action
    assert command["id"]
    datetime.fromisoformat(command["at"])  # an RFC 3339 time, as the CLI writes
    # The operator reads it as the same command the CLI would have sent.
    parsed = command_of(annotations[COMMAND_ANNOTATION])
    assert parsed is not None and parsed.action == CommandAction(action) and parsed.id == command["id"]
    # Nothing but the annotation changes: spec stays as Git has it.
    assert after["spec"] == before["spec"]
    assert after["status"] == before["status"]


@pytest.mark.parametrize("action", ACTIONS)
def test_action_without_annotations_creates_them(action: str) -> None:
    after = run_lua(ARGOCD / "actions" / action / "action.lua", rollout({"phase": "RolledBack"}))
    assert json.loads(after["metadata"]["annotations"][COMMAND_ANNOTATION])["action"] == action


def test_each_click_gets_a_new_id() -> None:
    # The operator acts once per id, so a second click (the object changed by the first one, so
    # its resourceVersion moved on) must carry a new id even within the same second.
    script = ARGOCD / "actions" / "promote" / "action.lua"
    first = run_lua(script, rollout({"phase": "Paused"}, resourceVersion="10"))
    second = run_lua(script, rollout({"phase": "Paused"}, resourceVersion="11"))
    ids = {json.loads(body["metadata"]["annotations"][COMMAND_ANNOTATION])["id"] for body in (first, second)}
    assert len(ids) == 2


@pytest.mark.parametrize(
    ("phase", "enabled"),
    [
        (None, set()),
        ("Pending", set()),
        ("Progressing", {"promote", "abort"}),
        ("Paused", {"promote", "abort"}),
        ("Succeeded", set()),
        ("RolledBack", {"retry"}),
        ("Failed", set()),
    ],
)
def test_discovery_offers_the_actions_the_operator_would_take(phase: str | None, enabled: set[str]) -> None:
    status = None if phase is None else {"phase": phase}
    actions = run_lua(ARGOCD / "actions" / "discovery.lua", rollout(status))
    assert set(actions) == set(ACTIONS)
    assert {name for name, options in actions.items() if not options["disabled"]} == enabled


def test_argocd_cm_patch_inlines_the_current_lua() -> None:
    spec = importlib.util.spec_from_file_location("render_argocd_cm", ROOT / "hack" / "render_argocd_cm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    patch = ARGOCD / "argocd-cm-patch.yaml"
    assert patch.read_text() == module.render(), "run: python hack/render_argocd_cm.py"
