"""Observe an evaluation Job (a job metric's measurement): still running, a number, or an error.

The engine asks for the Job (`EnsureEvaluationJob`) and for its deletion once measured; this reads
how it went. The real Job controller marks the Job `Complete` or `Failed` (its deadline,
activeDeadlineSeconds, included) from its pods; the number is the terminated container's message.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from modelrollout.analysis.evaluate import Observation
from modelrollout.engine.common import parse_time
from modelrollout.engine.types import EvaluationJob
from modelrollout.kube.api import JOBS, PODS, ApiError, KubeApi
from modelrollout.metrics.base import QueryStatus
from modelrollout.metrics.job import termination_value

#: After the Job's own deadline, how long the Job controller may take to say so before the
#: measurement is an Error all the same (a controller that is down must not hold a gate for ever).
DEADLINE_GRACE_SECONDS = 60.0


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


async def observe_evaluation(api: KubeApi, namespace: str, job: EvaluationJob, now: datetime) -> Observation:
    try:
        found = await api.get(JOBS, namespace, job.name)
    except ApiError as error:
        return Observation(value=None, error=f"reading evaluation Job {job.name}: {error.status} {error.reason}")
    if found is None:
        return Observation(value=None, pending=True)  # not made yet: the engine asks for it
    failed = _condition(found, "Failed")
    if failed is not None:
        reason = failed.get("reason") or "Failed"
        detail = " (timeoutSeconds)" if reason == "DeadlineExceeded" else ""
        return Observation(value=None, error=f"evaluation Job {job.name} failed: {reason}{detail}")
    if _condition(found, "Complete") is None:
        created = (found.get("metadata") or {}).get("creationTimestamp")
        limit = timedelta(seconds=job.timeout_seconds + DEADLINE_GRACE_SECONDS)
        if created and now - parse_time(created) > limit:
            return Observation(
                value=None, error=f"evaluation Job {job.name} did not finish within {job.timeout_seconds}s"
            )
        return Observation(value=None, pending=True)
    try:
        pods = await api.list(PODS, namespace, label_selector=f"batch.kubernetes.io/job-name={job.name}")
    except ApiError as error:
        return Observation(value=None, error=f"reading the pods of Job {job.name}: {error.status} {error.reason}")
    message = _termination_message(pods)
    outcome = termination_value(message, job.name)
    if outcome.status == QueryStatus.ERROR:
        return Observation(value=None, error=outcome.message)
    return Observation(value=outcome.value, values={"value": outcome.value}, note=outcome.message)


def _termination_message(pods: list[dict[str, Any]]) -> str | None:
    """The message of the first container of the pod that succeeded."""
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") != "Succeeded":
            continue
        for container in status.get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if terminated.get("exitCode") == 0:
                return str(terminated.get("message") or "")
    return None
