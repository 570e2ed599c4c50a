"""Status written by the operator before stages existed is read, given its stage, and goes on.

The older operator kept a promotion as `pauseReason: Promoting`, and blue-green's stage in
`currentStepIndex` (0 preview, 1 pre-promotion analysis, 2 the gate, 3 switched), with the gates'
analyses at `stepIndex` 1 and 3.
"""

from __future__ import annotations

from typing import Any

from modelrollout.api.models import BlueGreenStage, CanaryStage, ModelRolloutStatus, PauseReason, Phase, SharedStage
from modelrollout.engine.machine import needs, revision_of
from modelrollout.engine.stages import IMPLIED_PAUSE
from modelrollout.engine.types import DeploymentState
from tests.unit.world import World, make_spec

OLD_BG_INDEX = {
    BlueGreenStage.PREVIEW: 0,
    BlueGreenStage.PRE_PROMOTION_ANALYSIS: 1,
    BlueGreenStage.READY_TO_SWITCH: 2,
    BlueGreenStage.AWAITING_SWITCH: 2,
    BlueGreenStage.POST_PROMOTION_ANALYSIS: 3,
    BlueGreenStage.SCALE_DOWN_DELAY: 3,
}


def as_written_before_stages(status: ModelRolloutStatus) -> dict[str, Any]:
    """The status as the older operator wrote the same moment of a rollout."""
    wire = status.wire()
    stage = wire.pop("stage", None)
    interrupted = wire.pop("interruptedStage", None)
    if stage == SharedStage.INVALID and interrupted is not None:
        # An invalid spec only set the phase: the rest said where the rollout had stood.
        stage = interrupted
        implied = IMPLIED_PAUSE.get(interrupted)
        if implied is not None:
            wire["pauseReason"] = implied.value
    if stage == CanaryStage.PROMOTING:
        wire["pauseReason"] = "Promoting"
    if stage in OLD_BG_INDEX:
        wire["currentStepIndex"] = OLD_BG_INDEX[BlueGreenStage(stage)]
    analysis = wire.get("stepAnalysis")
    if analysis is not None and "stage" in analysis:
        analysis["stepIndex"] = 1 if analysis.pop("stage") == BlueGreenStage.PRE_PROMOTION_ANALYSIS else 3
    return wire


def read_back(world: World, older: dict[str, Any]) -> World:
    world.status = ModelRolloutStatus.model_validate(older)
    assert world.status.stage in (None, CanaryStage.PROMOTING)
    return world


# A real status of the older operator (from a fault test's report): a canary promoting, 2/4 ready.
PROMOTING_BEFORE_STAGES: dict[str, Any] = {
    "candidateVersion": "2.0.0",
    "currentStepIndex": 2,
    "message": "promoting 2.0.0: 2/4 replicas ready",
    "observedGeneration": 2,
    "pauseReason": "Promoting",
    "phase": "Progressing",
    "rolloutStartedAt": "2026-11-27T12:00:01.000Z",
    "stableVersion": "1.0.0",
    "stepStartedAt": "2026-11-27T12:00:20.000Z",
    "weights": {"candidate": 50, "headerRoute": False, "mirror": 0, "stable": 50},
}


def test_a_promotion_stored_as_a_pause_reason_is_read_as_the_promoting_stage() -> None:
    status = ModelRolloutStatus.model_validate(PROMOTING_BEFORE_STAGES)
    assert status.stage == CanaryStage.PROMOTING and status.pause_reason is None
    world = World(make_spec("1.0.0", strategy={"canary": {"steps": [{"setWeight": 25}, {"setWeight": 50}]}}))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    ref = world.ref()
    revision = revision_of(ref.spec_model())
    stable = world.status.stable_revision
    assert stable is not None
    older = {**PROMOTING_BEFORE_STAGES, "candidateRevision": revision, "stableRevision": stable}
    read_back(world, older)
    world.versions[revision] = "2.0.0"
    world.deployments[revision] = DeploymentState(revision, "2.0.0", 4, 2)
    decision = world.step(1)
    assert "Promoting" not in [event.reason for event in decision.events], "the promotion goes on, not again"
    assert world.status.stage in (CanaryStage.PROMOTING, SharedStage.STABLE)
    world.run(Phase.SUCCEEDED)
    assert world.status.stable_version == "2.0.0" and "Promoted" in world.reasons()


def test_an_older_canary_paused_at_a_step_stays_paused_there() -> None:
    world = World(make_spec("1.0.0", strategy={"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.PAUSED)
    older = as_written_before_stages(world.status)
    assert (older["pauseReason"], older["currentStepIndex"], "stage" in older) == ("PauseStep", 1, False)
    read_back(world, older)
    decision = world.step(1)
    assert (world.status.stage, world.status.phase, world.status.pause_reason) == (
        CanaryStage.PAUSED_AT_STEP,
        Phase.PAUSED,
        PauseReason.PAUSE_STEP,
    )
    assert decision.events == [], "nothing new happened: no second Paused event"


def blue_green_world() -> World:
    gate = {"metrics": ["error-rate"], "count": 2, "interval": "10s"}
    spec = make_spec(
        "1.0.0",
        strategy={
            "blueGreen": {
                "scaleDownDelaySeconds": 30,
                "autoPromotionSeconds": 20,
                "prePromotionAnalysis": gate,
                "postPromotionAnalysis": gate,
            }
        },
    )
    world = World(spec)
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    return world


def test_older_blue_green_step_indexes_become_stages_at_every_stage() -> None:
    reached: set[str] = set()
    for stop in (
        BlueGreenStage.PREVIEW,
        BlueGreenStage.PRE_PROMOTION_ANALYSIS,
        BlueGreenStage.READY_TO_SWITCH,
        BlueGreenStage.POST_PROMOTION_ANALYSIS,
        BlueGreenStage.SCALE_DOWN_DELAY,
    ):
        world = blue_green_world()
        for _ in range(100):
            world.step(1)
            if world.status.stage == stop:
                break
        assert world.status.stage == stop
        expected = world.status.model_copy(deep=True)
        older = as_written_before_stages(world.status)
        assert "stage" not in older and older["currentStepIndex"] == OLD_BG_INDEX[stop]
        read_back(world, older)
        wanted = needs(world.ref(), world.status, world.now, world.deployments)
        assert wanted.measurements == needs(world.ref(), expected, world.now, world.deployments).measurements
        world.step(0)
        assert world.status.current_step_index is None
        # Read where it stood (or gone on from there, as the same pass with a new status would).
        replayed = blue_green_world()
        replayed.status, replayed.deployments, replayed.now = expected, dict(world.deployments), world.now
        replayed.step(0)
        assert world.status.stage == replayed.status.stage, stop
        analysis = world.status.step_analysis
        if analysis is not None:
            assert analysis.step_index is None and analysis.stage is not None
        reached.add(stop.value)
        world.run(Phase.SUCCEEDED)
        assert world.status.stable_version == "2.0.0"
    assert len(reached) == 5


def test_an_older_blue_green_waiting_for_promote_is_read_as_awaiting_the_switch() -> None:
    world = World(make_spec("1.0.0", strategy={"blueGreen": {"autoPromotion": False}}))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.PAUSED)
    assert world.status.stage == BlueGreenStage.AWAITING_SWITCH
    older = as_written_before_stages(world.status)
    assert (older["currentStepIndex"], older["pauseReason"]) == (2, "Promotion")
    read_back(world, older)
    assert world.step(1).events == []
    assert (world.status.stage, world.status.pause_reason) == (BlueGreenStage.AWAITING_SWITCH, PauseReason.PROMOTION)


def test_an_older_invalid_spec_failure_is_read_as_invalid_and_goes_back_on_the_fix() -> None:
    world = World(make_spec("1.0.0", strategy={"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.PAUSED)
    good = world.spec
    world.change_spec(replicas=0)
    world.step(1)
    older = as_written_before_stages(world.status)
    assert older["phase"] == "Failed" and older["pauseReason"] == "PauseStep"
    read_back(world, older)
    world.spec = good
    world.step(1)
    assert (world.status.stage, world.status.phase) == (CanaryStage.PAUSED_AT_STEP, Phase.PAUSED)
    assert "SpecValid" in world.reasons()


def test_older_settled_and_first_deployment_statuses() -> None:
    world = World(make_spec("1.0.0"))
    world.run(Phase.SUCCEEDED)
    read_back(world, as_written_before_stages(world.status))
    assert world.step(1).events == []
    assert world.status.stage == SharedStage.STABLE
    first = World(make_spec("1.0.0", progressDeadlineSeconds=5))
    first.step()
    revision = next(iter(first.deployments))
    first.unready = {revision}
    first.deployments.clear()
    first.step(1)
    first.step(10)
    assert first.status.stage == SharedStage.DEPLOY_FAILED
    read_back(first, as_written_before_stages(first.status))
    assert first.step(1).events == []
    assert first.status.stage == SharedStage.DEPLOY_FAILED
    first.unready.clear()
    first.run(Phase.SUCCEEDED)


def test_an_older_switched_blue_green_read_while_its_spec_is_invalid_goes_on_switched_once_fixed() -> None:
    world = blue_green_world()
    for _ in range(100):
        world.step(1)
        if world.status.stage == BlueGreenStage.SCALE_DOWN_DELAY:
            break
    assert world.status.stage == BlueGreenStage.SCALE_DOWN_DELAY
    older = as_written_before_stages(world.status)
    assert older["currentStepIndex"] == 3
    good = world.spec
    read_back(world, older)
    world.change_spec(replicas=0)
    world.step(1)
    assert (world.status.stage, world.status.phase) == (SharedStage.INVALID, Phase.FAILED)
    world.spec = good
    world.step(1)
    assert world.status.stage == BlueGreenStage.SCALE_DOWN_DELAY, "the Services stay on the new version"
    assert world.status.current_step_index is None
    world.run(Phase.SUCCEEDED)
    assert world.status.stable_version == "2.0.0"
