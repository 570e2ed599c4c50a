"""Events kept in status until posted: fixed names, bounded, and valid core/v1 Events."""

from __future__ import annotations

import pytest

from modelrollout.engine.types import EventRecord
from modelrollout.kube.events import PENDING_KEPT, EventLedger, event_body, pending_event

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is needed")

BODY = {
    "apiVersion": "modelrollout.io/v1alpha1",
    "kind": "ModelRollout",
    "metadata": {"name": "fraud-scorer", "namespace": "ml", "uid": "0b7c6a52-1111-2222-3333-444455556666"},
}
KEY = ("ml", "fraud-scorer")


def test_the_name_is_fixed_by_the_pass_so_a_repost_is_recognised_and_names_sort_in_time_order() -> None:
    record = EventRecord("Normal", "StepCompleted", "step 1 (setWeight 50) completed")
    first = pending_event("2026-11-27T10:00:00.123Z", 0, record, "fraud-scorer")
    assert first == pending_event("2026-11-27T10:00:00.123Z", 0, record, "fraud-scorer")
    assert first.name.startswith("fraud-scorer.")
    later = [
        pending_event("2026-11-27T10:00:00.123Z", 1, record, "fraud-scorer"),
        pending_event("2026-11-27T10:00:00.124Z", 0, record, "fraud-scorer"),
        pending_event("2026-11-27T10:00:01.000Z", 0, record, "fraud-scorer"),
        pending_event("2026-11-27T11:00:00.000Z", 0, record, "fraud-scorer"),
    ]
    names = [first.name] + [event.name for event in later]
    # The API server lists Events by name: that is the order they happened in.
    assert sorted(names) == names and len(set(names)) == len(names)
    # client-go's convention: `<object>.<hex nanoseconds>`
    assert int(first.name.split(".", 1)[1], 16) == 1795773600123 * 1_000_000


def test_pending_keeps_undelivered_events_in_order_and_bounds_the_list() -> None:
    ledger = EventLedger()
    records = [EventRecord("Normal", f"Reason{n}", f"message {n}") for n in range(PENDING_KEPT + 5)]
    events = [pending_event(f"2026-11-27T10:00:{n:02d}.000Z", 0, r, "r") for n, r in enumerate(records)]
    pending = ledger.pending(KEY, events[:3], events[3:5])
    assert [e.reason for e in pending] == ["Reason0", "Reason1", "Reason2", "Reason3", "Reason4"]
    bounded = ledger.pending(KEY, events[:10], events[10:])
    assert len(bounded) == PENDING_KEPT and bounded[-1] == events[-1] and bounded[0] == events[5]


def test_an_event_is_a_valid_core_v1_event_about_the_rollout() -> None:
    record = EventRecord("Warning", "AnalysisFailed", "error-rate 0.2 > 0.01" + "x" * 5000)
    event = pending_event("2026-11-27T10:00:00.123Z", 0, record, "fraud-scorer")
    body = event_body(BODY, event)
    kubernetes_validate.validate(body, "1.30.0", strict=True)
    assert body["involvedObject"] == {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelRollout",
        "name": "fraud-scorer",
        "namespace": "ml",
        "uid": BODY["metadata"]["uid"],
    }
    assert body["type"] == "Warning" and body["reason"] == "AnalysisFailed"
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-11-27T10:00:00Z"
    assert len(body["message"]) <= 1000


def test_an_analysis_tally_counts_errors_and_failures_apart_from_passes() -> None:
    """'error-rate 1/8 ok' while Prometheus was down read as seven failures; they were Errors."""
    from modelrollout.api.models import AnalysisStatus, MetricResult
    from modelrollout.engine.common import tally

    analysis = AnalysisStatus(
        kind="step",
        started_at="2026-12-02T00:00:00Z",
        metrics=[
            MetricResult(name="error-rate", count=8, successful=1, error=7),
            MetricResult(name="latency", count=4, successful=1, failed=1, inconclusive=2),
            MetricResult(name="drift", count=3, successful=3),
        ],
    )
    expected = (
        "error-rate 1 ok, 7 could not be measured (Error) of 8; latency 1 ok, 1 failed, 2 inconclusive of 4; "
        "drift 3/3 ok"
    )
    assert tally(analysis) == expected
