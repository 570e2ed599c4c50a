"""The agreement kind: the Wilson score interval (checked against scipy) and its three verdicts."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from modelrollout.analysis.agreement import agreement_queries, judge_agreement, wilson_interval
from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import Agreement, Metric, Verdict

AT = "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("agreed", "pairs", "confidence"),
    [(200, 200, 0.95), (140, 200, 0.95), (1, 3, 0.9), (980, 1000, 0.99), (0, 50, 0.95)],
)
def test_the_interval_is_scipys_wilson_interval(agreed: int, pairs: int, confidence: float) -> None:
    ours = wilson_interval(agreed, pairs, confidence)
    # scipy's two-sided interval at 2c - 1 has each bound one-sided at c.
    theirs = binomtest(agreed, pairs).proportion_ci(confidence_level=2 * confidence - 1, method="wilson")
    assert ours.low == pytest.approx(theirs.low, abs=1e-12)
    assert ours.high == pytest.approx(theirs.high, abs=1e-12)


def _judge(agreed: float | None, pairs: float | None, **settings: float) -> tuple[Verdict, str]:
    agreement = Agreement.model_validate({"min": 0.97, "minPairs": 100, **settings})
    measured = judge_agreement(agreement, Observation(value=None, values={"agreed": agreed, "pairs": pairs}), AT)
    return measured.phase, measured.message or ""


def test_too_few_pairs_is_inconclusive_never_a_pass() -> None:
    assert _judge(50, 50) == (
        Verdict.INCONCLUSIVE,
        "50 compared pairs in the last 5m, fewer than minPairs 100 (is the mirror step's comparator getting traffic?)",
    )
    assert _judge(None, None)[0] == Verdict.INCONCLUSIVE


def test_an_agreeing_candidate_passes_a_disagreeing_one_fails_in_between_waits() -> None:
    assert _judge(300, 300)[0] == Verdict.SUCCESSFUL
    verdict, message = _judge(210, 300)
    assert verdict == Verdict.FAILED
    assert "agreement 0.7000 over 300 pairs (95% Wilson bounds" in message and "at least 0.97" in message
    verdict, message = _judge(292, 300)  # 0.973: above 0.97, but not with 95% confidence
    assert verdict == Verdict.INCONCLUSIVE and "not enough pairs to tell yet" in message


def test_the_queries_count_the_comparators_pairs_over_the_window() -> None:
    queries = agreement_queries(Agreement.model_validate({"min": 0.9, "window": "2m"}))
    assert queries["agreed"] == (
        'sum(increase(modelrollout_shadow_pairs_total{namespace="{{namespace}}",rollout="{{name}}",'
        'candidate="{{candidate}}",outcome=~"agree"}[2m]))'
    )
    assert 'outcome=~"agree|disagree"' in queries["pairs"]


def test_an_agreement_metric_is_a_step_metric_unless_told_otherwise() -> None:
    assert Metric.model_validate({"name": "a", "agreement": {"min": 0.9}}).background is False
    assert Metric.model_validate({"name": "a", "agreement": {"min": 0.9}, "background": True}).background is True
    with pytest.raises(ValueError, match="remove threshold, minCount"):
        Metric.model_validate({"name": "a", "agreement": {"min": 0.9}, "threshold": {"max": 1}, "minCount": 5})
