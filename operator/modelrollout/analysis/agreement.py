"""Shadow agreement: how often the candidate's answers agree with stable's on the same requests. Pure.

The comparator (`modelrollout.comparator`) counts compared instances as `agree` / `disagree`; an
`agreement` metric asks Prometheus for both counts over its window and judges the agreement rate by the
Wilson score interval at the metric's confidence (one-sided bounds, z = the normal quantile of it):

    centre = (p + z^2 / 2n) / (1 + z^2 / n),  half = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)

Successful when the lower bound is at least `min` (the candidate agrees at least that often, with that
confidence), Failed when the upper bound is below `min` (it agrees less often, with that confidence),
Inconclusive in between and below `minPairs` pairs: never a pass on too little evidence.
References: E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
JASA 22 (1927) 209-212; L. D. Brown, T. T. Cai, A. DasGupta, "Interval estimation for a binomial
proportion", Statistical Science 16 (2001) 101-133 (why not the normal "Wald" interval: it is too
narrow near 0 and 1, exactly where agreement rates live).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import Agreement, Measurement, Verdict

PAIRS_SERIES = "modelrollout_shadow_pairs_total"


def _selector(outcome: str) -> str:
    return (
        f'{PAIRS_SERIES}{{namespace="{{{{namespace}}}}",rollout="{{{{name}}}}",'
        f'candidate="{{{{candidate}}}}",outcome=~"{outcome}"}}'
    )


def agreement_queries(settings: Agreement) -> dict[str, str]:
    """The PromQL (template variables left in) for the agreeing pairs and all pairs in the window."""
    window = settings.window
    return {
        "agreed": f"sum(increase({_selector('agree')}[{window}]))",
        "pairs": f"sum(increase({_selector('agree|disagree')}[{window}]))",
    }


@dataclass(frozen=True)
class Interval:
    rate: float
    low: float
    high: float


def wilson_interval(agreed: float, pairs: float, confidence: float) -> Interval:
    """The Wilson score interval of agreed/pairs, each bound one-sided at `confidence`."""
    if pairs <= 0:
        raise ValueError("no pairs")
    agreed = min(max(agreed, 0.0), pairs)
    p = agreed / pairs
    z = NormalDist().inv_cdf(confidence)
    z2 = z * z
    denominator = 1 + z2 / pairs
    centre = (p + z2 / (2 * pairs)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / pairs + z2 / (4 * pairs * pairs))
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def judge_agreement(settings: Agreement, observation: Observation, at: str) -> Measurement:
    agreed, pairs = observation.values.get("agreed"), observation.values.get("pairs")
    if pairs is None or math.isnan(pairs) or pairs < settings.min_pairs:
        seen = "no" if pairs is None or math.isnan(pairs) else f"{pairs:g}"
        return Measurement(
            phase=Verdict.INCONCLUSIVE,
            at=at,
            message=f"{seen} compared pairs in the last {settings.window}, fewer than minPairs {settings.min_pairs} "
            "(is the mirror step's comparator getting traffic?)",
        )
    interval = wilson_interval(agreed or 0.0, pairs, settings.confidence)
    level = f"{settings.confidence:.0%}"
    told = (
        f"agreement {interval.rate:.4f} over {pairs:.0f} pairs ({level} Wilson bounds {interval.low:.4f}-"
        f"{interval.high:.4f}), required at least {settings.min:g}"
    )
    if interval.low >= settings.min:
        return Measurement(phase=Verdict.SUCCESSFUL, value=interval.rate, at=at, message=told)
    if interval.high < settings.min:
        return Measurement(phase=Verdict.FAILED, value=interval.rate, at=at, message=told)
    return Measurement(
        phase=Verdict.INCONCLUSIVE, value=interval.rate, at=at, message=f"{told}: not enough pairs to tell yet"
    )
