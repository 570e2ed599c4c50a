"""A web metric decides a canary: the real operator process asks a local HTTP endpoint (with a header
from a Secret) for each candidate's number, promotes the good version and rolls back the bad one."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tests.operator.test_canary import rollout_spec, unique
from tests.support.cluster import Cluster, DeploymentController
from tests.support.operator_process import OperatorProcess

TOKEN = "w3b-t0ken-never-shown"


class QualityEndpoint:
    """Answers GET /quality/<version> with {"data": {"errorRate": N}}, only to the right bearer token."""

    def __init__(self) -> None:
        self.error_rates: dict[str, float] = {}
        self.asked: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.asked.append(self.path)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self.send_response(401)
                    self.end_headers()
                    return
                version = self.path.rsplit("/", 1)[-1]
                rate = endpoint.error_rates.get(version)
                body = json.dumps({"data": {"errorRate": rate}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def endpoint() -> Iterator[QualityEndpoint]:
    served = QualityEndpoint()
    served.thread.start()
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()


def test_a_web_metric_promotes_a_good_candidate_and_rolls_back_a_bad_one(
    cluster: Cluster, deployment_controller: DeploymentController, operator: OperatorProcess, endpoint: QualityEndpoint
) -> None:
    name = unique("web")
    token = base64.b64encode(f"Bearer {TOKEN}".encode()).decode()
    cluster.core.create_namespaced_secret(
        cluster.namespace, {"metadata": {"name": "quality-api"}, "data": {"authorization": token}}
    )
    spec = rollout_spec(name, "1.0.0", [{"setWeight": 50}, {"analysis": {"metrics": ["quality"], "count": 2}}])
    spec["analysis"] = {
        "interval": "1s",
        "metrics": [
            {
                "name": "quality",
                "web": {
                    "url": endpoint.url + "/quality/{{candidate}}",
                    "headers": [
                        {
                            "name": "Authorization",
                            "valueFrom": {"secretKeyRef": {"name": "quality-api", "key": "authorization"}},
                        }
                    ],
                    "jsonPath": "$.data.errorRate",
                    "timeoutSeconds": 5,
                },
                "threshold": {"max": 0.05},
            }
        ],
    }
    cluster.create_rollout(name, spec)
    cluster.wait_for_phase(name, "Succeeded")
    endpoint.error_rates.update({"2.0.0": 0.01, "3.0.0": 0.4})

    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "2.0.0"}})
    cluster.wait_for("the canary of 2.0.0", lambda: cluster.status(name).get("candidateVersion") == "2.0.0")
    promoted = cluster.wait_for_phase(name, "Succeeded", timeout=120)
    assert promoted["stableVersion"] == "2.0.0"
    assert "/quality/2.0.0" in endpoint.asked

    cluster.patch_spec(name, {"model": {"name": "fraud-scorer", "version": "3.0.0"}})
    rolled_back = cluster.wait_for_phase(name, "RolledBack", timeout=120)
    assert rolled_back["stableVersion"] == "2.0.0"
    assert "metric 'quality'" in rolled_back["message"] and "0.4 is not at most 0.05" in rolled_back["message"]

    assert TOKEN not in json.dumps(cluster.rollout(name))
    assert all(TOKEN not in (event.message or "") for event in cluster.events(name))
    assert TOKEN not in operator.logs()
