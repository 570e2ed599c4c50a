"""What the rollout page shows of drift per feature and of monitoring, from statuses the engine wrote."""

from __future__ import annotations

from typing import Any

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import Phase
from modelrollout.dashboard import view

from .test_engine_analysis import TRAINING_DRIFT, metric, training_reference_and_drifted_inputs, world_with
from .test_engine_drift_features import inputs
from .world import World, make_spec


def shown(world: World) -> dict[str, Any]:
    rollout = {
        "metadata": {"namespace": "ml", "name": "fraud-scorer"},
        "spec": world.spec,
        "status": world.status.wire(),
    }
    return view.detail(rollout, [], [], world.now.timestamp(), read_only=True)


def test_the_drifted_feature_leads_with_its_statistic_its_limit_and_their_ratio() -> None:
    world = world_with(metric("input-drift", drift={"statistic": "psi", "max": 0.2, "groupBy": "feature"}))
    world.metric_values["input-drift"] = inputs("merchant score")
    world.run(Phase.ROLLED_BACK, seconds=5)
    blocks = shown(world)["driftFeatures"]
    assert len(blocks) == 1
    block = blocks[0]
    assert (block["metric"], block["analysis"], block["statistic"], block["max"]) == (
        "input-drift",
        "background",
        "psi",
        0.2,
    )
    assert (block["compared"], block["drifted"], block["phase"]) == (4, 1, "Failed")
    first, *rest = block["features"]
    assert first["name"] == "merchant score" and first["drifted"] and first["overLimit"]
    assert first["ratio"] == first["value"] / 0.2 > 1
    assert not any(feature["drifted"] or feature["overLimit"] for feature in rest)
    assert shown(world)["monitoringHistory"] is None


def test_after_promotion_the_monitoring_history_newest_first_with_the_worst_feature() -> None:
    reference, feature, _, drifted = training_reference_and_drifted_inputs()
    world = World(
        make_spec(
            "1.0.0",
            analysis={"metrics": [metric("inputs", drift=TRAINING_DRIFT, background=False)]},
            monitoring={"interval": "30s", "metrics": ["inputs"], "consecutiveFailures": 2},
        )
    )
    world.run(Phase.SUCCEEDED)
    world.metric_values["inputs"] = Observation(value=None, vectors={"candidate": drifted}, reference=reference)
    for _ in range(3):
        world.step(31)
    page = shown(world)
    history = page["monitoringHistory"]
    assert history["version"] == "1.0.0" and history["driftedSince"] is not None
    assert len(history["history"]) >= 2
    times = [entry["at"] for entry in history["history"]]
    assert times == sorted(times, reverse=True)
    assert {entry["worstFeature"] for entry in history["history"]} == {feature}
    assert all(entry["phase"] == "Failed" for entry in history["history"])
    assert history["metrics"][0]["name"] == "inputs" and history["metrics"][0]["counts"]["failed"] >= 2
    monitored = [block for block in page["driftFeatures"] if block["analysis"] == "monitoring"]
    assert monitored and monitored[0]["features"][0]["name"] == feature


def test_a_templates_drift_metric_has_its_kind_and_limit_from_what_status_kept() -> None:
    template = {"name": "input-drift", "template": {"name": "input-drift", "args": {"maxPsi": "0.25"}}}
    world = world_with(template)
    world.metric_values["input-drift"] = inputs("age")
    world.run(Phase.ROLLED_BACK, seconds=5)
    page = shown(world)
    chart = next(chart for chart in page["metrics"] if chart["name"] == "input-drift")
    assert chart["kind"] == "drift" and chart["threshold"]["max"] == 0.25
    assert page["drift"][0]["limit"] == 0.25 and page["drift"][0]["worstFeature"] == "age"
    assert page["driftFeatures"][0]["max"] == 0.25
