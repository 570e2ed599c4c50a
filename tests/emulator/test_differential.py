"""The emulator held to the real thing: every scenario of :mod:`tests.emulator.differential_scenarios`
is sent to the emulator and to a real kube-apiserver (the session's control plane, from
KUBEBUILDER_ASSETS), and their answers must agree step by step. Skipped without the binaries.

A difference is either fixed in the emulator (the real server is right by definition) or, when it is
harmless and costly to fix, listed in docs/emulator.md and kept out of the comparison there.
"""

from __future__ import annotations

import time

import pytest

from tests.emulator.differential import GROUP, SCENARIOS, Recorder, Side, differences
from tests.emulator.differential_scenarios import widget_crd


def install_widgets(side: Side, timeout: float = 60.0) -> None:
    answer = side.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", widget_crd())
    assert answer.status in (201, 409), answer
    deadline = time.monotonic() + timeout
    while side.call("GET", f"/apis/{GROUP}/v1/namespaces/default/widgets").status != 200:
        assert time.monotonic() < deadline, f"widgets.{GROUP} not served on {side.name} after {timeout:g}s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def sides(real_side: Side, emulator_side: Side) -> tuple[Side, Side]:
    for side in (real_side, emulator_side):
        install_widgets(side)
    return real_side, emulator_side


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_answers(name: str, sides: tuple[Side, Side]) -> None:
    recorders = []
    for side in sides:
        recorder = Recorder(side, "diff-" + name.replace("_", "-"))
        made = side.call("POST", "/api/v1/namespaces", {"metadata": {"name": recorder.namespace}})
        assert made.status == 201, made
        SCENARIOS[name](recorder)
        recorders.append(recorder)
    found = list(differences(*recorders))
    assert not found, f"{len(found)} difference(s) between the real API server and the emulator:\n" + "\n".join(found)
