"""dryRun, consecutiveSuccessLimit and measurementRetention, as in Argo Rollouts: the pure judgement,
then the engine with a whole rollout (no cluster)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelrollout.analysis.evaluate import Limits, Observation, measurements_kept, overall, record, worst
from modelrollout.api.models import (
    AnalysisStatus,
    AnalysisStep,
    Measurement,
    Metric,
    MetricResult,
    Phase,
    Verdict,
)
from modelrollout.engine.types import FireHook
from tests.unit.world import World, make_spec

OK, FAIL, ERR, INC = Verdict.SUCCESSFUL, Verdict.FAILED, Verdict.ERROR, Verdict.INCONCLUSIVE


def tally(phases: list[Verdict], limits: Limits, count: int | None, dry_run: bool = False) -> MetricResult:
    result = MetricResult(name="error-rate", dry_run=dry_run)
    for second, phase in enumerate(phases):
        result = record(
            result, Measurement(phase=phase, value=0.0, at=f"2026-11-27T12:00:{second:02d}Z"), limits, count
        )
    return result


LENIENT = Limits(failure=5, inconclusive=5, consecutive_error=5)


def with_streak(streak: int) -> Limits:
    return Limits(failure=5, inconclusive=5, consecutive_error=5, consecutive_success=streak)


# --- consecutiveSuccessLimit ----------------------------------------------------------------------


def test_a_run_of_successes_passes_before_count_is_reached() -> None:
    result = tally([FAIL, OK, OK, OK], with_streak(3), count=10)
    assert result.phase == OK
    assert result.consecutive_successful == 3
    assert "3 successful measurements in a row" in result.message


def test_a_failure_or_inconclusive_breaks_the_run_an_error_does_not() -> None:
    assert tally([OK, OK, FAIL, OK], with_streak(3), count=10).phase == Verdict.RUNNING
    assert tally([OK, OK, INC, OK], with_streak(3), count=10).phase == Verdict.RUNNING
    # An error is no measurement: it neither counts nor breaks the run.
    assert tally([OK, OK, ERR, OK], with_streak(3), count=10).phase == OK


def test_count_reached_without_the_run_is_inconclusive_as_in_argo_with_both_limits() -> None:
    result = tally([OK, FAIL, OK, OK], with_streak(3), count=4)
    assert result.phase == INC
    assert "consecutiveSuccessLimit" in result.message


def test_failure_limit_still_wins_over_the_run() -> None:
    strict = Limits(failure=0, inconclusive=5, consecutive_error=5, consecutive_success=2)
    assert tally([OK, FAIL], strict, count=10).phase == FAIL


def test_without_a_count_the_success_limit_does_nothing() -> None:
    # Background analysis runs for the whole rollout: a run of successes does not end it.
    assert tally([OK] * 6, with_streak(3), count=None).phase == Verdict.RUNNING


def test_without_the_limit_count_reached_with_no_success_is_inconclusive_not_argos_successful() -> None:
    # The one deliberate difference from Argo Rollouts (docs/analysis.md): errors and inconclusive
    # measurements within their limits never add up to a pass.
    assert tally([INC, INC], LENIENT, count=2).phase == INC
    assert tally([INC, OK], LENIENT, count=2).phase == OK


def test_an_unreachable_success_limit_is_refused_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match="consecutiveSuccessLimit 4 is more than count 3"):
        AnalysisStep.model_validate({"metrics": ["errors"], "count": 3, "consecutiveSuccessLimit": 4})
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        AnalysisStep.model_validate({"metrics": ["errors"], "count": 3, "consecutiveSuccessLimit": -1})


# --- dryRun ------------------------------------------------------------------------------------------


def test_a_failed_dry_run_metric_is_shown_failed_but_never_decides() -> None:
    strict = Limits(failure=0, inconclusive=0, consecutive_error=0)
    dry = tally([FAIL], strict, count=3, dry_run=True)
    assert dry.phase == FAIL and dry.dry_run
    passing = tally([OK, OK, OK], strict, count=3)
    analysis = AnalysisStatus(kind="step", started_at="2026-11-27T12:00:00Z", metrics=[dry, passing])
    assert overall(analysis) == OK
    assert worst(analysis) is None


def test_a_dry_run_metric_still_being_measured_is_waited_for() -> None:
    running = tally([OK], LENIENT, count=3, dry_run=True)
    passing = tally([OK], LENIENT, count=1)
    analysis = AnalysisStatus(kind="step", started_at="2026-11-27T12:00:00Z", metrics=[running, passing])
    assert overall(analysis) == Verdict.RUNNING


def test_a_decisive_metric_still_decides_beside_a_dry_run_one() -> None:
    strict = Limits(failure=0, inconclusive=0, consecutive_error=0)
    dry = tally([OK], strict, count=1, dry_run=True)
    failing = tally([FAIL], strict, count=1)
    analysis = AnalysisStatus(kind="step", started_at="2026-11-27T12:00:00Z", metrics=[dry, failing])
    assert overall(analysis) == FAIL
    culprit = worst(analysis)
    assert culprit is not None and culprit.name == failing.name and not culprit.dry_run


# --- measurementRetention ------------------------------------------------------------------------------


def test_retention_is_the_metrics_own_within_the_budget() -> None:
    assert measurements_kept(1) == 10
    assert measurements_kept(1, 3) == 3
    assert measurements_kept(1, 50) == 50
    assert measurements_kept(100, 50) == 10  # 100 metrics share the status budget
    result = MetricResult(name="error-rate")
    for second in range(30):
        measurement = Measurement(phase=OK, value=0.0, at=f"2026-11-27T12:00:{second:02d}Z")
        result = record(result, measurement, LENIENT, None, measurements_kept(1, 25))
    assert len(result.measurements) == 25 and result.count == 30


def test_retention_bounds_are_in_the_schema() -> None:
    base = {"name": "e", "prometheus": {"query": "up"}, "threshold": {"max": 1}}
    for wrong in (0, 101):
        with pytest.raises(ValidationError, match="measurementRetention"):
            Metric.model_validate({**base, "measurementRetention": wrong})


# --- the engine, a whole rollout -----------------------------------------------------------------------


def rollout(step: dict[str, object], *metrics: dict[str, object]) -> World:
    strategy = {"canary": {"steps": [{"setWeight": 50}, {"analysis": step}, {"setWeight": 100}]}}
    world = World(make_spec("1.0.0", strategy=strategy, analysis={"interval": "10s", "metrics": list(metrics)}))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    return world


def run_to_success(world: World) -> AnalysisStatus:
    """Run to Succeeded; the step's analysis as last seen (a finished rollout clears it)."""
    seen: AnalysisStatus | None = None
    for _ in range(200):
        world.step(5)
        seen = world.status.step_analysis or seen
        if world.status.phase == Phase.SUCCEEDED:
            assert seen is not None
            return seen
    raise AssertionError(f"never succeeded: {world.status.message}")


def metric(name: str, **extra: object) -> dict[str, object]:
    query = {"query": f'q{{version="{{{{candidate}}}}",m="{name}"}}'}
    return {"name": name, "prometheus": query, "threshold": {"max": 0.05}, "background": False, **extra}


def test_a_rollout_succeeds_beside_a_failing_dry_run_metric_and_an_event_says_so() -> None:
    world = rollout(
        {"metrics": ["errors", "shadow-latency"], "count": 2}, metric("errors"), metric("shadow-latency", dryRun=True)
    )
    world.metric_values["shadow-latency"] = Observation(value=0.9)
    analysis = run_to_success(world)
    assert "DryRunMetricFailed" in world.reasons()
    assert "AnalysisSucceeded" in world.reasons()
    dry = next(event for event in world.events if event.reason == "DryRunMetricFailed")
    assert "'shadow-latency'" in dry.message and "dry run" in dry.message and dry.type == "Warning"
    result = analysis.result("shadow-latency")
    assert result is not None and result.dry_run and result.phase == FAIL


def test_a_step_with_a_success_limit_moves_on_after_the_run() -> None:
    world = rollout(
        {"metrics": ["errors"], "count": 10, "interval": "10s", "consecutiveSuccessLimit": 2}, metric("errors")
    )
    analysis = run_to_success(world)
    result = analysis.result("errors")
    assert result is not None and result.count == 2 and result.phase == OK


def test_measurement_retention_keeps_that_many_in_status() -> None:
    world = rollout({"metrics": ["errors"], "count": 4, "interval": "10s"}, metric("errors", measurementRetention=2))
    analysis = run_to_success(world)
    result = analysis.result("errors")
    assert result is not None and result.count == 4 and len(result.measurements) == 2


def test_a_dry_run_monitoring_metric_is_watched_but_never_starts_a_drift_episode() -> None:
    monitoring = {"interval": "30s", "metrics": ["inputs"], "hook": {"webhook": {"url": "http://127.0.0.1:9/retrain"}}}
    spec = make_spec(
        "1.0.0",
        analysis={"metrics": [metric("inputs", dryRun=True, measurementRetention=2)]},
        monitoring={**monitoring, "consecutiveFailures": 1},
    )
    world = World(spec)
    world.run(Phase.SUCCEEDED)
    world.metric_values["inputs"] = Observation(value=0.9)
    for _ in range(4):
        decision = world.step(31)
        assert not [action for action in decision.actions if isinstance(action, FireHook)], decision.actions
    assert world.status.monitoring is not None
    result = world.status.monitoring.analysis.result("inputs")
    assert result is not None and result.dry_run and result.phase == FAIL and len(result.measurements) == 2
    assert "Drifted" not in world.reasons()
    drifted = world.status.condition("Drifted")
    assert drifted is None or drifted.status == "False"
    # The same metric, decisive: the first failure is a drift episode, and the hook fires.
    decisive = World({**spec, "analysis": {"metrics": [metric("inputs")]}})
    decisive.run(Phase.SUCCEEDED)
    decisive.metric_values["inputs"] = Observation(value=0.9)
    for _ in range(4):
        decisive.step(31)
    assert "Drifted" in decisive.reasons()
