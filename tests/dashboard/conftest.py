"""The dashboard in a real browser: Debian's chromium driven by Selenium through the installed
chromedriver (nothing is downloaded), against `modelrollout dashboard` run as a command on the
sandbox of tests/e2e (the real control plane when KUBEBUILDER_ASSETS is set).

Without chromium the tests skip, saying so; with MODELROLLOUT_REQUIRE_BROWSER=1 (CI) they fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import sandbox  # noqa: F401  (the module's sandbox, shared with e2e)

CHROMIUM = Path(os.environ.get("MODELROLLOUT_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("MODELROLLOUT_CHROMEDRIVER", "/usr/bin/chromedriver"))
#: Chromium's own network chatter (updates, sync, Google hosts) hangs it on a closed network.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--window-size=1400,1000",
)
#: Where screenshots go when asked for (hack/dashboard-screenshots sets it to docs/images).
SCREENSHOTS = os.environ.get("MODELROLLOUT_DASHBOARD_SCREENSHOTS")
STARTUP_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        message = (
            f"no browser for the dashboard tests: {', '.join(missing)} missing "
            "(apt-get install chromium chromium-driver)"
        )
        if os.environ.get("MODELROLLOUT_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Dashboard:
    url: str
    process: subprocess.Popen[str]
    output: list[str]


def start_dashboard(kubeconfig: Path, *extra: str) -> Dashboard:
    """`modelrollout dashboard` as a person runs it, on a free loopback port; waits for its address line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "modelrollout.cli", "dashboard", "--kubeconfig", str(kubeconfig), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    output: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = re.search(r"at (http://\S+/)", line)
            if match and not url:
                url.append(match.group(1))
                found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(STARTUP_TIMEOUT_S):
        process.kill()
        raise AssertionError(f"the dashboard printed no address in {STARTUP_TIMEOUT_S:g}s: {''.join(output)}")
    return Dashboard(url[0], process, output)


def stop_dashboard(dashboard: Dashboard) -> None:
    dashboard.process.terminate()
    try:
        dashboard.process.wait(20)
    except subprocess.TimeoutExpired:
        dashboard.process.kill()
        dashboard.process.wait(10)


@pytest.fixture(scope="module")
def dashboards(sandbox: object) -> Iterator[Callable[..., Dashboard]]:  # noqa: F811
    """Start dashboards on the sandbox's kubeconfig (or another); all are stopped at the end of the module."""
    started: list[Dashboard] = []

    def start(*extra: str, kubeconfig: Path | None = None) -> Dashboard:
        made = start_dashboard(kubeconfig or sandbox.kubeconfig, *extra)  # type: ignore[attr-defined]
        started.append(made)
        return made

    yield start
    for made in started:
        stop_dashboard(made)
