"""The chart renders valid Kubernetes objects in every install mode, safely configured."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, EVERYTHING, NAMESPACE, NAMESPACED, ROOT, SCENARIOS, Render, find, one

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is needed to render the chart")

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is needed")
jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (a dependency of kubernetes-validate) is needed")

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # the oldest supported (Chart.yaml kubeVersion) and the newest known

# Kinds kubernetes-validate has no schema for (CRDs of other projects): checked against the
# fields their controllers read, with unknown fields refused so a typo cannot pass silently.
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1}, "labels": _STRING_MAP, "annotations": _STRING_MAP},
}
_DURATION = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$"}
CUSTOM_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", "endpoints"],
                "properties": {
                    "selector": {"type": "object", "required": ["matchLabels"]},
                    "namespaceSelector": {"type": "object"},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["port"],
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": _DURATION,
                                "scrapeTimeout": _DURATION,
                            },
                        },
                    },
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["groups"],
                "properties": {
                    "groups": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name", "rules"],
                            "properties": {
                                "name": {"type": "string"},
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "required": ["alert", "expr"],
                                        "properties": {
                                            "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                            "expr": {"type": "string", "minLength": 1},
                                            "for": _DURATION,
                                            "labels": _STRING_MAP,
                                            "annotations": _STRING_MAP,
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
    },
    # kopf's peering objects carry nothing but metadata; kopf writes their status.
    "ClusterKopfPeering": {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata"],
        "properties": {
            "apiVersion": {"const": "kopf.dev/v1"},
            "kind": {"const": "ClusterKopfPeering"},
            "metadata": {**_METADATA, "not": {"required": ["namespace"]}},
        },
    },
    "KopfPeering": {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata"],
        "properties": {
            "apiVersion": {"const": "kopf.dev/v1"},
            "kind": {"const": "KopfPeering"},
            "metadata": {**_METADATA, "required": ["name", "namespace"]},
        },
    },
}


def _deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment")


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = _deployment(objects)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# --- validity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_object_validates_against_the_kubernetes_schemas(render: Render, scenario: str) -> None:
    objects = render(SCENARIOS[scenario])
    assert objects
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in CUSTOM_SCHEMAS:
            jsonschema.validate(obj, CUSTOM_SCHEMAS[obj["kind"]])
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{scenario}: {where} is invalid for Kubernetes {version}: {error.message}")


def test_the_chart_crds_validate(chart: Any) -> None:
    for crd in chart.crds:
        kubernetes_validate.validate(yaml.safe_load(crd["data"]), KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_passes(scenario: str) -> None:
    report = helm.lint(CHART, SCENARIOS[scenario], strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert report["errors"] == []
    # Severity 1 is informational (Chart.yaml has no icon); warnings and errors fail.
    assert [message for message in report["messages"] if message["severity"] >= 2] == []


def test_chart_crds_are_a_copy_of_the_repository_crds() -> None:
    repository = {path.name: path.read_text() for path in sorted((ROOT / "crds").glob("*.yaml"))}
    chart = {path.name: path.read_text() for path in sorted((CHART / "crds").glob("*.yaml"))}
    assert repository, "no CRDs in crds/"
    assert chart == repository, "charts/modelrollout-operator/crds/ differs from crds/: cp crds/*.yaml into it"


# --- values schema -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"logFormat": "xml"}, "at '/logFormat': value must be one of 'text', 'json'"),
        ({"securityContext": {"runAsUser": 0, "runAsGroup": 0}}, "at '/securityContext/runAsUser'"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "at '/watchNamespaces/0'"),
        ({"image": {"repository": "x", "tag": "1", "pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
    ],
)
def test_values_that_break_the_schema_are_refused_with_its_message(
    chart: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        chart.validate_schema(values)
    # An install renders with the same check, so a bad value never reaches the cluster.
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        chart.render(values, name="modelrollout", namespace=NAMESPACE)


def test_a_values_file_that_breaks_the_schema_fails_lint(tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text("replicaCount: two\nunknownKey: true\n")
    report = helm.lint(CHART, yaml.safe_load(values_file.read_text()))
    errors = "\n".join(report["errors"])
    assert "at '/replicaCount': got string, want integer" in errors
    assert "additional properties 'unknownKey' not allowed" in errors


def test_the_schema_types_every_value_and_refuses_unknown_top_level_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(values: Any, node: dict[str, Any], path: str) -> None:
        assert "type" in node, f"{path}: no type in values.schema.json"
        if isinstance(values, dict) and "properties" in node:
            for key, value in values.items():
                assert key in node["properties"], f"{path}.{key}: not in values.schema.json"
                walk(value, node["properties"][key], f"{path}.{key}")

    walk(defaults, schema, "values")


# --- the operator's pod ------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_pod_runs_locked_down(render: Render, scenario: str) -> None:
    objects = render(SCENARIOS[scenario])
    pod = _deployment(objects)["spec"]["template"]["spec"]
    container = _container(objects)
    context = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == pod["securityContext"]["runAsUser"] == 10001
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # The only writable place, /tmp, is an emptyDir.
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8081, "protocol": "TCP"} in container["ports"]


def test_default_install_runs_the_operator_cluster_wide_without_peering(render: Render) -> None:
    objects = render({})
    container = _container(objects)
    assert container["image"] == "ghcr.io/modelrollout/modelrollout-operator:0.1.0"
    args = container["args"]
    assert args[0] == "run"
    assert "--prometheus-url=http://prometheus-operated.monitoring:9090" in args
    assert "--log-format=json" in args
    assert "--metrics-port=8080" in args
    assert "--health-endpoint=http://0.0.0.0:8081/healthz" in args
    assert not [arg for arg in args if arg.startswith(("--namespace", "--peering"))]
    assert _deployment(objects)["spec"]["replicas"] == 1
    # One replica: never two operators at once, even during an upgrade.
    assert _deployment(objects)["spec"]["strategy"] == {"type": "Recreate"}
    for kind in ("PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "NetworkPolicy", "ClusterKopfPeering"):
        assert not find(objects, kind), f"{kind} rendered by default"
    assert one(objects, "Service")["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_the_shadow_comparator_runs_the_operators_own_image(render: Render) -> None:
    from modelrollout.kube.comparator import DEFAULT_IMAGE, IMAGE_ENV

    for values, image in (
        ({}, DEFAULT_IMAGE),
        ({"image": {"repository": "registry.local/mro", "tag": "9"}}, "registry.local/mro:9"),
    ):
        container = _container(render(values))
        env = {variable["name"]: variable.get("value") for variable in container["env"]}
        assert env[IMAGE_ENV] == container["image"] == image


def test_the_rendered_args_parse_with_the_operator_cli(render: Render) -> None:
    from modelrollout.cli import build_parser

    for values in SCENARIOS.values():
        args = build_parser().parse_args(_container(render(values))["args"])
        assert args.command == "run"
        assert args.metrics_port == 8080
        assert args.health_endpoint == "http://0.0.0.0:8081/healthz"


# The schema's bounds for the operator's options are the CLI's (docs/bad-input.md): the least value
# it accepts renders args the operator accepts, and the value below is refused at install time.
OPTION_BOUNDS = [
    (("prometheus", "timeout"), 0.001, 0.0009, "prometheus_timeout"),
    (("prometheus", "batchSeconds"), 0, -0.01, "prometheus_batch_seconds"),
    (("resyncSeconds",), 0.001, 0.0009, "resync_seconds"),
    (("quietWriteSeconds",), 0, -1, "quiet_write_seconds"),
    (("apiAnswerTargetSeconds",), 0.001, 0.0009, "api_answer_target_seconds"),
    (("leaderElection", "lifetimeSeconds"), 15, 14, "peering_lifetime"),
]


def _values_at(path: tuple[str, ...], value: float) -> dict[str, Any]:
    values: dict[str, Any] = {"leaderElection": {"enabled": True}} if path[0] == "leaderElection" else {}
    node = values
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return values


@pytest.mark.parametrize(("path", "least", "below", "option"), OPTION_BOUNDS)
def test_the_schema_bounds_the_operator_options_as_the_cli_does(
    chart: Any, render: Render, path: tuple[str, ...], least: float, below: float, option: str
) -> None:
    from modelrollout.cli import build_parser

    args = build_parser().parse_args(_container(render(_values_at(path, least)))["args"])
    assert getattr(args, option) == least
    with pytest.raises(helm.HelmValuesError, match=re.escape("/" + "/".join(path))):
        chart.validate_schema(_values_at(path, below))


def test_namespaced_install_watches_only_the_listed_namespaces(render: Render) -> None:
    args = _container(render(NAMESPACED))["args"]
    assert [arg for arg in args if arg.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]


def test_two_replicas_use_kopf_peering_with_its_crds_and_a_pdb(render: Render) -> None:
    objects = render(EVERYTHING)
    args = _container(objects)["args"]
    assert "--peering=modelrollout-modelrollout-operator" in args
    assert "--peering-lifetime=60" in args  # kopf's default unless set
    assert _deployment(objects)["spec"]["replicas"] == 2
    crds = {crd["metadata"]["name"] for crd in find(objects, "CustomResourceDefinition")}
    assert crds == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    peering = one(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "modelrollout-modelrollout-operator"
    assert "post-install" in peering["metadata"]["annotations"]["helm.sh/hook"]
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == _deployment(objects)["spec"]["selector"]
    env = {variable["name"]: variable for variable in _container(objects)["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_leader_election_alone_turns_peering_on(render: Render) -> None:
    objects = render({"leaderElection": {"enabled": True, "peeringName": "mro", "lifetimeSeconds": 20}, **NAMESPACED})
    assert "--peering=mro" in _container(objects)["args"]
    assert "--peering-lifetime=20" in _container(objects)["args"]
    # Watching named namespaces, kopf uses one KopfPeering in each.
    assert sorted(p["metadata"]["namespace"] for p in find(objects, "KopfPeering")) == ["team-a", "team-b"]
    assert not find(objects, "PodDisruptionBudget")


def test_network_policy_opens_metrics_and_health_and_restricts_egress(render: Render) -> None:
    policy = one(render(EVERYTHING), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = policy["ingress"]
    assert {port["port"] for port in ingress["ports"]} == {8080, 8081}
    destinations = [rule.get("to", []) for rule in policy["egress"]]
    assert [{"ipBlock": {"cidr": "10.96.0.1/32"}}, {"ipBlock": {"cidr": "172.18.0.2/32"}}] in destinations
    assert EVERYTHING["networkPolicy"]["egress"]["prometheus"]["to"] in destinations
    # Egress stays open unless asked: only Ingress is governed.
    open_egress = {**EVERYTHING["networkPolicy"], "egress": {"restrict": False}}
    assert one(render({"networkPolicy": open_egress}), "NetworkPolicy")["spec"]["policyTypes"] == ["Ingress"]


# --- monitoring --------------------------------------------------------------------------------


def _exported_series() -> set[str]:
    """The series names the operator exports (operator_metrics.py), as Prometheus stores them."""
    from modelrollout.operator_metrics import OperatorMetrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        family.name + suffix
        for family in OperatorMetrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


# Announced, not yet exported: the alert exists so that it works the day the gauge does.
FUTURE_SERIES = {"modelrollout_model_drifted"}


def _series_in(expression: str) -> set[str]:
    return set(re.findall(r"\bmodelrollout_[a-z_]+", expression))


def test_alerts_cover_rollbacks_stuck_rollouts_analysis_errors_and_drift(render: Render) -> None:
    rule = one(render(EVERYTHING), "PrometheusRule")
    alerts = {alert["alert"]: alert for group in rule["spec"]["groups"] for alert in group["rules"]}
    assert "increase(modelrollout_rollbacks_total[10m])) > 0" in alerts["ModelRolloutRolledBack"]["expr"]
    stuck = alerts["ModelRolloutStuck"]
    assert 'modelrollout_rollout_phase{phase=~"Progressing|Paused"}' in stuck["expr"]
    assert stuck["for"] == "1h"
    erroring = alerts["ModelRolloutAnalysisErroring"]["expr"]
    assert 'increase(modelrollout_analysis_measurements_total{verdict="Error"}[10m])' in erroring
    assert erroring.rstrip().endswith("> 3")
    assert alerts["ModelRolloutModelDrifted"]["expr"] == "modelrollout_model_drifted == 1"
    exported = _exported_series()
    for name, alert in alerts.items():
        unknown = _series_in(alert["expr"]) - exported - FUTURE_SERIES
        assert not unknown, f"{name} reads series the operator does not export: {unknown}"


def test_promtool_accepts_the_alerting_rules(render: Render, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(one(render(EVERYTHING), "PrometheusRule")["spec"]))
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_has_the_panels_and_reads_exported_series(render: Render) -> None:
    config_map = one(render(EVERYTHING), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["modelrollout.json"])
    panels = {panel["title"]: [target["expr"] for target in panel["targets"]] for panel in dashboard["panels"]}
    expected = {
        "Rollouts by phase": "sum by (phase) (modelrollout_rollout_phase",
        "Traffic weight over time": "modelrollout_rollout_weight_percent",
        "Analysis results by verdict": "modelrollout_analysis_measurements_total",
        "Rollbacks": "modelrollout_rollbacks_total",
        "Reconcile duration p99": (
            "histogram_quantile(0.99, sum by (le) (rate(modelrollout_reconcile_duration_seconds_bucket"
        ),
    }
    for title, fragment in expected.items():
        assert any(fragment in expr for expr in panels[title]), f"{title}: no query with {fragment!r}"
    exported = _exported_series()
    for title, expressions in panels.items():
        for expression in expressions:
            assert _series_in(expression) <= exported, f"{title}: {expression}"


def test_service_monitor_scrapes_the_metrics_service(render: Render) -> None:
    objects = render(EVERYTHING)
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
