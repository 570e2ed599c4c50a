"""Ground truth in the sandbox: the model server's feedback endpoint, and the knobs that make accuracy move.

* ``FAULT_CONFUSE=q`` (model server): a less accurate version *with the same output mix*. For a share of
  the inputs, chosen by a hash of the input itself (the same input always gets the same answer), the
  predicted class is swapped: malignant -> benign for a share ``q`` of the inputs predicted malignant, and
  benign -> malignant for the share ``q * m / (1 - m)`` of those predicted benign, with ``m`` the model's
  malignant share on the data set. As many answers move each way, so the class mix (what output drift
  sees) stays as it was while about ``2 q m`` of all answers become wrong: at q = 0.5, m ~ 0.37, accuracy
  falls from ~0.98 to ~0.6.
* the world's concept shift is the load generator's (``--concept drifted``): the true labels it reports
  change for part of the input space (``model_server.training_labels(..., "drifted")``: benign cases with a
  high ``worst texture`` become malignant) while the inputs it sends stay the same.

``POST /feedback`` takes ``{"predictionId": "...", "label": "benign"}`` or ``{"feedback": [...]}``
(optionally ``"delaySeconds"``) and answers how many were joined; nothing of it is logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelrollout_sdk import FeedbackError, FeedbackRecorder, JoinResult

MAX_FEEDBACK_PER_REQUEST = 1000


def input_share(row: npt.NDArray[np.float64]) -> float:
    """A number in [0, 1) fixed by the input: which side of a swap it falls on."""
    digest = hashlib.blake2b(np.round(row, 4).tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class Confuser:
    """Swap predicted classes for a share of the inputs, as many each way (see the module docstring)."""

    positive: str
    negative: str
    to_negative: float  # share of inputs predicted positive whose answer becomes negative
    to_positive: float  # share of inputs predicted negative whose answer becomes positive

    @classmethod
    def of(cls, q: float, positive_share: float, positive: str, negative: str) -> Confuser:
        m = min(max(positive_share, 1e-6), 1 - 1e-6)
        return cls(positive, negative, q, min(1.0, q * m / (1 - m)))

    def answer(self, label: str, row: npt.NDArray[np.float64]) -> str:
        u = input_share(row)
        if label == self.positive and u < self.to_negative:
            return self.negative
        if label == self.negative and u < self.to_positive:
            return self.positive
        return label


def _items(body: object) -> list[Mapping[str, Any]]:
    if isinstance(body, Mapping) and "feedback" in body:
        items = body["feedback"]
        if not isinstance(items, list):
            raise FeedbackError("feedback must be a list of {predictionId, label}")
    else:
        items = [body]
    if len(items) > MAX_FEEDBACK_PER_REQUEST:
        raise FeedbackError(f"at most {MAX_FEEDBACK_PER_REQUEST} feedback items per request")
    for item in items:
        if not isinstance(item, Mapping) or "predictionId" not in item or "label" not in item:
            raise FeedbackError("each feedback item needs predictionId and label")
    return items


def take_feedback(recorder: FeedbackRecorder, body: object) -> dict[str, int]:
    """Report every item of a feedback request; counts by outcome (raises FeedbackError on a bad body)."""
    items = _items(body)
    counts = {result.value: 0 for result in JoinResult}
    for item in items:
        delay = item.get("delaySeconds")
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0):
            raise FeedbackError("delaySeconds must be a number of seconds of at least 0")
        result = recorder.report(item["predictionId"], item["label"], delay_seconds=delay)
        counts[result.value] += 1
    return counts
