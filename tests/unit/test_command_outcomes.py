"""Every command gets an outcome in `status.lastCommand`: applied (saying what it did, or that it
waits for a gate), or ignored with the reason; the CLI prints it and a dashboard shows it."""

from __future__ import annotations

from modelrollout.api.models import ModelRolloutStatus, Phase
from modelrollout.engine.types import CommandAction, RestartDeployment

from .world import World, make_spec

ANALYSIS_STEPS = [
    {"setWeight": 25},
    {"analysis": {"metrics": ["error-rate"], "count": 3, "interval": "10s"}},
    {"pause": {}},
]


def deployed(**overrides: object) -> World:
    world = World(make_spec("1.0.0", **overrides))
    world.run(Phase.SUCCEEDED)
    return world


def outcome(world: World) -> tuple[str, str]:
    last = world.status.last_command
    assert last is not None and last.id == f"cmd-{world.command_counter}", last
    assert last.at == world.decisions[-1].status.last_command.at  # type: ignore[union-attr]
    return last.outcome, last.reason


def test_a_command_that_does_not_apply_is_ignored_with_the_reason_and_a_normal_event() -> None:
    world = deployed()
    world.command(CommandAction.PROMOTE)
    world.step(1)
    assert outcome(world) == ("Ignored", f"no candidate to promote: the rollout is Succeeded ({world.status.message})")
    assert world.status.last_command is not None and world.status.last_command.action == "promote"
    ignored = [event for event in world.events if event.reason == "CommandIgnored"]
    assert len(ignored) == 1 and ignored[0].type == "Normal"
    # The same command seen again (the annotation stays) is not answered twice.
    world.step(1)
    assert [event.reason for event in world.events].count("CommandIgnored") == 1


def test_promote_during_an_analysis_step_is_ignored_and_says_why() -> None:
    world = deployed(strategy={"canary": {"steps": ANALYSIS_STEPS}})
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    world.step(1)
    assert world.status.current_step_index == 1
    world.command(CommandAction.PROMOTE)
    world.step(1)
    verdict, reason = outcome(world)
    assert verdict == "Ignored" and "step 1 is an analysis (error-rate)" in reason, reason
    assert "Inconclusive" in reason and world.status.promotion_requested is None
    # --full is queued instead: once the analysis passes, the remaining steps are skipped.
    world.command(CommandAction.PROMOTE_FULL)
    world.step(1)
    assert outcome(world) == ("Applied", "queued: once step 1's analysis passes, the remaining steps are skipped")
    world.run(Phase.SUCCEEDED, seconds=10)
    assert world.status.stable_version == "2.0.0"


def test_promote_at_a_pause_is_applied_and_one_sent_while_pods_start_is_queued_for_the_gate() -> None:
    world = deployed(strategy={"canary": {"steps": ANALYSIS_STEPS[:1] + ANALYSIS_STEPS[2:]}})
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    # The candidate's pods are not ready yet at step 0 (setWeight): a promote waits for the next gate.
    revision = world.status.candidate_revision
    assert revision is not None
    world.unready.add(revision)
    world.deployments.pop(revision, None)
    world.command(CommandAction.PROMOTE)
    world.step(1)
    assert outcome(world) == (
        "Applied",
        "queued: takes effect at the next gate (a pause, an analysis verdict or a manual step)",
    )
    assert world.status.promotion_requested == "step"
    world.unready.clear()
    world.run(Phase.SUCCEEDED)  # the queued promote opened the pause without a second command


def test_pause_resume_abort_retry_say_what_they_did() -> None:
    world = deployed(strategy={"canary": {"steps": [{"setWeight": 25}, {"pause": {"duration": "1h"}}]}})
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    world.command(CommandAction.RESUME)
    world.step(1)
    verdict, reason = outcome(world)
    assert verdict == "Ignored" and reason.startswith("not paused by a person"), reason
    world.command(CommandAction.PAUSE)
    world.step(1)
    assert outcome(world)[0] == "Applied" and world.status.phase == Phase.PAUSED
    world.command(CommandAction.PAUSE)
    world.step(1)
    assert outcome(world) == ("Ignored", "already paused by a person; `resume` to continue")
    world.command(CommandAction.RESUME)
    world.step(1)
    assert outcome(world) == ("Applied", "resumed")
    world.command(CommandAction.RETRY)
    world.step(1)
    assert outcome(world)[0] == "Ignored" and "only a rolled-back rollout" in outcome(world)[1]
    world.command(CommandAction.ABORT)
    world.step(1)
    assert outcome(world) == ("Applied", "rolled back 2.0.0; all traffic is on 1.0.0")
    world.command(CommandAction.RETRY)
    world.step(1)
    assert outcome(world) == ("Applied", "delivering 2.0.0 again from the first step")
    assert world.status.phase == Phase.PROGRESSING


def test_an_older_status_s_last_command_id_counts_as_handled() -> None:
    world = deployed()
    older = world.status.wire()
    older["lastCommandId"] = "cmd-1"
    world.status = ModelRolloutStatus.model_validate(older)
    world.command(CommandAction.PROMOTE)  # cmd-1: already handled by the older operator
    decision = world.step(1)
    assert world.status.last_command is None and not decision.events
    world.command(CommandAction.PROMOTE)  # cmd-2: new
    world.step(1)
    assert outcome(world)[0] == "Ignored" and world.status.last_command_id is None


def test_a_command_to_a_rollout_with_an_invalid_spec_is_ignored_with_the_reason() -> None:
    world = deployed()
    world.change_spec(replicas="many")
    world.command(CommandAction.ABORT)
    world.step(1)
    verdict, reason = outcome(world)
    assert verdict == "Ignored" and reason.startswith("nothing moves until the spec and route are usable"), reason
    assert "replicas" in reason


def test_restart_replaces_the_stable_pods_once() -> None:
    world = deployed()
    world.command(CommandAction.RESTART)
    decision = world.step(1)
    stable = world.status.stable_revision
    assert stable is not None
    restarts = [action for action in decision.actions if isinstance(action, RestartDeployment)]
    assert restarts == [RestartDeployment(stable, world.status.restarted_at or "")]
    assert outcome(world)[0] == "Applied" and "one at a time" in outcome(world)[1]
    assert not [a for a in world.step(1).actions if isinstance(a, RestartDeployment)]  # the same id: done already
    fresh = World(make_spec())
    fresh.command(CommandAction.RESTART)
    fresh.step(1)
    assert outcome(fresh) == ("Ignored", "no stable version to restart yet")


def test_the_succeeded_status_of_a_first_deployment_is_final_in_one_write() -> None:
    """The first Succeeded said "2 ready replica(s)" and the next pass "2/2 ready replica(s)": a second
    status write seconds later with no news."""
    world = deployed()
    settled = world.status.wire()
    world.step(7)
    assert world.status.wire() == settled


def test_a_promotion_remembers_the_previous_stable_revision_for_undo() -> None:
    world = deployed()
    first = world.status.stable_source
    assert first is not None and first.version == "1.0.0" and first.model["version"] == "1.0.0"
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.SUCCEEDED, seconds=31)
    assert world.status.previous_stable == first
    assert world.status.stable_source is not None and world.status.stable_source.version == "2.0.0"


def test_blue_green_promote_is_queued_before_the_switch_applied_at_the_gate_and_ignored_after() -> None:
    blue_green = {"blueGreen": {"autoPromotion": False, "scaleDownDelaySeconds": 600}}
    world = deployed(strategy=blue_green)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.PAUSED)
    world.command(CommandAction.PROMOTE)
    world.step(1)
    assert outcome(world) == ("Applied", "switches traffic to 2.0.0")
    assert world.status.weights.candidate == 100
    world.command(CommandAction.PROMOTE)
    world.step(1)
    verdict, reason = outcome(world)
    assert verdict == "Ignored" and reason.startswith("traffic already switched to 2.0.0"), reason
    world.command(CommandAction.RESTART)
    world.step(1)
    assert outcome(world)[0] == "Ignored" and "being retired" in outcome(world)[1]

    other = deployed(strategy=blue_green)
    other.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    other.step(1)
    other.command(CommandAction.PROMOTE)
    other.step(1)
    verdict, reason = outcome(other)
    assert verdict == "Applied" and reason.startswith("queued: traffic switches as soon as"), (verdict, reason)
