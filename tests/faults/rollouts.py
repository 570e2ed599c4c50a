"""Specs and checks the fault tests share: what a user would look at (status, Events, Deployments)."""

from __future__ import annotations

import copy
import itertools
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.operator.test_canary import ERROR_RATIO, rollout_spec, unique
from tests.support.cluster import Cluster
from tests.support.deadline import Deadline
from tests.support.exporter import Exporter
from tests.support.prometheus import PrometheusServer

__all__ = [
    "ERROR_RATIO",
    "blue_green_spec",
    "canary_spec",
    "counts",
    "monotonic",
    "set_error_ratio",
    "unique",
    "wait_until",
]


def canary_spec(name: str, version: str, steps: list[dict[str, Any]], **analysis: Any) -> dict[str, Any]:
    """A replica-ratio canary judged on the error-rate metric (background analysis every second)."""
    spec = rollout_spec(name, version, steps)
    spec["analysis"].update(analysis)
    return spec


def blue_green_spec(name: str, version: str, **blue_green: Any) -> dict[str, Any]:
    spec = rollout_spec(name, version, [])
    spec["strategy"] = {"blueGreen": copy.deepcopy(blue_green)}
    return spec


def set_error_ratio(exporter: Exporter, prometheus: PrometheusServer, name: str, version: str, value: float) -> None:
    """Publish the candidate's error ratio and wait until Prometheus answers it."""
    exporter.set(ERROR_RATIO, value, rollout=name, version=version)
    prometheus.wait_for_value(
        f'{ERROR_RATIO}{{rollout="{name}",version="{version}"}}', lambda seen: seen == value, timeout=30
    )


def counts(cluster: Cluster, name: str) -> Counter[str]:
    return Counter(cluster.event_reasons(name))


def messages(cluster: Cluster, name: str, reason: str) -> list[str]:
    return [event.message or "" for event in cluster.events(name) if event.reason == reason]


def monotonic(sequence: list[int], increasing: bool = True) -> bool:
    pairs = list(itertools.pairwise(sequence))
    return all(b >= a for a, b in pairs) if increasing else all(b <= a for a, b in pairs)


def wait_until(what: str, probe: Callable[[], bool], timeout: float = 60.0, interval: float = 0.02) -> None:
    """Poll fast (a kill point must be caught right when it is reached)."""
    deadline = Deadline(timeout)
    while not deadline.expired():
        if probe():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {deadline.describe()} waiting for {what}")
