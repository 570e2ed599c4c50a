"""A rollout whose Prometheus credentials are in a Secret the operator may not read (RBAC denies
`get`): the measurement is an Error that names the Secret and the permission to grant, the
rollout never promotes, and nothing of the Secret shows anywhere.

The emulator has no RBAC of its own; its fault injection answers the operator's `get` of Secrets
in this namespace with 403 Forbidden, the answer a real API server gives a denied request."""

from __future__ import annotations

import base64
import json

from tests.faults.conftest import Faulty, HeldDeploymentController, Operators
from tests.faults.rollouts import canary_spec, counts, unique

TOKEN = "tok-7f3a-never-shown"


def test_a_secret_the_operator_may_not_read_is_an_error_naming_the_grant_and_the_rollout_never_promotes(
    faulty: Faulty, deployment_controller: HeldDeploymentController, operators: Operators
) -> None:
    cluster = faulty.cluster
    name = unique("forbidden")
    secret = {"metadata": {"name": "prom-token"}, "data": {"token": base64.b64encode(TOKEN.encode()).decode()}}
    cluster.core.create_namespaced_secret(cluster.namespace, secret)
    faulty.inject(403, verbs=["get", "list", "watch"], resources=["secrets"], namespaces=[cluster.namespace])
    operator = operators.new().start()
    spec = canary_spec(name, "1.0.0", [{"setWeight": 50}, {"pause": {"duration": "2s"}}], consecutiveErrorLimit=1)
    spec["analysis"]["prometheus"] = {"auth": {"secret": "prom-token", "bearerTokenKey": "token"}}
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    status = cluster.wait_for_phase(name, "RolledBack", timeout=60)

    where = f"Secret {cluster.namespace}/prom-token (spec.analysis.prometheus.auth)"
    assert f"the operator may not read {where}: grant it get on that Secret" in status["message"], status["message"]
    assert status["stableVersion"] == "1.0.0"
    seen = counts(cluster, name)
    assert seen["AnalysisError"] == 1 and seen["Promoted"] == 0, seen
    assert faulty.injected().get(403, 0) >= 1
    assert TOKEN not in json.dumps(cluster.rollout(name))
    assert all(TOKEN not in (event.message or "") for event in cluster.events(name))
    assert TOKEN not in operator.logs()
