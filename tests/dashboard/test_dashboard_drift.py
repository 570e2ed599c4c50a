"""Issue 19, drift per feature: in a real browser, against the sandbox (the real operator, control plane,
Prometheus and model servers, the load generator shifting one input feature), the rollout page shows
each feature of a drift metric worst first, the drifted one leading with its limit, as a bar chart with
the limit line and a table; and after promotion, the monitoring and its drift history.

The drift scenarios are those of tests/e2e/test_model_analysis.py (the breast-cancer model against its
training-time reference, `mean radius` shifted). Every wait is on what the page shows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from modelrollout_devkit.sandbox.supervisor import Sandbox
from tests.dashboard.conftest import Dashboard
from tests.dashboard.test_dashboard_browser import screenshot, wait_until
from tests.e2e.test_model_analysis import (
    ERROR_RATE,
    LATENCY,
    SHIFT,
    SHIFTED_FEATURE,
    STABLE,
    input_drift_vs_training,
    rollout_spec,
    scenario,
)

pytestmark = pytest.mark.timeout(300)

METRIC = "input-drift-vs-training"
LIMIT = 0.2  # the maxPsi input_drift_vs_training gives the template


def feature_rows(driver: WebDriver, analysis: str) -> list[dict[str, str]]:
    """The rows of a drift metric's feature table as the page shows them, in the page's order."""
    script = """
        const card = document.querySelector(
            `#features [data-drift-metric="${arguments[0]}"][data-analysis="${arguments[1]}"]`);
        if (!card || card.closest("[hidden]")) return [];
        return [...card.querySelectorAll("tr[data-feature]")].map((row) => ({
            feature: row.dataset.feature, drifted: row.dataset.drifted, rank: row.dataset.rank,
            value: row.querySelector("td.value").textContent, limit: row.querySelector("td.limit").textContent,
            verdict: row.querySelector("td.drifted").textContent,
        }));
    """
    return list(driver.execute_script(script, METRIC, analysis) or [])


def bar_chart(driver: WebDriver, analysis: str) -> dict[str, Any] | None:
    """What Chart.js drew for the metric's features: the bars' labels and values, and the limit line's value."""
    script = """
        const canvas = document.querySelector(
            `canvas[data-features="${arguments[0]}"][data-analysis="${arguments[1]}"]`);
        const chart = canvas && Chart.getChart(canvas);
        if (!chart) return null;
        return {labels: chart.data.labels, values: chart.data.datasets[0].data,
                limit: chart.options.plugins.limitLine.value, horizontal: chart.options.indexAxis === "y"};
    """
    return driver.execute_script(script, METRIC, analysis)  # type: ignore[no-any-return]


def texts_of(driver: WebDriver, selector: str) -> list[str]:
    """The text of every element the selector finds, read in one go (the page redraws between two reads)."""
    script = "return [...document.querySelectorAll(arguments[0])].map((node) => node.innerText);"
    return list(driver.execute_script(script, selector) or [])


def text_of(driver: WebDriver, selector: str) -> str | None:
    found = texts_of(driver, selector)
    return found[0] if found else None


def check_drifted_first(driver: WebDriver, analysis: str) -> list[dict[str, str]]:
    def drawn(d: WebDriver) -> tuple[list[dict[str, str]], dict[str, Any]] | None:
        # The table and the chart are drawn from the same status: read them together, until they agree.
        rows, chart = feature_rows(d, analysis), bar_chart(d, analysis)
        if not rows or rows[0]["drifted"] != "true" or chart is None:
            return None
        return (rows, chart) if chart["labels"] == [row["feature"] for row in rows] else None

    rows, chart = wait_until(driver, f"the {analysis} drift metric's features, {SHIFTED_FEATURE!r} drifted", drawn)
    first, *rest = rows
    assert first["feature"] == SHIFTED_FEATURE and first["rank"] == "1", rows
    assert first["limit"] == f"> {LIMIT:g}" and float(first["value"]) > LIMIT, first
    assert first["verdict"] == "drifted", first
    # The other features of the model are judged too and follow, the drifted ones (if any) first.
    drifted = [row["drifted"] for row in rows]
    assert len(rest) >= 5 and drifted == sorted(drifted, reverse=True), rows
    assert chart["horizontal"] and chart["limit"] == LIMIT, chart
    assert chart["values"][0] > LIMIT and chart["values"][0] == max(chart["values"]), chart
    return rows


def test_a_candidate_rolled_back_for_drift_shows_the_drifted_feature_first_with_its_limit(
    sandbox: Sandbox, browser: WebDriver, dashboards: Callable[..., Dashboard]
) -> None:
    dashboard = dashboards("--read-only")
    metrics = [input_drift_vs_training(min_count=150), ERROR_RATE, LATENCY]
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "60s"}}]
    with scenario(sandbox, "dash-drift") as made:
        made.create_edges_configmap()
        made.deploy_stable(rollout_spec(STABLE, metrics, steps))
        made.start_load()
        made.deliver(rollout_spec("2.0.0", metrics, steps))
        made.start_load(shift=SHIFT)  # the candidate sees only the moved population
        status = made.cluster.wait_for_phase(made.name, "RolledBack", timeout=90)
        kept = next(m for m in status["backgroundAnalysis"]["metrics"] if m["name"] == METRIC)["drift"]
        assert kept["features"][0]["name"] == SHIFTED_FEATURE and kept["compared"] == 30, kept
        assert len(kept["features"]) == 10, kept  # drift.topFeatures' default

        browser.get(f"{dashboard.url}rollouts/{made.namespace}/{made.name}")
        rows = check_drifted_first(browser, "background")
        assert len(rows) == 10, rows
        note = wait_until(
            browser, "the features' counts", lambda d: text_of(d, f'#features [data-drift-metric="{METRIC}"] .msg')
        )
        assert re.search(r"\b[1-9]\d* of 30 features drifted", note), note
        assert "the 20 least drifted are not kept" in note, note
        assert browser.find_element(By.ID, "monitoring-card").get_attribute("hidden") is not None
        screenshot(browser, "dashboard-drift-per-feature.png")


def test_after_promotion_the_page_shows_the_monitoring_and_its_drift_history(
    sandbox: Sandbox, browser: WebDriver, dashboards: Callable[..., Dashboard]
) -> None:
    dashboard = dashboards("--read-only")
    metric = input_drift_vs_training(min_count=200, background=False)
    spec = rollout_spec(STABLE, [metric], [])
    spec["monitoring"] = {"interval": "2s", "metrics": [METRIC]}
    with scenario(sandbox, "dash-watch") as made:
        made.create_edges_configmap()
        # Watching starts with the first stable version: what it shows after any promotion.
        made.deploy_stable(spec)
        made.start_load(shift=SHIFT)
        made.cluster.wait_for(
            "the Drifted condition", lambda: made.condition("Drifted").get("status") == "True", timeout=90
        )
        browser.get(f"{dashboard.url}rollouts/{made.namespace}/{made.name}")
        episode = wait_until(
            browser, "the drift episode", lambda d: text_of(d, "#monitoring-card:not([hidden]) #drift-episode")
        )
        assert episode.startswith("Drifted since"), episode
        check_drifted_first(browser, "monitoring")

        def history(driver: WebDriver) -> list[str] | None:
            failed = texts_of(driver, f'table.monitoring-history tr[data-metric="{METRIC}"][data-phase="Failed"]')
            return failed if len(failed) >= 2 else None

        failed = wait_until(browser, "two failed monitoring measurements in the history", history)
        assert all(SHIFTED_FEATURE in text for text in failed), failed
        watched = wait_until(
            browser,
            "the monitoring metric",
            lambda d: text_of(d, f'table.monitoring-metrics tr[data-metric="{METRIC}"]'),
        )
        assert "Failed" in watched, watched
        screenshot(browser, "dashboard-monitoring-drift.png")
