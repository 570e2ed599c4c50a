"""`modelrollout demo`: the whole delivery loop, live in the terminal, in a throwaway sandbox.

The story: 1.0.0 is deployed; 2.0.0 (good) is delivered by canary and promoted; 3.0.0 (slower and
erroring) is delivered the same way and rolled back on its own. Real model-server processes, real
traffic through the data plane, a real Prometheus, and a real control plane when its binaries are
there (``--control-plane DIR`` or ``$KUBEBUILDER_ASSETS``; the kubelet is simulated), else the
built-in API emulator stands in for the Kubernetes API. At the
end the demo prints how long it took from the first breaching sample to the rollback decision and
to the last request the bad version served, and exits non-zero if the story did not go as told.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import kubernetes
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from modelrollout import GROUP, PLURAL, VERSION
from modelrollout_devkit.sandbox.control_plane import HOW_TO_GET_BINARIES, ControlPlaneError, find_assets
from modelrollout_devkit.sandbox.supervisor import Sandbox

NAMESPACE = "default"
NAME = "fraud-scorer"
SCRAPE_SECONDS = 1.0
SELECTOR = 'rollout="{{name}}",version="{{candidate}}"'
ERROR_RATE = (
    f'sum(rate(model_requests_total{{{SELECTOR},outcome="error"}}[10s]))'
    f" / sum(rate(model_requests_total{{{SELECTOR}}}[10s]))"
)
P99_LATENCY = f"histogram_quantile(0.99, sum by (le) (rate(model_request_duration_seconds_bucket{{{SELECTOR}}}[10s])))"
THRESHOLDS = {"error-rate": 0.05, "p99-latency": 0.25}
BAD_VERSION_ENV = {"FAULT_LATENCY_MS": "300", "FAULT_ERROR_RATE": "0.3"}
LOAD_RATE = 25.0


def rollout_spec(version: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "replicas": 4,
        "model": {"name": NAME, "version": version},
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "server",
                        "image": "reference-model-server",
                        "env": [{"name": key, "value": value} for key, value in (env or {}).items()],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                    }
                ]
            }
        },
        "strategy": {
            "canary": {
                "steps": [
                    {"setWeight": 25},
                    # Prometheus picks a new pod up within ~5 s; give it samples before judging.
                    {"pause": {"duration": "8s"}},
                    {"analysis": {"metrics": ["error-rate", "p99-latency"], "count": 3, "interval": "1s"}},
                    {"setWeight": 50},
                    {"pause": {"duration": "5s"}},
                ]
            }
        },
        "analysis": {
            "interval": "1s",
            "inconclusiveLimit": 15,
            "metrics": [
                {"name": name, "prometheus": {"query": query}, "threshold": {"max": THRESHOLDS[name]}}
                for name, query in (("error-rate", ERROR_RATE), ("p99-latency", P99_LATENCY))
            ],
        },
    }


@dataclass
class Story:
    """What the audience sees, refreshed from the API and the data plane."""

    chapter: str = "starting the sandbox"
    status: dict[str, Any] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def render(self) -> Group:
        status = self.status
        head = Table.grid(padding=(0, 2))
        head.add_column(style="bold")
        head.add_column()
        head.add_row("Chapter", Text(self.chapter, style="bold magenta"))
        head.add_row("Phase", status.get("phase", "-"))
        head.add_row(
            "Stable / candidate", f"{status.get('stableVersion', '-')} / {status.get('candidateVersion', '-')}"
        )
        weights = status.get("weights") or {}
        head.add_row("Weights", f"stable {weights.get('stable', 100)}%  candidate {weights.get('candidate', 0)}%")
        step = status.get("currentStepIndex")
        head.add_row("Step", "-" if step is None else str(step))
        head.add_row("Message", status.get("message", ""))
        head.add_row("Served", "  ".join(f"{version}: {count}" for version, count in sorted(self.served.items())))
        metrics = Table(title="Measurements (latest)", title_justify="left")
        for column in ("Metric", "Value", "Threshold", "Verdict"):
            metrics.add_column(column)
        for analysis_key in ("backgroundAnalysis", "stepAnalysis"):
            for result in (status.get(analysis_key) or {}).get("metrics", []):
                last = (result.get("measurements") or [{}])[-1]
                value = last.get("value")
                shown = "-" if value is None else f"{value:.3g}"
                verdict = last.get("phase", "-")
                style = {"Successful": "green", "Failed": "red", "Inconclusive": "yellow"}.get(verdict, "")
                metrics.add_row(
                    f"{result['name']} ({'background' if analysis_key == 'backgroundAnalysis' else 'step'})",
                    shown,
                    f"<= {THRESHOLDS.get(result['name'], '-')}",
                    Text(verdict, style=style),
                )
        events = Table(title="Events", title_justify="left", show_header=False)
        events.add_column()
        for line in self.events[-8:]:
            events.add_row(line)
        elapsed = time.monotonic() - self.started
        return Group(Panel(head, title=f"modelrollout demo  {elapsed:5.1f}s"), metrics, events)


class Demo:
    def __init__(self, sandbox: Sandbox, console: Console):
        self.sandbox = sandbox
        self.console = console
        self.story = Story()
        client = kubernetes.config.new_client_from_config(config_file=str(sandbox.kubeconfig))  # type: ignore[no-untyped-call]
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.load: subprocess.Popen[bytes] | None = None
        self.live: Live | None = None

    # --- talking to the cluster -------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        rollout = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)
        assert isinstance(rollout, dict)
        return dict(rollout.get("status") or {})

    def refresh(self) -> None:
        self.story.status = self.status()
        listed = self.core.list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={NAME}")
        ordered = sorted(listed.items, key=lambda event: event.metadata.creation_timestamp or 0)
        self.story.events = [f"{event.type:7} {event.reason}: {event.message}" for event in ordered]
        stats = self.sandbox.stats()["by_version"]
        prefix = f"{NAMESPACE}/{NAME}/"
        self.story.served = {
            key[len(prefix) :]: entry["count"] for key, entry in stats.items() if key.startswith(prefix)
        }
        if self.live is not None:
            self.live.update(self.story.render())

    def wait(self, what: str, done: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.refresh()
            if done(self.story.status):
                return self.story.status
            time.sleep(0.25)
        raise DemoFailed(f"{what} did not happen within {timeout:.0f}s; status: {self.story.status.get('message')}")

    def apply(self, version: str, env: dict[str, str] | None = None) -> None:
        spec = rollout_spec(version, env)
        try:
            self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, NAME)
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ModelRollout",
                "metadata": {"name": NAME},
                "spec": spec,
            }
            self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
            return
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, NAME, {"spec": {"model": spec["model"], "template": spec["template"]}}
        )

    def start_load(self) -> None:
        # Its own process (its own GIL), so that traffic keeps its rate whatever the demo draws.
        url = self.sandbox.service_url(NAMESPACE, NAME)
        command = [
            sys.executable,
            "-m",
            "modelrollout_devkit.sandbox.loadgen",
            "--url",
            url,
            "--rate",
            str(LOAD_RATE),
            "--duration",
            "900",
            "--seed",
            "7",
        ]
        log = (self.sandbox.dir / "logs" / "loadgen.log").open("ab")
        self.load = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def stop_load(self) -> None:
        if self.load is not None:
            self.load.terminate()
            self.load.wait(timeout=10)

    # --- the story ------------------------------------------------------------------------------------

    def run(self) -> dict[str, float | None]:
        with Live(self.story.render(), console=self.console, refresh_per_second=4, transient=False) as live:
            self.live = live
            self.story.chapter = "1. deploying 1.0.0 as the first stable version"
            self.apply("1.0.0")
            self.wait("1.0.0 becoming stable", lambda s: s.get("phase") == "Succeeded", 90)
            self.start_load()
            self.story.chapter = "2. delivering 2.0.0 (a good model) by canary"
            self.apply("2.0.0")
            self.wait("the 2.0.0 canary to start", lambda s: s.get("candidateVersion") == "2.0.0", 30)
            final = self.wait("2.0.0's promotion", lambda s: s.get("phase") in ("Succeeded", "RolledBack"), 150)
            if final.get("phase") != "Succeeded" or final.get("stableVersion") != "2.0.0":
                raise DemoFailed(f"2.0.0 should have been promoted, but: {final.get('message')}")
            self.story.chapter = "3. delivering 3.0.0 (slower, erroring) by canary"
            self.apply("3.0.0", BAD_VERSION_ENV)
            self.wait("the 3.0.0 canary to start", lambda s: s.get("candidateVersion") == "3.0.0", 30)
            final = self.wait("3.0.0's fate", lambda s: s.get("phase") in ("Succeeded", "RolledBack"), 150)
            if final.get("phase") != "RolledBack" or final.get("stableVersion") != "2.0.0":
                raise DemoFailed(f"3.0.0 should have been rolled back, but: {final.get('message')}")
            time.sleep(3)  # let the data plane's counters show that 3.0.0 gets nothing more
            self.refresh()
            self.story.chapter = "done: 2.0.0 serves, 3.0.0 was rolled back on its own"
            self.refresh()
        return self.timings(final)

    def timings(self, final: dict[str, Any]) -> dict[str, float | None]:
        decided = _decision_time(final)
        breach = self.first_breach("3.0.0", since=decided - 120 if decided else time.time() - 300)
        entry = self.sandbox.stats()["by_version"].get(f"{NAMESPACE}/{NAME}/3.0.0") or {}
        last_served = float(entry.get("last_at") or 0) or None
        return {
            "breach_to_decision_s": None if breach is None or decided is None else decided - breach,
            "breach_to_zero_traffic_s": None if breach is None or last_served is None else last_served - breach,
        }

    def first_breach(self, version: str, since: float) -> float | None:
        """When the first scraped sample crossed a threshold: a range query at 100 ms steps."""
        first: float | None = None
        for name, query in (("error-rate", ERROR_RATE), ("p99-latency", P99_LATENCY)):
            promql = query.replace("{{name}}", NAME).replace("{{candidate}}", version)
            params = {"query": promql, "start": f"{since:.3f}", "end": f"{time.time():.3f}", "step": "0.1"}
            url = f"{self.sandbox.prometheus_url}/api/v1/query_range?" + urllib.parse.urlencode(params)
            with urllib.request.urlopen(url, timeout=10) as answer:
                result = json.load(answer)["data"]["result"]
            for series in result:
                for at, value in series["values"]:
                    if value not in ("NaN", "+Inf") and float(value) > THRESHOLDS[name]:
                        first = float(at) if first is None else min(first, float(at))
                        break
        return first


class DemoFailed(Exception):
    pass


def _decision_time(status: dict[str, Any]) -> float | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Degraded" and condition.get("status") == "True":
            return datetime.fromisoformat(condition["lastTransitionTime"].replace("Z", "+00:00")).timestamp()
    return None


def timing_lines(timings: dict[str, float | None]) -> list[str]:
    """How fast the bad version was caught, as the demo prints it."""
    lines: list[str] = []
    to_decision, to_zero = timings["breach_to_decision_s"], timings["breach_to_zero_traffic_s"]
    if to_decision is not None:
        lines.append(f"first breaching sample -> rollback decision:         {to_decision:5.2f}s")
    if to_zero is not None and to_zero >= 0:
        lines.append(f"first breaching sample -> last request 3.0.0 served: {to_zero:5.2f}s")
    elif to_zero is not None:
        # The candidate gets a quarter of 25 requests a second: the moments between the breaching
        # sample and the rollback's traffic switch can hold none of them.
        lines.append(f"last request 3.0.0 served: {-to_zero:.2f}s before the first breaching sample (none after)")
    return lines


def run_demo(args: argparse.Namespace) -> int:
    console = Console()
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="modelrollout-demo-"))
    try:
        assets = find_assets(args.control_plane)
    except ControlPlaneError as error:
        console.print(f"[bold red]The sandbox failed:[/bold red] {error}")
        return 2
    if assets is None:
        console.print(
            f"no control-plane binaries found: using the built-in API emulator; for a real one, {HOW_TO_GET_BINARIES}"
        )
        api = "emulated API"
    else:
        api = f"real control plane from {assets}"
    console.print(f"[bold]modelrollout demo[/bold]: starting a sandbox in {directory} ({api}, real Prometheus)")
    try:
        with Sandbox(
            directory,
            dataplane_port=0,
            prometheus_port=0,
            api_port=0,
            scrape_interval=SCRAPE_SECONDS,
            control_plane=assets,
            emulator=assets is None,
        ) as box:
            console.print(
                "Watch it in a browser while the story runs: in another terminal, "
                f"[bold]modelrollout dashboard --kubeconfig {box.kubeconfig}[/bold], then open http://127.0.0.1:8765/"
            )
            demo = Demo(box, console)
            try:
                timings = demo.run()
            finally:
                demo.stop_load()
    except DemoFailed as failure:
        console.print(f"[bold red]The demo did not go as expected:[/bold red] {failure}")
        console.print(f"Logs: {directory / 'logs'} (kept; remove {directory} when done)")
        return 1
    except Exception as error:  # the sandbox could not start: say why, in one line
        console.print(f"[bold red]The sandbox failed:[/bold red] {error}")
        console.print(f"Logs: {directory / 'logs'} (kept; remove {directory} when done)")
        return 2
    console.print(
        "[bold green]The story ran as told.[/bold green] 2.0.0 was promoted; 3.0.0 was rolled back on its own."
    )
    for line in timing_lines(timings):
        console.print(f"  {line}")
    console.print(f"  (scrape interval {SCRAPE_SECONDS:g}s, analysis interval 1s)")
    if not args.dir:
        # A run that went as told leaves nothing behind; --dir keeps the files, and a failed run keeps
        # them too, for its logs.
        shutil.rmtree(directory, ignore_errors=True)
    return 0


def add_demo_command(commands: Any) -> None:
    demo = commands.add_parser("demo", help="watch a canary promoted and a bad model rolled back, in a local sandbox")
    demo.add_argument(
        "--dir",
        default=None,
        help="keep the sandbox's files (logs, kubeconfig) here (default: a temporary folder, removed after a "
        "run that went as told)",
    )
    demo.add_argument(
        "--control-plane",
        default=None,
        metavar="DIR",
        help="run on a real control plane from the binaries in DIR (default: $KUBEBUILDER_ASSETS; none: the emulator)",
    )
    demo.set_defaults(demo_handler=run_demo)
