"""Fixtures of the SDK tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelrollout_sdk import ModelMonitor
from tests.sdk.sdk_scrape import Series, scrape_monitor


@pytest.fixture
def scrape() -> Callable[[ModelMonitor], Series]:
    scraper: Callable[[ModelMonitor], Series] = scrape_monitor
    return scraper
