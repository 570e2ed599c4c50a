"""Issue 17 part 2 end to end: shadow agreement in the sandbox on the real control plane.

A mirror step with ``compare`` sends every mirrored copy (through the user's HTTPRoute, as a gateway
does) to the comparator the operator deploys; the comparator asks the candidate and stable, compares
their answers one by one, and Prometheus scrapes its pairs; the ``agreement`` metric judges them. A
candidate that answers the other class for 30 % of requests (``FAULT_DISAGREE_RATE``: same latency, no
errors, so no software metric can tell) is rolled back with no caller ever getting an answer from it;
the same model again agrees and goes on to promotion.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from modelrollout.kube.comparator import COMPARATOR_LABEL
from modelrollout_devkit.sandbox.supervisor import Sandbox
from tests.e2e.test_strategies import GATEWAY, Story, canary, gateway_routing, managed_rule, rollout_spec, story

pytestmark = pytest.mark.timeout(480)

AGREEMENT = {
    "name": "agreement",
    "agreement": {"min": 0.95, "minPairs": 100, "window": "30s"},
    "background": False,
}
STRATEGY = canary(
    {"mirror": {"percent": 100, "compare": {}}},
    # Pairs need a comparator pod, two scrapes of it and minPairs copies: the pause lets them gather.
    {"pause": {"duration": "20s"}},
    {"analysis": {"metrics": ["agreement"], "count": 2, "interval": "5s"}},
    {"mirror": {"percent": 0}},
    {"setWeight": 50},
)


def spec(version: str, made: Story, env: dict[str, str] | None = None) -> dict[str, Any]:
    made_spec = rollout_spec(version, STRATEGY, gateway_routing(made), env)
    made_spec["analysis"] = {"interval": "5s", "inconclusiveLimit": 30, "metrics": [AGREEMENT]}
    return made_spec


def comparator_pods(made: Story) -> int:
    pods = made.cluster.core.list_namespaced_pod(made.namespace, label_selector=f"{COMPARATOR_LABEL}={made.name}")
    return len(pods.items)


def disagreeing(made: Story) -> None:
    made.create_httproute()
    made.deploy(spec("1.0.0", made))
    made.load()
    candidate = "2.0.0-disagree"
    made.deliver(spec(candidate, made, {"FAULT_DISAGREE_RATE": "0.3", "FAULT_SEED": "5"}))
    shadow = made.wait_status("the shadow step", lambda s: (s.get("weights") or {}).get("mirror") == 100)
    mirror = [f for f in managed_rule(made.route(GATEWAY, f"{made.name}-route")).get("filters", [])]
    assert [f["requestMirror"]["backendRef"]["name"] for f in mirror] == [f"{made.name}-comparator"], (mirror, shadow)

    status = made.cluster.wait_for_phase(made.name, "RolledBack", timeout=180)
    assert "agreement" in status["message"], status["message"]
    measured = [m for result in status["stepAnalysis"]["metrics"] for m in result.get("measurements", [])]
    assert any(m.get("phase") == "Failed" and "Wilson" in (m.get("message") or "") for m in measured), status
    assert made.mirrored(candidate) > 100, "the candidate was judged on the comparator's copies"
    assert made.served(candidate) == 0, "a caller got an answer from the disagreeing shadow"
    assert candidate not in made.send(20), "a caller got an answer from the disagreeing shadow"
    made.cluster.wait_for("the comparator to go", lambda: comparator_pods(made) == 0 or None, timeout=60)


def agreeing(made: Story) -> None:
    made.create_httproute()
    made.deploy(spec("1.0.0", made))
    made.load()
    candidate = "2.0.0"
    made.deliver(spec(candidate, made))
    made.wait_status("the shadow step", lambda s: (s.get("weights") or {}).get("mirror") == 100)
    made.cluster.wait_for("copies compared", lambda: made.mirrored(candidate) > 20, timeout=60)
    assert made.served(candidate) == 0, "a caller got an answer from the shadow"
    status = made.cluster.wait_for_phase(made.name, "Succeeded", timeout=180)
    assert status["stableVersion"] == candidate
    assert "RolledBack" not in made.cluster.event_reasons(made.name)
    made.cluster.wait_for("the comparator to go", lambda: comparator_pods(made) == 0 or None, timeout=60)


STORIES = {"disagreeing": ("agree-no", disagreeing), "agreeing": ("agree-yes", agreeing)}


@pytest.fixture(scope="module")
def outcomes(sandbox: Sandbox) -> dict[str, BaseException | None]:
    if not sandbox.real_api:
        pytest.skip("the comparator's pod runs through the simulated kubelet of the real control plane")
    results: dict[str, BaseException | None] = {}

    def run(key: str) -> None:
        prefix, fn = STORIES[key]
        started = time.monotonic()
        try:
            with story(sandbox, prefix) as made:
                fn(made)
            results[key] = None
        except BaseException as error:
            results[key] = error
        print(f"{key}: {time.monotonic() - started:.1f}s")

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="story") as pool:
        for future in [pool.submit(run, key) for key in STORIES]:
            future.result()
    return results


def _check(outcomes: dict[str, BaseException | None], key: str) -> None:
    error = outcomes[key]
    if error is not None:
        raise error


def test_a_disagreeing_shadow_is_rolled_back_with_no_user_facing_answer(
    outcomes: dict[str, BaseException | None],
) -> None:
    _check(outcomes, "disagreeing")


def test_an_agreeing_shadow_goes_on_to_promotion(outcomes: dict[str, BaseException | None]) -> None:
    _check(outcomes, "agreeing")
