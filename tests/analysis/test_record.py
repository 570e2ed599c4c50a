"""Recording a measurement gives a new tally and leaves the one it was given as it was."""

from __future__ import annotations

from modelrollout.analysis.evaluate import Limits, record
from modelrollout.api.models import Measurement, MetricResult, Verdict

LIMITS = Limits(failure=1, inconclusive=1, consecutive_error=2)


def measured(phase: Verdict, second: int) -> Measurement:
    return Measurement(phase=phase, value=0.01, at=f"2026-11-27T12:00:{second:02d}Z")


def test_recording_leaves_the_given_tally_unchanged_and_keeps_the_last_measurements() -> None:
    tally = MetricResult(name="error-rate")
    seen: list[MetricResult] = []
    for second in range(12):
        before = tally.model_dump()
        phase = Verdict.ERROR if second == 11 else Verdict.SUCCESSFUL
        new = record(tally, measured(phase, second), LIMITS, count=None, keep=3)
        assert tally.model_dump() == before
        assert new.count == tally.count + 1
        seen.append(tally)
        tally = new
    assert [m.at[-3:-1] for m in tally.measurements] == ["09", "10", "11"]
    assert (tally.count, tally.successful, tally.error, tally.consecutive_error) == (12, 11, 1, 1)
    assert [len(earlier.measurements) for earlier in seen[:4]] == [0, 1, 2, 3]
