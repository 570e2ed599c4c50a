"""The bad-input cases of docs/bad-input.md, and the messages the operator really gives for them.

`python -m tests.docs.bad_input_cases` prints the table between the markers of docs/bad-input.md;
`tests/docs/test_bad_input_table.py` fails while the page and the code disagree.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelrollout.api.validation import InvalidSpec, parse_spec
from modelrollout.traffic.base import RouteError, missing_route
from modelrollout.traffic.gateway_api import GatewayApiRouter
from modelrollout.traffic.istio import IstioRouter

DOC = Path(__file__).resolve().parents[2] / "docs" / "bad-input.md"
BEGIN = "<!-- BEGIN GENERATED: python -m tests.docs.bad_input_cases -->"
END = "<!-- END GENERATED -->"

Spec = dict[str, Any]

ERROR_RATE = (
    'sum(rate(model_requests_total{rollout="{{name}}",version="{{candidate}}",outcome="error"}[1m]))'
    ' / sum(rate(model_requests_total{rollout="{{name}}",version="{{candidate}}"}[1m]))'
)


def base_spec() -> Spec:
    """A valid spec every case breaks in one place."""
    return {
        "replicas": 4,
        "model": {"name": "fraud-scorer", "version": "1.1.0"},
        "template": {"spec": {"containers": [{"name": "server", "image": "reference-model-server"}]}},
        "strategy": {
            "canary": {
                "steps": [
                    {"setWeight": 10},
                    {"pause": {"duration": "2m"}},
                    {"analysis": {"metrics": ["error-rate"]}},
                    {"setWeight": 50},
                ]
            }
        },
        "analysis": {
            "metrics": [{"name": "error-rate", "prometheus": {"query": ERROR_RATE}, "threshold": {"max": 0.01}}]
        },
    }


def steps(spec: Spec) -> list[dict[str, Any]]:
    return spec["strategy"]["canary"]["steps"]  # type: ignore[no-any-return]


def metric(spec: Spec) -> dict[str, Any]:
    return spec["analysis"]["metrics"][0]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class SpecCase:
    """A spec with one thing wrong: `what` says what, `change` (in YAML-ish words) how.

    `server` is the API server's refusal, `<field>: <message>` of its one cause (HTTP 422, nothing
    stored), for what the CRD schema catches; None: the server stores it and the operator reports it.
    tests/realapi/test_bad_input.py checks both on a real API server.
    """

    what: str
    change: str
    edit: Callable[[Spec], None]
    server: str | None = None

    def spec(self) -> Spec:
        spec = copy.deepcopy(base_spec())
        self.edit(spec)
        return spec

    def messages(self) -> list[str]:
        try:
            parse_spec(self.spec())
        except InvalidSpec as invalid:
            return [str(error) for error in invalid.errors]
        raise AssertionError(f"{self.what}: the validator accepted it")


def _set(path: str, value: Any) -> Callable[[Spec], None]:
    """An edit that sets a dotted path (list indexes as numbers) to `value`."""

    def edit(spec: Spec) -> None:
        parts = path.split(".")
        node: Any = spec
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        last = parts[-1]
        if last.isdigit() and int(last) == len(node):
            node.append(value)
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return edit


def _delete(path: str) -> Callable[[Spec], None]:
    def edit(spec: Spec) -> None:
        parts = path.split(".")
        node: Any = spec
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[parts[-1]]

    return edit


def _both(*edits: Callable[[Spec], None]) -> Callable[[Spec], None]:
    def edit(spec: Spec) -> None:
        for one in edits:
            one(spec)

    return edit


def _bound(field: str, value: float, relation: str) -> str:
    """The API server's words for a number the CRD schema's minimum or maximum refuses."""
    return f"spec.{field}: Invalid value: {value}: spec.{field} in body should be {relation}"


def _duplicate_metric(spec: Spec) -> None:
    spec["analysis"]["metrics"].append(copy.deepcopy(metric(spec)))


SPEC_CASES: list[SpecCase] = [
    SpecCase(
        "weights not increasing",
        "steps `setWeight: 10`, ..., `setWeight: 10`",
        _set("strategy.canary.steps.3", {"setWeight": 10}),
    ),
    SpecCase(
        "a weight over 100",
        "`setWeight: 150`",
        _set("strategy.canary.steps.3", {"setWeight": 150}),
        _bound("strategy.canary.steps[3].setWeight", 150, "less than or equal to 100"),
    ),
    SpecCase(
        "a negative weight",
        "`setWeight: -5`",
        _set("strategy.canary.steps.0", {"setWeight": -5}),
        _bound("strategy.canary.steps[0].setWeight", -5, "greater than or equal to 0"),
    ),
    SpecCase(
        "a mirror percent over 100",
        "`mirror: {percent: 120}` (with a router)",
        _both(
            _set("trafficRouting", {"gatewayAPI": {"httpRoute": "fraud-scorer"}}),
            _set("strategy.canary.steps.0", {"mirror": {"percent": 120}}),
        ),
        _bound("strategy.canary.steps[0].mirror.percent", 120, "less than or equal to 100"),
    ),
    SpecCase(
        "an analysis step naming an unknown metric",
        "`analysis: {metrics: [latency]}`",
        _set("strategy.canary.steps.2", {"analysis": {"metrics": ["latency"]}}),
    ),
    SpecCase(
        "an analysis step naming no metric",
        "`analysis: {metrics: []}`",
        _set("strategy.canary.steps.2", {"analysis": {"metrics": []}}),
    ),
    SpecCase(
        "an analysis step with count 0",
        "`analysis: {metrics: [error-rate], count: 0}`",
        _set("strategy.canary.steps.2", {"analysis": {"metrics": ["error-rate"], "count": 0}}),
        _bound("strategy.canary.steps[2].analysis.count", 0, "greater than or equal to 1"),
    ),
    SpecCase(
        "a blue-green gate naming an unknown metric",
        "`blueGreen: {prePromotionAnalysis: {metrics: [latency]}}`",
        _set("strategy", {"blueGreen": {"prePromotionAnalysis": {"metrics": ["latency"]}}}),
    ),
    SpecCase(
        "an unknown template variable",
        '`query: ...version="{{version}}"...`',
        _set(
            "analysis.metrics.0.prometheus.query",
            'sum(rate(model_requests_total{version="{{version}}"}[1m]))',
        ),
    ),
    SpecCase(
        "a threshold with min > max",
        "`threshold: {min: 0.5, max: 0.1}`",
        _set("analysis.metrics.0.threshold", {"min": 0.5, "max": 0.1}),
    ),
    SpecCase("a threshold with no bound", "`threshold: {}`", _set("analysis.metrics.0.threshold", {})),
    SpecCase("a metric with no judgement", "`threshold` left out", _delete("analysis.metrics.0.threshold")),
    SpecCase(
        "a metric with two judgements",
        "`threshold: {max: 0.01}` and `compare: {maxRatio: 1.2}`",
        _set("analysis.metrics.0.compare", {"maxRatio": 1.2}),
    ),
    SpecCase(
        "a compare with no limit",
        "`compare: {}` instead of `threshold`",
        _both(_delete("analysis.metrics.0.threshold"), _set("analysis.metrics.0.compare", {})),
    ),
    SpecCase(
        "an unknown metric template",
        "`template: {name: no-such-template}`",
        _set("analysis.metrics.1", {"name": "latency", "template": {"name": "no-such-template"}}),
    ),
    SpecCase(
        "an unknown template argument",
        '`template: {name: error-rate, args: {bogus: "1"}}`',
        _set("analysis.metrics.1", {"name": "errors", "template": {"name": "error-rate", "args": {"bogus": "1"}}}),
    ),
    SpecCase(
        "monitoring naming an unknown metric",
        "`monitoring: {metrics: [drift]}`",
        _set("monitoring", {"metrics": ["drift"]}),
    ),
    SpecCase(
        "a pause duration that does not parse",
        "`pause: {duration: 2 minutes}`",
        _set("strategy.canary.steps.1", {"pause": {"duration": "2 minutes"}}),
    ),
    SpecCase(
        "an analysis step interval that does not parse",
        "`analysis: {metrics: [error-rate], interval: 30}`",
        _set("strategy.canary.steps.2", {"analysis": {"metrics": ["error-rate"], "interval": "30"}}),
    ),
    SpecCase("an analysis interval that does not parse", "`analysis: {interval: 1d}`", _set("analysis.interval", "1d")),
    SpecCase("an analysis interval of zero", "`analysis: {interval: 0s}`", _set("analysis.interval", "0s")),
    SpecCase(
        "a step with two kinds",
        "`- {setWeight: 20, pause: {duration: 1m}}`",
        _set("strategy.canary.steps.0", {"setWeight": 20, "pause": {"duration": "1m"}}),
    ),
    SpecCase("a step with no kind", "`- {}`", _set("strategy.canary.steps.0", {})),
    SpecCase(
        "a mirror step without a traffic router",
        "`mirror: {percent: 100}`, no `trafficRouting`",
        _set("strategy.canary.steps.0", {"mirror": {"percent": 100}}),
    ),
    SpecCase(
        "a header-routed step without a traffic router",
        '`setHeaderRoute: {name: x-model-canary, value: "true"}`, no `trafficRouting`',
        _set("strategy.canary.steps.0", {"setHeaderRoute": {"name": "x-model-canary", "value": "true"}}),
    ),
    SpecCase(
        "both canary and blueGreen",
        "`strategy: {canary: {...}, blueGreen: {}}`",
        _set("strategy.blueGreen", {}),
    ),
    SpecCase(
        "both gatewayAPI and istio",
        "`trafficRouting: {gatewayAPI: {...}, istio: {...}}`",
        _set(
            "trafficRouting",
            {"gatewayAPI": {"httpRoute": "fraud-scorer"}, "istio": {"virtualService": "fraud-scorer"}},
        ),
    ),
    SpecCase("replicas 0", "`replicas: 0`", _set("replicas", 0), _bound("replicas", 0, "greater than or equal to 1")),
    SpecCase(
        "negative replicas",
        "`replicas: -2`",
        _set("replicas", -2),
        _bound("replicas", -2, "greater than or equal to 1"),
    ),
    SpecCase(
        "progressDeadlineSeconds 0",
        "`progressDeadlineSeconds: 0`",
        _set("progressDeadlineSeconds", 0),
        _bound("progressDeadlineSeconds", 0, "greater than or equal to 1"),
    ),
    SpecCase(
        "a port out of range",
        "`service: {port: 70000}`",
        _set("service", {"port": 70000}),
        _bound("service.port", 70000, "less than or equal to 65535"),
    ),
    SpecCase(
        "a negative failureLimit",
        "`analysis: {failureLimit: -1}`",
        _set("analysis.failureLimit", -1),
        _bound("analysis.failureLimit", -1, "greater than or equal to 0"),
    ),
    SpecCase(
        "a negative inconclusiveLimit",
        "`analysis: {inconclusiveLimit: -1}`",
        _set("analysis.inconclusiveLimit", -1),
        _bound("analysis.inconclusiveLimit", -1, "greater than or equal to 0"),
    ),
    SpecCase(
        "a negative consecutiveErrorLimit",
        "`analysis: {consecutiveErrorLimit: -1}`",
        _set("analysis.consecutiveErrorLimit", -1),
        _bound("analysis.consecutiveErrorLimit", -1, "greater than or equal to 0"),
    ),
    SpecCase(
        "a negative blue-green delay",
        "`blueGreen: {scaleDownDelaySeconds: -1}`",
        _both(_delete("strategy.canary"), _set("strategy.blueGreen", {"scaleDownDelaySeconds": -1})),
        _bound("strategy.blueGreen.scaleDownDelaySeconds", -1, "greater than or equal to 0"),
    ),
    SpecCase(
        "a compare ratio of 0",
        "`compare: {maxRatio: 0}` instead of `threshold`",
        _both(_delete("analysis.metrics.0.threshold"), _set("analysis.metrics.0.compare", {"maxRatio": 0})),
        _bound("analysis.metrics[0].compare.maxRatio", 0, "greater than 0"),
    ),
    SpecCase(
        "a p-value over 1",
        "`drift: {statistic: ks, minPValue: 1.5}` instead of `threshold`",
        _both(
            _delete("analysis.metrics.0.threshold"),
            _set("analysis.metrics.0.drift", {"statistic": "ks", "minPValue": 1.5}),
        ),
        _bound("analysis.metrics[0].drift.minPValue", 1.5, "less than or equal to 1"),
    ),
    SpecCase(
        "a negative minCount",
        "`minCount: -1`",
        _set("analysis.metrics.0.minCount", -1),
        _bound("analysis.metrics[0].minCount", -1, "greater than or equal to 0"),
    ),
    SpecCase(
        "an accuracy gate that needs no labels",
        "`accuracy: {maxDrop: 0.02, minLabelled: 0}` instead of `prometheus` and `threshold`",
        _both(
            _delete("analysis.metrics.0.threshold"),
            _delete("analysis.metrics.0.prometheus"),
            _set("analysis.metrics.0.accuracy", {"maxDrop": 0.02, "minLabelled": 0}),
        ),
        _bound("analysis.metrics[0].accuracy.minLabelled", 0, "greater than or equal to 1"),
    ),
    SpecCase(
        "a recall without its class",
        "`accuracy: {statistic: recall, min: 0.9}` instead of `prometheus` and `threshold`",
        _both(
            _delete("analysis.metrics.0.threshold"),
            _delete("analysis.metrics.0.prometheus"),
            _set("analysis.metrics.0.accuracy", {"statistic": "recall", "min": 0.9}),
        ),
    ),
    SpecCase("two metrics with the same name", "`error-rate` defined twice", _duplicate_metric),
    SpecCase(
        "no model.version",
        "`model: {name: fraud-scorer}`",
        _delete("model.version"),
        "spec.model.version: Required value",
    ),
    SpecCase("no model", "`model` left out", _delete("model"), "spec.model: Required value"),
    SpecCase("an empty containers list", "`template: {spec: {containers: []}}`", _set("template.spec.containers", [])),
    SpecCase("no template", "`template` left out", _delete("template"), "spec.template: Required value"),
    SpecCase(
        "a wrong type",
        "`replicas: four`",
        _set("replicas", "four"),
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"',
    ),
    SpecCase(
        "an unknown automation",
        "`automation: yolo`",
        _set("automation", "yolo"),
        'spec.automation: Unsupported value: "yolo": supported values: "manual", "assisted", "auto"',
    ),
    SpecCase(
        "a notification destination with both url and urlFrom",
        "`notifications: {webhooks: [{name: chat, url: ..., urlFrom: ...}]}`",
        _set(
            "notifications",
            {
                "webhooks": [
                    {
                        "name": "chat",
                        "url": "https://chat.example/hook",
                        "urlFrom": {"secretKeyRef": {"name": "chat", "key": "url"}},
                    }
                ]
            },
        ),
    ),
    SpecCase(
        "a notification body with an unknown variable",
        '`body: \'{"text": "{{input}}"}\'`',
        _set(
            "notifications",
            {"webhooks": [{"name": "audit", "url": "https://audit.example/", "body": '{"text": "{{input}}"}'}]},
        ),
    ),
    SpecCase(
        "two webhook gates of one name",
        "`webhooks: [{name: ok, ...}, {name: ok, ...}]`",
        _set(
            "webhooks",
            [
                {"name": "ok", "type": "confirm-rollout", "url": "http://gate.example/a"},
                {"name": "ok", "type": "confirm-promotion", "url": "http://gate.example/b"},
            ],
        ),
    ),
    SpecCase(
        "a confirm-traffic-increase gate with blue-green (it has no traffic increase)",
        "`strategy: {blueGreen: {}}`, `webhooks: [{type: confirm-traffic-increase, ...}]`",
        _both(
            _set("strategy", {"blueGreen": {}}),
            _set("webhooks", [{"name": "more", "type": "confirm-traffic-increase", "url": "http://gate.example/"}]),
        ),
    ),
    SpecCase(
        "an agreement metric with no pairs to judge",
        "`agreement: {min: 0.97, minPairs: 0}` (with a `mirror: {percent: 50, compare: {}}` step)",
        _both(
            _set("trafficRouting", {"gatewayAPI": {"httpRoute": "fraud-scorer"}}),
            _set("strategy.canary.steps.0", {"mirror": {"percent": 50, "compare": {}}}),
            _set("analysis.metrics.1", {"name": "agreement", "agreement": {"min": 0.97, "minPairs": 0}}),
        ),
        _bound("analysis.metrics[1].agreement.minPairs", 0, "greater than or equal to 1"),
    ),
    SpecCase(
        "an agreement metric without a comparator",
        "`agreement: {min: 0.97}` with no `mirror: {..., compare: {}}` step",
        _set("analysis.metrics.1", {"name": "agreement", "agreement": {"min": 0.97}}),
    ),
]


# --- routes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteCase:
    what: str
    router: str
    message: Callable[[], str]


def _httproute_without_stable_rule() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "fraud-scorer", "namespace": "ml"},
        "spec": {
            "parentRefs": [{"name": "ml-gateway"}],
            "rules": [{"backendRefs": [{"name": "fraud-scorer", "port": 80}]}],
        },
    }


def _httproute_with_foreign_backend() -> dict[str, Any]:
    route = _httproute_without_stable_rule()
    route["spec"]["rules"] = [
        {"backendRefs": [{"name": "fraud-scorer-stable", "port": 80}, {"name": "legacy-scorer", "port": 80}]}
    ]
    return route


def _virtualservice_without_stable_route() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "fraud-scorer", "namespace": "ml"},
        "spec": {
            "hosts": ["fraud-scorer.ml.svc.cluster.local"],
            "http": [{"route": [{"destination": {"host": "fraud-scorer", "port": {"number": 80}}}]}],
        },
    }


def _virtualservice_with_foreign_destination() -> dict[str, Any]:
    route = _virtualservice_without_stable_route()
    route["spec"]["http"] = [
        {
            "route": [
                {"destination": {"host": "fraud-scorer-stable"}, "weight": 90},
                {"destination": {"host": "legacy-scorer"}, "weight": 10},
            ]
        }
    ]
    return route


def _virtualservice_mirroring_elsewhere() -> dict[str, Any]:
    """Observed at rest this is fine; the message comes when a mirror step asks for the candidate."""
    route = _virtualservice_without_stable_route()
    route["spec"]["http"] = [
        {"route": [{"destination": {"host": "fraud-scorer-stable"}}], "mirror": {"host": "traffic-recorder"}}
    ]
    return route


SERVICES = ("fraud-scorer-stable", "fraud-scorer-canary")  # the routers' stable and candidate Services


def _observe(router: GatewayApiRouter | IstioRouter, route: dict[str, Any]) -> str:
    seen = router.observe(route)
    assert isinstance(seen, RouteError), seen
    return seen.message


def _istio_mirror_elsewhere() -> str:
    from modelrollout.vocabulary.routes import RouteState

    edited = IstioRouter("fraud-scorer", *SERVICES).edit(
        _virtualservice_mirroring_elsewhere(), RouteState(mirror_percent=100)
    )
    assert isinstance(edited, RouteError), edited
    return edited.message


ROUTE_CASES: list[RouteCase] = [
    RouteCase(
        "`trafficRouting.gatewayAPI.httpRoute` names an HTTPRoute that does not exist",
        "Gateway API",
        lambda: str(missing_route("HTTPRoute", "ml", "fraud-scorer")),
    ),
    RouteCase(
        "the HTTPRoute has no rule with a backendRef to `<name>-stable` (here it points at `fraud-scorer`)",
        "Gateway API",
        lambda: _observe(GatewayApiRouter("fraud-scorer", *SERVICES), _httproute_without_stable_rule()),
    ),
    RouteCase(
        "the rule to `<name>-stable` also sends to another backend",
        "Gateway API",
        lambda: _observe(GatewayApiRouter("fraud-scorer", *SERVICES), _httproute_with_foreign_backend()),
    ),
    RouteCase(
        "`trafficRouting.istio.virtualService` names a VirtualService that does not exist",
        "Istio",
        lambda: str(missing_route("VirtualService", "ml", "fraud-scorer")),
    ),
    RouteCase(
        "the VirtualService has no http route with a destination host `<name>-stable`",
        "Istio",
        lambda: _observe(IstioRouter("fraud-scorer", *SERVICES), _virtualservice_without_stable_route()),
    ),
    RouteCase(
        "the http route to `<name>-stable` also sends to another host",
        "Istio",
        lambda: _observe(IstioRouter("fraud-scorer", *SERVICES), _virtualservice_with_foreign_destination()),
    ),
    RouteCase(
        "a mirror step, and the http route to `<name>-stable` already mirrors elsewhere",
        "Istio",
        _istio_mirror_elsewhere,
    ),
]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def refused_by_the_server() -> list[SpecCase]:
    return [case for case in SPEC_CASES if case.server is not None]


def stored_for_the_operator() -> list[SpecCase]:
    return [case for case in SPEC_CASES if case.server is None]


def _messages(case: SpecCase) -> str:
    return "<br>".join(f"`{_cell(m)}`" for m in case.messages())


def render_tables() -> str:
    lines = [
        "### Refused by the API server: HTTP 422, nothing stored",
        "",
        '`kubectl apply` prints `The ModelRollout "<name>" is invalid: ` followed by the API server\'s '
        "message. The operator's message is what it reports (as below, `phase: Failed`) only for a spec "
        "that reached it unchecked: for the bounds, one stored under a CRD from an older release.",
        "",
        "| # | what is wrong | example | the API server's message | the operator's message |",
        "|---|---|---|---|---|",
    ]
    for number, case in enumerate(refused_by_the_server(), 1):
        assert case.server is not None
        lines.append(f"| {number} | {case.what} | {_cell(case.change)} | `{_cell(case.server)}` | {_messages(case)} |")
    lines += [
        "",
        "### Spec cases: `phase: Failed`, reason `InvalidSpec`",
        "",
        "The API server stores these. The rollout's `status.message` (and the Event) is `invalid spec: ` "
        "followed by these messages, joined by `; ` when there are several.",
        "",
        "| # | what is wrong | example | message |",
        "|---|---|---|---|",
    ]
    for number, case in enumerate(stored_for_the_operator(), 1):
        lines.append(f"| {number} | {case.what} | {_cell(case.change)} | {_messages(case)} |")
    lines += [
        "",
        "### Route cases: `phase: Failed`, reason `TrafficRoutingInvalid`",
        "",
        "For a rollout `fraud-scorer` in namespace `ml` (stable Service `fraud-scorer-stable`, candidate "
        "`fraud-scorer-canary`). The message is the rollout's `status.message` as is.",
        "",
        "| # | what is wrong | router | message |",
        "|---|---|---|---|",
    ]
    for number, case in enumerate(ROUTE_CASES, 1):
        lines.append(f"| {number} | {case.what} | {case.router} | `{_cell(case.message())}` |")
    return "\n".join(lines) + "\n"


def generated_part(text: str) -> str:
    start = text.index(BEGIN) + len(BEGIN)
    return text[start : text.index(END)].strip("\n") + "\n"


if __name__ == "__main__":
    print(render_tables(), end="")
