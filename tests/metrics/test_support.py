"""The test support itself: the exporter, file_sd targets and the waiting helpers."""

from __future__ import annotations

import math
import time
import urllib.request
import uuid

import pytest

from tests.support.exporter import Exporter, running_exporter
from tests.support.prometheus import PrometheusError, PrometheusServer


def test_exporter_exposition_and_mixed_label_names() -> None:
    with running_exporter() as exporter:
        exporter.set("g", 1.5, rollout="a")
        exporter.set("g", 2.5, rollout="b", version="2")
        exporter.inc("requests", 3, code="200")
        exporter.inc("requests", code="200")
        exporter.set_histogram("score", {0.5: 1, 1.0: 2})
        exporter.observe("latency_seconds", 0.3, buckets=(0.1, 0.5))
        exporter.set("gone", 1.0)
        exporter.remove("gone")
        text = urllib.request.urlopen(exporter.url, timeout=5).read().decode()

    assert 'g{rollout="a",version=""} 1.5' in text
    assert 'g{rollout="b",version="2"} 2.5' in text
    assert 'requests_total{code="200"} 4.0' in text
    assert 'score_bucket{le="0.5"} 1.0' in text
    assert 'score_bucket{le="+Inf"} 3.0' in text
    assert 'latency_seconds_bucket{le="0.5"} 1.0' in text
    assert "gone{" not in text
    assert not exporter.running


def test_exporter_refuses_a_kind_change() -> None:
    exporter = Exporter()
    exporter.set("x", 1.0)
    with pytest.raises(ValueError, match="x is a gauge, not a counter"):
        exporter.inc("x")


def test_file_sd_target_is_scraped_then_dropped(
    prometheus_session: PrometheusServer, scraped_exporter: Exporter
) -> None:
    marker = uuid.uuid4().hex[:8]
    scraped_exporter.set("support_probe", 7.0, marker=marker)
    assert prometheus_session.wait_for_value(f'support_probe{{marker="{marker}"}}', lambda v: v == 7.0) == 7.0

    scraped_exporter.stop()
    prometheus_session.wait_for_value(f'up{{instance="{scraped_exporter.target}"}}', lambda v: v == 0.0)
    # A failed scrape writes staleness markers: the series is gone at once, not after 5 minutes.
    assert prometheus_session.query(f'support_probe{{marker="{marker}"}}') == []


def test_wait_for_value_fails_with_what_it_saw(prometheus_session: PrometheusServer) -> None:
    started = time.monotonic()
    with pytest.raises(PrometheusError, match=r"'vector\(3\)' never matched; last: values \[3.0\]"):
        prometheus_session.wait_for_value("vector(3)", lambda value: value == 4, timeout=0.3)
    assert time.monotonic() - started < 2


def test_timings_are_recorded(prometheus_session: PrometheusServer) -> None:
    assert 0 < prometheus_session.timings["ready"] < 10
    assert not math.isnan(prometheus_session.values("vector(1)")[0])
