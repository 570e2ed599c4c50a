"""Drift per feature, pass by pass: in the analyses' and monitoring's status, and never a reason to write."""

from __future__ import annotations

import json

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import Phase
from modelrollout.runtime.status_writer import quiet_change

from .test_engine_analysis import TRAINING_DRIFT, cumulative, metric, training_reference_and_drifted_inputs, world_with
from .world import World, make_spec

EDGES = [1.0, 2.0, 3.0]
FEATURES = ["age", "amount", "merchant score", "hour"]


def inputs(shifted: str | None, wobble: int = 0) -> Observation:
    """Four features against stable; `shifted` far off, the others off by `wobble` observations."""
    candidate, stable = (), ()
    for name in FEATURES:
        counts = [400, 100, 100, 400] if name == shifted else [250 + wobble, 250, 250, 250 - wobble]
        candidate += cumulative(name, EDGES, counts)
        stable += cumulative(name, EDGES, [250, 250, 250, 250])
    return Observation(value=None, vectors={"candidate": candidate, "reference": stable})


def test_a_rolled_back_candidate_shows_the_drifted_feature_first_with_its_limit() -> None:
    world = world_with(metric("input-drift", drift={"statistic": "psi", "max": 0.2, "groupBy": "feature"}))
    world.metric_values["input-drift"] = inputs("merchant score")
    world.run(Phase.ROLLED_BACK, seconds=5)
    assert world.status.background_analysis is not None
    result = world.status.background_analysis.result("input-drift")
    assert result is not None and result.drift is not None
    drift = result.drift
    assert (drift.statistic, drift.max, drift.compared, drift.drifted) == ("psi", 0.2, 4, 1)
    assert drift.features[0].name == "merchant score" and drift.features[0].drifted
    assert drift.features[0].value is not None and drift.features[0].value > 0.2
    assert {feature.name for feature in drift.features} == set(FEATURES)
    assert not any(feature.drifted for feature in drift.features[1:])


def test_passing_drift_measurements_whose_features_move_are_still_quiet() -> None:
    steps = {"canary": {"steps": [{"setWeight": 25}, {"pause": {"duration": "10m"}}]}}
    drift_metric = metric("input-drift", drift={"statistic": "psi", "max": 0.2, "groupBy": "feature"})
    world = World(make_spec("1.0.0", strategy=steps, analysis={"interval": "10s", "metrics": [drift_metric]}))
    world.run(Phase.SUCCEEDED)
    world.metric_values["input-drift"] = inputs(None)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    for _ in range(60):
        world.step(1)
        analysis = world.status.background_analysis
        if world.status.current_step_index == 1 and analysis is not None and analysis.metrics:
            break
    before = world.status.wire()
    assert before["backgroundAnalysis"]["metrics"][0]["drift"]["features"]
    world.metric_values["input-drift"] = inputs(None, wobble=6)
    world.step(10)
    after = world.status.wire()
    assert after["backgroundAnalysis"]["metrics"][0]["successful"] == 2
    assert after["backgroundAnalysis"]["metrics"][0]["drift"] != before["backgroundAnalysis"]["metrics"][0]["drift"]
    assert quiet_change(before, after)
    # A feature that drifts is news: the measurement fails.
    world.metric_values["input-drift"] = inputs("age")
    world.step(10)
    assert not quiet_change(after, world.status.wire())


def test_monitoring_keeps_the_promoted_models_features() -> None:
    reference, feature, _, drifted = training_reference_and_drifted_inputs()
    world = World(
        make_spec(
            "1.0.0",
            analysis={"metrics": [metric("inputs", drift=TRAINING_DRIFT, background=False)]},
            monitoring={"interval": "30s", "metrics": ["inputs"]},
        )
    )
    world.run(Phase.SUCCEEDED)
    world.metric_values["inputs"] = Observation(value=None, vectors={"candidate": drifted}, reference=reference)
    for _ in range(3):
        world.step(31)
    assert world.status.monitoring is not None
    result = world.status.monitoring.analysis.result("inputs")
    assert result is not None and result.drift is not None
    assert result.drift.features[0].name == feature and result.drift.features[0].drifted
    # The live inputs' series named one feature: the reference's others had no candidate series.
    assert result.drift.compared == 1
    # Names and numbers only: no count, no bucket, no category of the inputs.
    wire = world.status.wire()["monitoring"]["analysis"]["metrics"][0]["drift"]
    assert {key for entry in wire["features"] for key in entry} <= {"name", "value", "pValue", "drifted"}
    assert '"le"' not in json.dumps(wire)
