"""What the dashboard's pages show, from ModelRollouts as the API server returns them (no server, no browser)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from modelrollout.dashboard import view
from modelrollout.dashboard.store import RolloutStore, refusal
from modelrollout.kube.api import ApiError, KubeApi

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def _at(seconds_ago: float) -> str:
    return datetime.fromtimestamp(NOW - seconds_ago, UTC).isoformat()


def rollout(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ml", "name": "fraud", "creationTimestamp": _at(300)},
        "spec": {
            "model": {"name": "fraud", "version": "2"},
            "strategy": {
                "canary": {
                    "steps": [
                        {"setWeight": 10},
                        {"pause": {"duration": "2m"}},
                        {"analysis": {"metrics": ["error-rate"]}},
                        {"pause": {}},
                    ]
                }
            },
            "analysis": {
                "metrics": [
                    {"name": "error-rate", "prometheus": {"query": "q"}, "threshold": {"max": 0.05}},
                    {"name": "latency-vs-stable", "prometheus": {"query": "q"}, "compare": {"maxRatio": 1.2}},
                    {"name": "inputs", "prometheus": {"query": "q"}, "drift": {"statistic": "psi", "max": 0.2}},
                ]
            },
            **spec,
        },
        "status": status,
    }


def test_a_row_says_phase_versions_split_step_age_and_marks() -> None:
    row = view.summary(
        rollout(
            {
                "phase": "Paused",
                "pauseReason": "PauseStep",
                "stableVersion": "1",
                "candidateVersion": "2",
                "currentStepIndex": 1,
                "weights": {"stable": 90, "candidate": 10, "mirror": 5, "headerRoute": True},
                "monitoring": {
                    "version": "1",
                    "analysis": {"kind": "background", "startedAt": _at(10)},
                    "driftedSince": _at(5),
                },
            }
        ),
        NOW,
    )
    assert row["step"] == {"n": 2, "m": 4}
    assert row["weights"] == {"stable": 90, "candidate": 10, "mirror": 5, "headerRoute": True}
    assert row["ageSeconds"] == 300
    assert row["marks"] == ["paused", "drifted"]


def test_the_timeline_marks_done_current_with_its_remaining_pause_and_to_come() -> None:
    status = {"phase": "Progressing", "currentStepIndex": 1, "stepStartedAt": _at(30)}
    steps = view.timeline(rollout(status)["spec"], status, NOW)
    assert [s["state"] for s in steps] == ["done", "current", "todo", "todo"]
    assert steps[1]["text"] == "pause 2m" and steps[1]["remainingSeconds"] == 90
    rolled_back = {"phase": "RolledBack", "currentStepIndex": 2}
    assert [s["state"] for s in view.timeline(rollout(rolled_back)["spec"], rolled_back, NOW)][2] == "stopped"


def _result(name: str, *measurements: tuple[str, float | None, str]) -> dict[str, Any]:
    return {
        "name": name,
        "phase": measurements[-1][0],
        "count": len(measurements),
        "measurements": [
            {"phase": phase, "value": value, "at": _at(10 * (len(measurements) - i)), "message": message}
            for i, (phase, value, message) in enumerate(measurements)
        ],
    }


def test_each_metric_has_its_points_threshold_stable_side_and_drift_worst_first() -> None:
    status = {
        "phase": "RolledBack",
        "stableVersion": "1",
        "message": "error-rate 0.3 > max 0.05",
        "stepAnalysis": {
            "kind": "step",
            "startedAt": _at(60),
            "metrics": [
                _result("error-rate", ("Successful", 0.01, "0.01 <= 0.05"), ("Failed", 0.3, "0.3 > max 0.05")),
                _result(
                    "latency-vs-stable",
                    ("Successful", 1.1, "candidate 0.11 is 1.1x stable 0.1; allowed at most 1.2x"),
                ),
                _result(
                    "inputs", ("Failed", 0.5, "inputs: worst feature 'age': psi 0.5 > 0.2; 1 of 3 features drifted")
                ),
            ],
        },
    }
    shown = view.detail(rollout(status), [], [], NOW, read_only=False)
    charts = {chart["name"]: chart for chart in shown["metrics"]}
    error_rate = charts["error-rate"]
    assert [p["value"] for p in error_rate["points"]] == [0.01, 0.3]
    assert [p["phase"] for p in error_rate["points"]] == ["Successful", "Failed"]
    assert error_rate["threshold"] == {"min": None, "max": 0.05}
    compare = charts["latency-vs-stable"]["points"][0]
    assert (compare["candidate"], compare["stable"]) == (0.11, 0.1)
    assert shown["drift"][0]["worstFeature"] == "age" and shown["drift"][0]["severity"] == 2.5
    assert shown["reason"] == "Rolled back: error-rate 0.3 > max 0.05"
    assert shown["actions"] == ["retry"]
    assert view.detail(rollout(status), [], [], NOW, read_only=True)["actions"] == []


def test_events_newest_first() -> None:
    events = [
        {"reason": "StepCompleted", "type": "Normal", "message": "step 0", "lastTimestamp": _at(50)},
        {"reason": "AnalysisFailed", "type": "Warning", "message": "bad", "lastTimestamp": _at(5)},
    ]
    assert [e["reason"] for e in view.events_of(events)] == ["AnalysisFailed", "StepCompleted"]


async def test_the_store_keeps_traffic_over_time_and_tells_its_listeners() -> None:
    clock = iter([NOW, NOW + 1, NOW + 2, NOW + 3, NOW + 4, NOW + 5, NOW + 6, NOW + 7])
    store = RolloutStore(cast(KubeApi, None), None, clock=lambda: next(clock))
    with store.listen() as queue:
        base = rollout({"phase": "Progressing", "weights": {"stable": 100, "candidate": 0}})
        store.apply("ADDED", base)
        store.apply("MODIFIED", base)  # the same split: no new point
        store.apply("MODIFIED", rollout({"phase": "Progressing", "weights": {"stable": 75, "candidate": 25}}))
        assert [(p["stable"], p["candidate"]) for p in store.traffic[("ml", "fraud")]] == [(100, 0), (75, 25)]
        store.apply("DELETED", base)
        messages = [queue.get_nowait()["type"] for _ in range(queue.qsize())]
    assert messages == ["changed", "changed", "changed", "deleted"]
    assert store.rollouts == {} and store.traffic == {}


def test_a_refusal_says_what_to_do() -> None:
    text = refusal(ApiError(403, "Forbidden", "cannot list"), None)
    assert "403 Forbidden" in text and "-n NAMESPACE" in text and "docs/dashboard.md" in text
