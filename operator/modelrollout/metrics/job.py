"""What an evaluation Job reports: the number in its pod's termination message.

The Job's first container writes it to /dev/termination-log (`terminationMessagePath`) before it
exits: JSON `{"value": 0.93}` or a bare number. The message's text is never repeated in a
measurement's message (a Job may print anything there); what is wrong with it is.
"""

from __future__ import annotations

import json

from modelrollout.metrics.base import QueryOutcome
from modelrollout.metrics.web import number_of


def termination_value(message: str | None, job: str) -> QueryOutcome:
    """The measurement a termination message gives; no message or no number is an Error."""
    what = f"evaluation Job {job}"
    text = (message or "").strip()
    if not text:
        return QueryOutcome.error(
            f'{what} wrote no termination message: write {{"value": N}} or N to /dev/termination-log'
        )
    try:
        document = json.loads(text)
    except ValueError:
        return QueryOutcome.error(f'{what}: the termination message is not JSON {{"value": N}} nor a number')
    if isinstance(document, dict):
        if "value" not in document:
            return QueryOutcome.error(f'{what}: the termination message has no "value"')
        document = document["value"]
    return number_of(document, f"{what}: the reported value")
