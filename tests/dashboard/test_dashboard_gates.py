"""The rollout page shows a blue-green's webhook gate and its notifications, in a real browser (Debian's
chromium through Selenium), on the real API server with the real operator process (the operator
suite's fixtures: no Prometheus or model servers are needed): the confirm-promotion gate waiting with
its answer, the messages sent by destination name, trigger and outcome, never the destination's URL
or its token; once the gate says yes the switch happens and the page follows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.dashboard.conftest import start_dashboard, stop_dashboard
from tests.dashboard.test_dashboard_browser import wait_until
from tests.operator.conftest import cluster, deployment_controller, operator, operator_with  # noqa: F401
from tests.operator.test_canary import rollout_spec, unique
from tests.operator.test_notifications import wait_promoted
from tests.operator.test_webhook_gates import gate, gate_entry
from tests.support.cluster import Cluster, DeploymentController
from tests.support.operator_process import OperatorProcess
from tests.support.receiver import Receiver

pytestmark = pytest.mark.timeout(300)
TOKEN = "T0000/B0000/s3cr3t-token"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver().start()
    answers: dict[str, int] = {}
    served.status_for = lambda path, body: answers.get(path, 200 if path.startswith("/hook") else 403)
    served.answers = answers  # type: ignore[attr-defined]
    try:
        yield served
    finally:
        served.stop()


def rows(driver: WebDriver, selector: str) -> list[tuple[str | None, str | None, str]]:
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return [
        (
            row.get_attribute("data-gate") or row.get_attribute("data-destination"),
            row.get_attribute("data-state") or row.get_attribute("data-outcome"),
            row.text,
        )
        for row in found
    ]


def test_the_page_shows_a_waiting_confirm_promotion_gate_and_the_notifications_without_urls(
    cluster: Cluster,  # noqa: F811
    deployment_controller: DeploymentController,  # noqa: F811
    operator: OperatorProcess,  # noqa: F811
    receiver: Receiver,
    browser: WebDriver,
) -> None:
    answers: dict[str, int] = receiver.answers  # type: ignore[attr-defined]
    name = unique("bg-page")
    spec = rollout_spec(name, "1.0.0", [], analysis={})
    spec["strategy"] = {"blueGreen": {"scaleDownDelaySeconds": 0}}
    spec["webhooks"] = [gate("change-window", "confirm-promotion", receiver.url + "/promote")]
    spec["notifications"] = {"webhooks": [{"name": "audit", "url": f"{receiver.url}/hook/{TOKEN}"}]}
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    cluster.wait_for(
        "the gate to say not yet",
        lambda: (e := gate_entry(cluster, name, "change-window")) and e["attempts"] >= 1,
        timeout=90,
    )

    dashboard = start_dashboard(cluster.kubeconfig, "-n", cluster.namespace)
    try:
        browser.get(f"{dashboard.url}rollouts/{cluster.namespace}/{name}")
        gates = wait_until(
            browser,
            "the waiting gate",
            lambda d: (found := rows(d, "#gates tr")) and "HTTP 403" in found[0][2] and found,
        )
        assert gates[0][:2] == ("change-window", "waiting")
        assert "confirm-promotion" in gates[0][2] and "promotion" in gates[0][2]
        assert browser.find_element(By.ID, "gates-card").is_displayed()
        started = wait_until(
            browser,
            "the on-rollout-started message",
            lambda d: [r for r in rows(d, "#notifications tr") if "on-rollout-started" in r[2] and r[1] == "Delivered"],
        )
        assert started[0][0] == "audit"
        page = browser.page_source
        assert receiver.url not in page and "s3cr3t" not in page and "/hook/" not in page

        answers["/promote"] = 200
        wait_promoted(cluster, name, "2.0.0", timeout=120)
        wait_until(
            browser,
            "the gates card hidden after the promotion",
            lambda d: not d.find_element(By.ID, "gates-card").is_displayed(),
        )
        wait_until(
            browser,
            "the on-rollout-promoted message",
            lambda d: any("on-rollout-promoted" in r[2] for r in rows(d, "#notifications tr")),
        )
        assert "s3cr3t" not in browser.page_source
    finally:
        stop_dashboard(dashboard)
