"""Issue 19: the dashboard, in a real browser, against the sandbox (the real operator, control plane,
Prometheus and model servers): the list follows a live canary, a rollout page charts its metric with
the threshold and says why it was rolled back, Promote from the page moves the rollout, and
`--read-only` shows no buttons.

Every wait is on what the page shows (Selenium's WebDriverWait), with generous deadlines.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from modelrollout_devkit.sandbox.supervisor import Sandbox
from tests.dashboard.conftest import SCREENSHOTS, Dashboard
from tests.e2e.conftest import close_namespace, open_namespace
from tests.e2e.test_sandbox_canary import ERROR_RATE_MAX, P99_LATENCY, rollout_spec, scenario, start_load
from tests.support.control_plane import RealControlPlane

pytestmark = pytest.mark.timeout(300)

PAGE_TIMEOUT_S = 90.0


def wait_until(driver: WebDriver, what: str, probe: Callable[[WebDriver], Any], timeout: float = PAGE_TIMEOUT_S) -> Any:
    # The page redraws parts of itself as the rollout changes: an element found a moment ago may be gone.
    wait = WebDriverWait(driver, timeout, poll_frequency=0.25, ignored_exceptions=[StaleElementReferenceException])
    return wait.until(probe, message=f"the page never showed {what}")


def row_text(driver: WebDriver, key: str, cell: str) -> str | None:
    found = driver.find_elements(By.CSS_SELECTOR, f'tr[data-key="{key}"] td.{cell}')
    return found[0].text if found else None


def screenshot(driver: WebDriver, name: str) -> None:
    """The whole page (the window made as tall as the page), when screenshots are asked for."""
    if not SCREENSHOTS:
        return
    Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    tall = int(driver.execute_script("return document.querySelector('main').getBoundingClientRect().bottom"))
    driver.set_window_size(width, max(400, tall + 160))  # the window's height includes its own frame
    try:
        driver.save_screenshot(str(Path(SCREENSHOTS) / name))
    finally:
        driver.set_window_size(width, height)


def chart_datasets(driver: WebDriver, metric: str) -> list[dict[str, Any]]:
    """The datasets the page drew for a metric, read from the Chart.js instance on its canvas."""
    script = """
        const canvas = document.querySelector(`canvas[data-metric="${arguments[0]}"]`);
        const chart = canvas && Chart.getChart(canvas);
        return chart ? chart.data.datasets.map(d => ({label: d.label, data: d.data})) : null;
    """
    return driver.execute_script(script, metric) or []


def test_the_list_shows_a_running_canary_and_follows_its_steps(
    sandbox: Sandbox, browser: WebDriver, dashboards: Callable[..., Dashboard]
) -> None:
    dashboard = dashboards()
    with scenario(sandbox, "dash-list") as made:
        made.deploy_stable()
        start_load(made)
        browser.get(dashboard.url)
        key = f"{made.namespace}/{made.name}"
        wait_until(browser, "the stable rollout", lambda d: row_text(d, key, "stable") == "1.0.0")
        browser.execute_script("window.notReloaded = true")
        made.deliver("2.0.0")
        wait_until(browser, "the candidate", lambda d: row_text(d, key, "candidate") == "2.0.0")
        first = wait_until(
            browser,
            "a step n/5",
            lambda d: (row_text(d, key, "step") or "").endswith("/5") and row_text(d, key, "step"),
        )
        assert "Progressing" in (row_text(browser, key, "phase") or "") or "Paused" in (
            row_text(browser, key, "phase") or ""
        )
        later = wait_until(
            browser,
            f"the step move on from {first}",
            lambda d: (step := row_text(d, key, "step")) not in (None, first) and step.endswith("/5") and step,
        )
        assert int(later.split("/")[0]) > int(first.split("/")[0])
        assert browser.execute_script("return window.notReloaded === true"), "the page was reloaded"
        # The filters: another phase hides the row, its own shows it.
        browser.find_element(By.ID, "filter-phase").send_keys("Succeeded")
        wait_until(
            browser,
            "the filter hide the canary",
            lambda d: row_text(d, key, "step") is None or "Succeeded" in (row_text(d, key, "phase") or ""),
        )


def test_a_rollback_shows_its_reason_and_the_metric_chart_its_points_and_threshold(
    sandbox: Sandbox, browser: WebDriver, dashboards: Callable[..., Dashboard]
) -> None:
    dashboard = dashboards()
    with scenario(sandbox, "dash-bad") as made:
        made.deploy_stable()
        start_load(made)
        if SCREENSHOTS:  # a second rollout, waiting at a gate, so that the list shows more than one
            made.cluster.create_rollout("recommender", pausing_spec("4.1.0"))
        made.deliver("2.0.0-err", {"FAULT_ERROR_RATE": "0.3", "FAULT_SEED": "5"}, analysis=analysis_with_compare())
        status = made.cluster.wait_for_phase(made.name, "RolledBack", timeout=120)
        browser.get(f"{dashboard.url}rollouts/{made.namespace}/{made.name}")
        reason = wait_until(
            browser, "the rollback's reason", lambda d: (r := d.find_element(By.ID, "reason")).is_displayed() and r.text
        )
        assert reason.startswith("Rolled back") and "error-rate" in reason, reason
        measured = [
            m
            for analysis in (status.get("stepAnalysis"), status.get("backgroundAnalysis"))
            for result in (analysis or {}).get("metrics", [])
            if result["name"] == "error-rate"
            for m in result["measurements"]
            if m.get("value") is not None
        ]
        assert measured, status

        def drawn(driver: WebDriver) -> list[dict[str, Any]] | None:
            sets = chart_datasets(driver, "error-rate")
            points = [s for s in sets if s["label"] == "measurements"]
            return sets if points and len(points[0]["data"]) >= 1 else None

        datasets = wait_until(browser, "the error-rate chart", drawn)
        points = {round(p["y"], 9) for s in datasets if s["label"] == "measurements" for p in s["data"]}
        assert {round(m["value"], 9) for m in measured} <= points, (measured, datasets)
        limits = [s for s in datasets if s["label"].startswith("max ")]
        assert limits and all(p["y"] == ERROR_RATE_MAX for p in limits[0]["data"]), datasets
        # compare: the candidate's and stable's sides, drawn from each measurement
        sides = {
            s["label"] for s in wait_until(browser, "the compare chart", lambda d: chart_datasets(d, "p99-vs-stable"))
        }
        assert {"candidate", "stable 1.0.0"} <= sides, sides
        failed = browser.find_elements(By.CSS_SELECTOR, '.metric[data-metric="error-rate"] .verdict .badge')
        assert failed and failed[0].text == "Failed"
        assert browser.find_element(By.ID, "phase").text == "Rolled back"
        assert browser.find_elements(By.CSS_SELECTOR, "#events tr[data-reason]")
        screenshot(browser, "dashboard-rollout-rolled-back.png")
        browser.get(dashboard.url)
        if SCREENSHOTS:
            made.cluster.wait_for_phase("recommender", "Succeeded", timeout=90)
            made.cluster.patch_spec("recommender", {"model": pausing_spec("4.2.0")["model"]})
            made.cluster.wait_for_phase("recommender", "Paused", timeout=90)
            paused_key = f"{made.namespace}/recommender"
            wait_until(browser, "the paused row", lambda d: "paused" in (row_text(d, paused_key, "marks") or ""))
        wait_until(
            browser,
            "the rolled-back row",
            lambda d: "rolled back" in (row_text(d, f"{made.namespace}/{made.name}", "marks") or ""),
        )
        screenshot(browser, "dashboard-list.png")


def analysis_with_compare() -> dict[str, Any]:
    """The e2e canary's analysis, and the candidate's p99 latency against stable's (generous: errors, not
    latency, are what this candidate gets wrong)."""
    analysis = rollout_spec("unused")["analysis"]
    compare = {"name": "p99-vs-stable", "prometheus": {"query": P99_LATENCY}, "compare": {"maxRatio": 20}}
    return {**analysis, "metrics": [*analysis["metrics"], compare]}


def pausing_spec(version: str) -> dict[str, Any]:
    return {
        "replicas": 2,
        "model": {"name": "breast-cancer", "version": version},
        "template": {"spec": {"containers": [{"name": "server", "image": "reference-model-server"}]}},
        "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]}},
    }


def test_promote_from_the_page_moves_the_rollout_and_read_only_has_no_buttons(
    sandbox: Sandbox, browser: WebDriver, dashboards: Callable[..., Dashboard]
) -> None:
    dashboard = dashboards()
    read_only = dashboards("--read-only")
    cluster = open_namespace(sandbox, "dash-promote")
    name = f"gate-{uuid.uuid4().hex[:4]}"
    try:
        cluster.create_rollout(name, pausing_spec("1.0.0"))
        cluster.wait_for_phase(name, "Succeeded", timeout=90)
        cluster.patch_spec(name, {"model": pausing_spec("2.0.0")["model"]})
        paused = cluster.wait_for_phase(name, "Paused", timeout=90)
        assert paused["pauseReason"] == "PauseStep" and paused["currentStepIndex"] == 1, paused

        page = f"rollouts/{cluster.namespace}/{name}"
        browser.get(read_only.url + page)
        wait_until(browser, "the paused rollout", lambda d: "Paused" in d.find_element(By.ID, "phase").text)
        assert not browser.find_elements(By.CSS_SELECTOR, "button[data-action]")
        assert "read-only" in browser.find_element(By.ID, "actions").text
        refused = _post(read_only.url + f"api/{page}/commands", {"action": "promote"})
        assert refused[0] == 403 and "read-only" in refused[1]["error"]

        browser.get(dashboard.url + page)
        promote_from_the_page(browser)
        # The operator may answer before the page is next looked at, so "sent (command ...)" can be
        # replaced by "operator: Applied promote" between two polls: both say the command went.
        sent = wait_until(browser, "the command sent", lambda d: _ack_naming(d, "promote"))
        assert "not sent" not in sent, sent
        moved = cluster.wait_for(
            "the operator to go past the pause",
            lambda: (s := cluster.status(name)).get("currentStepIndex", 0) >= 2 or s.get("phase") == "Succeeded",
            timeout=90,
        )
        assert moved
        wait_until(
            browser,
            "the rollout moved on",
            lambda d: d.find_element(By.CSS_SELECTOR, '.step[data-index="1"]').get_attribute("data-state") == "done",
        )
        wait_until(browser, "the operator's acknowledgement", lambda d: _first(d, "#ack [data-outcome]"))
    finally:
        close_namespace(sandbox, cluster)


def _ack_naming(driver: WebDriver, action: str) -> str | None:
    text: str = driver.find_element(By.ID, "ack").text
    return text if action in text else None


def _first(driver: WebDriver, selector: str) -> Any:
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0] if found else None


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Modelrollout-Dashboard": "1"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


DOCS = Path(__file__).resolve().parents[2] / "docs" / "dashboard.md"


def documented_rbac() -> tuple[dict[str, Any], dict[str, Any]]:
    """The ClusterRole and the namespaced RoleBinding docs/dashboard.md gives, as written there."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    documents = [d for block in blocks for d in yaml.safe_load_all(block) if d]
    role = next(d for d in documents if d["kind"] == "ClusterRole")
    binding = next(d for d in documents if d["kind"] == "RoleBinding")
    return role, binding


def test_the_documented_rbac_works_and_a_refusal_is_a_message(
    sandbox: Sandbox,
    browser: WebDriver,
    dashboards: Callable[..., Dashboard],
    real_control_plane: RealControlPlane,
    tmp_path: Path,
) -> None:
    """In one namespace with the docs' ClusterRole and RoleBinding: the page works and Promote is sent;
    with `patch` taken out of the role, Promote is refused by the API server and the page says so;
    and without a cluster-wide list the list page says what to do."""
    cluster = open_namespace(sandbox, "dash-rbac")
    name = f"gate-{uuid.uuid4().hex[:4]}"
    suffix = uuid.uuid4().hex[:6]
    rbac = kubernetes.client.RbacAuthorizationV1Api(cluster.api_client)
    role, binding = documented_rbac()
    roles = {"full": f"{role['metadata']['name']}-{suffix}", "viewer": f"{role['metadata']['name']}-viewer-{suffix}"}
    try:
        cluster.create_rollout(name, pausing_spec("1.0.0"))
        kubeconfigs: dict[str, Path] = {}
        for kind, role_name in roles.items():
            rules = json.loads(json.dumps(role["rules"]))
            if kind == "viewer":
                for rule in rules:
                    rule["verbs"] = [verb for verb in rule["verbs"] if verb != "patch"]
            rbac.create_cluster_role({**role, "metadata": {"name": role_name}, "rules": rules})
            account = f"dashboard-{kind}"
            cluster.core.create_namespaced_service_account(cluster.namespace, {"metadata": {"name": account}})
            subject = {"kind": "ServiceAccount", "name": account, "namespace": cluster.namespace}
            rbac.create_namespaced_role_binding(
                cluster.namespace,
                {
                    **binding,
                    "metadata": {"name": f"{binding['metadata']['name']}-{kind}", "namespace": cluster.namespace},
                    "roleRef": {**binding["roleRef"], "name": role_name},
                    "subjects": [subject],
                },
            )
            kubeconfigs[kind] = real_control_plane.plane.service_account_kubeconfig(
                tmp_path / f"{kind}.kubeconfig", cluster.namespace, account
            )
        cluster.wait_for_phase(name, "Succeeded", timeout=90)
        cluster.patch_spec(name, {"model": pausing_spec("2.0.0")["model"]})
        cluster.wait_for_phase(name, "Paused", timeout=90)
        page = f"rollouts/{cluster.namespace}/{name}"

        full = dashboards("-n", cluster.namespace, kubeconfig=kubeconfigs["full"])
        browser.get(full.url)
        key = f"{cluster.namespace}/{name}"
        wait_until(browser, "the rollout in the list", lambda d: row_text(d, key, "candidate") == "2.0.0")
        browser.get(full.url + page)
        promote_from_the_page(browser)
        # The operator may answer before the page is next looked at, so "sent (command ...)" can be
        # replaced by "operator: Applied promote" between two polls: both say the command went.
        sent = wait_until(browser, "the command sent", lambda d: _ack_naming(d, "promote"))
        assert "not sent" not in sent, sent
        assert browser.find_elements(By.CSS_SELECTOR, "#events tr[data-reason]"), "the role lets it list Events"
        cluster.wait_for("the promotion", lambda: cluster.status(name).get("currentStepIndex", 0) >= 2, timeout=90)

        cluster.patch_spec(name, {"model": pausing_spec("3.0.0")["model"]})
        cluster.wait_for_phase(name, "Paused", timeout=90)
        viewer = dashboards("-n", cluster.namespace, kubeconfig=kubeconfigs["viewer"])
        browser.get(viewer.url + page)
        promote_from_the_page(browser)
        refusal = wait_until(
            browser, "the refusal", lambda d: "not sent" in (t := d.find_element(By.ID, "ack").text) and t
        )
        assert "403 Forbidden" in refusal and "patch" in refusal and "Traceback" not in refusal, refusal
        assert cluster.status(name)["phase"] == "Paused"

        everywhere = dashboards(kubeconfig=kubeconfigs["viewer"])
        browser.get(everywhere.url)
        banner = wait_until(
            browser, "the list's refusal", lambda d: (b := d.find_element(By.ID, "error")).is_displayed() and b.text
        )
        assert "403" in banner and "-n NAMESPACE" in banner, banner
    finally:
        close_namespace(sandbox, cluster)
        for role_name in roles.values():
            with contextlib.suppress(kubernetes.client.ApiException):
                rbac.delete_cluster_role(role_name)


def promote_from_the_page(browser: WebDriver) -> None:
    button = wait_until(browser, "the Promote button", lambda d: _first(d, 'button[data-action="promote"]'))
    button.click()
    wait_until(browser, "the confirmation", lambda d: d.find_element(By.ID, "confirm").is_displayed())
    assert "Promote" in browser.find_element(By.ID, "confirm-title").text
    browser.find_element(By.ID, "confirm-send").click()
