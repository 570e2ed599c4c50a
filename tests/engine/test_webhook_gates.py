"""Webhook gates in the pure engine: asked through needs(), answered as observations; only a yes
(HTTP 2xx) moves the rollout, a no, a timeout or an error keeps it where it is."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from modelrollout.api.models import Phase
from modelrollout.engine.machine import needs
from modelrollout.engine.types import GateAnswer, Observations
from tests.unit.world import World, make_spec


@dataclass
class GateWorld(World):
    says: dict[str, bool | None] = field(default_factory=dict)  # None: the call timed out
    asked: list[tuple[str, str]] = field(default_factory=list)

    def observations(self) -> Observations:
        observed = super().observations()
        answers: dict[str, GateAnswer] = {}
        for request in needs(self.ref(), self.status, self.now, self.deployments).gates:
            self.asked.append((request.name, request.scope))
            said = self.says.get(request.name)
            message = "HTTP 200" if said else ("not yet: no answer within 5s" if said is None else "not yet: HTTP 403")
            answers[request.name] = GateAnswer(request.scope, bool(said), message)
        return replace(observed, gate_answers=answers)


def gated(*gates: dict[str, Any], steps: list[dict[str, Any]] | None = None) -> GateWorld:
    spec = make_spec("1.0.0", analysis={}, webhooks=list(gates))
    if steps is not None:
        spec["strategy"] = {"canary": {"steps": steps}}
    world = GateWorld(spec)
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    return world


def gate(name: str, kind: str) -> dict[str, Any]:
    return {"name": name, "type": kind, "url": f"http://gates.example/{name}", "interval": "10s"}


def test_confirm_rollout_keeps_the_candidate_from_being_created_until_it_says_yes() -> None:
    world = gated(gate("ok-to-start", "confirm-rollout"))
    for _ in range(3):
        world.step(11)
    assert world.replicas("2.0.0") == 0 and world.status.weights.candidate == 0
    assert world.status.phase == Phase.PROGRESSING
    [entry] = world.status.gates or []
    assert (entry.name, entry.state, entry.scope) == ("ok-to-start", "Waiting", "rollout")
    assert "not yet" in entry.message and "waiting for webhook gate 'ok-to-start'" in world.status.message
    world.says["ok-to-start"] = True
    world.run(Phase.SUCCEEDED, seconds=31)
    assert world.status.stable_version == "2.0.0"
    assert world.reasons().count("GateOpened") == 1


def test_a_timeout_is_not_yet_never_go() -> None:
    world = gated(gate("slow", "confirm-promotion"))
    world.says["slow"] = None
    for _ in range(20):
        world.step(11)
    assert world.status.phase == Phase.PROGRESSING and world.status.stable_version == "1.0.0"
    assert "no answer within" in (world.status.gates or [])[0].message


def test_confirm_traffic_increase_is_asked_before_each_step_that_raises_the_weight() -> None:
    world = gated(
        gate("more", "confirm-traffic-increase"),
        steps=[{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}],
    )
    world.says["more"] = True
    world.run(Phase.SUCCEEDED, seconds=11)
    scopes = {scope for name, scope in world.asked if name == "more"}
    assert scopes == {"step 0", "step 2"}  # the pause raises nothing


def test_traffic_stays_at_the_last_weight_while_the_gate_waits() -> None:
    world = gated(gate("more", "confirm-traffic-increase"), steps=[{"setWeight": 25}, {"setWeight": 50}])
    world.says["more"] = True
    for _ in range(6):
        world.step(1)
        if world.status.current_step_index == 1:
            break
    world.says["more"] = False
    for _ in range(5):
        world.step(11)
    assert world.status.current_step_index == 1
    assert world.replicas("2.0.0") == 1  # 25% of 4, not 50%


def test_a_rollback_gate_that_says_yes_rolls_back() -> None:
    world = gated(gate("stop", "rollback"), steps=[{"setWeight": 25}, {"pause": {}}])
    world.says["stop"] = False
    world.run(Phase.PAUSED)
    world.says["stop"] = True
    world.step(11)
    assert world.status.phase == Phase.ROLLED_BACK
    assert "webhook gate 'stop' (rollback) said roll back" in world.status.message
    assert "RollbackHook" in world.reasons()


def test_gates_are_asked_again_only_after_their_interval() -> None:
    world = gated(gate("ok", "confirm-rollout"))
    world.step(0)
    world.step(0)
    world.step(3)
    assert world.asked == [("ok", "rollout")]
    world.step(8)
    assert world.asked == [("ok", "rollout"), ("ok", "rollout")]


def test_a_new_candidate_asks_its_gates_afresh() -> None:
    world = gated(gate("ok", "confirm-rollout"))
    world.says["ok"] = True
    world.run(Phase.SUCCEEDED, seconds=31)
    world.says["ok"] = False
    world.change_spec(model={"name": "fraud-scorer", "version": "3.0.0"})
    for _ in range(3):
        world.step(11)
    assert world.replicas("3.0.0") == 0
    assert [(g.state, g.revision == world.status.candidate_revision) for g in world.status.gates or []] == [
        ("Waiting", True)
    ]


def test_blue_green_refuses_gates_it_cannot_honour() -> None:
    import pytest

    from modelrollout.api.validation import InvalidSpec, parse_spec

    spec = make_spec("1.0.0", webhooks=[gate("x", "confirm-traffic-increase")])
    spec["strategy"] = {"blueGreen": {}}
    with pytest.raises(InvalidSpec, match=r"webhooks\[0\]\.type: confirm-traffic-increase .*no traffic increase"):
        parse_spec(spec)


def test_status_shows_each_gate_of_the_candidate_and_why_it_waits() -> None:
    from modelrollout.status_view import current_gates, gate_words, summary_line

    world = gated(gate("ok-to-start", "confirm-rollout"), gate("pager", "rollback"))
    world.says["ok-to-start"] = False
    world.step(0)
    world.step(0)
    words = [gate_words(entry) for entry in current_gates(world.status)]
    assert "ok-to-start (confirm-rollout, rollout): waiting, not yet: HTTP 403" in words
    assert any(text.startswith("pager (rollback): asked 1 time(s)") for text in words)
    line = summary_line({"status": world.status.wire()})
    assert "gates=ok-to-start" in line and "pager" not in line.split("  ")[0]


def test_gates_leave_status_with_their_candidate() -> None:
    world = gated(gate("ok", "confirm-rollout"))
    world.says["ok"] = True
    world.run(Phase.SUCCEEDED, seconds=31)
    assert world.status.stable_version == "2.0.0" and world.status.gates is None


# --- blue-green --------------------------------------------------------------------------------------


def blue_green_gated(*gates: dict[str, Any], **options: Any) -> GateWorld:
    spec = make_spec("1.0.0", analysis={}, webhooks=list(gates))
    spec["strategy"] = {"blueGreen": {"scaleDownDelaySeconds": 0, **options}}
    world = GateWorld(spec)
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    return world


def active_revision(world: GateWorld) -> str | None:
    return dict(world.services["fraud-scorer"]).get("modelrollout.io/revision")


def test_blue_green_every_gate_type_but_confirm_traffic_increase_is_accepted() -> None:
    from modelrollout.api.validation import parse_spec

    kinds = ("pre-rollout", "confirm-rollout", "confirm-promotion", "rollback", "post-rollout")
    spec = make_spec("1.0.0", webhooks=[gate(kind, kind) for kind in kinds])
    spec["strategy"] = {"blueGreen": {}}
    assert [g.type for g in parse_spec(spec).webhooks] == list(kinds)


def test_blue_green_confirm_rollout_keeps_the_preview_from_being_created_until_it_says_yes() -> None:
    world = blue_green_gated(gate("ok-to-start", "confirm-rollout"), gate("load", "pre-rollout"))
    world.says.update({"load": True, "ok-to-start": False})
    for _ in range(3):
        world.step(11)
    assert world.replicas("2.0.0") == 0 and world.replicas("1.0.0") == 4
    assert (world.status.phase, world.status.stage) == (Phase.PROGRESSING, "Preview")
    assert world.status.weights.candidate == 0
    states = {entry.name: entry.state for entry in world.status.gates or []}
    assert states == {"ok-to-start": "Waiting", "load": "Open"}
    assert "waiting for webhook gate 'ok-to-start' (confirm-rollout): not yet: HTTP 403" in world.status.message
    world.says["ok-to-start"] = True
    world.step(11)
    world.step(0)
    assert world.replicas("2.0.0") == 4  # the preview comes up once every rollout gate said yes
    world.run(Phase.SUCCEEDED, seconds=1)
    assert world.status.stable_version == "2.0.0"
    assert world.reasons().count("GateOpened") == 2


def test_blue_green_preview_deadline_counts_from_the_gate_opening_not_from_the_wait() -> None:
    world = blue_green_gated(gate("ok-to-start", "confirm-rollout"))
    world.spec = {**world.spec, "progressDeadlineSeconds": 60}
    for _ in range(10):
        world.step(11)  # 110s waiting on the gate: longer than the deadline
    assert world.status.phase == Phase.PROGRESSING
    world.says["ok-to-start"] = True
    world.unready.add(revision_of_candidate(world))
    world.step(11)
    world.step(1)
    assert world.replicas("2.0.0") == 4 and world.status.phase == Phase.PROGRESSING
    world.step(30)
    assert world.status.phase == Phase.PROGRESSING  # 31s into the preview's 60s
    world.step(40)
    assert world.status.phase in {Phase.ROLLED_BACK}, world.status.message  # (a set: mypy narrowed the phase)


def revision_of_candidate(world: GateWorld) -> str:
    assert world.status.candidate_revision is not None
    return world.status.candidate_revision


def test_blue_green_confirm_promotion_keeps_the_active_service_on_stable_until_it_says_yes() -> None:
    world = blue_green_gated(gate("change-window", "confirm-promotion"))
    blue = world.status.stable_revision
    for _ in range(5):
        world.step(11)
    assert world.replicas("2.0.0") == 4  # the preview is up: confirm-promotion gates only the switch
    assert world.status.stage == "ReadyToSwitch" and world.status.switched_at is None
    assert active_revision(world) == blue and world.status.weights.candidate == 0
    assert ("change-window", "promotion") in world.asked
    assert "promotion: waiting for webhook gate 'change-window'" in world.status.message
    green = world.status.candidate_revision
    world.says["change-window"] = True
    world.step(11)
    assert active_revision(world) == green and world.status.stable_version == "2.0.0"
    assert "Switched" in world.reasons()
    world.run(Phase.SUCCEEDED, seconds=1)
    assert world.status.stable_version == "2.0.0"


def test_blue_green_confirm_promotion_is_asked_after_the_auto_promotion_delay() -> None:
    world = blue_green_gated(gate("change-window", "confirm-promotion"), autoPromotionSeconds=60)
    for _ in range(4):
        world.step(11)
    assert not any(name == "change-window" for name, _ in world.asked)  # the delay runs first
    assert world.status.gates in (None, [])
    world.says["change-window"] = True
    for _ in range(10):
        world.step(11)
    assert ("change-window", "promotion") in world.asked
    assert world.status.stable_version == "2.0.0" and "Switched" in world.reasons()


def test_blue_green_a_promote_waits_for_confirm_promotion_and_is_kept_until_it_says_yes() -> None:
    from modelrollout.engine.types import CommandAction

    world = blue_green_gated(gate("change-window", "confirm-promotion"), autoPromotion=False)
    blue = world.status.stable_revision
    for _ in range(3):
        world.step(1)
    assert world.status.stage == "AwaitingSwitch" and not any(n == "change-window" for n, _ in world.asked)
    world.command(CommandAction.PROMOTE)
    world.step(1)
    world.pending_command = None
    for _ in range(5):
        world.step(11)  # the gate says not yet: the promote waits, the active Service stays on blue
    assert active_revision(world) == blue and world.status.switched_at is None
    assert world.status.promotion_requested is not None
    assert "waiting for webhook gate 'change-window'" in world.status.message
    assert world.status.last_command is not None  # the person is told the switch waits for the gate
    assert world.status.last_command.reason == (
        "queued: switches traffic to 2.0.0 once webhook gate 'change-window' (confirm-promotion) says yes"
    )
    green = world.status.candidate_revision
    world.says["change-window"] = True
    world.step(11)
    assert active_revision(world) == green and world.status.stable_version == "2.0.0"
    assert world.status.promotion_requested is None


def test_blue_green_a_rollback_gate_that_says_yes_rolls_back() -> None:
    world = blue_green_gated(gate("pager", "rollback"), autoPromotion=False)
    world.says["pager"] = False
    for _ in range(3):
        world.step(11)
    assert world.status.stage == "AwaitingSwitch" and ("pager", "rollout") in world.asked
    world.says["pager"] = True
    world.step(11)
    assert world.status.phase == Phase.ROLLED_BACK
    assert "webhook gate 'pager' (rollback) said roll back" in world.status.message
    assert "RollbackHook" in world.reasons()
