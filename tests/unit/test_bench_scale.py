"""bench/scale.py's bookkeeping: how the counting proxy reads writes, how they are split into per-step
and per-rollout ones, and what the stand-in kubelet reports (bench/ is scripts, loaded from their files)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def proxy() -> ModuleType:
    return load("scale_proxy")


@pytest.fixture(scope="module")
def scale() -> ModuleType:
    return load("scale")


@pytest.fixture(scope="module")
def kubelet() -> ModuleType:
    return load("scale_kubelet")


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def test_the_proxy_reads_events_by_reason_and_status_writes_by_what_they_record(proxy: ModuleType) -> None:
    detail = proxy.detail_of
    assert detail("POST", "events", body({"reason": "StepCompleted"})) == "event StepCompleted"
    assert detail("PATCH", "modelrollouts/status", body({"status": {"phase": "Progressing"}})) == (
        "status phase=Progressing"
    )
    assert detail("PATCH", "modelrollouts/status", body({"status": {"currentStepIndex": 2}})) == "status step"
    # The start names step 0 and a phase: the phase decides.
    start = body({"status": {"phase": "Progressing", "currentStepIndex": 0}})
    assert detail("PATCH", "modelrollouts/status", start) == "status phase=Progressing"
    assert detail("PATCH", "modelrollouts/status", body({"status": {"backgroundAnalysis": {}}})) == "status other"
    # Other writes, reads and bodies that are not JSON objects are not read.
    assert detail("PATCH", "deployments", body({"spec": {"replicas": 1}})) is None
    assert detail("GET", "events", None) is None
    assert detail("POST", "events", b"not json") is None
    assert detail("POST", "events", body([1])) is None


def test_the_proxy_notes_the_step_a_status_write_names(proxy: ModuleType) -> None:
    named = proxy.step_named
    assert named("modelrollouts/status", "PATCH", body({"status": {"currentStepIndex": 2}})) == 2
    assert named("modelrollouts/status", "PUT", body({"status": {"currentStepIndex": 0, "phase": "Progressing"}})) == 0
    # Promotion clears the step; measurements name none; other kinds and reads are not read.
    assert named("modelrollouts/status", "PATCH", body({"status": {"currentStepIndex": None}})) is None
    assert named("modelrollouts/status", "PATCH", body({"status": {"backgroundAnalysis": {}}})) is None
    assert named("deployments", "PATCH", body({"status": {"currentStepIndex": 1}})) is None
    assert named("modelrollouts/status", "GET", None) is None
    assert named("modelrollouts/status", "PATCH", b"currentStepIndex, not json") is None
    assert named("modelrollouts/status", "PATCH", body(["currentStepIndex"])) is None


def test_an_event_posted_again_keeps_its_name_and_is_one_announcement(proxy: ModuleType, scale: ModuleType) -> None:
    event = body({"metadata": {"name": "r-1.17e2", "namespace": "scale"}, "reason": "StepCompleted"})
    assert proxy.event_named("event StepCompleted", event) == "scale/r-1.17e2"
    assert proxy.event_named("status step", event) is None
    assert proxy.event_named("event StepCompleted", body({"metadata": {}})) is None
    # Three POSTs of two Events (one posted again after a 429): two announcements for two steps.
    result = scale.SizeResult(size=1)
    result.steps_done = 2
    result.api_details = {"event StepCompleted": 3, "distinct event StepCompleted": 2}
    assert result.step_events_per_step == 1.0


def test_the_3_step_canarys_writes_split_into_8_per_3_steps_and_5_per_rollout(scale: ModuleType) -> None:
    # The counts of a 20-rollout canary (setWeight 50, pause, setWeight 100), as the proxy counted them.
    breakdown = {
        "POST events": 100,
        "PATCH modelrollouts/status": 80,
        "PATCH deployments": 40,
        "POST deployments": 20,
        "DELETE deployments": 20,
        "GET deployments": 7,
    }
    details = {
        "status phase=Progressing": 20,
        "status phase=Succeeded": 20,
        "status step": 40,
        "event RolloutStarted": 20,
        "event StepCompleted": 60,
        "event Promoted": 20,
    }
    split = scale.split_writes(breakdown, details)
    assert split == {"per_step": 160, "analysis": 0, "leases": 0, "per_rollout": 100, "all": 260}
    result = scale.SizeResult(size=20, steps_done=60, promoted=20, writes_split=split)
    assert result.step_writes_per_step == pytest.approx(8 / 3)
    assert result.rollout_writes_per_rollout == 5
    assert result.analysis_writes_per_rollout == 0


def test_measurement_only_status_writes_and_lease_writes_are_kept_apart(scale: ModuleType) -> None:
    breakdown = {"PATCH modelrollouts/status": 5, "PUT leases": 4, "POST leases": 1, "GET leases": 9}
    split = scale.split_writes(breakdown, {"status other": 3, "status step": 2})
    assert split == {"per_step": 2, "analysis": 3, "leases": 5, "per_rollout": 0, "all": 10}


def pod(**status: object) -> dict[str, object]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "6f1c8a52-58f5-4a4e-8a3c-1d9b7c1e0f00"},
        "spec": {"containers": [{"name": "server", "image": "bench/model-server:1"}]},
        "status": status,
    }


def test_the_stand_in_kubelet_reports_running_and_ready(kubelet: ModuleType) -> None:
    status = kubelet.running_status(pod())
    assert status["phase"] == "Running"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert [c["name"] for c in status["containerStatuses"]] == ["server"]
    assert kubelet.is_ready(pod(**status))
    assert not kubelet.is_ready(pod(phase="Pending"))


def test_the_stand_in_kubelet_queues_a_pod_once_and_only_when_there_is_work(kubelet: ModuleType) -> None:
    stand_in = kubelet.Kubelet("https://127.0.0.1:1", None, "token", "node", workers=1)
    stand_in.offer(pod(**kubelet.running_status(pod())))  # ready already: nothing to do
    assert stand_in.queue.qsize() == 0
    stand_in.offer(pod(phase="Pending"))
    stand_in.offer(pod(phase="Pending"))  # changed again before its turn: still one piece of work
    assert stand_in.queue.qsize() == 1
    deleting = pod(**kubelet.running_status(pod()))
    deleting["metadata"] = {**deleting["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}  # type: ignore[dict-item]
    stand_in.offer(deleting)  # a ready pod being deleted is work (confirm the deletion), the newest version wins
    assert stand_in.queue.qsize() == 1
    assert stand_in.pending[("ns", "p")] is deleting


def test_answer_quantiles_are_the_bucket_bounds_they_fall_in() -> None:
    scale = load("scale")
    buckets = {"0.01": 40.0, "0.1": 85.0, "0.5": 99.0, "1.0": 100.0, "+Inf": 100.0}
    assert scale.answer_quantiles(buckets) == {"count": 100.0, "p50": 0.1, "p90": 0.5, "p99": 0.5}
    assert scale.answer_quantiles({})["count"] == 0.0
