"""Fixtures for the metric-backend tests: one real Prometheus and one exporter for the directory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from modelrollout.metrics import PrometheusBackend


@pytest.fixture
async def backend() -> AsyncIterator[PrometheusBackend]:
    # A short timeout keeps the fault tests fast; what they check does not depend on its length.
    prometheus_backend = PrometheusBackend(timeout=2.0)
    try:
        yield prometheus_backend
    finally:
        await prometheus_backend.aclose()
