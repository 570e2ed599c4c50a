"""Issue 5's end-to-end tests: model-aware analysis in the sandbox, judged on real traffic.

The real operator delivers the reference model server; a real Prometheus scrapes the SDK's metrics
(per-feature input histograms, predicted classes, requests, latency); the load generator runs as its
own process and, when a test asks, shifts an input feature by some training standard deviations. The
gates are the built-in templates with short windows:

* a candidate whose inputs are drifted (but whose errors and latency are fine) is rolled back by the
  input-drift gate, which compares its histograms with the training-time reference;
* a candidate with a different prediction mix (``MODEL_VARIANT=drifted``) is rolled back by the
  output-drift gate (chi-square of the class counts, candidate vs stable over the same window);
* a good candidate passes input drift, output drift, error rate and latency, and is promoted;
* a promoted model whose live inputs drift gets ``Drifted`` and its webhook fires once (and a hook
  that answers 500 is retried until delivered);
* bad input (an unknown template, a histogram that has no buckets in Prometheus) is reported with the
  metric and the field, and the rollout does not move.

Sample sizes: PSI over 10 decile buckets has a sampling-noise floor of about 9/n (vs a fixed reference)
or 9/n_eff (two samples, n_eff = n1*n2/(n1+n2)), so the input-drift gates' minCount keeps that floor
well under maxPsi for all 30 features; the drifted cases are far above it (PSI > 1).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes.client import V1ConfigMap, V1ObjectMeta

from modelrollout_devkit.sandbox.dataplane import count_for
from modelrollout_devkit.sandbox.model_server import REFERENCE_PATH
from modelrollout_devkit.sandbox.supervisor import Sandbox
from tests.e2e.conftest import close_namespace, open_namespace
from tests.support.cluster import Cluster
from tests.support.operator_passes import passes, wait_for_passes

pytestmark = pytest.mark.timeout(150)

STABLE = "1.0.0"
LOAD_RATE = 40.0
SHIFTED_FEATURE = "mean radius"
SHIFT = f"{SHIFTED_FEATURE}=3"
EDGES_CONFIGMAP = "breast-cancer-edges"
EDGES_KEY = "feature-edges.json"

#: Gate settings. Windows are short so that the verdicts come within seconds; minCounts keep PSI's
#: sampling noise (see the module docstring) far below maxPsi.
ERROR_RATE = {"name": "error-rate", "template": {"name": "error-rate", "args": {"window": "20s", "minCount": "50"}}}
LATENCY = {
    "name": "latency-p99",
    "template": {"name": "latency-p99", "args": {"window": "20s", "maxSeconds": "1", "minCount": "50"}},
}
INPUT_DRIFT_VS_STABLE = {
    "name": "input-drift",
    "template": {"name": "input-drift", "args": {"window": "30s", "maxPsi": "0.25", "minCount": "300"}},
}
OUTPUT_DRIFT = {
    "name": "output-drift",
    "template": {"name": "output-drift", "args": {"window": "30s", "minPValue": "0.001", "minCount": "100"}},
}


def input_drift_vs_training(min_count: int, *, restate_reference: bool = True, **extra: Any) -> dict[str, Any]:
    """The built-in input-drift-vs-training template, pointed at the ConfigMap of the shipped edges file.

    `restate_reference` also writes `reference: training`, which the template already says: without it
    the API server's schema default (`reference: stable`) overrides the template's (see
    test_training_reference_of_the_template_is_honoured).
    """
    drift: dict[str, Any] = {"trainingReference": {"configMap": EDGES_CONFIGMAP, "key": EDGES_KEY}}
    if restate_reference:
        drift["reference"] = "training"
    return {
        "name": "input-drift-vs-training",
        "template": {
            "name": "input-drift-vs-training",
            "args": {"window": "20s", "maxPsi": "0.2", "minCount": str(min_count)},
        },
        "drift": drift,
        **extra,
    }


def rollout_spec(
    version: str,
    metrics: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    env: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "replicas": 4,
        "model": {"name": "breast-cancer", "version": version},
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "server",
                        "image": "reference-model-server",
                        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                    }
                ]
            }
        },
        "strategy": {"canary": {"steps": steps}},
        "analysis": {
            "interval": "1s",
            # Until Prometheus has picked the candidate's pods up and minCount is reached, every
            # measurement is Inconclusive: allow for that (a breach still fails at once).
            "inconclusiveLimit": 60,
            "metrics": metrics,
        },
        **extra,
    }


# --- a namespace, a rollout and its traffic ------------------------------------------------------------


@dataclass
class Scenario:
    """One test's namespace and rollout in the shared sandbox."""

    sandbox: Sandbox
    cluster: Cluster
    name: str
    load: subprocess.Popen[bytes] | None = None
    seeds: Iterator[int] = field(default_factory=lambda: iter(range(11, 1000)))

    @property
    def namespace(self) -> str:
        return self.cluster.namespace

    def status(self) -> dict[str, Any]:
        return self.cluster.status(self.name)

    def served(self, version: str) -> int:
        return count_for(self.sandbox.stats(), self.namespace, self.name, version)

    def start_load(self, shift: str | None = None) -> None:
        """The load generator as its own process, through the data plane; `shift` drifts its inputs."""
        self.stop_load()
        command = [
            sys.executable, "-m", "modelrollout_devkit.sandbox.loadgen",
            "--url", self.sandbox.service_url(self.namespace, self.name),
            "--rate", str(LOAD_RATE), "--duration", "300", "--seed", str(next(self.seeds)),
        ]  # fmt: skip
        if shift:
            command += ["--shift", shift]
        self.load = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_load(self) -> None:
        if self.load is None:
            return
        self.load.send_signal(signal.SIGTERM)
        try:
            self.load.wait(10)
        except subprocess.TimeoutExpired:
            self.load.kill()
            self.load.wait(5)
        self.load = None

    def create_edges_configmap(self) -> None:
        """The training-time reference: the model's feature-edges file (edges and training counts)."""
        self.cluster.core.create_namespaced_config_map(
            self.namespace,
            V1ConfigMap(metadata=V1ObjectMeta(name=EDGES_CONFIGMAP), data={EDGES_KEY: REFERENCE_PATH.read_text()}),
        )

    def deploy_stable(self, spec: dict[str, Any]) -> None:
        self.cluster.create_rollout(self.name, spec)
        status = self.cluster.wait_for_phase(self.name, "Succeeded", timeout=60)
        assert status["stableVersion"] == spec["model"]["version"]

    def deliver(self, spec: dict[str, Any], keys: tuple[str, ...] = ("model", "template")) -> None:
        version = spec["model"]["version"]
        self.cluster.patch_spec(self.name, {key: spec[key] for key in keys})
        self.cluster.wait_for(
            f"{version} to become the candidate", lambda: self.status().get("candidateVersion") == version
        )

    def condition(self, kind: str) -> dict[str, Any]:
        found = [c for c in self.status().get("conditions") or [] if c.get("type") == kind]
        return found[0] if found else {}

    def wait_for_another_pass(self) -> None:
        """Until the operator has looked at the rollout again (at the latest its resync), so that a
        check of "nothing more happened" follows a pass that could have done it."""
        url = self.sandbox.operator.metrics_url
        wait_for_passes(url, {self.name: (passes(url) or {}).get(self.name, 0)})

    def events(self, reason: str) -> list[str]:
        return [event.message or "" for event in self.cluster.events(self.name) if event.reason == reason]


@contextmanager
def scenario(sandbox: Sandbox, prefix: str) -> Iterator[Scenario]:
    cluster = open_namespace(sandbox, prefix)
    made = Scenario(sandbox, cluster, f"{prefix}-{uuid.uuid4().hex[:4]}")
    try:
        yield made
    except BaseException:
        operator = sandbox.operator
        if operator is not None:
            print(f"--- operator log ---\n{operator.logs()[-6000:]}")
        print(f"--- status ---\n{json.dumps(made.status(), indent=1)[-6000:]}")
        raise
    finally:
        made.stop_load()
        # The test's model servers go away, so that they do not load the sandbox for the next tests.
        cluster.delete_all_rollouts(wait=10)
        close_namespace(sandbox, cluster)


def background_metric(status: dict[str, Any], name: str) -> dict[str, Any]:
    metrics = (status.get("backgroundAnalysis") or {}).get("metrics") or []
    found = [metric for metric in metrics if metric["name"] == name]
    assert found, f"no background measurement of {name}: {status.get('backgroundAnalysis')}"
    return dict(found[0])


def measured(status: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Every measurement of a metric that status still holds, step and background analyses together."""
    analyses = [status.get("backgroundAnalysis") or {}, status.get("stepAnalysis") or {}]
    return [m for a in analyses for r in a.get("metrics") or [] if r["name"] == name for m in r["measurements"]]


# --- a retraining webhook on loopback --------------------------------------------------------------------


@dataclass
class Delivery:
    path: str
    status: int
    body: dict[str, Any]


class Receiver:
    """A tiny HTTP server that records every POST and answers with scripted statuses per path."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.scripts: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"unparsed": raw.decode(errors="replace")}
                with receiver._lock:
                    script = receiver.scripts.get(self.path) or []
                    answer = script.pop(0) if script else 200
                    receiver.deliveries.append(Delivery(self.path, answer, body))
                payload = b'{"ok": true}' if answer < 300 else b'{"error": "retraining pipeline unavailable"}'
                self.send_response(answer)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="retrain-webhook", daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def to(self, path: str) -> list[Delivery]:
        with self._lock:
            return [delivery for delivery in self.deliveries if delivery.path == path]


@pytest.fixture(scope="module")
def webhook() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


# --- the gates before promotion --------------------------------------------------------------------------

#: The candidate at 50 % of the traffic for long enough that every gate reaches its minCount, then a
#: step analysis that must see every gate pass.
GATED_STEPS: list[dict[str, Any]] = [
    {"setWeight": 50},
    {"pause": {"duration": "16s"}},
    {
        "analysis": {
            "metrics": ["input-drift", "output-drift", "error-rate", "latency-p99"],
            "count": 4,
            "interval": "1s",
        }
    },
]
MODEL_GATES = [INPUT_DRIFT_VS_STABLE, OUTPUT_DRIFT, ERROR_RATE, LATENCY]


def test_candidate_with_drifted_inputs_is_rolled_back_by_the_input_drift_gate(sandbox: Sandbox) -> None:
    """Its errors and latency are fine; its inputs are not what the model was trained on."""
    metrics = [input_drift_vs_training(min_count=150), ERROR_RATE, LATENCY]
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "60s"}}]
    with scenario(sandbox, "indrift") as made:
        made.create_edges_configmap()
        made.deploy_stable(rollout_spec(STABLE, metrics, steps))
        made.start_load()  # the stable version serves inputs like the training data
        made.deliver(rollout_spec("2.0.0", metrics, steps))
        made.start_load(shift=SHIFT)  # from now on the population has moved: the candidate sees only that
        status = made.cluster.wait_for_phase(made.name, "RolledBack", timeout=60)

        message = status["message"]
        assert "input-drift-vs-training" in message, message
        assert f"worst feature '{SHIFTED_FEATURE}'" in message, message
        psi = re.search(r"PSI ([0-9.e+-]+) > 0\.2\b", message)
        assert psi is not None and float(psi.group(1)) > 0.2, message
        assert status["stableVersion"] == STABLE
        assert (status["weights"]["stable"], status["weights"]["candidate"]) == (100, 0)
        assert made.served("2.0.0") > 0, "the candidate was judged on traffic it really got"

        drift = background_metric(status, "input-drift-vs-training")
        assert drift["phase"] == "Failed" and drift["failed"] >= 1, drift
        failed = [m for m in drift["measurements"] if m["phase"] == "Failed"]
        assert failed[-1]["value"] > 0.2 and SHIFTED_FEATURE in failed[-1]["message"], failed
        # The software gates measured the same candidate and found nothing wrong.
        for name in ("error-rate", "latency-p99"):
            result = background_metric(status, name)
            assert result["failed"] == 0 and result["successful"] >= 1, result
            assert all(m["phase"] in ("Successful", "Inconclusive") for m in result["measurements"]), result
        assert any("input-drift-vs-training" in text for text in made.events("AnalysisFailed"))


def test_candidate_with_a_different_prediction_mix_is_rolled_back_by_the_output_drift_gate(sandbox: Sandbox) -> None:
    """Same inputs as stable, healthy as software, but it predicts 'malignant' twice as often."""
    with scenario(sandbox, "outdrift") as made:
        made.deploy_stable(rollout_spec(STABLE, MODEL_GATES, GATED_STEPS))
        made.start_load()
        made.deliver(rollout_spec("2.0.0-drifted", MODEL_GATES, GATED_STEPS, env={"MODEL_VARIANT": "drifted"}))
        status = made.cluster.wait_for_phase(made.name, "RolledBack", timeout=60)

        message = status["message"]
        assert "metric 'output-drift'" in message, message
        pvalue = re.search(r"chi-square p=([0-9.e+-]+) < 0\.001\b", message)
        assert pvalue is not None and float(pvalue.group(1)) < 0.001, message
        assert status["stableVersion"] == STABLE
        assert (status["weights"]["stable"], status["weights"]["candidate"]) == (100, 0)
        assert made.served("2.0.0-drifted") > 0
        output = background_metric(status, "output-drift")
        assert output["phase"] == "Failed", output
        assert [m for m in output["measurements"] if m["phase"] == "Failed"][-1]["value"] < 0.001
        # Errors and latency were never the problem.
        for name in ("error-rate", "latency-p99"):
            assert background_metric(status, name)["failed"] == 0


def test_good_candidate_passes_every_model_gate_and_is_promoted(sandbox: Sandbox) -> None:
    with scenario(sandbox, "goodmodel") as made:
        made.deploy_stable(rollout_spec(STABLE, MODEL_GATES, GATED_STEPS))
        made.start_load()
        with made.cluster.status_history(made.name) as history:
            made.deliver(rollout_spec("2.0.0", MODEL_GATES, GATED_STEPS))

            def promoted() -> dict[str, Any] | None:
                status = made.status()
                return status if status.get("phase") == "Succeeded" and status.get("stableVersion") == "2.0.0" else None

            status = made.cluster.wait_for("2.0.0 to be promoted", promoted, timeout=90)
        # Promotion drops the step analysis; the last status written before it holds its final view.
        seen = [written for written in history if written.get("stepAnalysis")][-1]
        assert seen["stepAnalysis"]["phase"] == "Successful", seen["stepAnalysis"]
        assert made.status().get("phase") == "Succeeded", made.status()
        reasons = made.cluster.event_reasons(made.name)
        assert "AnalysisSucceeded" in reasons and "Promoted" in reasons, reasons
        assert "AnalysisFailed" not in reasons and "AnalysisInconclusive" not in reasons, reasons
        assert made.cluster.replicas_by_version() == {"2.0.0": 4}
        assert status["weights"]["stable"] == 100
        # Every gate was measured on real samples and passed, none failed.
        # The step analysis's final tally is in its event (status drops the analysis on promotion).
        passed = [text for text in made.events("AnalysisSucceeded") if "every metric passed" in text]
        assert len(passed) == 1, passed
        # `name 3/3 ok`, or `name 3 ok, 1 could not be measured (Error) of 4`, joined by "; ".
        tally = {
            name: (int(ok), int(count or total))
            for name, ok, count, total in re.findall(r"([\w-]+) (\d+)(?:/(\d+))? ok(?:[^;]*? of (\d+))?", passed[0])
        }
        assert set(tally) == {"input-drift", "output-drift", "error-rate", "latency-p99"}, passed[0]
        assert all(ok >= 1 for ok, _ in tally.values()), passed[0]
        step = {result["name"]: result for result in (seen.get("stepAnalysis") or {}).get("metrics") or []}
        assert all(result["failed"] == 0 for result in step.values()), step
        passing = [m["message"] for m in measured(seen, "input-drift") if m["phase"] == "Successful"]
        assert any("PSI" in text and "all 30 features within limits" in text for text in passing), passing
        passing = [m["message"] for m in measured(seen, "output-drift") if m["phase"] == "Successful"]
        assert any("chi-square p=" in text for text in passing), passing
        for name in ("input-drift", "output-drift", "error-rate", "latency-p99"):
            assert all(m["phase"] != "Failed" for m in measured(seen, name)), (name, measured(seen, name))


# --- after promotion ----------------------------------------------------------------------------------------


def monitored_spec(version: str, url: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    # Only watched after promotion (background: false), with enough samples per measurement that the
    # baseline's PSI against training stays far below 0.2.
    metric = input_drift_vs_training(min_count=200, background=False)
    spec = rollout_spec(version, [metric], steps)
    spec["monitoring"] = {"interval": "2s", "metrics": [metric["name"]], "hook": {"webhook": {"url": url}}}
    return spec


def monitoring(status: dict[str, Any]) -> dict[str, Any]:
    return dict(status.get("monitoring") or {})


def wait_for_more_monitoring(made: Scenario, more: int = 3) -> None:
    """Until every monitoring metric has taken `more` measurements beyond what status shows now:
    "several more intervals" as the operator counts them, however slow the machine is."""

    def fewest() -> int:
        metrics = (monitoring(made.status()).get("analysis") or {}).get("metrics") or []
        return min((int(metric.get("count", 0)) for metric in metrics), default=0)

    start = fewest()
    made.cluster.wait_for(f"{more} more monitoring measurements", lambda: fewest() >= start + more, timeout=90)


def wait_for_clean_measurement(made: Scenario, version: str) -> None:
    """The watched version's live inputs were judged within limits at least once (no drift yet)."""

    def clean() -> bool:
        watch = monitoring(made.status())
        results = (watch.get("analysis") or {}).get("metrics") or []
        return watch.get("version") == version and any(
            m["phase"] == "Successful" for r in results for m in r["measurements"]
        )

    made.cluster.wait_for(f"a clean monitoring measurement of {version}", clean, timeout=45)
    assert made.condition("Drifted").get("status") == "False", made.condition("Drifted")
    assert not monitoring(made.status()).get("driftedSince")


def wait_for_drift(made: Scenario) -> dict[str, Any]:
    made.cluster.wait_for(
        "the Drifted condition", lambda: made.condition("Drifted").get("status") == "True", timeout=45
    )
    return made.status()


def test_promoted_model_whose_inputs_drift_gets_drifted_and_fires_its_webhook_once(
    sandbox: Sandbox, webhook: Receiver
) -> None:
    path = f"/retrain/{uuid.uuid4().hex[:6]}"
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "3s"}}]
    with scenario(sandbox, "watch") as made:
        made.create_edges_configmap()
        made.deploy_stable(monitored_spec(STABLE, webhook.url(path), steps))
        made.start_load()
        made.deliver(monitored_spec("2.0.0", webhook.url(path), steps))
        made.cluster.wait_for("2.0.0 to be promoted", lambda: made.status().get("stableVersion") == "2.0.0", timeout=60)
        wait_for_clean_measurement(made, "2.0.0")
        assert webhook.to(path) == [], "the hook fired without drift"

        made.start_load(shift=SHIFT)  # the live population moves after promotion
        status = wait_for_drift(made)
        drifted = made.condition("Drifted")
        assert drifted["reason"] == "Drifted", drifted
        assert "input-drift-vs-training" in drifted["message"] and SHIFTED_FEATURE in drifted["message"], drifted
        assert monitoring(status)["driftedSince"]
        made.cluster.wait_for(
            "the hook to be delivered",
            lambda: (monitoring(made.status()).get("hook") or {}).get("state") == "Delivered",
        )
        events = made.events("Drifted")
        assert len(events) == 1 and "2.0.0 drifted" in events[0] and SHIFTED_FEATURE in events[0], events
        # Several more intervals of the same drift: the same episode, no second POST.
        wait_for_more_monitoring(made)
        status = made.status()
        hook = monitoring(status)["hook"]
        assert hook["state"] == "Delivered" and hook["attempts"] == 1, hook
        assert made.condition("Drifted").get("status") == "True"
        deliveries = webhook.to(path)
        assert len(deliveries) == 1, [d.body for d in deliveries]
        body = deliveries[0].body
        assert body["rollout"] == made.name and body["namespace"] == made.namespace, body
        assert body["version"] == "2.0.0" and body["kind"] == "ModelDrift", body
        assert body["episode"] == hook["episode"] == monitoring(status)["driftedSince"], (body, hook)
        assert "input-drift-vs-training" in body["reason"] and SHIFTED_FEATURE in body["reason"], body
        assert len(made.events("Drifted")) == 1
        assert len(made.events("RetrainingHookFired")) == 1
        assert made.events("RetrainingHookFailed") == []
        assert status["phase"] == "Succeeded" and status["stableVersion"] == "2.0.0"


def test_failing_retraining_webhook_is_retried_until_delivered(sandbox: Sandbox, webhook: Receiver) -> None:
    """The hook answers 500 twice, then 200: retried with backoff (10 s, 20 s), reported, delivered once."""
    path = f"/retrain-flaky/{uuid.uuid4().hex[:6]}"
    webhook.scripts[path] = [500, 500]
    with scenario(sandbox, "flakyhook") as made:
        made.create_edges_configmap()
        # Watching starts with the first stable version already: no promotion needed to exercise the hook.
        made.deploy_stable(monitored_spec(STABLE, webhook.url(path), []))
        made.start_load(shift=SHIFT)  # drifted from the start (the test above shows the baseline is clean)
        wait_for_drift(made)

        def failed_once() -> dict[str, Any] | None:
            hook = monitoring(made.status()).get("hook") or {}
            return hook if hook.get("attempts", 0) >= 1 and hook.get("lastError") else None

        hook = made.cluster.wait_for("a failed attempt", failed_once, timeout=20)
        assert hook["state"] == "Pending" and "HTTP 500" in hook["lastError"], hook
        assert hook.get("nextAttemptAt"), hook
        delivered = made.cluster.wait_for(
            "the hook to be delivered",
            lambda: (monitoring(made.status()).get("hook") or {}).get("state") == "Delivered",
            timeout=50,
        )
        assert delivered
        hook = monitoring(made.status())["hook"]
        assert hook["attempts"] == 3 and hook["lastError"] == "", hook
        failures = made.events("RetrainingHookFailed")
        assert len(failures) == 2, failures
        assert all("HTTP 500" in text for text in failures), failures
        assert "attempt 1 failed" in failures[0] and "attempt 2 failed" in failures[1], failures
        assert len(made.events("RetrainingHookFired")) == 1
        wait_for_more_monitoring(made)  # more intervals of the same episode: no fourth POST
        deliveries = webhook.to(path)
        assert [d.status for d in deliveries] == [500, 500, 200], [(d.status, d.body) for d in deliveries]
        assert len({d.body["episode"] for d in deliveries}) == 1, "the retries belong to one drift episode"
        assert deliveries[-1].body["version"] == STABLE and deliveries[-1].body["rollout"] == made.name


def test_training_reference_of_the_template_is_honoured(sandbox: Sandbox) -> None:
    """input-drift-vs-training as documented: the template plus trainingReference, nothing restated."""
    metric = input_drift_vs_training(min_count=100, restate_reference=False, background=False)
    spec = rollout_spec(STABLE, [metric], [])
    spec["monitoring"] = {"interval": "1s", "metrics": [metric["name"]]}
    with scenario(sandbox, "trainref") as made:
        made.create_edges_configmap()
        made.deploy_stable(spec)
        made.start_load()

        def conclusive() -> dict[str, Any] | None:
            results = (monitoring(made.status()).get("analysis") or {}).get("metrics") or []
            done = [m for r in results for m in r["measurements"] if m["phase"] in ("Successful", "Failed")]
            return done[-1] if done else None

        measurement = made.cluster.wait_for("a conclusive monitoring measurement", conclusive, timeout=30)
        # The training reference: 569 rows of the breast-cancer data set per feature.
        assert "reference n=569" in measurement["message"], measurement


# --- bad input ---------------------------------------------------------------------------------------------


def test_unknown_template_fails_the_rollout_naming_the_field(sandbox: Sandbox) -> None:
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "30s"}}]
    with scenario(sandbox, "badtemplate") as made:
        made.deploy_stable(rollout_spec(STABLE, [ERROR_RATE], steps))
        bad = rollout_spec("2.0.0", [ERROR_RATE, {"name": "drift", "template": {"name": "input-drfit"}}], steps)
        made.cluster.patch_spec(made.name, {key: bad[key] for key in ("model", "analysis")})
        status = made.cluster.wait_for_phase(made.name, "Failed", timeout=30)
        degraded = made.condition("Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec", degraded
        assert "spec.analysis.metrics[1].template.name" in degraded["message"], degraded
        assert "'input-drfit'" in degraded["message"], degraded
        assert "spec.analysis.metrics[1].template.name" in status["message"], status["message"]
        # Nothing moved, even once the operator looked again: no candidate, stable serves everything.
        made.wait_for_another_pass()
        status = made.status()
        assert status["phase"] == "Failed" and status["stableVersion"] == STABLE
        assert not status.get("candidateVersion"), status
        assert made.cluster.replicas_by_version() == {STABLE: 4}


def test_drift_metric_without_buckets_in_prometheus_pauses_the_rollout(sandbox: Sandbox) -> None:
    """A typo in the histogram's name: no series at all, which must not read as 'no drift'."""
    misspelt = (
        "sum by (le, feature) (increase(model_input_feature_values_bucket"
        '{rollout="{{name}}",version="{{candidate}}"}[20s]))'
    )
    metric = {
        "name": "typo-drift",
        "prometheus": {"query": misspelt},
        "drift": {"statistic": "psi", "max": 0.2, "groupBy": "feature", "reference": "stable"},
        "minCount": 50,
    }
    steps: list[dict[str, Any]] = [{"setWeight": 25}, {"pause": {"duration": "60s"}}]
    with scenario(sandbox, "nobuckets") as made:
        spec = rollout_spec(STABLE, [metric], steps)
        spec["analysis"]["inconclusiveLimit"] = 2
        made.deploy_stable(spec)
        made.start_load()
        spec["model"]["version"] = "2.0.0"
        made.deliver(spec)
        status = made.cluster.wait_for_phase(made.name, "Paused", timeout=45)
        assert status["pauseReason"] == "Inconclusive", status
        message = status["message"]
        assert "typo-drift" in message and "no series (no buckets in Prometheus)" in message, message
        assert "spec.analysis.metrics[name=typo-drift].drift" in message, message
        assert any("typo-drift" in text for text in made.events("AnalysisInconclusive"))
        # The candidate does get traffic: the missing buckets are the query's fault, not a lack of
        # samples. (On a loaded machine the pause can come before its first answer: wait for it.)
        made.cluster.wait_for("the candidate to answer its share", lambda: made.served("2.0.0") > 0, timeout=30)
        held = (status["currentStepIndex"], status["weights"]["candidate"])
        made.wait_for_another_pass()
        status = made.status()
        assert status["phase"] == "Paused" and (status["currentStepIndex"], status["weights"]["candidate"]) == held
        assert status["stableVersion"] == STABLE and status["candidateVersion"] == "2.0.0"
        assert made.cluster.replicas_by_version() == {STABLE: 3, "2.0.0": 1}
