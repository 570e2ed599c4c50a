"""The calls sharded operators make (issue 20), on the emulator and on a real kube-apiserver 1.36 (the
session's control plane), answers compared step by step: label-selected lists and watches of
ModelRollouts, Deployments and Services, relabelling merge patches, and shard and member Leases. The
scenarios, and what the real server was found to do, are in :mod:`tests.emulator.differential_sharding`.
Skipped without the control plane binaries.
"""

from __future__ import annotations

import pytest

from tests.emulator.differential import Recorder, Side, differences
from tests.emulator.differential_sharding import SHARDING_SCENARIOS


@pytest.mark.parametrize("name", sorted(SHARDING_SCENARIOS))
def test_same_answers(name: str, real_side: Side, emulator_side: Side) -> None:
    recorders = []
    for side in (real_side, emulator_side):
        recorder = Recorder(side, "shard-" + name.replace("_", "-"))
        made = side.call("POST", "/api/v1/namespaces", {"metadata": {"name": recorder.namespace}})
        assert made.status == 201, made
        SHARDING_SCENARIOS[name](recorder)
        recorders.append(recorder)
    found = list(differences(*recorders))
    assert not found, f"{len(found)} difference(s) between the real API server and the emulator:\n" + "\n".join(found)
