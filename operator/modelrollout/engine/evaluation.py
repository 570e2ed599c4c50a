"""Job metrics (offline evaluation): which Job a measurement is, and what the engine asks for it.

A measurement of a job metric is a Job: while it runs, the observation is `pending` and the engine
asks for the Job to exist (`EnsureEvaluationJob`, idempotent by name); once it has finished (or its
deadline passed), the observation carries the number or the error, the measurement is recorded and
the engine asks for the Job to go (`DeleteEvaluationJob`). The name is fixed by the rollout, the
revision, the analysis (its start), the metric and the measurement's index, so a restarted operator
finds the Job it made, and the next measurement is another Job.
"""

from __future__ import annotations

import hashlib
from typing import Any

from modelrollout.api.models import Metric, render_template
from modelrollout.engine.types import EvaluationJob

#: How often a running evaluation Job is looked at: a Job's progress wakes nothing else.
JOB_POLL_SECONDS = 3.0


def evaluation_job_name(rollout: str, revision: str, analysis_started_at: str, metric: str, index: int) -> str:
    digest = hashlib.sha256(f"{revision}/{analysis_started_at}/{metric}/{index}".encode()).hexdigest()[:10]
    # At most 40 + 6 + 10 characters: the Job's pods add a suffix, and `job-name` is a label (63).
    return f"{rollout[:40].rstrip('-.')}-eval-{digest}"


def _rendered(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return render_template(value, values, escape=lambda text: text)
    if isinstance(value, list):
        return [_rendered(item, values) for item in value]
    if isinstance(value, dict):
        return {key: _rendered(item, values) for key, item in value.items()}
    return value


def evaluation_job(
    rollout: str,
    revision: str,
    analysis_started_at: str,
    metric: Metric,
    index: int,
    values: dict[str, str],
) -> EvaluationJob:
    """The Job of a job metric's `index`-th measurement in the analysis that started then."""
    assert metric.job is not None
    return EvaluationJob(
        name=evaluation_job_name(rollout, revision, analysis_started_at, metric.name, index),
        metric=metric.name,
        spec=_rendered(metric.job.spec, values),
        timeout_seconds=metric.job.timeout_seconds,
    )
