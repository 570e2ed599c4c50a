"""Scale: N active ModelRollouts stepping through a canary in one operator or N shards (issues 7 and 20).

    python bench/scale.py --sizes 100,1000,10000 [--analysis-interval 30s] [--pause 60s]
        [--control-plane emulator|real] [--shards N]

For each size, every component runs as its own process, so each one's CPU and memory are its own:

* the API server: by default the API emulator (``python -m modelrollout_devkit.emulator``); with
  ``--control-plane real`` the real control plane (``modelrollout_devkit.sandbox.control_plane``:
  etcd, kube-apiserver, kube-controller-manager, kube-scheduler from ``$KUBEBUILDER_ASSETS``, the
  controllers sized as a large cluster's, see ``CONTROLLER_FLAGS``), with the CRDs, the Helm chart's
  ServiceAccount and RBAC (the operator runs as that ServiceAccount: it can do what the chart grants,
  no more), one Node with room for every pod, and the benchmark's namespace;
* a counting reverse proxy in front of it (``bench/scale_proxy.py``): the operator's kubeconfig
  points at the proxy, so every request the operator makes is counted by method and resource (and
  its Events by reason, its status writes by what they record: for the split below);
  the benchmark's own clients (creating rollouts, the stand-ins) talk to the API server
  directly and are not counted;
* a real Prometheus scraping (every ``--scrape-interval``) a tiny exporter that publishes one gauge,
  ``bench_error_ratio{rollout="..."}``, per rollout, with a second counting proxy in front of it
  (the operator's ``--prometheus-url``), so queries are counted exactly;
* on the emulator, a stand-in Deployment controller (``bench/scale_controller.py``): watches
  Deployments and merge-patches ``/status`` so readyReplicas = replicas, from 32 concurrent workers;
  on the real control plane the real controllers make the ReplicaSets and Pods, the real scheduler
  binds them, and a stand-in kubelet (``bench/scale_kubelet.py``, 32 workers) reports each pod
  Running and Ready and confirms deletions, so readyReplicas is the real controllers' count;
* the operator (``python -m modelrollout.cli run``); with ``--shards N`` N of them, each with
  ``--shards N --shard-identity bench-op-<i> --operator-namespace modelrollout-system`` (with 1, no
  sharding flags at all).

Then: create N ModelRollouts (replicas 2; steps setWeight 50, pause ``--pause``, setWeight 100, or
with ``--weights 20,40,60,80`` a pause after each of those weights and then setWeight 100;
one threshold metric, analysis every ``--analysis-interval``), wait until every one is Succeeded on
version 1, change every one's ``spec.model.version`` to 2 (all at once, or evenly over ``--spread``
seconds) and wait until every one is Succeeded on version 2. The benchmark watches the
ModelRollouts itself (directly on the emulator) and samples /proc/<pid>/status (VmRSS) and
/proc/<pid>/stat (utime+stime) of every process twice a second.

Measured over the canary phase (from the version change to the last promotion):

* every process's CPU seconds (stable phase, canary phase, per step) and RSS (peak over the run,
  steady: median over the canary phase), in a table of its own: the operator replicas', the API
  server's processes', the stand-ins', Prometheus's, the proxies' and the benchmark's own;
* operator RSS: peak (whole run) and steady (median over the canary phase), of the largest replica;
* operator CPU seconds (all replicas) per rollout-step (a step is one of the canary's steps, 3 by default; the
  canary's start and promotion passes are included in the total and not counted as steps, so this
  is conservative; two runs with different ``--weights`` give what one more step costs);
* API requests and writes (non-GET) per step, as the proxy counted them, with a breakdown; the
  writes split (``split_writes``) into step writes per step (the Deployment scales, the status
  write naming the next step or promoting, the StepCompleted Event), per-rollout writes per rollout
  (the candidate's creation, the old stable's deletion, the start's status write, the RolloutStarted
  and Promoted Events, ...) and measurement-only status writes per rollout;
* Prometheus queries per analysis (measurement): proxy-counted queries / measurements taken
  (the ``count`` of the background metric in each rollout's status);
* step lag: pause end -> next step. Due: ``stepStartedAt`` of the pause step + its duration;
  decided: the next step's ``stepStartedAt`` (the operator's clock at the start of the pass that
  moved on); applied: when the benchmark's watch saw the status naming the next step (the status is
  written after the Deployments were scaled, so the step is in force by then); written: when the
  API server answered that status write, as the counting proxy saw it (applied less written is the
  watch's delivery: the API server's, on the real control plane, and not the operator's). Also the readiness
  lag: the stand-in controller reporting the candidate's pods ready -> the next step's
  ``stepStartedAt`` (event driven rather than deadline driven);
* measurement lateness: how much later than the analysis interval after the previous one each
  background measurement was taken (from the measurements' ``at`` in status): the operator lets
  measurements wait when it is busy so that steps do not (``modelrollout.runtime.pacing``), and this is
  what that costs.

Targets (issue 7): 10,000 rollouts under 2 GiB RSS, p99 step lag under 2 s, at most 3 API writes per
step. Raw numbers go to ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.exporter import Exporter, free_port  # noqa: E402
from tests.support.prometheus import PrometheusServer  # noqa: E402

from modelrollout import GROUP, PLURAL, VERSION  # noqa: E402
from modelrollout.api.durations import parse_duration  # noqa: E402
from modelrollout.vocabulary.names import deployment_name  # noqa: E402
from modelrollout_devkit.sandbox.control_plane import HOW_TO_GET_BINARIES, ControlPlane, find_assets  # noqa: E402

NAMESPACE = "scale"
METRIC = "bench_error_ratio"
STEPS = 3  # the default canary: setWeight 50, pause, setWeight 100 (--weights 50)
GIB = 1024**3
TARGET_RSS = 2 * GIB
TARGET_LAG = 2.0
TARGET_WRITES = 3.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
console = Console(width=max(200, shutil.get_terminal_size().columns))


def canary_steps(args: argparse.Namespace) -> list[dict[str, Any]]:
    """setWeight w and a pause for each of --weights, then setWeight 100."""
    steps: list[dict[str, Any]] = []
    for weight in args.weights:
        steps += [{"setWeight": weight}, {"pause": {"duration": args.pause}}]
    return [*steps, {"setWeight": 100}]


def rollout_spec(name: str, version: str, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "replicas": args.replicas,
        "model": {"name": "scorer", "version": version},
        "template": {"spec": {"containers": [{"name": "server", "image": "bench/model-server:1"}]}},
        "strategy": {"canary": {"steps": canary_steps(args)}},
        "analysis": {
            "interval": args.analysis_interval,
            "metrics": [
                {
                    "name": "error-ratio",
                    "prometheus": {"query": f'{METRIC}{{rollout="{{{{name}}}}"}}'},
                    "threshold": {"max": 0.05},
                }
            ],
        },
    }


def ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# --- processes ---------------------------------------------------------------------------------------


class Proc:
    """A child process whose first stdout line is its readiness signal (a URL, usually)."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        self.popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self.log.open("wb"),
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=REPO,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def first_line(self, timeout: float = 60.0) -> str:
        assert self.popen.stdout is not None
        os.set_blocking(self.popen.stdout.fileno(), True)
        line = self.popen.stdout.readline().decode().strip()
        if not line:
            raise RuntimeError(f"{self.name} exited before it was ready; see {self.log}")
        return line

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def proc_sample(pid: int) -> tuple[int, float] | None:
    """(RSS bytes, CPU seconds) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            rss = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return rss, (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, StopIteration):
        return None


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


# --- the API server: the emulator, or the real control plane ----------------------------------------

OPERATOR_NAMESPACE = "modelrollout-system"
NODE = "bench-node"
#: The controller manager and scheduler sized as a large cluster runs them (kubemark and the Kubernetes
#: scalability tests raise the same flags): their defaults (20 and 50 requests/s to the API server, 5
#: concurrent Deployment and ReplicaSet syncs) would make them, not the operator, the bottleneck at
#: thousands of Deployments. `--control-plane-defaults` runs them as they come instead.
CONTROLLER_FLAGS = {
    "kube-controller-manager": [
        "--kube-api-qps=500",
        "--kube-api-burst=1000",
        "--concurrent-deployment-syncs=50",
        "--concurrent-replicaset-syncs=50",
        "--concurrent-service-endpoint-syncs=50",
        "--concurrent-gc-syncs=50",
    ],
    "kube-scheduler": ["--kube-api-qps=500", "--kube-api-burst=1000"],
}


@dataclass
class Backend:
    """Where the benchmark's own (uncounted) clients and the operator's counting proxy connect."""

    kind: str  # "emulator" or "real"
    url: str
    headers: dict[str, str]
    ssl_context: ssl.SSLContext | None
    proxy_args: list[str]  # what the counting proxy needs to reach `url`
    kubeconfig: dict[str, Any]  # the operator's identity (its server is replaced by the proxy's URL)
    pids: dict[str, int]  # the API server's own processes, by name
    plane: ControlPlane | None = None

    def connector(self, limit: int) -> aiohttp.TCPConnector:
        return aiohttp.TCPConnector(limit=limit, ssl=self.ssl_context if self.ssl_context else True)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One synchronous call as the benchmark (setup only)."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode() if body is not None else None,
            # A PATCH here is a JSON merge patch.
            headers={
                "Content-Type": "application/merge-patch+json" if method == "PATCH" else "application/json",
                **self.headers,
            },
            method=method,
        )
        with urllib.request.urlopen(request, timeout=30, context=self.ssl_context) as answer:
            return json.loads(answer.read() or b"null")

    def create(self, document: dict[str, Any]) -> None:
        """POST one object (setup only), as `kubectl create -f`."""
        namespace = (document.get("metadata") or {}).get("namespace") or ""
        self.call("POST", COLLECTIONS[document["kind"]].format(namespace=namespace), document)

    def stop(self) -> None:
        if self.plane is not None:
            self.plane.stop()
            shutil.rmtree(self.plane.dir / "etcd", ignore_errors=True)  # the logs stay, the store goes


def start_emulator(n: int, workdir: Path, procs: list[Proc]) -> Backend:
    crds = sorted((REPO / "crds").glob("*.yaml"))
    emulator = Proc(
        "emulator",
        [
            sys.executable,
            "-m",
            "modelrollout_devkit.emulator",
            "--port",
            "0",
            "--kubeconfig",
            str(workdir / "emulator.kubeconfig"),
            "--event-window",
            str(max(10_000, 40 * n)),
            *[arg for crd in crds for arg in ("--crd", str(crd))],
        ],
        workdir,
    )
    procs.append(emulator)
    url = emulator.first_line()
    kubeconfig = yaml.safe_load((workdir / "emulator.kubeconfig").read_text())
    backend = Backend("emulator", url, {}, None, [], kubeconfig, {"emulator": emulator.pid})
    backend.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    # Where sharded replicas keep their Leases.
    backend.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}})
    return backend


CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
#: Where each kind of object the setup creates is POSTed ({namespace} filled in from the object).
COLLECTIONS = {
    "CustomResourceDefinition": CRDS,
    "Namespace": "/api/v1/namespaces",
    "ServiceAccount": "/api/v1/namespaces/{namespace}/serviceaccounts",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
    "Lease": "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
    "Node": "/api/v1/nodes",
    "FlowSchema": "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas",
}


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 60.0) -> None:
    """Setup only (before anything is measured): poll until probe() is true."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def crd_established(backend: Backend, name: str) -> bool:
    conditions = (backend.call("GET", f"{CRDS}/{name}").get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def chart_rbac_objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's ServiceAccount and RBAC objects as `helm install` renders them (as the tests'
    tests/support/control_plane.py does), release `modelrollout` in the operator namespace."""
    import helm_python as helm

    with helm.Chart.load(REPO / "charts/modelrollout-operator") as chart:
        manifests = chart.render(values, name="modelrollout", namespace=OPERATOR_NAMESPACE, is_install=True)
    wanted = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "FlowSchema"}
    objects: list[dict[str, Any]] = [
        document
        for path, text in sorted(manifests.items())
        if path.endswith((".yaml", ".yml"))
        for document in yaml.safe_load_all(text)
        if document and document.get("kind") in wanted
    ]
    return objects


def lease_role(account: str) -> list[dict[str, Any]]:
    """What N replicas need for their shard Leases (modelrollout-shard-<k> in the operator namespace),
    for a chart that does not grant it yet: the bench's own Role, bound to the chart's ServiceAccount."""
    name = "bench-shard-leases"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE},
            "rules": [
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": OPERATOR_NAMESPACE}],
        },
    ]


def chart_knows_shards() -> bool:
    schema = json.loads((REPO / "charts/modelrollout-operator/values.schema.json").read_text())
    return "shards" in (schema.get("properties") or {})


def register_node(backend: Backend, name: str, pods: int) -> None:
    """A Node the scheduler binds the benchmark's pods to: Ready, untainted, with room for `pods`
    (tests/support/control_plane.py's register_node, sized for thousands of pods)."""
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    backend.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})
    # The API server gives a new Node the not-ready taint; the node-lifecycle controller that would lift it is off.
    backend.call("PATCH", f"/api/v1/nodes/{name}", {"spec": {"taints": None}})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    capacity = {"cpu": "1000", "memory": "4Ti", "pods": str(pods)}
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "played by bench/scale_kubelet.py",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    status = {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [ready],
        "addresses": [{"type": "InternalIP", "address": "10.244.0.1"}],
    }
    backend.call("PATCH", f"/api/v1/nodes/{name}/status", {"status": status})


def start_real(args: argparse.Namespace, n: int, workdir: Path) -> Backend:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler; the CRDs; the chart's RBAC
    (the operator runs as the chart's ServiceAccount, so it can do exactly what the chart grants);
    a Node with room for every pod; the benchmark's namespace with its default ServiceAccount."""
    assets = find_assets()
    if assets is None:
        raise RuntimeError(f"--control-plane real needs the binaries: {HOW_TO_GET_BINARIES}")
    plane = ControlPlane.start_in(
        workdir / "control-plane",
        assets,
        remove_dir=False,
        extra_args={} if args.control_plane_defaults else CONTROLLER_FLAGS,
    )
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    backend = Backend(
        "real",
        plane.server,
        {"Authorization": f"Bearer {plane.admin_token}"},
        context,
        ["--ca-file", str(plane.ca_file)],
        {},
        plane.pids,
        plane,
    )
    try:
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            backend.create(yaml.safe_load(crd.read_text()))
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            name = yaml.safe_load(crd.read_text())["metadata"]["name"]
            wait_for(f"CRD {name} Established", functools.partial(crd_established, backend, name))
        backend.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}})
        values = {"shards": args.shards} if args.shards > 1 and chart_knows_shards() else {}
        objects = chart_rbac_objects(values)
        account = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
        if args.shards > 1 and not values:
            objects += lease_role(account)
        for document in objects:
            backend.create(document)
        # Each rollout has `replicas` pods, and a canary's candidate pods come before the stable's go.
        register_node(backend, NODE, pods=max(1000, 3 * args.replicas * n))
        backend.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})

        def has_default_account() -> bool:
            try:
                backend.call("GET", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")
            except urllib.error.HTTPError:
                return False
            return True

        # The ServiceAccount admission plugin refuses pods until the controller manager made `default`.
        wait_for(f"namespace {NAMESPACE}'s default ServiceAccount", has_default_account)
        plane.service_account_kubeconfig(workdir / "operator-sa.kubeconfig", OPERATOR_NAMESPACE, account)
    except BaseException:
        plane.stop()
        raise
    backend.kubeconfig = yaml.safe_load((workdir / "operator-sa.kubeconfig").read_text())
    (workdir / "admin.token").write_text(plane.admin_token)
    (workdir / "admin.token").chmod(0o600)
    return backend


# --- results -----------------------------------------------------------------------------------------


@dataclass
class SizeResult:
    size: int
    completed: bool = False
    note: str = ""
    create_seconds: float | None = None
    stable_seconds: float | None = None
    canary_seconds: float | None = None
    rss_peak: int | None = None
    rss_steady: int | None = None
    rss_idle_before_canary: int | None = None
    cpu_canary: float | None = None
    cpu_stable_phase: float | None = None
    steps_done: int = 0
    promoted: int = 0
    api_requests: int = 0
    api_writes: int = 0
    api_breakdown: dict[str, int] = field(default_factory=dict)
    api_breakdown_stable: dict[str, int] = field(default_factory=dict)
    prom_queries: int = 0
    measurements: int = 0
    measurements_counted: int = 0  # the sum of status `count`s (inflated by double-recorded measurements)
    pause_lag_decided: list[float] = field(default_factory=list)
    pause_lag_applied: list[float] = field(default_factory=list)
    # pause end -> the API server's answer to the status write naming the next step, as the counting
    # proxy saw it: applied minus this is how late the benchmark's watch delivered that write
    pause_lag_written: list[float] = field(default_factory=list)
    ready_lag: list[float] = field(default_factory=list)
    measurement_lateness: list[float] = field(default_factory=list)
    other_cpu: dict[str, float] = field(default_factory=dict)
    other_rss_peak: dict[str, int] = field(default_factory=dict)
    passes: dict[str, float] = field(default_factory=dict)
    pass_lateness: dict[str, float] = field(default_factory=dict)  # over the canary, sum and count by kind
    # pass slots per replica at the canary's start and end (mean over replicas), changes up and down in it
    pass_slots: dict[str, float] = field(default_factory=dict)
    # the operators' requests over the canary as they timed them (their loops' delay included):
    # count, and p50 / p90 / p99 as the upper bound of the histogram bucket they fall in
    api_answers: dict[str, float] = field(default_factory=dict)
    # the operator's requests over the canary, from arrival at the counting proxy to the API server's
    # answer (count, p50, p99, max seconds): the server side's share of a request's time
    api_server_side: dict[str, float] = field(default_factory=dict)
    gc_pauses: dict[str, float] = field(default_factory=dict)
    prom_breakdown: dict[str, int] = field(default_factory=dict)
    foreign_cpu_share: float | None = None  # share of the machine's cores busy with processes not ours
    sample_analysis: dict[str, Any] = field(default_factory=dict)
    workdir: str = ""
    control_plane: str = "emulator"
    shards: int = 1
    # Per process (every operator replica, the API server's processes, the stand-ins, Prometheus):
    # {"cpu_stable": s, "cpu_canary": s, "rss_peak": bytes, "rss_steady": bytes}
    processes: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    # The canary phase's writes split by what they are for (see split_writes): per step, per rollout, analysis
    api_details: dict[str, int] = field(default_factory=dict)
    writes_split: dict[str, int] = field(default_factory=dict)
    machine_load: dict[str, float] = field(default_factory=dict)  # load averages at the start and end
    shard_holders: dict[str, str] = field(default_factory=dict)  # shard Lease -> replica, before the rollouts
    shard_settle_seconds: float | None = None  # from the replicas' start to one shard each
    # The real API server's priority and fairness in the canary phase, "<level> <figure>" (flow_control)
    flow_control: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_per_step(self) -> float | None:
        return self.cpu_canary / self.steps_done if self.cpu_canary is not None and self.steps_done else None

    @property
    def requests_per_step(self) -> float | None:
        return self.api_requests / self.steps_done if self.steps_done else None

    @property
    def writes_per_step(self) -> float | None:
        return self.api_writes / self.steps_done if self.steps_done else None

    @property
    def queries_per_analysis(self) -> float | None:
        return self.prom_queries / self.measurements if self.measurements else None

    @property
    def step_events_per_step(self) -> float | None:
        """StepCompleted Events per step done: above 1, some step was acted on (announced) twice.
        Distinct Event names: a repost of the same Event (after a timeout or a 429) is not a second
        announcement, and keeps its name."""
        events = self.api_details.get("distinct event StepCompleted")
        return events / self.steps_done if events is not None and self.steps_done else None

    @property
    def step_writes_per_step(self) -> float | None:
        return self.writes_split.get("per_step", 0) / self.steps_done if self.steps_done and self.writes_split else None

    @property
    def rollout_writes_per_rollout(self) -> float | None:
        return self.writes_split.get("per_rollout", 0) / self.promoted if self.promoted and self.writes_split else None

    @property
    def analysis_writes_per_rollout(self) -> float | None:
        return self.writes_split.get("analysis", 0) / self.promoted if self.promoted and self.writes_split else None


def split_writes(breakdown: dict[str, int], details: dict[str, int]) -> dict[str, int]:
    """The canary phase's operator writes, split by what they are for (from the counting proxy's
    counts by method and resource, and its reading of Event reasons and status patches):

    * per step (as many as the canary has steps): the Deployment scales (``PATCH deployments``), the
      status write naming the next step (``status step``) or, for the last step, the promotion's
      status write (``status phase=Succeeded``: the same pass completes the last step and promotes),
      and the ``StepCompleted`` Event;
    * analysis: status writes that change neither step nor phase (measurements and conditions
      written on their own, at most every ``--quiet-write-seconds``), per rollout and time, not step;
    * per rollout (once per canary, whatever its steps): everything else: the candidate's creation
      (``POST deployments``), the old stable's deletion (``DELETE deployments``), the start's status
      write (``status phase=Progressing``), the ``RolloutStarted`` and ``Promoted`` Events, Services,
      kopf's own ModelRollout patches;
    * leases: the shard Leases' writes (with ``--shards`` above 1), per replica and time.
    """
    writes = sum(v for k, v in breakdown.items() if not k.startswith("GET "))
    per_step = (
        breakdown.get("PATCH deployments", 0)
        + details.get("status step", 0)
        + details.get("status phase=Succeeded", 0)
        + details.get("event StepCompleted", 0)
    )
    analysis = details.get("status other", 0)
    leases = sum(v for k, v in breakdown.items() if not k.startswith("GET ") and k.split()[-1].startswith("leases"))
    return {
        "per_step": per_step,
        "analysis": analysis,
        "leases": leases,
        "per_rollout": writes - per_step - analysis - leases,
        "all": writes,
    }


# --- the driver ---------------------------------------------------------------------------------------


class Watcher:
    """Lists and watches the ModelRollouts (on the emulator, not through the counting proxy)."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.status: dict[str, dict[str, Any]] = {}
        # name -> [(received at, currentStepIndex, stepStartedAt, phase, candidateVersion)]
        self.history: dict[str, list[tuple[float, Any, Any, Any, Any]]] = {}
        self.measured: dict[str, set[tuple[Any, Any]]] = {}  # name -> distinct background measurements
        self.counted: dict[str, int] = {}  # name -> highest background `count` seen in the canary
        self.last_analysis: dict[str, Any] = {}

    def see(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        self.status[name] = status
        key = (
            status.get("currentStepIndex"),
            status.get("stepStartedAt"),
            status.get("phase"),
            status.get("candidateVersion"),
        )
        seen = self.history.setdefault(name, [])
        if not seen or seen[-1][1:] != key:
            seen.append((time.time(), *key))
        background = status.get("backgroundAnalysis") or {}
        if status.get("candidateVersion") == "2":
            if background:
                self.last_analysis[name] = background
            for metric in background.get("metrics") or []:
                # Distinct measurement times, not `count`: a pass that measures and also advances a
                # step records its measurement twice (same `at`), which would inflate `count`.
                self.measured.setdefault(name, set()).update(
                    (metric.get("name"), m.get("at")) for m in metric.get("measurements") or []
                )
                self.counted[name] = max(self.counted.get(name, 0), int(metric.get("count") or 0))

    async def run(self, session: aiohttp.ClientSession) -> None:
        url = f"{self.server}/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
        while True:
            try:
                async with session.get(url) as answer:
                    listed = await answer.json()
                for item in listed.get("items", []):
                    self.see(item)
                params = {"watch": "true", "resourceVersion": listed["metadata"]["resourceVersion"]}
                async with session.get(url, params=params) as stream:
                    async for line in stream.content:
                        if line.strip():
                            event = json.loads(line)
                            if event.get("type") in ("ADDED", "MODIFIED"):
                                self.see(event["object"])
                            elif event.get("type") == "ERROR":
                                break
            except (TimeoutError, aiohttp.ClientError, ValueError):
                await asyncio.sleep(0.2)

    def count(self, phase: str, stable_version: str) -> int:
        return sum(
            1 for s in self.status.values() if s.get("phase") == phase and s.get("stableVersion") == stable_version
        )


class DeploymentReadiness:
    """Watches the benchmark namespace's Deployments (as the benchmark, uncounted) and records when
    each one's ``readyReplicas`` changed: on the real control plane the real Deployment controller
    reports it, from the pods the stand-in kubelet marked Ready (the emulator's stand-in controller
    records the same times itself)."""

    def __init__(self, server: str) -> None:
        self.url = f"{server}/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
        self.ready_times: dict[str, list[tuple[float, int]]] = {}  # namespace/name -> [(seen at, readyReplicas)]

    def see(self, obj: dict[str, Any]) -> None:
        key = f"{NAMESPACE}/{obj['metadata']['name']}"
        ready = int((obj.get("status") or {}).get("readyReplicas") or 0)
        seen = self.ready_times.setdefault(key, [])
        if (seen[-1][1] if seen else 0) != ready:
            seen.append((time.time(), ready))

    async def run(self, session: aiohttp.ClientSession) -> None:
        while True:
            try:
                async with session.get(self.url) as answer:
                    listed = await answer.json()
                for item in listed.get("items", []):
                    self.see(item)
                params = {"watch": "true", "resourceVersion": listed["metadata"]["resourceVersion"]}
                async with session.get(self.url, params=params) as stream:
                    async for line in stream.content:
                        if line.strip():
                            event = json.loads(line)
                            if event.get("type") in ("ADDED", "MODIFIED"):
                                self.see(event["object"])
                            elif event.get("type") == "ERROR":
                                break
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError):
                await asyncio.sleep(0.2)


class Sampler:
    def __init__(self, pids: dict[str, int], operators: list[str]) -> None:
        self.pids = pids
        self.operators = operators  # the operator replicas' names among the pids
        self.samples: list[tuple[float, dict[str, tuple[int, float]]]] = []

    def operator_cpu(self, sample: dict[str, tuple[int, float]]) -> float:
        """CPU seconds of every operator replica together."""
        return sum(sample[name][1] for name in self.operators if name in sample)

    def steady(self, name: str, start: float, end: float) -> int | None:
        """The median RSS of a process between two times."""
        values = self.rss_between(name, start, end)
        return int(statistics.median(values)) if values else None

    def take(self) -> dict[str, tuple[int, float]]:
        now = {name: s for name, pid in self.pids.items() if (s := proc_sample(pid)) is not None}
        now["machine"] = (0, machine_busy_seconds())
        self.samples.append((time.time(), now))
        return now

    async def run(self) -> None:
        while True:
            self.take()
            await asyncio.sleep(0.5)

    def rss_between(self, name: str, start: float, end: float) -> list[int]:
        return [s[name][0] for t, s in self.samples if start <= t <= end and name in s]

    def peak(self, name: str) -> int | None:
        values = [s[name][0] for _, s in self.samples if name in s]
        return max(values) if values else None


async def gather_limited(coros: list[Any], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with semaphore:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def stats(session: aiohttp.ClientSession, proxy: str, path: str = "/__scale_stats") -> dict[str, int]:
    async with session.get(f"{proxy}{path}") as answer:
        data: dict[str, int] = await answer.json()
        return data


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


async def wait_until(what: str, probe: Any, timeout: float, progress: Any = None) -> bool:
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while time.monotonic() < deadline:
        if probe():
            return True
        if progress is not None and time.monotonic() - last_report > 15:
            last_report = time.monotonic()
            console.log(f"  waiting for {what}: {progress()}")
        await asyncio.sleep(0.5)
    console.log(f"  [red]timed out waiting for {what}[/]: {progress() if progress else ''}")
    return False


async def operator_metrics(session: aiohttp.ClientSession, port: int) -> dict[str, float]:
    """The operator's reconcile-duration histogram sum and count."""
    try:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as answer:
            text = await answer.text()
    except aiohttp.ClientError:
        return {}
    found: dict[str, float] = {}
    for line in text.splitlines():
        for key in ("modelrollout_reconcile_duration_seconds_sum", "modelrollout_reconcile_duration_seconds_count"):
            if line.startswith(key + " "):
                found[key.rsplit("_", 1)[1]] = float(line.split()[1])
        # Garbage-collection pauses by generation: gc<N>_sum, gc<N>_count.
        if line.startswith("modelrollout_gc_pause_seconds_sum{") or line.startswith(
            "modelrollout_gc_pause_seconds_count{"
        ):
            generation = line.split('generation="', 1)[1].split('"', 1)[0]
            found[f"gc{generation}_{line.split('{', 1)[0].rsplit('_', 1)[1]}"] = float(line.split()[-1])
        # How late passes started after their deadlines, by kind: lateness_<kind>_sum, lateness_<kind>_count.
        for part in ("sum", "count"):
            if line.startswith(f"modelrollout_pass_lateness_seconds_{part}{{"):
                kind = line.split('kind="', 1)[1].split('"', 1)[0]
                found[f"lateness_{kind}_{part}"] = float(line.split()[-1])
        # The API server's answer times as the operator timed them: answers_le_<bucket>.
        if line.startswith("modelrollout_api_answer_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            found[f"answers_le_{le}"] = float(line.split()[-1])
        # How long passes took: pass_le_<bucket>.
        if line.startswith("modelrollout_reconcile_duration_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            found[f"pass_le_{le}"] = float(line.split()[-1])
        # The pass limit (modelrollout.runtime.pacing.AnswerTimeLimit): slots now, changes by direction.
        if line.startswith("modelrollout_pass_slots "):
            found["slots"] = float(line.split()[-1])
        if line.startswith("modelrollout_pass_slot_changes_total{"):
            direction = line.split('direction="', 1)[1].split('"', 1)[0]
            found[f"slots_{direction}"] = float(line.split()[-1])
        if line.startswith('modelrollout_pass_lateness_seconds_bucket{kind="urgent"'):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            found[f"lateness_urgent_le_{le}"] = float(line.split()[-1])
    return found


async def flow_control(session: aiohttp.ClientSession, backend: Backend) -> dict[str, float]:
    """The real API server's priority-and-fairness figures so far, by priority level: requests
    dispatched, seconds they waited in its queues (sum), requests rejected. The operator, as a
    ServiceAccount, is queued there; the benchmark's clients and the controllers (the admin, in
    system:masters) are exempt."""
    if backend.kind != "real":
        return {}
    async with session.get(f"{backend.url}/metrics") as answer:
        text = await answer.text()
    found: dict[str, float] = {}
    for line in text.splitlines():
        for metric, key in (
            ("apiserver_flowcontrol_request_wait_duration_seconds_sum{", "wait_seconds"),
            ("apiserver_flowcontrol_request_wait_duration_seconds_count{", "dispatched"),
            ("apiserver_flowcontrol_rejected_requests_total{", "rejected"),
        ):
            if line.startswith(metric) and 'priority_level="' in line:
                level = line.split('priority_level="', 1)[1].split('"', 1)[0]
                name = f"{level} {key}"
                found[name] = found.get(name, 0.0) + float(line.split()[-1])
    return found


def answer_quantiles(buckets: dict[str, float]) -> dict[str, float]:
    """Count and p50 / p90 / p99 (each the upper bound of its bucket) of a cumulative histogram."""
    ordered = sorted(((float(le), count) for le, count in buckets.items()), key=lambda pair: pair[0])
    total = ordered[-1][1] if ordered else 0.0
    found: dict[str, float] = {"count": total}
    for name, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        found[name] = next((le for le, count in ordered if total and count >= share * total), float("nan"))
    return found


async def all_operator_metrics(session: aiohttp.ClientSession, ports: list[int]) -> dict[str, float]:
    """operator_metrics summed over the replicas."""
    total: dict[str, float] = {}
    for port in ports:
        for key, value in (await operator_metrics(session, port)).items():
            total[key] = total.get(key, 0.0) + value
    return total


async def drive(
    args: argparse.Namespace,
    result: SizeResult,
    backend: Backend,
    api_proxy: str,
    prom_proxy: str,
    sampler: Sampler,
    exporter: Exporter,
    stand_in: Proc,
    metrics_ports: list[int],
) -> None:
    n = result.size
    names = [f"r-{i:05d}" for i in range(n)]
    async with aiohttp.ClientSession(
        connector=backend.connector(64),
        headers=backend.headers,
        timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        read_bufsize=2**22,
    ) as session:
        sampler_task = asyncio.ensure_future(sampler.run())
        watcher = Watcher(backend.url)
        watch_task = asyncio.ensure_future(watcher.run(session))
        # On the real control plane the Deployments' readiness is the real controllers' count: watched.
        readiness = DeploymentReadiness(backend.url) if backend.kind == "real" else None
        readiness_task = asyncio.ensure_future(readiness.run(session)) if readiness else None
        base = f"{backend.url}/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"

        async def create(name: str) -> None:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ModelRollout",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": rollout_spec(name, "1", args),
            }
            async with session.post(base, json=body) as answer:
                if answer.status >= 300:
                    raise RuntimeError(f"create {name}: {answer.status} {await answer.text()}")

        async def change_version(name: str) -> None:
            patch = {"spec": {"model": {"version": "2"}}}
            async with session.patch(
                f"{base}/{name}", data=json.dumps(patch), headers={"Content-Type": "application/merge-patch+json"}
            ) as answer:
                if answer.status >= 300:
                    raise RuntimeError(f"patch {name}: {answer.status} {await answer.text()}")

        try:
            # Phase 1: N rollouts deployed as stable.
            before_stable = await stats(session, api_proxy)
            sample0 = sampler.take()
            cpu0 = sampler.operator_cpu(sample0)
            started = time.time()
            await gather_limited([create(name) for name in names], 32)
            result.create_seconds = time.time() - started
            console.log(f"  {n} created in {result.create_seconds:.1f}s")
            ok = await wait_until(
                f"{n} rollouts Succeeded on version 1",
                lambda: watcher.count("Succeeded", "1") >= n,
                args.phase_timeout,
                lambda: f"{watcher.count('Succeeded', '1')}/{n} stable",
            )
            result.stable_seconds = time.time() - started
            sample1 = sampler.take()
            result.cpu_stable_phase = sampler.operator_cpu(sample1) - cpu0
            result.processes = {
                name: {"cpu_stable": round(sample1[name][1] - sample0[name][1], 2)}
                for name in sample1
                if name != "machine" and name in sample0
            }
            result.api_breakdown_stable = diff(await stats(session, api_proxy), before_stable)
            if not ok:
                result.note = f"only {watcher.count('Succeeded', '1')}/{n} reached stable in {args.phase_timeout:.0f}s"
                return
            console.log(f"  all stable after {result.stable_seconds:.1f}s")
            await asyncio.sleep(3)  # let the last status writes' echoes settle
            idle = sampler.take()
            result.rss_idle_before_canary = max(idle[name][0] for name in sampler.operators if name in idle)

            # Phase 2: the canary, every rollout at once.
            api_before = await stats(session, api_proxy)
            prom_before = await stats(session, prom_proxy)
            details_before = await stats(session, api_proxy, "/__scale_detail")
            apf_before = await flow_control(session, backend)
            passes_before = await all_operator_metrics(session, metrics_ports)
            cpu_before = sampler.take()
            canary_started = time.time()
            if args.spread > 0:
                # A fleet whose rollouts start at different times: the i-th version change at
                # i/n of the window, so steps fall due evenly instead of all at once.
                async def change_at(offset: float, name: str) -> None:
                    await asyncio.sleep(max(0.0, canary_started + offset - time.time()))
                    await change_version(name)

                await gather_limited([change_at(i * args.spread / n, name) for i, name in enumerate(names)], max(32, n))
            else:
                await gather_limited([change_version(name) for name in names], 32)
            console.log(f"  version changed on {n} in {time.time() - canary_started:.1f}s")
            ok = await wait_until(
                f"{n} rollouts Succeeded on version 2",
                lambda: watcher.count("Succeeded", "2") >= n,
                args.phase_timeout + parse_duration(args.pause) * len(args.weights) + args.spread,
                lambda: (
                    f"{watcher.count('Succeeded', '2')}/{n} promoted; steps: "
                    + str(
                        sorted(
                            {(s.get("currentStepIndex"), s.get("phase")): 0 for s in watcher.status.values()}.keys(),
                            key=str,
                        )
                    )
                ),
            )
            canary_ended = time.time()
            result.canary_seconds = canary_ended - canary_started
            cpu_after = sampler.take()
            api_after = await stats(session, api_proxy)
            prom_after = await stats(session, prom_proxy)
            details_after = await stats(session, api_proxy, "/__scale_detail")
            async with session.get(f"{api_proxy}/__scale_timings?since={canary_started}") as answer:
                result.api_server_side = await answer.json()
            # name -> step index -> when the API server accepted the status write first naming it
            step_written: dict[str, dict[int, float]] = {}
            async with session.get(f"{api_proxy}/__scale_step_writes?since={canary_started}") as answer:
                for answered, written_name, index in await answer.json():
                    step_written.setdefault(written_name, {}).setdefault(index, answered)
            apf_after = await flow_control(session, backend)
            result.flow_control = {
                key: round(value - apf_before.get(key, 0.0), 3)
                for key, value in apf_after.items()
                if value - apf_before.get(key, 0.0)
            }
            passes_after = await all_operator_metrics(session, metrics_ports)
            result.promoted = watcher.count("Succeeded", "2")
            result.completed = ok
            if not ok:
                result.note = f"only {result.promoted}/{n} promoted within the timeout"
            result.cpu_canary = sampler.operator_cpu(cpu_after) - sampler.operator_cpu(cpu_before)
            result.other_cpu = {
                name: round(cpu_after[name][1] - cpu_before[name][1], 2)
                for name in cpu_after
                if name not in sampler.operators and name in cpu_before
            }
            ours = sum(v for k, v in result.other_cpu.items() if k != "machine") + result.cpu_canary
            result.foreign_cpu_share = round(
                (result.other_cpu.get("machine", 0) - ours) / (result.canary_seconds * (os.cpu_count() or 1)), 3
            )
            for name, figures in result.processes.items():
                if name in cpu_after and name in cpu_before:
                    figures["cpu_canary"] = round(cpu_after[name][1] - cpu_before[name][1], 2)
                figures["rss_steady"] = sampler.steady(name, canary_started, canary_ended)
            result.rss_steady = max(
                (v for name in sampler.operators if (v := sampler.steady(name, canary_started, canary_ended))),
                default=None,
            )
            result.api_breakdown = diff(api_after, api_before)
            result.api_details = diff(details_after, details_before)
            result.writes_split = split_writes(result.api_breakdown, result.api_details)
            result.api_requests = sum(result.api_breakdown.values())
            result.api_writes = sum(v for k, v in result.api_breakdown.items() if not k.startswith("GET "))
            result.prom_breakdown = diff(prom_after, prom_before)
            result.prom_queries = sum(
                v for k, v in result.prom_breakdown.items() if k.split()[-1] in ("query", "query_range")
            )
            result.sample_analysis = watcher.last_analysis.get(names[0], {})
            result.measurements = sum(len(seen) for seen in watcher.measured.values())
            result.measurements_counted = sum(watcher.counted.values())
            interval = parse_duration(args.analysis_interval)
            for seen in watcher.measured.values():
                times = sorted(t for t in (ts(at) for _, at in seen) if t is not None)
                result.measurement_lateness += [max(0.0, b - a - interval) for a, b in itertools.pairwise(times)]
            if passes_after and passes_before:
                count = passes_after["count"] - passes_before.get("count", 0)
                result.passes = {
                    "count": count,
                    "seconds": passes_after["sum"] - passes_before.get("sum", 0),
                    **{
                        f"duration {name}": value
                        for name, value in answer_quantiles(
                            {
                                key.removeprefix("pass_le_"): value - passes_before.get(key, 0)
                                for key, value in passes_after.items()
                                if key.startswith("pass_le_")
                            }
                        ).items()
                        if name != "count"
                    },
                }
                result.gc_pauses = {
                    key: round(value - passes_before.get(key, 0), 3)
                    for key, value in passes_after.items()
                    if key.startswith("gc")
                }
                result.pass_lateness = {
                    key: round(value - passes_before.get(key, 0), 3)
                    for key, value in passes_after.items()
                    if key.startswith("lateness_")
                }
                result.api_answers = answer_quantiles(
                    {
                        key.removeprefix("answers_le_"): value - passes_before.get(key, 0)
                        for key, value in passes_after.items()
                        if key.startswith("answers_le_")
                    }
                )
                replicas = max(len(metrics_ports), 1)
                result.pass_slots = {
                    "start": round(passes_before.get("slots", 0) / replicas, 1),
                    "end": round(passes_after.get("slots", 0) / replicas, 1),
                    "up": passes_after.get("slots_up", 0) - passes_before.get("slots_up", 0),
                    "down": passes_after.get("slots_down", 0) - passes_before.get("slots_down", 0),
                }

            # Lags, from the watch history and the Deployments' readiness times.
            stand_in.stop()
            ready_times: dict[str, list[tuple[float, int]]]
            if readiness is not None:
                ready_times = readiness.ready_times
            else:
                ready_times = json.loads((stand_in.log.parent / "controller-times.json").read_text())["ready_times"]
            pause = parse_duration(args.pause)
            steps_done = 0
            for name in names:
                history = watcher.history.get(name, [])
                canary = [h for h in history if h[4] == "2" and h[1] is not None]
                started_at: dict[int, float] = {}
                seen_at: dict[int, float] = {}
                for received, index, step_started, _phase, _version in canary:
                    if index not in started_at and step_started:
                        started_at[index] = ts(step_started)  # type: ignore[assignment]
                        seen_at[index] = received
                # The last step (setWeight 100) completes in the pass that also promotes:
                # currentStepIndex then goes from it straight to none, so its completion is the promotion.
                last = len(canary_steps(args)) - 1
                promoted_at = next(
                    (h[0] for h in history if h[3] == "Succeeded" and seen_at and h[0] >= max(seen_at.values())),
                    None,
                )
                if promoted_at is not None and last in seen_at:
                    seen_at[last + 1] = promoted_at
                steps_done += sum(1 for i in range(1, last + 2) if i in seen_at)
                for paused in range(1, last, 2):  # pause steps sit at the odd indexes
                    if paused in started_at and paused + 1 in started_at:
                        due = started_at[paused] + pause
                        result.pause_lag_decided.append(started_at[paused + 1] - due)
                        result.pause_lag_applied.append(seen_at[paused + 1] - due)
                        written = step_written.get(name, {}).get(paused + 1)
                        if written is not None:
                            result.pause_lag_written.append(written - due)
                if args.weights != [50] or args.replicas != 2:
                    continue  # the readiness lag below knows the default canary's replica counts only
                revision = (watcher.status.get(name) or {}).get("stableRevision")
                ready = ready_times.get(f"{NAMESPACE}/{deployment_name(name, revision)}", []) if revision else []
                for index, replicas in ((1, 1), (3, 2)):
                    when = next((t for t, r in ready if r == replicas), None)
                    if when is not None and index in seen_at:
                        result.ready_lag.append(seen_at[index] - when)
            result.steps_done = steps_done
            await asyncio.sleep(2)
        finally:
            watch_task.cancel()
            sampler_task.cancel()
            if readiness_task is not None:
                readiness_task.cancel()
            result.rss_peak = max((v for name in sampler.operators if (v := sampler.peak(name))), default=None)
            result.other_rss_peak = {
                name: peak
                for name in sampler.pids
                if name not in (*sampler.operators, "machine") and (peak := sampler.peak(name))
            }
            for name in sampler.pids:
                result.processes.setdefault(name, {})["rss_peak"] = sampler.peak(name)


def shard_holders(backend: Backend) -> dict[str, str]:
    """Shard Lease -> its holder (empty when released)."""
    leases = backend.call(
        "GET",
        f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}/leases?labelSelector=modelrollout.io/lease=shard",
    )
    return {item["metadata"]["name"]: (item.get("spec") or {}).get("holderIdentity") or "" for item in leases["items"]}


def preassign_shards(backend: Backend, shards: int) -> None:
    """Create the shard Leases as their replicas would, shard k held by bench-op-k (what
    ``modelrollout.sharding.leases.LeaseStore`` writes; 30 s, the default ``--shard-lease-seconds``):
    each replica then starts on its own shard and renews it, with no start-up handovers."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for shard in range(shards):
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": f"modelrollout-shard-{shard}",
                "namespace": OPERATOR_NAMESPACE,
                "labels": {
                    "app.kubernetes.io/managed-by": "modelrollout",
                    f"{GROUP}/lease": "shard",
                    f"{GROUP}/shard": str(shard),
                },
                "annotations": {f"{GROUP}/shards": str(shards)},
            },
            "spec": {
                "holderIdentity": f"bench-op-{shard}",
                "leaseDurationSeconds": 30,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        backend.create(lease)


def wait_for_balanced_shards(backend: Backend, shards: int, timeout: float) -> dict[str, str]:
    """Until N shard Leases are held by N different replicas (or the timeout: the holders then, unbalanced)."""
    deadline = time.monotonic() + timeout
    while True:
        holders = shard_holders(backend)
        if len(holders) == shards and len({h for h in holders.values() if h}) == shards:
            return holders
        if time.monotonic() > deadline:
            console.log(f"  [red]shards not balanced after {timeout:.0f} s[/]: {holders}")
            return holders
        time.sleep(0.5)


def operator_names(shards: int) -> list[str]:
    return ["operator"] if shards == 1 else [f"operator-{i}" for i in range(shards)]


def operator_command(args: argparse.Namespace, kubeconfig: Path, prom_proxy: str, port: int, index: int) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "modelrollout.cli",
        "run",
        "--kubeconfig",
        str(kubeconfig),
        "--prometheus-url",
        prom_proxy,
        "--metrics-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
        "--health-endpoint",
        "",
        "--resync-seconds",
        "300",
    ]
    if args.shards > 1:  # with one, no sharding flags at all: the operator exactly as before sharding
        command += [
            "--shards",
            str(args.shards),
            "--shard-identity",
            f"bench-op-{index}",
            "--operator-namespace",
            OPERATOR_NAMESPACE,
        ]
    return command + list(args.operator_arg)


def run_size(args: argparse.Namespace, n: int) -> SizeResult:
    result = SizeResult(size=n, control_plane=args.control_plane, shards=args.shards)
    workdir = Path(tempfile.mkdtemp(prefix=f"modelrollout-scale-{n}-"))
    result.workdir = str(workdir)
    python = sys.executable
    procs: list[Proc] = []
    exporter: Exporter | None = None
    prometheus: PrometheusServer | None = None
    backend: Backend | None = None
    console.rule(f"{n} rollouts on the {args.control_plane} API server, {args.shards} shard(s) (logs in {workdir})")
    try:
        backend = (
            start_emulator(n, workdir, procs) if args.control_plane == "emulator" else start_real(args, n, workdir)
        )
        api_proxy_proc = Proc(
            "api-proxy",
            [
                python,
                str(REPO / "bench/scale_proxy.py"),
                "--upstream",
                backend.url,
                *backend.proxy_args,
                *(["--log-writes", str(args.log_writes)] if args.log_writes else []),
            ],
            workdir,
        )
        procs.append(api_proxy_proc)
        api_proxy = api_proxy_proc.first_line()
        kubeconfig = backend.kubeconfig
        for cluster in kubeconfig["clusters"]:
            cluster["cluster"]["server"] = api_proxy
        (workdir / "operator.kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        (workdir / "operator.kubeconfig").chmod(0o600)

        exporter = Exporter().start()
        for i in range(n):
            exporter.set(METRIC, 0.01, rollout=f"r-{i:05d}")
        prometheus = PrometheusServer(
            [exporter.target], scrape_interval=parse_duration(args.scrape_interval), workdir=workdir / "prometheus"
        )
        (workdir / "prometheus").mkdir()
        prometheus.start(timeout=60)
        prom_proxy_proc = Proc(
            "prom-proxy", [python, str(REPO / "bench/scale_proxy.py"), "--upstream", prometheus.address], workdir
        )
        procs.append(prom_proxy_proc)
        prom_proxy = prom_proxy_proc.first_line()

        if backend.kind == "emulator":
            # The Deployments' readiness, patched straight into their status.
            stand_in = Proc(
                "controller",
                [
                    python,
                    str(REPO / "bench/scale_controller.py"),
                    "--server",
                    backend.url,
                    "--times-file",
                    str(workdir / "controller-times.json"),
                ],
                workdir,
            )
        else:
            # The real controllers count the pods this one reports Ready.
            stand_in = Proc(
                "kubelet",
                [
                    python,
                    str(REPO / "bench/scale_kubelet.py"),
                    "--server",
                    backend.url,
                    "--ca-file",
                    str(backend.plane.ca_file if backend.plane else ""),
                    "--token-file",
                    str(workdir / "admin.token"),
                    "--node",
                    NODE,
                    "--namespace",
                    NAMESPACE,
                    "--stats-file",
                    str(workdir / "kubelet-stats.json"),
                ],
                workdir,
            )
        procs.append(stand_in)
        stand_in.first_line()

        if args.shards > 1 and args.shard_start == "preassigned":
            preassign_shards(backend, args.shards)
        names = operator_names(args.shards)
        metrics_ports = [free_port() for _ in names]
        operators = [
            Proc(name, operator_command(args, workdir / "operator.kubeconfig", prom_proxy, port, index), workdir)
            for index, (name, port) in enumerate(zip(names, metrics_ports, strict=True))
        ]
        procs.extend(operators)
        # Ready when each one's /metrics answers and kopf has logged its start.
        deadline = time.monotonic() + 60
        for port in metrics_ports:
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.2)
        time.sleep(2)
        for op in operators:
            if op.popen.poll() is not None:
                tail = op.log.read_text(errors="replace").splitlines()[-5:]
                raise RuntimeError(f"{op.name} exited with {op.popen.returncode}: " + " | ".join(tail))
        if args.shards > 1:
            # Measure the steady state, not the start's handovers: rollouts are created once each
            # replica holds one shard (replicas first take what is free, then hand shards over).
            settle_started = time.monotonic()
            result.shard_holders = wait_for_balanced_shards(backend, args.shards, timeout=180)
            result.shard_settle_seconds = round(time.monotonic() - settle_started, 1)
            console.log(f"  shards held {result.shard_holders} after {result.shard_settle_seconds} s")
        sampler = Sampler(
            {
                **{op.name: op.pid for op in operators},
                **backend.pids,
                "api-proxy": api_proxy_proc.pid,
                "prom-proxy": prom_proxy_proc.pid,
                stand_in.name: stand_in.pid,
                "prometheus": prometheus._process.pid if prometheus._process else 0,
                "bench": os.getpid(),
            },
            names,
        )
        if args.profile:
            procs.append(
                Proc(
                    "py-spy",
                    [
                        shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--pid",
                        str(operators[0].pid),
                        "--format",
                        "raw",
                        "--rate",
                        "50",
                        "--output",
                        str(workdir / "operator.pyspy.txt"),
                    ],
                    workdir,
                )
            )
        asyncio.run(drive(args, result, backend, api_proxy, prom_proxy, sampler, exporter, stand_in, metrics_ports))
    except Exception as error:  # report what we have, and go on with the next size
        console.print_exception()
        result.note = result.note or f"failed: {error!r}"
    finally:
        for proc in reversed(procs):
            if proc.name == "py-spy":
                proc.popen.send_signal(signal.SIGINT)
                try:
                    proc.popen.wait(30)
                except subprocess.TimeoutExpired:
                    proc.popen.kill()
            else:
                proc.stop()
        if prometheus is not None:
            prometheus.stop()
        if exporter is not None:
            exporter.stop()
        if backend is not None:
            backend.stop()
    return result


# --- report ------------------------------------------------------------------------------------------


def mark(ok: bool | None) -> str:
    return "" if ok is None else (" [green]met[/]" if ok else " [red]missed[/]")


def fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def report(results: list[SizeResult], extrapolated: SizeResult | None, spread: float) -> None:
    start = f"version changes spread over {spread:.0f} s" if spread > 0 else "every version changed at once"
    table = Table(title=f"ModelRollout operator at scale (canary phase, {start}; targets from issue 7)")
    for column in (
        "rollouts",
        "API server, shards",
        "done",
        "RSS peak (largest replica)",
        "RSS steady (largest replica)",
        "CPU s / step (all replicas)",
        "API req / step",
        "API writes / step (<=3)",
        "of them: step writes / step, per-rollout writes / rollout, analysis writes / rollout",
        "Prom queries / analysis",
        "pause lag p50 / p99 (decided)",
        "pause lag p50 / p99 (applied) (<2 s)",
        "pause lag p50 / p99 (written)",
        "ready->step lag p50 / p99 (applied)",
        "measurement late p50 / p99",
        "canary wall",
    ):
        table.add_column(column, justify="right")
    for r in [*results, *([extrapolated] if extrapolated else [])]:
        big = r.size >= 10_000
        rss_ok = (r.rss_peak < TARGET_RSS) if (big and r.rss_peak) else None
        p99 = pct(r.pause_lag_applied, 0.99)
        table.add_row(
            f"{r.size:,}" + (" (extrapolated)" if r is extrapolated else ""),
            f"{r.control_plane}, {r.shards}",
            "yes" if r.completed else ("-" if r is extrapolated else f"no ({r.promoted})"),
            fmt(r.rss_peak and r.rss_peak / 2**20, ",.0f", " MiB") + mark(rss_ok),
            fmt(r.rss_steady and r.rss_steady / 2**20, ",.0f", " MiB"),
            fmt(r.cpu_per_step, ".4f"),
            fmt(r.requests_per_step, ".2f"),
            fmt(r.writes_per_step, ".2f")
            + mark(None if r.writes_per_step is None else r.writes_per_step <= TARGET_WRITES),
            f"{fmt(r.step_writes_per_step, '.2f')}, {fmt(r.rollout_writes_per_rollout, '.2f')}, "
            f"{fmt(r.analysis_writes_per_rollout, '.2f')}",
            fmt(r.queries_per_analysis, ".2f"),
            f"{fmt(pct(r.pause_lag_decided, 0.5), '.2f')} / {fmt(pct(r.pause_lag_decided, 0.99), '.2f')} s",
            f"{fmt(pct(r.pause_lag_applied, 0.5), '.2f')} / {fmt(p99, '.2f')} s"
            + mark(None if p99 is None else p99 < TARGET_LAG),
            f"{fmt(pct(r.pause_lag_written, 0.5), '.2f')} / {fmt(pct(r.pause_lag_written, 0.99), '.2f')} s",
            f"{fmt(pct(r.ready_lag, 0.5), '.2f')} / {fmt(pct(r.ready_lag, 0.99), '.2f')} s",
            f"{fmt(pct(r.measurement_lateness, 0.5), '.2f')} / {fmt(pct(r.measurement_lateness, 0.99), '.2f')} s",
            fmt(r.canary_seconds, ".0f", " s"),
        )
    console.print(table)
    for r in results:
        if r.processes:
            console.print(process_table(r))
    for r in results:
        console.print(f"[bold]{r.size:,}[/]: {r.note or 'ok'}; logs {r.workdir}")
        console.print(
            f"  stable phase: create {fmt(r.create_seconds, '.1f')} s, all Succeeded after "
            f"{fmt(r.stable_seconds, '.1f')} s, operator CPU {fmt(r.cpu_stable_phase, '.1f')} s; "
            f"RSS idle before canary {fmt(r.rss_idle_before_canary and r.rss_idle_before_canary / 2**20, '.0f')} MiB"
        )
        console.print(
            f"  canary: {r.steps_done} steps, {r.measurements} measurements, "
            f"operator CPU {fmt(r.cpu_canary, '.1f')} s, "
            f"passes {r.passes}; pass lateness {r.pass_lateness}; pass slots {r.pass_slots}; "
            f"operator requests as the operator timed them, s: {r.api_answers}; "
            f"operator requests, server side (proxy + API server), s: {r.api_server_side}; "
            f"garbage collection (s, count by generation) {r.gc_pauses}; "
            f"other processes' CPU {r.other_cpu}; "
            "machine busy with processes outside the benchmark: "
            f"{fmt(r.foreign_cpu_share and r.foreign_cpu_share * 100, '.0f')} % of the cores"
        )
        writes = {k: v for k, v in sorted(r.api_breakdown.items(), key=lambda kv: -kv[1])}
        console.print(f"  API calls in the canary phase: {writes}")
        console.print(f"  writes split: {r.writes_split}; from {r.api_details}; load average {r.machine_load}")
        console.print(
            f"  StepCompleted Events per step: {fmt(r.step_events_per_step, '.3f')} (1: no step announced twice); "
            f"shards {r.shard_holders or '-'} settled in {fmt(r.shard_settle_seconds, '.1f')} s"
        )
        if r.flow_control:
            console.print(f"  API server priority and fairness in the canary: {r.flow_control}")


def process_table(r: SizeResult) -> Table:
    """Each process's CPU and memory: the operator replicas' share of the whole."""
    title = f"{r.size:,} rollouts, {r.control_plane} API server, {r.shards} shard(s): per process"
    table = Table(title=title)
    for column in (
        "process",
        "CPU s stable phase",
        "CPU s canary",
        "CPU ms / step",
        "share of canary CPU",
        "RSS peak",
        "RSS steady (canary)",
    ):
        table.add_column(column, justify="right")
    total = sum(float(f.get("cpu_canary") or 0) for f in r.processes.values())
    for name, figures in sorted(r.processes.items(), key=lambda kv: -float(kv[1].get("cpu_canary") or 0)):
        canary = figures.get("cpu_canary")
        peak, steady = figures.get("rss_peak"), figures.get("rss_steady")
        table.add_row(
            name,
            fmt(figures.get("cpu_stable"), ".1f"),
            fmt(canary, ".1f"),
            fmt(canary * 1000 / r.steps_done if canary is not None and r.steps_done else None, ".2f"),
            fmt(canary / total * 100 if canary is not None and total else None, ".0f", " %"),
            fmt(peak and peak / 2**20, ",.0f", " MiB"),
            fmt(steady and steady / 2**20, ",.0f", " MiB"),
        )
    return table


def extrapolate(results: list[SizeResult], size: int) -> SizeResult | None:
    """A straight line through the two largest completed sizes (RSS, CPU): labelled as such."""
    done = [r for r in results if r.completed and r.rss_peak and r.rss_steady]
    if len(done) < 2 or any(r.size >= size for r in done):
        return None
    a, b = done[-2], done[-1]

    def line(va: float, vb: float) -> float:
        return vb + (vb - va) / (b.size - a.size) * (size - b.size)

    out = SizeResult(size=size, note="extrapolated linearly from the two largest completed sizes")
    out.rss_peak = int(line(a.rss_peak or 0, b.rss_peak or 0))
    out.rss_steady = int(line(a.rss_steady or 0, b.rss_steady or 0))
    steps = b.steps_done // b.size if b.size else STEPS
    out.cpu_canary = b.cpu_per_step * size * steps if b.cpu_per_step else None
    out.steps_done = size * steps
    out.api_requests = int((b.requests_per_step or 0) * size * steps)
    out.api_writes = int((b.writes_per_step or 0) * size * steps)
    out.prom_queries, out.measurements = b.prom_queries, b.measurements
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--analysis-interval", default="30s")
    parser.add_argument("--pause", default="60s", help="the canary's pause steps")
    parser.add_argument(
        "--weights",
        default="50",
        help="the canary's weights, each followed by a pause, then 100 (e.g. 20,40,60,80 for 9 steps); "
        "comparing two canaries' writes gives the writes one more step costs",
    )
    parser.add_argument("--replicas", type=int, default=2, help="replicas per rollout")
    parser.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="seconds over which the version changes are spread evenly (default 0: all at once, the "
        "burst); with the pause's length, steps fall due evenly as in a fleet whose rollouts start at "
        "different times",
    )
    parser.add_argument(
        "--control-plane",
        choices=("emulator", "real"),
        default="emulator",
        help="the API server: the emulator, or the real control plane (etcd, kube-apiserver, "
        "kube-controller-manager, kube-scheduler from $KUBEBUILDER_ASSETS; pods played by bench/scale_kubelet.py)",
    )
    parser.add_argument(
        "--control-plane-defaults",
        action="store_true",
        help="run the real controller manager and scheduler with their default API rates and concurrency "
        "instead of the large-cluster settings (CONTROLLER_FLAGS)",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=1,
        help="operator replicas, each started with --shards N --shard-identity bench-op-<i>; 1: one operator "
        "without sharding flags",
    )
    parser.add_argument(
        "--shard-start",
        choices=("free", "preassigned"),
        default="free",
        help="with shards: free, the replicas share the shards out themselves at start (the first takes "
        "all, then hands shards over); preassigned, the benchmark creates each shard's Lease held by its "
        "replica first, so each starts on one shard",
    )
    parser.add_argument("--scrape-interval", default="5s", help="Prometheus's scrape interval")
    parser.add_argument("--phase-timeout", type=float, default=900.0, help="seconds allowed per phase")
    parser.add_argument(
        "--operator-arg",
        action="append",
        default=[],
        help="one more argument for each `modelrollout run` (repeat it; e.g. --operator-arg=--resync-seconds=120)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy record the operator (raw collapsed stacks)")
    parser.add_argument("--log-writes", type=Path, default=None, help="log the operator's API writes (JSON lines)")
    parser.add_argument("--json", type=Path, default=Path(tempfile.gettempdir()) / "modelrollout-scale.json")
    args = parser.parse_args()
    args.weights = [int(w) for w in args.weights.split(",") if w]
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s]
    results: list[SizeResult] = []
    for n in sizes:
        load_before = os.getloadavg()
        results.append(run_size(args, n))
        results[-1].machine_load = {"before_1min": load_before[0], "after_1min": os.getloadavg()[0]}
        args.json.write_text(
            json.dumps(
                [
                    asdict(r)
                    | {
                        "cpu_per_step": r.cpu_per_step,
                        "writes_per_step": r.writes_per_step,
                        "requests_per_step": r.requests_per_step,
                        "queries_per_analysis": r.queries_per_analysis,
                        "step_writes_per_step": r.step_writes_per_step,
                        "step_events_per_step": r.step_events_per_step,
                        "rollout_writes_per_rollout": r.rollout_writes_per_rollout,
                        "analysis_writes_per_rollout": r.analysis_writes_per_rollout,
                    }
                    for r in results
                ],
                indent=1,
            )
        )
    largest = max(sizes)
    extrapolated = None
    if not any(r.size == largest and r.completed for r in results):
        extrapolated = extrapolate(results, largest)
    report(results, extrapolated, args.spread)
    console.print(f"raw data: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
