"""Issue 17 part 1 end to end: ground truth that arrives later, judged in the sandbox on the real control plane.

The load generator (its own process, through the data plane) knows the true label of every row it sends
and reports it ``FEEDBACK_DELAY`` seconds after the answer to the model-server process that made the
prediction (the SDK's join there turns it into the feedback series); the real Prometheus scrapes them and
the real operator judges them:

* a candidate that is less accurate with the same output mix (``FAULT_CONFUSE``: answers swapped both
  ways for a share of the inputs) is rolled back by the accuracy gate (against stable on the same window),
  while the output-drift gate (dry run here) sees nothing wrong with its class mix;
* a promoted model whose world shifts (``--concept drifted``: labels change for part of the input space,
  the inputs do not) gets ``ConceptDrift`` against its baseline after promotion, not ``Drifted``, and its
  retraining hook fires once.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from modelrollout_devkit.sandbox.supervisor import Sandbox
from tests.e2e.test_model_analysis import (
    OUTPUT_DRIFT,
    Receiver,
    Scenario,
    monitoring,
    rollout_spec,
    scenario,
    wait_for_more_monitoring,
)

pytestmark = pytest.mark.timeout(240)

STABLE = "1.0.0"
LOAD_RATE = 40.0
FEEDBACK_DELAY = 2.0


def accuracy_gate(**extra: Any) -> dict[str, Any]:
    """The candidate's accuracy at most 5 points below stable's, on labels of the last 30 s."""
    accuracy = {"maxDrop": 0.05, "minLabelled": 100, "window": "30s", "labelDelay": "3s", "labelWait": "90s"}
    return {"name": "accuracy", "background": False, "accuracy": {**accuracy, **extra}}


def start_labelled_load(made: Scenario, concept: str = "baseline") -> None:
    """The load generator with feedback: each answer's true label follows FEEDBACK_DELAY seconds later."""
    made.stop_load()
    command = [
        sys.executable, "-m", "modelrollout_devkit.sandbox.loadgen",
        "--url", made.sandbox.service_url(made.namespace, made.name),
        "--rate", str(LOAD_RATE), "--duration", "300", "--seed", str(next(made.seeds)),
        "--feedback-delay", str(FEEDBACK_DELAY), "--concept", concept,
    ]  # fmt: skip
    made.load = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    hooks = Receiver()
    hooks.thread.start()
    try:
        yield hooks
    finally:
        hooks.server.shutdown()
        hooks.server.server_close()


def step_measurements(status: dict[str, Any], name: str) -> list[dict[str, Any]]:
    metrics = (status.get("stepAnalysis") or {}).get("metrics") or []
    return [m for r in metrics if r["name"] == name for m in r["measurements"]]


def test_less_accurate_candidate_with_the_same_output_mix_is_rolled_back_by_the_accuracy_gate(
    sandbox: Sandbox,
) -> None:
    output_mix = {**OUTPUT_DRIFT, "dryRun": True, "background": False}
    metrics = [accuracy_gate(), output_mix]
    steps: list[dict[str, Any]] = [
        {"setWeight": 50},
        {"analysis": {"metrics": ["accuracy", "output-drift"], "count": 3, "interval": "2s"}},
    ]
    with scenario(sandbox, "accgate") as made:
        made.deploy_stable(rollout_spec(STABLE, metrics, steps))
        start_labelled_load(made)
        delivered = time.monotonic()
        made.deliver(rollout_spec("2.0.0-confused", metrics, steps, env={"FAULT_CONFUSE": "0.5"}))
        status = made.cluster.wait_for_phase(made.name, "RolledBack", timeout=150)
        print(f"\nconfused candidate rolled back {time.monotonic() - delivered:.1f}s after delivery")
        assert made.served("2.0.0-confused") > 0
        assert "accuracy" in status["message"] and "below stable's" in status["message"], status["message"]
        judged = step_measurements(status, "accuracy")
        assert judged and judged[-1]["phase"] == "Failed", judged
        print(f"accuracy gate: {judged[-1]['message']}")
        assert judged[-1]["value"] < 0.85, judged  # the confused candidate's accuracy; stable's is ~0.97
        # Its class mix did not give it away: the output-drift gate found no drift in what was measured.
        mix = step_measurements(status, "output-drift")
        assert all(m["phase"] != "Failed" for m in mix), mix
        assert made.events("DryRunMetricFailed") == []
        assert status["stableVersion"] == STABLE
        # Privacy: labels move counters only; none is in status or Events.
        text = str(status) + " ".join(e.message or "" for e in made.cluster.events(made.name))
        assert "malignant" not in text and "benign" not in text


def test_promoted_model_whose_world_shifts_gets_concept_drift_and_fires_its_hook_once(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    path = f"/retrain-concept/{uuid.uuid4().hex[:6]}"
    metric = accuracy_gate(maxDrop=0.1, window="20s", labelDelay="0s")
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "3s"}}]

    def spec(version: str) -> dict[str, Any]:
        watched = rollout_spec(version, [metric], steps)
        watched["monitoring"] = {
            "interval": "2s",
            "metrics": ["accuracy"],
            "hook": {"webhook": {"url": receiver.url(path)}},
        }
        return watched

    with scenario(sandbox, "concept") as made:
        made.deploy_stable(spec(STABLE))
        start_labelled_load(made)
        made.deliver(spec("2.0.0"))
        made.cluster.wait_for("2.0.0 to be promoted", lambda: made.status().get("stableVersion") == "2.0.0", timeout=90)

        def baseline() -> dict[str, Any] | None:
            watch = monitoring(made.status())
            found = watch.get("accuracyBaselines") or []
            return found[0] if watch.get("version") == "2.0.0" and found else None

        base = made.cluster.wait_for("the accuracy baseline of 2.0.0", baseline, timeout=60)
        assert base["value"] > 0.9 and base["labelled"] >= 100, base
        assert made.condition("ConceptDrift").get("status") == "False", made.condition("ConceptDrift")
        assert receiver.to(path) == [], "the hook fired without a drop"

        start_labelled_load(made, concept="drifted")  # the world changes; the inputs do not
        shifted = time.monotonic()
        made.cluster.wait_for(
            "the ConceptDrift condition", lambda: made.condition("ConceptDrift").get("status") == "True", timeout=90
        )
        print(f"\nConceptDrift {time.monotonic() - shifted:.1f}s after the world's labels shifted")
        condition = made.condition("ConceptDrift")
        assert "accuracy" in condition["message"] and "baseline after promotion" in condition["message"], condition
        made.cluster.wait_for(
            "the hook to be delivered",
            lambda: (monitoring(made.status()).get("hook") or {}).get("state") == "Delivered",
        )
        wait_for_more_monitoring(made)  # several more intervals of the same drop: the same episode
        status = made.status()
        hook = monitoring(status)["hook"]
        assert hook["state"] == "Delivered" and hook["attempts"] == 1, hook
        deliveries = receiver.to(path)
        assert len(deliveries) == 1, [d.body for d in deliveries]
        body = deliveries[0].body
        assert body["kind"] == "ConceptDrift" and body["version"] == "2.0.0", body
        assert body["episode"] == hook["episode"] == monitoring(status)["conceptDriftedSince"], (body, hook)
        assert len(made.events("ConceptDrift")) == 1
        assert made.events("Drifted") == []
        assert made.condition("Drifted").get("status") == "False"  # inputs and outputs did not drift
        assert status["phase"] == "Succeeded" and status["stableVersion"] == "2.0.0"
