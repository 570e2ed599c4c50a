"""`modelrollout status` draws what a person asks: phase, versions, weights, steps, measurements."""

from __future__ import annotations

from rich.console import Console

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import Phase
from modelrollout.engine.types import CommandAction
from modelrollout.status_view import render, summary_line
from modelrollout.vocabulary.routes import RouteState

from .world import World, make_spec

ROUTING = {"gatewayAPI": {"httpRoute": "scorer"}}


def _screen(rollout: dict[str, object]) -> str:
    console = Console(record=True, width=160)
    console.print(render(rollout))
    return console.export_text()


def test_status_shows_the_current_step_weights_and_the_failing_measurement() -> None:
    world = World(make_spec("1.0.0"))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.metric_values["error-rate"] = Observation(value=0.01)
    world.step(1)
    world.step(1)
    world.step(10)
    screen = _screen(
        {"metadata": {"name": "fraud-scorer", "namespace": "ml"}, "spec": world.spec, "status": world.status.wire()}
    )
    assert "ml/fraud-scorer" in screen
    assert "Progressing" in screen
    assert "stable 75%  candidate 25%" in screen
    assert "setWeight 25" in screen and "done" in screen
    assert "pause 30s" in screen and "running" in screen
    assert "error-rate" in screen and "0.01" in screen and "Running" in screen

    world.metric_values["error-rate"] = Observation(value=0.5)
    world.run(Phase.ROLLED_BACK, seconds=10)
    screen = _screen(
        {"metadata": {"name": "fraud-scorer", "namespace": "ml"}, "spec": world.spec, "status": world.status.wire()}
    )
    assert "RolledBack" in screen and "0.5 is not at most 0.05" in screen
    # Nothing runs any more: the step it stopped at and its measurements say so.
    assert "stopped: rolled back" in screen
    assert "running" not in screen and "Running" not in screen


def test_a_live_shadow_and_header_route_are_shown_even_at_weight_0() -> None:
    status = {"phase": "Progressing", "currentStepIndex": 0, "weights": {"stable": 100, "candidate": 0, "mirror": 20}}
    spec = make_spec()
    screen = _screen({"metadata": {"name": "s", "namespace": "ml"}, "spec": spec, "status": status})
    assert "stable 100%  candidate 0%  mirror 20% (shadow: answers discarded)" in screen
    status["weights"] = {"stable": 100, "candidate": 0, "headerRoute": True}
    screen = _screen({"metadata": {"name": "s", "namespace": "ml"}, "spec": spec, "status": status})
    assert "header route to the candidate" in screen
    line = summary_line({"status": {**status, "weights": {"stable": 90, "candidate": 10, "mirror": 5}}})
    assert line.startswith("phase=Progressing step=0 ") and "weights=90/10 mirror=5" in line


def test_status_of_a_rollout_not_yet_seen_by_the_operator() -> None:
    screen = _screen({"metadata": {"name": "new", "namespace": "ml"}, "spec": make_spec()})
    assert "Pending" in screen and "setWeight 25" in screen


def test_the_summary_shows_a_live_shadow_a_header_route_and_a_template_only_change() -> None:
    steps = [{"mirror": {"percent": 20}}, {"setHeaderRoute": {"name": "x-canary", "value": "1"}}, {"pause": {}}]
    world = World(make_spec("1.0.0", strategy={"canary": {"steps": steps}}, trafficRouting=ROUTING))
    world.route = RouteState()
    world.run(Phase.SUCCEEDED)
    template = {"spec": {"containers": [{"name": "server", "image": "registry.example/fraud-scorer:v2"}]}}
    world.change_spec(template=template)
    seen = []
    for _ in range(8):
        world.step(1)
        assert world.status.summary is not None
        seen.append(world.status.summary)
    traffic = [summary.traffic for summary in seen]
    assert "100/0 +mirror 20%" in traffic and traffic[-1] == "100/0 +mirror 20% header x-canary=1", traffic
    revision = world.status.candidate_revision or ""
    assert seen[-1].candidate == f"1.0.0 (rev {revision[:7]})" and seen[-1].step == "2/3", seen[-1]
    assert world.status.phase == Phase.PAUSED


def _rolled_back_at_an_analysis() -> World:
    steps = [
        {"setWeight": 10},
        {"pause": {"duration": "2m"}},
        {"analysis": {"metrics": ["error-rate"], "count": 3, "interval": "10s"}},
        {"setWeight": 50},
        {"pause": {}},
        {"setWeight": 75},
    ]
    world = World(make_spec("1.0.0", strategy={"canary": {"steps": steps}}))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.metric_values["error-rate"] = Observation(value=0.01)
    for _ in range(3):
        world.step(1)
    world.command(CommandAction.PROMOTE)
    world.step(1)
    world.metric_values["error-rate"] = Observation(value=0.5)
    world.run(Phase.ROLLED_BACK, seconds=10)
    return world


def test_a_rolled_back_rollout_fits_a_24_row_terminal_conditions_and_outcome_first() -> None:
    world = _rolled_back_at_an_analysis()
    console = Console(record=True, width=100, height=24)
    console.print(
        render({"metadata": {"name": "s", "namespace": "ml"}, "spec": world.spec, "status": world.status.wire()})
    )
    lines = console.export_text().splitlines()
    assert len(lines) <= 24, "\n".join(lines)
    assert any(line.startswith("Conditions") and "True: Degraded, Stalled" in line for line in lines[:10]), lines
    assert any("promote applied: ends step 1's pause now" in line for line in lines[:10]), lines
    steps = {line.split()[0]: line for line in lines if line[:3].strip().isdigit()}
    assert "stopped: rolled back" in steps["2"] and all("not run" in steps[n] for n in "345"), steps
    assert "done" in steps["0"] and "done" in steps["1"]


def test_the_version_asked_for_shows_when_the_operator_did_not_take_it_up() -> None:
    world = World(make_spec("1.0.0"))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"}, replicas=-1)
    world.step(1)
    screen = _screen({"metadata": {"name": "s", "namespace": "ml"}, "spec": world.spec, "status": world.status.wire()})
    assert "stable 1.0.0  requested 2.0.0 (not taken up: see Message)" in screen, screen


def test_list_is_plain_columns_in_a_pipe_and_says_ages_as_kubectl_does() -> None:
    from datetime import UTC, datetime, timedelta

    from modelrollout.status_view import list_table

    now = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)

    def rollout(namespace: str, name: str, age: timedelta, status: dict[str, object]) -> dict[str, object]:
        created = (now - age).isoformat().replace("+00:00", "Z")
        return {"metadata": {"namespace": namespace, "name": name, "creationTimestamp": created}, "status": status}

    shadow = {"candidate": "3.2.0 (rev 9f3c2a1)", "traffic": "100/0 +mirror 20%", "step": "0/4"}
    rollouts = [
        rollout("shop", "recommender", timedelta(days=4), {"phase": "Succeeded", "stableVersion": "2.0.0"}),
        rollout(
            "ml", "ranker", timedelta(seconds=45), {"phase": "Progressing", "stableVersion": "3.2.0", "summary": shadow}
        ),
        rollout("ml", "scorer", timedelta(hours=3), {"phase": "Paused", "pauseReason": "PauseStep"}),
    ]
    text = list_table(rollouts, now, all_namespaces=True, terminal=False)
    assert isinstance(text, str)
    header, *rows = text.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "PHASE", "STABLE", "CANDIDATE", "TRAFFIC", "STEP", "AGE"]
    assert [row.split()[1] for row in rows] == ["ranker", "scorer", "recommender"]  # by namespace, then name
    assert "3.2.0 (rev 9f3c2a1)   100/0 +mirror 20%   0/4    45s" in rows[0], rows[0]
    assert "Paused (PauseStep)" in rows[1] and rows[1].endswith("3h"), rows[1]
    assert rows[2].split()[2:] == ["Succeeded", "2.0.0", "-", "100/0", "-", "4d"], rows[2]
    assert not list_table(rollouts, now, all_namespaces=False, terminal=False).startswith("NAMESPACE")


def test_a_mirror_to_the_comparator_is_not_said_to_discard_the_answers() -> None:
    status = {"phase": "Progressing", "currentStepIndex": 0, "weights": {"stable": 100, "candidate": 0, "mirror": 50}}
    spec = make_spec(
        trafficRouting={"gatewayAPI": {"httpRoute": "s"}},
        strategy={"canary": {"steps": [{"mirror": {"percent": 50, "compare": {}}}]}},
    )
    screen = _screen({"metadata": {"name": "s", "namespace": "ml"}, "spec": spec, "status": status})
    assert "discarded" not in screen
    assert "mirror 50% (shadow: answers compared with stable's by the comparator)" in " ".join(screen.split())
