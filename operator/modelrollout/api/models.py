"""The ModelRollout API: one set of pydantic models is the single source of the CRD schema.

`crds/` is rendered from these classes by `modelrollout crd` (see `api/crd.py`). The split of
responsibilities between the two layers is deliberate:

* the CRD schema refuses what is structurally wrong (wrong types, unknown enum values, missing
  required fields) and every simple bound of a number (`Field(ge=, le=, gt=)`: a weight over 100,
  negative replicas, a port of 0): a real API server rejects such a manifest at `kubectl apply`
  time, and the bound is in the schema `kubectl explain` reads;
* the validators below judge meaning (weights that do not increase, an analysis step naming an
  unknown metric, a threshold with min > max, a duration that does not parse), which no schema
  can say. A manifest that fails them is stored, then reported as `phase: Failed` with the field
  path in a `Degraded` condition, and nothing in the cluster is touched.
"""

from __future__ import annotations

import enum
import json
import re
import urllib.parse
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, WithJsonSchema, field_validator, model_validator
from pydantic.alias_generators import to_camel

from modelrollout.api.durations import DURATION_HELP, parse_duration
from modelrollout.api.jsonpath import compile_path
from modelrollout.vocabulary.builtin_templates import TEMPLATE_VARIABLES


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def wire(self) -> dict[str, Any]:
        """The object as it is written to Kubernetes (camelCase, no empty optional fields)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# ---------------------------------------------------------------------------------------------
# Spec
# ---------------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")


def template_variables(text: str) -> list[str]:
    """The `{{variable}}` names used in a query template, in order of appearance."""
    return [match.group(1) for match in _VARIABLE.finditer(text)]


def promql_string(value: str) -> str:
    """Escape a value for the inside of a PromQL double-quoted string (label matchers)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_template(text: str, values: dict[str, str], escape: Callable[[str], str] = promql_string) -> str:
    """Substitute `{{variable}}`s; unknown names were refused when the spec was read.

    Values are escaped as PromQL string contents by default: they stand inside label matchers
    (`version="{{candidate}}"`), and a model version is free text that must not be able to end the
    string and add query syntax of its own. A web metric's URL escapes them for a URL, its body for
    the inside of a JSON string.
    """
    return _VARIABLE.sub(lambda match: escape(values[match.group(1)]), text)


def url_part(value: str) -> str:
    """A value inside a URL (a path segment or a query parameter's value)."""
    return urllib.parse.quote(value, safe="")


def json_string_part(value: str) -> str:
    """A value inside a JSON string."""
    return json.dumps(value)[1:-1]


class Automation(enum.StrEnum):
    """Who moves a rollout forward."""

    MANUAL = "manual"
    ASSISTED = "assisted"
    AUTO = "auto"


class ModelRef(ApiModel):
    """The model this rollout delivers."""

    name: str = Field(description="Model name; injected into the model server as MODEL_NAME.")
    version: str = Field(
        description="Model version to deliver. Changing it starts a new rollout; injected as MODEL_VERSION."
    )
    uri: str | None = Field(
        default=None, description="Where the model artefact lives (e.g. s3://...); injected as MODEL_URI."
    )


class ServicePort(ApiModel):
    """The Service the operator creates in front of the model servers."""

    port: int = Field(default=80, ge=1, le=65535, description="Port the Service listens on.")
    target_port: int = Field(default=8080, ge=1, le=65535, description="Container port the model server listens on.")


class PauseStep(ApiModel):
    """Wait before the next step."""

    duration: str | None = Field(
        default=None,
        description=f"How long to wait, as {DURATION_HELP}. Absent: wait until a person runs "
        "`kubectl modelrollout promote`.",
    )

    @field_validator("duration")
    @classmethod
    def _duration_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


MAX_CONSECUTIVE_SUCCESS_LIMIT = 1000


class AnalysisStep(ApiModel):
    """Run named metrics now and continue only when they pass."""

    metrics: list[str] = Field(description="Names of metrics defined in spec.analysis.metrics.")
    count: int = Field(default=1, ge=1, description="How many measurements of each metric to take.")
    interval: str = Field(default="30s", description=f"Time between measurements, as {DURATION_HELP}.")
    consecutive_success_limit: int = Field(
        default=0,
        ge=0,
        le=MAX_CONSECUTIVE_SUCCESS_LIMIT,
        description="A metric passes the step as soon as this many measurements in a row succeeded, and only "
        "then: reaching count without such a run is Inconclusive. At most count. 0: off (the metric passes "
        "when count measurements are taken with at least one success and no limit exceeded).",
    )

    @field_validator("interval")
    @classmethod
    def _interval_parses(cls, value: str) -> str:
        parse_duration(value)
        return value

    @model_validator(mode="after")
    def _success_limit_reachable(self) -> AnalysisStep:
        if self.consecutive_success_limit > self.count:
            raise ValueError(
                f"consecutiveSuccessLimit {self.consecutive_success_limit} is more than count {self.count}: "
                "the step could never pass; raise count or lower consecutiveSuccessLimit"
            )
        return self

    @field_validator("metrics")
    @classmethod
    def _metrics_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one metric from spec.analysis.metrics")
        return value


class ShadowComparison(ApiModel):
    """Compare the candidate's answers to mirrored requests with stable's, one by one (docs/shadow-agreement.md)."""

    stable_answers: Literal["reask", "report"] = Field(
        default="reask",
        description="reask: the comparator sends each copy to the stable Service too (extra load on stable: the "
        "mirrored share); report: stable's answers are POSTed to the comparator's /_comparator/answers, joined by "
        "request id.",
    )
    request_id_header: str = Field(
        default="x-request-id",
        min_length=1,
        description="The request header that joins the two answers of one request (report mode).",
    )
    class_field: str = Field(
        default="prediction",
        min_length=1,
        description="The field of an answer (or of each batch item) holding the class.",
    )
    score_field: str = Field(default="score", min_length=1, description="The field holding the score.")
    join_ttl_seconds: int = Field(
        default=30,
        ge=1,
        le=600,
        description="How long one answer waits for the other before the request counts as unjoined.",
    )


class MirrorStep(ApiModel):
    """Shadow traffic: copy a share of live requests to the candidate and discard its answers."""

    percent: int = Field(
        ge=0,
        le=100,
        description="Percentage of live requests copied to the candidate; 0 stops mirroring. Needs a "
        "traffic router (spec.trafficRouting).",
    )
    compare: ShadowComparison | None = Field(
        default=None,
        description="Mirror to a comparator the operator deploys (<rollout>-comparator) instead of the candidate: it "
        "asks the candidate, compares its answers with stable's and publishes agreement series for `agreement` "
        "metrics. The user still never sees a candidate's answer.",
    )


class HeaderRouteStep(ApiModel):
    """Send requests that carry a header (e.g. internal testers) to the candidate, the rest to stable."""

    name: str = Field(description="Header name, e.g. x-model-canary.")
    value: str = Field(description="Exact header value that selects the candidate.")


STEP_KINDS = ("set_weight", "pause", "analysis", "mirror", "set_header_route")


class CanaryStep(ApiModel):
    """One step of a canary; exactly one of its fields is set."""

    set_weight: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Send this percentage of traffic to the candidate. Weights must increase from step to step.",
    )
    pause: PauseStep | None = Field(default=None, description="Wait, for a duration or for a person.")
    analysis: AnalysisStep | None = Field(
        default=None, description="Measure the named metrics now; the rollout goes on only if they pass."
    )
    mirror: MirrorStep | None = Field(
        default=None, description="Shadow: copy a share of live traffic to the candidate (its answers are discarded)."
    )
    set_header_route: HeaderRouteStep | None = Field(
        default=None, description="Route requests with a given header to the candidate, everything else to stable."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> CanaryStep:
        chosen = [name for name in STEP_KINDS if getattr(self, name) is not None]
        if len(chosen) != 1:
            found = ", ".join(to_camel(name) for name in chosen) or "none"
            allowed = ", ".join(to_camel(name) for name in STEP_KINDS)
            raise ValueError(f"a step sets exactly one of {allowed} (found: {found})")
        return self

    def describe(self) -> str:
        if self.set_weight is not None:
            return f"setWeight {self.set_weight}"
        if self.pause is not None:
            return f"pause {self.pause.duration}" if self.pause.duration else "pause (until promoted)"
        if self.mirror is not None:
            return f"mirror {self.mirror.percent}%"
        if self.set_header_route is not None:
            return f"header route {self.set_header_route.name}: {self.set_header_route.value}"
        assert self.analysis is not None
        return f"analysis {', '.join(self.analysis.metrics)}"


class CanaryStrategy(ApiModel):
    """Shift traffic to the candidate step by step."""

    steps: list[CanaryStep] = Field(
        default_factory=list,
        description="Steps run in order; after the last one the candidate is promoted. No steps: "
        "promote as soon as the candidate is ready (after analysis, if any).",
    )

    @field_validator("steps")
    @classmethod
    def _weights_increase(cls, steps: list[CanaryStep]) -> list[CanaryStep]:
        # The range of each weight (0-100) is the field's bound, checked by the schema; the order of
        # the weights is something only the whole list shows.
        previous: int | None = None
        for index, step in enumerate(steps):
            weight = step.set_weight
            if weight is None:
                continue
            if previous is not None and weight <= previous:
                raise ValueError(
                    f"steps[{index}].setWeight: must be greater than the previous weight ({previous}), got {weight}"
                )
            previous = weight
        return steps


class BlueGreenStrategy(ApiModel):
    """Bring the new version up at full size beside the old one, check it, and switch at once."""

    auto_promotion: bool = Field(
        default=True, description="Switch on its own once the new version is ready (and pre-promotion analysis passed)."
    )
    auto_promotion_seconds: int = Field(
        default=0,
        ge=0,
        description="With autoPromotion: wait this long after the new version is ready before switching.",
    )
    pre_promotion_analysis: AnalysisStep | None = Field(
        default=None, description="Metrics judged against the preview (the new version, before any user sees it)."
    )
    post_promotion_analysis: AnalysisStep | None = Field(
        default=None,
        description="Metrics judged after the switch; a failure switches back to the old version at once.",
    )
    scale_down_delay_seconds: int = Field(
        default=30,
        ge=0,
        description="Keep the old version running this long after the switch, for an instant way back.",
    )


class Strategy(ApiModel):
    """How the candidate is delivered: canary (the default) or blue-green."""

    canary: CanaryStrategy | None = Field(
        default=None, description="Canary delivery: weights, mirrors, header routes, pauses and analysis steps."
    )
    blue_green: BlueGreenStrategy | None = Field(
        default=None, description="Blue-green delivery: a full-size preview, then an instant switch."
    )

    @model_validator(mode="after")
    def _one_strategy(self) -> Strategy:
        if self.canary is not None and self.blue_green is not None:
            raise ValueError("set canary or blueGreen, not both")
        return self

    @property
    def steps(self) -> list[CanaryStep]:
        """The canary's steps (none for blue-green)."""
        return self.canary.steps if self.canary is not None else []


class GatewayAPIRouting(ApiModel):
    """Route traffic with a Gateway API HTTPRoute that the user owns."""

    http_route: str = Field(
        description="Name of an HTTPRoute in the rollout's namespace with a rule whose backendRef is the Service "
        "<rollout>-stable; the operator manages that rule's weights, mirror filter and one header rule."
    )
    mirror_percent_supported: bool = Field(
        default=True,
        description="The installed Gateway API accepts RequestMirror's percent (v1.2+); false: mirror all or none.",
    )


class IstioRouting(ApiModel):
    """Route traffic with an Istio VirtualService that the user owns."""

    virtual_service: str = Field(
        description="Name of a VirtualService in the rollout's namespace with an http route to the host "
        "<rollout>-stable; the operator manages its weights, mirror and one header route."
    )


class TrafficRouting(ApiModel):
    """Which router realises the weights; absent: replica ratio behind one Service."""

    gateway_api: GatewayAPIRouting | None = Field(
        default=None, alias="gatewayAPI", description="Gateway API HTTPRoute."
    )
    istio: IstioRouting | None = Field(default=None, description="Istio VirtualService.")

    @model_validator(mode="after")
    def _one_router(self) -> TrafficRouting:
        if self.gateway_api is not None and self.istio is not None:
            raise ValueError("set gatewayAPI or istio, not both")
        return self


class Threshold(ApiModel):
    """Bounds a measurement must stay within; a missing bound is not checked."""

    min: float | None = Field(default=None, description="Lowest acceptable value (inclusive).")
    max: float | None = Field(default=None, description="Highest acceptable value (inclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("set min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) must not be greater than max ({self.max:g})")
        return self


_VARIABLES_HELP = ", ".join(f"{{{{{name}}}}} ({meaning})" for name, meaning in TEMPLATE_VARIABLES.items())


def _check_variables(query: str | None) -> str | None:
    for variable in template_variables(query or ""):
        if variable not in TEMPLATE_VARIABLES:
            allowed = ", ".join(sorted(TEMPLATE_VARIABLES))
            raise ValueError(f"unknown template variable {{{{{variable}}}}}; allowed: {allowed}")
    return query


class PrometheusQuery(ApiModel):
    """PromQL queries for one metric; which ones are needed depends on how the metric is judged."""

    query: str = Field(
        description="threshold: PromQL returning one number for the candidate. compare: the candidate's side. "
        "drift: the candidate's counts (histogram buckets by `le`, or counts by category). Template variables: "
        + _VARIABLES_HELP
        + "."
    )
    stable_query: str | None = Field(
        default=None,
        description="compare and drift against stable: the stable version's side; default: `query` with "
        "{{candidate}} replaced by {{stable}}.",
    )
    count_query: str | None = Field(
        default=None,
        description="The candidate's sample size in the window (e.g. requests); below minCount a measurement is "
        "Inconclusive, never a pass.",
    )
    stable_count_query: str | None = Field(
        default=None, description="compare: the stable version's sample size; default: countQuery for {{stable}}."
    )
    address: str | None = Field(
        default=None,
        description="Prometheus base URL for this metric; defaults to spec.analysis.prometheus.address, "
        "then to the operator's --prometheus-url.",
    )

    @field_validator("query", "stable_query", "count_query", "stable_count_query")
    @classmethod
    def _known_variables(cls, query: str | None) -> str | None:
        return _check_variables(query)

    def for_stable(self, text: str | None) -> str | None:
        return text.replace("{{candidate}}", "{{stable}}") if text is not None else None


class Compare(ApiModel):
    """Judge the candidate against the stable version on the same query, over the same window."""

    direction: Literal["lowerIsBetter", "higherIsBetter"] = Field(
        default="lowerIsBetter", description="lowerIsBetter (latency, errors) or higherIsBetter (accuracy)."
    )
    max_ratio: float | None = Field(
        default=None, gt=0, description="The candidate may be at most this many times worse."
    )
    max_difference: float | None = Field(
        default=None, ge=0, description="The candidate may be at most this much worse."
    )

    @model_validator(mode="after")
    def _a_limit(self) -> Compare:
        if self.max_ratio is None and self.max_difference is None:
            raise ValueError("set maxRatio, maxDifference or both")
        return self


class Agreement(ApiModel):
    """Judge a shadow candidate by how often its answers agree with stable's on the same requests (the
    comparator's series): a Wilson score interval of the agreement rate, at the given confidence."""

    min: float = Field(
        gt=0,
        le=1,
        description="The lowest acceptable agreement rate. Passes when the interval's lower bound is at least min, "
        "fails when its upper bound is below min, else Inconclusive (not enough evidence yet).",
    )
    min_pairs: int = Field(
        default=100,
        ge=1,
        description="Fewer compared pairs than this in the window: Inconclusive, never a pass.",
    )
    window: str = Field(
        default="5m",
        pattern=r"^([0-9]+(ms|s|m|h|d|w|y))+$",
        description="The PromQL range the pairs are counted over, e.g. 5m.",
    )
    confidence: float = Field(
        default=0.95, ge=0.5, le=0.999, description="The one-sided confidence of the interval's bounds (0.5 to 0.999)."
    )


class TrainingReference(ApiModel):
    """A training-time reference distribution: the SDK's feature-edges JSON, kept in a ConfigMap."""

    config_map: str = Field(description="ConfigMap in the rollout's namespace.")
    key: str = Field(default="feature-edges.json", description="Key of the JSON document in the ConfigMap.")


#: How many features of a drift measurement status shows by default, and at most (spec: drift.topFeatures).
TOP_FEATURES = 10
MAX_TOP_FEATURES = 50


class Drift(ApiModel):
    """Judge a distribution: the candidate's histogram (or category counts) against a reference's."""

    statistic: Literal["psi", "jensenShannon", "ks", "chiSquare"] = Field(
        default="psi",
        description="psi, jensenShannon (distance, base 2), ks (binned two-sample Kolmogorov-Smirnov) or chiSquare "
        "(categorical).",
    )
    max: float | None = Field(
        default=None,
        ge=0,
        description="A group fails when its statistic exceeds this and its difference is beyond sampling noise "
        "(significant after a Holm correction over the groups; see docs/analysis.md, False alarms).",
    )
    min_p_value: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="The significance level of that test, over all groups together (default: 0.01 for ks, "
        "0.005 for the others); with max set, both must hold for a group to fail.",
    )
    shape: Literal["histogram", "categorical"] = Field(
        default="histogram",
        description="histogram: cumulative buckets by `le`; categorical: counts by the `label` label.",
    )
    group_by: str | None = Field(
        default=None, description="One distribution per value of this label (e.g. `feature`); none: one distribution."
    )
    label: str = Field(default="class", description="categorical: the label that names the category.")
    reference: Literal["stable", "training"] = Field(
        default="stable", description="stable: the stable version over the same window; training: trainingReference."
    )
    training_reference: TrainingReference | None = Field(
        default=None, description="Where the training-time histograms are (reference: training)."
    )
    top_features: int = Field(
        default=TOP_FEATURES,
        ge=0,
        le=MAX_TOP_FEATURES,
        description="How many groups (features) of the last measurement status shows, worst first, each with its "
        f"statistic, p-value and whether it drifted (default {TOP_FEATURES}; 0: none). Names and statistics only, "
        "never values.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Drift:
        if self.max is None and self.min_p_value is None:
            raise ValueError("set max, minPValue or both")
        if self.statistic in ("psi", "jensenShannon") and self.max is None:
            raise ValueError(f"{self.statistic} needs max")
        if self.min_p_value is not None and self.statistic not in ("ks", "chiSquare"):
            raise ValueError(f"minPValue applies to ks and chiSquare, not {self.statistic}")
        if self.statistic == "ks" and self.shape == "categorical":
            raise ValueError("ks compares ordered buckets; use chiSquare, psi or jensenShannon for categories")
        if self.statistic == "chiSquare" and self.shape != "categorical":
            raise ValueError("chiSquare is for categorical counts (shape: categorical)")
        if self.reference == "training" and self.training_reference is None:
            raise ValueError("reference: training needs trainingReference (a ConfigMap with the SDK's edges JSON)")
        return self


class TemplateRef(ApiModel):
    """Take the metric from a template: a ModelAnalysisTemplate, a ClusterModelAnalysisTemplate or a built-in."""

    name: str = Field(
        description="Template name: looked up as a ModelAnalysisTemplate in the rollout's namespace, then a "
        "ClusterModelAnalysisTemplate, then the built-ins (latency-p99, error-rate, input-drift, output-drift, ...)."
    )
    args: dict[str, str] = Field(default_factory=dict, description="Values for the template's arguments.")


MEASUREMENTS_KEPT = 10
MAX_MEASUREMENT_RETENTION = 100


class SecretKeyRef(ApiModel):
    """One key of a Secret in the rollout's namespace."""

    name: str = Field(description="Name of the Secret.")
    key: str = Field(description="Key in the Secret's data.")


class HeaderSource(ApiModel):
    """Where a header's value comes from."""

    secret_key_ref: SecretKeyRef = Field(description="A key of a Secret (never logged, never in status).")


class WebHeader(ApiModel):
    """One request header: a literal value, or a value from a Secret."""

    name: str = Field(min_length=1, description="Header name, e.g. Authorization.")
    value: str | None = Field(default=None, description="A literal value (not secret: it is in the spec).")
    value_from: HeaderSource | None = Field(default=None, description="Take the value from a Secret.")

    @model_validator(mode="after")
    def _one_value(self) -> WebHeader:
        if (self.value is None) == (self.value_from is None):
            raise ValueError(f"header {self.name!r}: set exactly one of value, valueFrom")
        return self


WEB_TIMEOUT_MAX_SECONDS = 60


class WebMetric(ApiModel):
    """An HTTP endpoint answering JSON, and where in the answer the number is (as Argo Rollouts' web metric)."""

    url: str = Field(description="http(s) URL; template variables (" + _VARIABLES_HELP + ") are URL-encoded into it.")
    method: Literal["GET", "POST"] = Field(default="GET", description="GET or POST.")
    headers: list[WebHeader] = Field(default_factory=list, description="Request headers.")
    body: str | None = Field(
        default=None, description="POST: the request body (template variables are JSON-string-escaped into it)."
    )
    json_path: str = Field(
        description="JSONPath to the number in the answer, e.g. $.data.errorRate (one match, a number or a "
        "numeric string; null: no data)."
    )
    timeout_seconds: float = Field(
        default=10, gt=0, le=WEB_TIMEOUT_MAX_SECONDS, description="Seconds the request may take in all."
    )

    @field_validator("url", "body")
    @classmethod
    def _known_variables(cls, text: str | None) -> str | None:
        return _check_variables(text)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return url

    @field_validator("json_path")
    @classmethod
    def _parses(cls, expression: str) -> str:
        compile_path(expression)
        return expression

    @model_validator(mode="after")
    def _body_with_post(self) -> WebMetric:
        if self.body is not None and self.method != "POST":
            raise ValueError("body is sent with method: POST only")
        return self


JOB_TIMEOUT_MAX_SECONDS = 86400


class JobMetric(ApiModel):
    """Offline evaluation: a Job that scores the candidate (e.g. on a held-out labelled set) and reports a number
    in its termination message."""

    spec: dict[str, Any] = Field(
        description="A Job spec (batch/v1 JobSpec). Its containers get MODEL_NAME, MODEL_VERSION (the candidate), "
        "MODEL_URI, ROLLOUT_NAME and ROLLOUT_NAMESPACE, and template variables in its strings are filled in. The "
        'first container\'s termination message (/dev/termination-log) holds the number: JSON {"value": 0.93} '
        "or a bare number.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    timeout_seconds: int = Field(
        default=900,
        ge=1,
        le=JOB_TIMEOUT_MAX_SECONDS,
        description="The Job's deadline (its activeDeadlineSeconds): unfinished by then, the measurement is an Error.",
    )

    @field_validator("spec")
    @classmethod
    def _has_containers(cls, spec: dict[str, Any]) -> dict[str, Any]:
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("spec.template.spec.containers must list at least one container")
        return spec


ACCURACY_STATISTICS = ("accuracy", "recall", "error")
MAX_LABEL_WAIT_SECONDS = 7 * 86400


class Accuracy(ApiModel):
    """Judge the candidate on ground truth that arrives after its predictions (the SDK's feedback series):
    its accuracy, a class's recall, or its mean absolute error (regression), against a bound or stable."""

    statistic: Literal["accuracy", "recall", "error"] = Field(
        default="accuracy",
        description="accuracy: share of labelled predictions that were correct; recall: share of the labelled "
        "cases of `class` predicted as that class; error: mean absolute error of a regression model.",
    )
    class_name: str | None = Field(
        default=None, alias="class", description="recall: the class (the true_class label value)."
    )
    min: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="accuracy, recall: the lowest acceptable value. Failed when the Wilson interval at "
        "`confidence` lies wholly below it; Inconclusive when the value is below it by less than sampling noise.",
    )
    max: float | None = Field(default=None, ge=0, description="error: the highest acceptable mean absolute error.")
    max_drop: float | None = Field(
        default=None,
        ge=0,
        description="Against stable on the same window (in spec.monitoring: against the model's own baseline, "
        "its first measurement after promotion): accuracy or recall may be at most this much lower, error at "
        "most this much higher. Failed when a one-sided two-proportion z-test at `confidence` says the drop is "
        "larger.",
    )
    min_labelled: int = Field(
        default=100,
        ge=1,
        description="Fewer labelled predictions than this in the window (on either side): no measurement yet; "
        "an analysis step waits for them up to labelWait, then it is Inconclusive.",
    )
    window: str = Field(
        default="5m", description=f"How far back labels are counted (by their arrival), as {DURATION_HELP}."
    )
    label_delay: str = Field(
        default="0s",
        description="How long labels take to arrive: nothing is measured until this long after the analysis "
        "started, so that the window judges predictions whose labels had time to arrive.",
    )
    label_wait: str = Field(
        default="10m",
        description="An analysis step waits at most this long (after labelDelay) for minLabelled labels; then "
        "the measurement is Inconclusive. At most 7d.",
    )
    confidence: float = Field(
        default=0.95, ge=0.5, le=0.9999, description="Confidence of the Wilson interval and of the z-test."
    )
    address: str | None = Field(
        default=None,
        description="Prometheus base URL; defaults to spec.analysis.prometheus.address, then to the operator's "
        "--prometheus-url.",
    )

    @field_validator("window", "label_delay", "label_wait")
    @classmethod
    def _durations_parse(cls, value: str) -> str:
        parse_duration(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Accuracy:
        if self.min is None and self.max is None and self.max_drop is None:
            raise ValueError("set min (accuracy, recall), max (error) or maxDrop")
        if self.statistic == "error" and self.min is not None:
            raise ValueError("error is judged by max (the highest acceptable mean absolute error), not min")
        if self.statistic != "error" and self.max is not None:
            raise ValueError(f"{self.statistic} is judged by min (a share between 0 and 1), not max")
        if self.statistic != "error" and self.max_drop is not None and self.max_drop > 1:
            raise ValueError(f"maxDrop of {self.statistic} is a share: at most 1, got {self.max_drop:g}")
        if (self.statistic == "recall") != (self.class_name is not None):
            raise ValueError("recall needs class (the class whose recall is judged); only recall takes class")
        if parse_duration(self.window) <= 0:
            raise ValueError("window must be longer than 0s")
        if parse_duration(self.label_wait) > MAX_LABEL_WAIT_SECONDS:
            raise ValueError(f"labelWait {self.label_wait} is longer than 7d")
        return self


PROVIDERS = ("prometheus", "web", "job")


class Metric(ApiModel):
    """A metric the candidate is judged on: a query and how to judge it, or a template."""

    name: str = Field(description="Unique name, used by analysis steps and shown in status.")
    template: TemplateRef | None = Field(default=None, description="Take query and judgement from a template.")
    prometheus: PrometheusQuery | None = Field(default=None, description="Where and how to measure: PromQL.")
    web: WebMetric | None = Field(default=None, description="Measure by an HTTP request answering JSON.")
    job: JobMetric | None = Field(
        default=None, description="Measure by running a Job (offline evaluation); analysis steps only."
    )
    threshold: Threshold | None = Field(default=None, description="The values that pass.")
    compare: Compare | None = Field(default=None, description="How much worse than stable the candidate may be.")
    drift: Drift | None = Field(default=None, description="How far the candidate's distribution may drift.")
    accuracy: Accuracy | None = Field(
        default=None,
        description="Judge on ground truth that arrives later: queries built from the SDK's feedback series "
        "(docs/analysis.md, Ground truth).",
    )
    agreement: Agreement | None = Field(
        default=None,
        description="How often a shadow candidate must agree with stable, from the comparator of a mirror step with "
        "compare (no provider: the comparator's series are queried from spec.analysis.prometheus). Measured in "
        "analysis steps only unless background: true is set.",
    )
    min_count: float | None = Field(
        default=None,
        ge=0,
        description="Minimum sample size (countQuery's value; for drift, observations per group) below which a "
        "measurement is Inconclusive.",
    )
    background: bool = Field(
        default=True,
        description="Also measure at spec.analysis.interval for the whole rollout, not only in analysis "
        "steps that name it.",
    )
    dry_run: bool = Field(
        default=False,
        description="Measure and judge the metric, show its verdict in status and Events, but never let it "
        "decide: a dry-run metric that fails neither rolls back nor pauses the rollout.",
    )
    measurement_retention: int | None = Field(
        default=None,
        ge=1,
        le=MAX_MEASUREMENT_RETENTION,
        description=f"How many of this metric's last measurements status keeps (default {MEASUREMENTS_KEPT}; "
        "fewer when an analysis has so many metrics that status would grow too large). The counts in status "
        "cover every measurement whatever is kept.",
    )

    @model_validator(mode="after")
    def _one_judgement(self) -> Metric:
        if self.template is not None:
            return self  # resolved into the fields below before the spec is judged
        if self.accuracy is not None:
            return self._accuracy_alone()
        if self.agreement is not None:
            others = [
                kind
                for kind in (*PROVIDERS, "threshold", "compare", "drift", "min_count")
                if getattr(self, kind) is not None
            ]
            if others:
                raise ValueError(
                    "an agreement metric queries the comparator's series itself: remove "
                    + ", ".join(to_camel(kind) for kind in others)
                )
            if "background" not in self.model_fields_set:
                # There are pairs only while a compare mirror runs: measured all along by default, it
                # would count Inconclusive measurements before the shadow and pause the rollout.
                self.background = False
            return self
        providers = [provider for provider in PROVIDERS if getattr(self, provider) is not None]
        if len(providers) != 1:
            raise ValueError(
                f"set exactly one of prometheus, web, job (or template) (found: {', '.join(providers) or 'none'})"
            )
        chosen = [kind for kind in ("threshold", "compare", "drift") if getattr(self, kind) is not None]
        if len(chosen) != 1:
            raise ValueError(
                "set exactly one of threshold, compare, drift, or use accuracy or agreement, which judge "
                f"themselves (found: {', '.join(chosen) or 'none'})"
            )
        if providers[0] != "prometheus":
            # compare and drift need queries for stable and series; a web answer or a Job gives one number.
            if chosen[0] != "threshold":
                raise ValueError(f"a {providers[0]} metric is judged by threshold; {chosen[0]} needs prometheus")
            if self.min_count is not None:
                raise ValueError(f"minCount needs prometheus.countQuery; a {providers[0]} metric has no sample size")
        if self.job is not None and self.background:
            raise ValueError("a job metric runs in analysis steps only (a Job per measurement): set background: false")
        return self

    def _accuracy_alone(self) -> Metric:
        kinds = ("prometheus", "web", "job", "threshold", "compare", "drift")
        others = [kind for kind in kinds if getattr(self, kind) is not None]
        if others:
            raise ValueError(
                f"accuracy builds its own queries and judgement from the SDK's feedback series; it takes no "
                f"{', '.join(others)} (a Prometheus address goes in accuracy.address)"
            )
        if self.min_count is not None:
            raise ValueError("accuracy counts labelled predictions: use accuracy.minLabelled, not minCount")
        return self

    @property
    def provider(self) -> str:
        """prometheus, web or job: which backend measures it (see `metrics.factory`)."""
        return next((provider for provider in PROVIDERS if getattr(self, provider) is not None), "prometheus")

    @property
    def kind(self) -> str:
        if self.accuracy is not None:
            return "accuracy"
        if self.agreement is not None:
            return "agreement"
        return "compare" if self.compare is not None else "drift" if self.drift is not None else "threshold"

    @property
    def query(self) -> PrometheusQuery:
        assert self.prometheus is not None, "templates are resolved before metrics are used"
        return self.prometheus


class PrometheusAuth(ApiModel):
    """Credentials for Prometheus, read from a Secret in the rollout's namespace (never logged, never in status)."""

    secret: str = Field(description="Name of the Secret.")
    bearer_token_key: str | None = Field(default=None, description="Key of a bearer token in the Secret.")
    username_key: str | None = Field(default=None, description="Key of the basic-auth user name in the Secret.")
    password_key: str | None = Field(default=None, description="Key of the basic-auth password in the Secret.")

    @model_validator(mode="after")
    def _one_scheme(self) -> PrometheusAuth:
        basic = (self.username_key is not None, self.password_key is not None)
        if self.bearer_token_key is not None and any(basic):
            raise ValueError("use bearerTokenKey or usernameKey/passwordKey, not both")
        if self.bearer_token_key is None and basic != (True, True):
            raise ValueError("set bearerTokenKey, or both usernameKey and passwordKey")
        return self


class PrometheusServer(ApiModel):
    """The Prometheus the metrics are read from."""

    address: str | None = Field(default=None, description="Base URL, e.g. http://prometheus.monitoring:9090.")
    auth: PrometheusAuth | None = Field(default=None, description="Credentials, from a Secret.")


class AnalysisSpec(ApiModel):
    """Metrics and the limits that decide when a rollout is rolled back (as in Argo Rollouts)."""

    interval: str = Field(default="30s", description=f"Time between background measurements, as {DURATION_HELP}.")
    failure_limit: int = Field(
        default=0, ge=0, description="A metric fails when more measurements than this have failed."
    )
    inconclusive_limit: int = Field(
        default=0,
        ge=0,
        description="When more measurements than this are inconclusive (no data, NaN), the rollout "
        "pauses for a person to decide.",
    )
    consecutive_error_limit: int = Field(
        default=4,
        ge=0,
        description="A metric fails when more consecutive measurements than this could not be taken "
        "(Prometheus unreachable, bad query).",
    )
    prometheus: PrometheusServer = Field(
        default_factory=PrometheusServer, description="Default Prometheus for every metric."
    )
    metrics: list[Metric] = Field(default_factory=list, description="The metrics the candidate is judged on.")

    @field_validator("interval")
    @classmethod
    def _interval_parses(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("metrics")
    @classmethod
    def _unique_names(cls, metrics: list[Metric]) -> list[Metric]:
        seen: set[str] = set()
        for index, metric in enumerate(metrics):
            if metric.name in seen:
                raise ValueError(f"metrics[{index}].name: {metric.name!r} is defined twice")
            seen.add(metric.name)
        return metrics

    def metric(self, name: str) -> Metric:
        return next(metric for metric in self.metrics if metric.name == name)


class WebhookHook(ApiModel):
    """POST a JSON description of the drift to a URL (e.g. a retraining pipeline's trigger)."""

    url: str = Field(description="http(s) URL that receives the POST.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")


class RetrainingHook(ApiModel):
    """What to do when a promoted model drifts; off unless set (retraining stays manual)."""

    job: dict[str, Any] | None = Field(
        default=None,
        description="A Job spec (batch/v1 JobSpec) created once per drift episode; it gets DRIFT_* variables.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    webhook: WebhookHook | None = Field(default=None, description="A URL to POST a JSON payload to.")

    @model_validator(mode="after")
    def _one(self) -> RetrainingHook:
        if (self.job is None) == (self.webhook is None):
            raise ValueError("set exactly one of job, webhook")
        return self


class Monitoring(ApiModel):
    """Keep watching the promoted model: drift of its live inputs and outputs, at a slow interval."""

    interval: str = Field(default="5m", description=f"Time between measurements, as {DURATION_HELP}.")
    metrics: list[str] = Field(
        description="Names from spec.analysis.metrics, measured on the stable version (its {{candidate}} is the "
        "stable version); typically drift against a training reference."
    )
    consecutive_failures: int = Field(
        default=2,
        ge=1,
        le=10,
        description="Measurements of one metric that must fail in a row (errors skipped) before the model "
        "counts as drifted: a drift statistic on one window of live traffic is noisy, and a retraining "
        "hook should not fire on one unlucky window. 1 reacts to the first failure.",
    )
    hook: RetrainingHook | None = Field(default=None, description="Retraining hook fired once per drift episode.")

    @field_validator("interval")
    @classmethod
    def _interval_parses(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("must be longer than 0s")
        return value


def _check_known_metrics(path: str, names: list[str], metrics: list[Metric]) -> None:
    known = {metric.name for metric in metrics}
    for position, name in enumerate(names):
        if name not in known:
            allowed = ", ".join(sorted(known)) or "none are defined"
            raise ValueError(
                f"{path}.metrics[{position}]: unknown metric {name!r}; defined in spec.analysis.metrics: {allowed}"
            )


# --- notifications and webhook gates (docs/notifications.md, docs/gates.md) ---------------------

NotificationTrigger = Literal[
    "on-rollout-started",
    "on-step-completed",
    "on-rollout-paused",
    "on-rollout-rolled-back",
    "on-rollout-promoted",
    "on-drift",
]
NOTIFICATION_TRIGGERS: tuple[NotificationTrigger, ...] = (
    "on-rollout-started",
    "on-step-completed",
    "on-rollout-paused",
    "on-rollout-rolled-back",
    "on-rollout-promoted",
    "on-drift",
)
NOTIFICATION_TIMEOUT_MAX_SECONDS = 30


def _http_url_or_none(url: str | None) -> str | None:
    if url is not None and not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return url


class NotificationWebhook(ApiModel):
    """One place messages go: a URL that receives a POST with a JSON body made from a template."""

    name: str = Field(min_length=1, max_length=63, description="Names the destination in status and logs.")
    url: str | None = Field(
        default=None,
        description="http(s) URL (not secret: it is in the spec). Slack's and Teams' URLs hold a "
        "token: give those with urlFrom.",
    )
    url_from: HeaderSource | None = Field(default=None, description="Take the URL from a Secret (never logged).")
    headers: list[WebHeader] = Field(default_factory=list, description="Request headers (values from Secrets allowed).")
    template: Literal["generic", "slack", "teams"] = Field(
        default="generic",
        description="The body: generic (a JSON object with every field), slack ({text, blocks}) or teams "
        "(a MessageCard). Ignored when body is set.",
    )
    body: str | None = Field(
        default=None,
        description="A JSON body of your own, with {{variables}} (rollout, namespace, trigger, reason, message, "
        "stable, candidate, step, phase, metric, value, threshold, at) JSON-string-escaped into it.",
    )
    triggers: list[NotificationTrigger] = Field(
        default_factory=list,
        description="Which happenings to send: " + ", ".join(NOTIFICATION_TRIGGERS) + " (empty: all).",
    )
    timeout_seconds: float = Field(
        default=5, gt=0, le=NOTIFICATION_TIMEOUT_MAX_SECONDS, description="Seconds one attempt may take in all."
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Attempts before giving up on a receiver that is down (backoff doubles from 2s, at most 5m).",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        return _http_url_or_none(url)

    @model_validator(mode="after")
    def _one_url(self) -> NotificationWebhook:
        if (self.url is None) == (self.url_from is None):
            raise ValueError(f"webhook {self.name!r}: set exactly one of url, urlFrom")
        return self

    @field_validator("body")
    @classmethod
    def _body_variables(cls, body: str | None) -> str | None:
        if body is not None:
            unknown = sorted(set(template_variables(body)) - set(NOTIFICATION_VARIABLES))
            if unknown:
                raise ValueError(
                    f"unknown variable(s) {', '.join(unknown)} in body; allowed: {', '.join(NOTIFICATION_VARIABLES)}"
                )
            filled = render_template(body, {key: "x" for key in NOTIFICATION_VARIABLES}, escape=json_string_part)
            try:
                document = json.loads(filled)
            except ValueError as error:
                raise ValueError(f"body is not JSON once its variables are filled in: {error}") from None
            if not isinstance(document, dict):
                raise ValueError("body must be a JSON object")
        return body


NOTIFICATION_VARIABLES = (
    "rollout",
    "namespace",
    "trigger",
    "reason",
    "message",
    "stable",
    "candidate",
    "step",
    "phase",
    "metric",
    "value",
    "threshold",
    "at",
)


class Notifications(ApiModel):
    """Where this rollout's messages go (besides the operator-wide ConfigMap modelrollout-notifications)."""

    webhooks: list[NotificationWebhook] = Field(default_factory=list, description="Destinations.")
    cluster_defaults: bool = Field(
        default=True,
        description="Also send to the destinations of the ConfigMap modelrollout-notifications in the "
        "operator's namespace (false: only to the ones listed here).",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Notifications:
        names = [webhook.name for webhook in self.webhooks]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"webhooks: names must be unique ({', '.join(repeated)} repeated)")
        return self


GATE_TYPES = (
    "pre-rollout",
    "confirm-rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "post-rollout",
    "rollback",
)
GateType = Literal[
    "pre-rollout", "confirm-rollout", "confirm-traffic-increase", "confirm-promotion", "post-rollout", "rollback"
]


class WebhookGate(ApiModel):
    """An HTTP call whose answer decides whether the rollout may go on (Flagger's webhooks).

    confirm-rollout and pre-rollout: before the candidate's first step (blue-green: before the
    preview is created); confirm-traffic-increase: before each step that raises the candidate's
    weight (canary only); confirm-promotion: before promotion (blue-green: the switch). Each
    waits for an HTTP 2xx answer; any other answer, a timeout or an error is "not yet", never "go".
    rollback: asked during the rollout; a 2xx answer rolls back. post-rollout: told once after the
    rollout is promoted or rolled back; its answer decides nothing."""

    name: str = Field(min_length=1, max_length=63, description="Names the gate in status and Events.")
    type: GateType = Field(description="When it is asked: " + ", ".join(GATE_TYPES) + ".")
    url: str = Field(description="http(s) URL that receives a POST with a JSON description of the rollout.")
    headers: list[WebHeader] = Field(default_factory=list, description="Request headers (values from Secrets allowed).")
    timeout_seconds: float = Field(
        default=5, gt=0, le=NOTIFICATION_TIMEOUT_MAX_SECONDS, description="Seconds one call may take; then: not yet."
    )
    interval: str = Field(default="10s", description=f"Time between calls while it waits, as {DURATION_HELP}.")
    metadata: dict[str, str] = Field(default_factory=dict, description="Sent as the body's metadata, as Flagger does.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        checked = _http_url_or_none(url)
        assert checked is not None
        return checked

    @field_validator("interval")
    @classmethod
    def _interval_parses(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("must be longer than 0s")
        return value


class ModelRolloutSpec(ApiModel):
    """What to deliver and how."""

    # The revision (a hash of model and template), computed once: a parsed spec is shared by every
    # pass that reads the same spec and is never modified.
    _revision: str | None = PrivateAttr(default=None)
    replicas: int = Field(
        default=1, ge=1, description="Total model-server replicas across stable and candidate (1 or more)."
    )
    model: ModelRef = Field(description="The model version to deliver.")
    template: dict[str, Any] = Field(
        description="PodTemplateSpec of the model server. The operator adds its labels and injects "
        "MODEL_NAME, MODEL_VERSION, MODEL_URI, ROLLOUT_NAME and ROLLOUT_NAMESPACE into every container.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    service: ServicePort = Field(default_factory=ServicePort, description="The Service in front of the model.")
    strategy: Strategy = Field(default_factory=Strategy, description="How a new version is delivered.")
    traffic_routing: TrafficRouting | None = Field(
        default=None,
        description="Gateway API or Istio; absent: weights are realised as a replica ratio behind one Service.",
    )
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec, description="How the candidate is judged.")
    automation: Automation = Field(
        default=Automation.AUTO,
        description="manual: every step waits for `promote`; assisted: steps run on their own and the "
        "final promotion waits for a person; auto: fully automatic.",
    )
    monitoring: Monitoring | None = Field(
        default=None, description="After promotion: watch the stable model for drift, and fire a retraining hook."
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=1,
        description="Roll back when the candidate's pods are not ready this long after a step asked for them.",
    )
    notifications: Notifications | None = Field(
        default=None,
        description="Send a message when the rollout starts, completes a step, pauses, is rolled back, is "
        "promoted or drifts (docs/notifications.md).",
    )
    webhooks: list[WebhookGate] = Field(
        default_factory=list,
        description="Webhook gates: HTTP calls whose answers decide whether the rollout goes on (docs/gates.md).",
    )

    @field_validator("template")
    @classmethod
    def _has_containers(cls, template: dict[str, Any]) -> dict[str, Any]:
        containers = (template.get("spec") or {}).get("containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("spec.containers must list at least one container")
        return template

    @model_validator(mode="after")
    def _steps_name_known_metrics(self) -> ModelRolloutSpec:
        analyses: list[tuple[str, AnalysisStep]] = [
            (f"strategy.canary.steps[{index}].analysis", step.analysis)
            for index, step in enumerate(self.strategy.steps)
            if step.analysis is not None
        ]
        blue_green = self.strategy.blue_green
        if blue_green is not None:
            for field_name, gate in (
                ("prePromotionAnalysis", blue_green.pre_promotion_analysis),
                ("postPromotionAnalysis", blue_green.post_promotion_analysis),
            ):
                if gate is not None:
                    analyses.append((f"strategy.blueGreen.{field_name}", gate))
        for path, analysis in analyses:
            _check_known_metrics(path, analysis.metrics, self.analysis.metrics)
        return self

    @model_validator(mode="after")
    def _monitoring_names_known_metrics(self) -> ModelRolloutSpec:
        if self.monitoring is not None:
            _check_known_metrics("monitoring", self.monitoring.metrics, self.analysis.metrics)
            for position, name in enumerate(self.monitoring.metrics):
                if self.analysis.metric(name).job is not None:
                    raise ValueError(
                        f"monitoring.metrics[{position}]: {name!r} is a job metric; it runs in analysis steps only"
                    )
        return self

    @model_validator(mode="after")
    def _router_for_mirrors_and_headers(self) -> ModelRolloutSpec:
        if self.traffic_routing is not None and (self.traffic_routing.gateway_api or self.traffic_routing.istio):
            return self
        for index, step in enumerate(self.strategy.steps):
            for kind in ("mirror", "set_header_route"):
                if getattr(step, kind) is not None:
                    raise ValueError(
                        f"strategy.canary.steps[{index}].{to_camel(kind)}: needs a traffic router "
                        "(spec.trafficRouting.gatewayAPI or spec.trafficRouting.istio); a replica ratio cannot "
                        "copy or route single requests"
                    )
        return self

    @model_validator(mode="after")
    def _webhook_gates(self) -> ModelRolloutSpec:
        names = [gate.name for gate in self.webhooks]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"webhooks: names must be unique ({', '.join(repeated)} repeated)")
        if self.strategy.blue_green is not None:
            for position, gate in enumerate(self.webhooks):
                if gate.type == "confirm-traffic-increase":
                    raise ValueError(
                        f"webhooks[{position}].type: confirm-traffic-increase gates a canary's weight steps; a "
                        "blue-green has no traffic increase (it switches at once): use confirm-promotion to gate "
                        "the switch; allowed with strategy.blueGreen: pre-rollout, confirm-rollout, "
                        "confirm-promotion, rollback, post-rollout"
                    )
        return self

    @model_validator(mode="after")
    def _agreement_needs_a_comparator(self) -> ModelRolloutSpec:
        if self.shadow_comparison() is not None:
            return self
        for position, metric in enumerate(self.analysis.metrics):
            if metric.agreement is not None:
                raise ValueError(
                    f"analysis.metrics[{position}].agreement: {metric.name!r} judges the pairs of a shadow "
                    "comparator; add a canary step mirror: {percent: N, compare: {}} (it needs a traffic router)"
                )
        return self

    def shadow_comparison(self) -> ShadowComparison | None:
        """The comparison the rollout's mirror steps ask for (the first that asks), if any: then every mirror
        of the rollout goes to its comparator."""
        if self.strategy.blue_green is not None:
            return None
        return next((step.mirror.compare for step in self.strategy.steps if step.mirror and step.mirror.compare), None)


# ---------------------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------------------


class Phase(enum.StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class PauseReason(enum.StrEnum):
    """Why a rollout waits (its phase is then Paused), and what moves it on."""

    PAUSE_STEP = "PauseStep"  # a pause step without a duration: `promote` ends it
    MANUAL_STEP = "ManualStep"  # automation: manual, a step is done: `promote` starts the next
    PROMOTION = "Promotion"  # every step (or the blue-green preview) is done: `promote` to promote
    INCONCLUSIVE = "Inconclusive"  # an analysis had no data to judge: `promote` goes on, `abort` rolls back
    USER = "User"  # paused by a person: `resume` or `promote`


class SharedStage(enum.StrEnum):
    """Stages of every rollout, whatever its strategy."""

    PENDING = "Pending"  # nothing decided yet
    DEPLOYING = "Deploying"  # the first version comes up; there is nothing to compare it with
    DEPLOY_FAILED = "DeployFailed"  # the first version was not ready by its progress deadline
    STABLE = "Stable"  # one version serves everything
    ROLLED_BACK = "RolledBack"  # the candidate was rolled back; stable serves everything
    INVALID = "Invalid"  # the spec or its traffic route is unusable: nothing moves until fixed


class CanaryStage(enum.StrEnum):
    """Where a canary stands; `currentStepIndex` says which step."""

    STEPPING = "Stepping"  # running the current step: a weight, a timed pause, an analysis
    PAUSED_AT_STEP = "PausedAtStep"  # a pause step without a duration
    STEP_DONE_WAITING = "StepDoneWaiting"  # automation: manual: the step is done, `promote` goes on
    AWAITING_PROMOTION = "AwaitingPromotion"  # every step is done, `promote` makes the candidate stable
    PROMOTING = "Promoting"  # the candidate scales to full size, then becomes stable


class BlueGreenStage(enum.StrEnum):
    """Where a blue-green rollout stands."""

    PREVIEW = "Preview"  # the new version comes up at full size behind the preview Service
    PRE_PROMOTION_ANALYSIS = "PrePromotionAnalysis"  # the preview is measured before any switch
    READY_TO_SWITCH = "ReadyToSwitch"  # waiting autoPromotionSeconds before switching
    AWAITING_SWITCH = "AwaitingSwitch"  # waiting for `promote` to switch traffic
    POST_PROMOTION_ANALYSIS = "PostPromotionAnalysis"  # switched; the old version is kept while measured
    SCALE_DOWN_DELAY = "ScaleDownDelay"  # switched; the old version goes after scaleDownDelaySeconds


Stage = SharedStage | CanaryStage | BlueGreenStage
ALL_STAGES: tuple[Stage, ...] = (*SharedStage, *CanaryStage, *BlueGreenStage)
STAGES_IN_WORDS = (
    f"Every strategy: {', '.join(SharedStage)}. Canary: {', '.join(CanaryStage)}. "
    f"Blue-green: {', '.join(BlueGreenStage)}."
)
# One string enum on the wire (a structural CRD schema takes no union of enums).
WireStage = Annotated[Stage, WithJsonSchema({"type": "string", "enum": [stage.value for stage in ALL_STAGES]})]


class Verdict(enum.StrEnum):
    """The verdict on one measurement, and on a metric as a whole."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


class Condition(ApiModel):
    """A Kubernetes-style condition (kstatus conventions)."""

    type: str = Field(description="Ready, Progressing, Degraded, and kstatus's Reconciling and Stalled.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One CamelCase word a program can match.")
    message: str = Field(default="", description="What a person should know.")
    last_transition_time: str | None = Field(default=None, description="When status last changed.")
    observed_generation: int | None = Field(default=None, description="The generation this judges.")


class DriftFeature(ApiModel):
    """One feature (group) of a drift measurement: its statistic and verdict, never its values."""

    name: str = Field(description="The feature: the value of drift.groupBy's label (`all` when not grouped).")
    value: float | None = Field(
        default=None, description="The statistic (PSI, distance, KS D, chi-square); absent when too few observations."
    )
    p_value: float | None = Field(
        default=None,
        description="The p-value of the feature's significance test, Holm-adjusted over the features compared "
        "(the number compared with pValueLevel); absent when too few observations.",
    )
    drifted: bool = Field(default=False, description="Whether this feature failed: past max and beyond noise.")


class DriftFeatures(ApiModel):
    """A drift metric's last measurement feature by feature: the worst drift.topFeatures of them."""

    at: str = Field(description="When the measurement was taken (RFC 3339).")
    statistic: str = Field(description="psi, jensenShannon, ks or chiSquare.")
    max: float | None = Field(default=None, description="The limit on the statistic (drift.max), if set.")
    p_value_level: float = Field(
        description="A feature drifted only if its adjusted pValue is below this (minPValue, or the false-alarm "
        "budget)."
    )
    compared: int = Field(default=0, description="How many features the measurement compared.")
    drifted: int = Field(default=0, description="How many of them drifted (listed first).")
    inconclusive: int = Field(default=0, description="How many had too few observations on a side.")
    features: list[DriftFeature] = Field(
        default_factory=list,
        description="The worst features, worst first (the one the measurement's message names leads): drifted "
        "ones, then the closest to their limits, then those with too few observations.",
    )


class Measurement(ApiModel):
    """One query result and its verdict."""

    phase: Verdict = Field(description="Successful, Failed, Inconclusive or Error.")
    value: float | None = Field(default=None, description="The value read, if any.")
    at: str = Field(description="When it was taken (RFC 3339).")
    message: str = Field(default="", description="Why this verdict.")
    # A drift measurement's features, carried to its metric's `drift` by `analysis.evaluate.record`:
    # status keeps them once per metric (the last measurement's), never once per measurement.
    _features: DriftFeatures | None = PrivateAttr(default=None)

    @property
    def features(self) -> DriftFeatures | None:
        return self._features

    def with_features(self, features: DriftFeatures | None) -> Measurement:
        self._features = features
        return self


class MetricResult(ApiModel):
    """The running tally of one metric in one analysis."""

    name: str = Field(description="The metric's name.")
    phase: Verdict = Field(default=Verdict.RUNNING, description="The metric's verdict so far.")
    count: int = Field(default=0, description="Measurements taken.")
    successful: int = Field(default=0, description="Successful measurements.")
    failed: int = Field(default=0, description="Failed measurements.")
    inconclusive: int = Field(default=0, description="Inconclusive measurements.")
    error: int = Field(default=0, description="Measurements that could not be taken.")
    consecutive_error: int = Field(default=0, description="Errors in a row, reset by any other verdict.")
    consecutive_successful: int = Field(
        default=0, description="Successful measurements in a row, reset by any other verdict but an error."
    )
    dry_run: bool = Field(
        default=False, description="A dry-run metric: measured and judged, never decisive for the rollout."
    )
    message: str = Field(default="", description="Why the metric has its verdict.")
    measurements: list[Measurement] = Field(
        default_factory=list,
        description=f"The last measurements, oldest first: the metric's measurementRetention (default "
        f"{MEASUREMENTS_KEPT}), fewer when an analysis has so many metrics that status would grow too large.",
    )
    drift: DriftFeatures | None = Field(
        default=None,
        description="A drift metric: its last measurement with features, feature by feature (worst first).",
    )


class AnalysisStatus(ApiModel):
    """One analysis: the background one, or the one an analysis step runs."""

    kind: Literal["background", "step"] = Field(description="background or step.")
    step_index: int | None = Field(default=None, description="For a canary step's analysis: the step's index.")
    stage: WireStage | None = Field(default=None, description="For a blue-green gate's analysis: the stage it gates.")
    phase: Verdict = Field(default=Verdict.RUNNING, description="The analysis's verdict so far.")
    started_at: str = Field(description="When it started.")
    metrics: list[MetricResult] = Field(default_factory=list, description="One entry per metric.")

    def result(self, name: str) -> MetricResult | None:
        return next((result for result in self.metrics if result.name == name), None)


class HookStatus(ApiModel):
    """The retraining hook of one drift episode."""

    episode: str = Field(description="Id of the drift episode the hook is for (when it started).")
    state: Literal["Pending", "Delivered", "Failed"] = Field(description="Pending (retrying), Delivered or Failed.")
    attempts: int = Field(default=0, description="Attempts so far.")
    next_attempt_at: str | None = Field(default=None, description="When the next attempt is due.")
    last_error: str = Field(default="", description="Why the last attempt failed.")


class AccuracyBaseline(ApiModel):
    """An accuracy metric's first measurement of the promoted model: what concept drift is judged against."""

    metric: str = Field(description="The accuracy metric's name.")
    hits: float = Field(description="Correct labelled predictions in that window (error: the summed absolute error).")
    labelled: float = Field(description="Labelled predictions in that window.")
    value: float = Field(description="The accuracy, recall or mean absolute error measured.")
    at: str = Field(description="When it was measured.")


class MonitoringStatus(ApiModel):
    """What watching the promoted model has found."""

    version: str = Field(description="The stable version being watched.")
    analysis: AnalysisStatus = Field(description="The measurements of the monitoring metrics.")
    drifted_since: str | None = Field(default=None, description="When the current drift episode began.")
    hook: HookStatus | None = Field(default=None, description="The retraining hook of the current episode.")
    accuracy_baselines: list[AccuracyBaseline] = Field(
        default_factory=list,
        description="Accuracy metrics: the model's baseline after promotion (its first window with minLabelled "
        "labels); a drop against it beyond maxDrop is concept drift.",
    )
    concept_drifted_since: str | None = Field(
        default=None, description="When the current concept-drift episode (accuracy against baseline) began."
    )

    def baseline(self, metric: str) -> AccuracyBaseline | None:
        return next((baseline for baseline in self.accuracy_baselines if baseline.metric == metric), None)


class Weights(ApiModel):
    """The share of traffic each version receives, in percent."""

    stable: int = Field(default=100, description="Percent of traffic on the stable version.")
    candidate: int = Field(default=0, description="Percent of traffic on the candidate.")
    mirror: int = Field(
        default=0,
        description="Percent of traffic copied to the candidate (answers discarded, or compared with stable's by "
        "the comparator).",
    )
    header_route: bool = Field(
        default=False, description="Whether requests with the step's header go to the candidate."
    )
    header: str | None = Field(default=None, description="While headerRoute: the header match in force, as name=value.")


class LastCommand(ApiModel):
    """The operator's answer to the last command a person sent (`modelrollout promote` and the others)."""

    id: str = Field(description="The command's id, as the CLI wrote it in the modelrollout.io/command annotation.")
    action: str = Field(description="promote, promote-full, abort, retry, pause, resume or restart.")
    outcome: Literal["Applied", "Ignored"] = Field(description="Applied, or Ignored (it does not apply now).")
    reason: str = Field(description="What it did, or why it was ignored, for a person.")
    at: str = Field(description="When the operator handled it (RFC 3339).")


class RevisionSource(ApiModel):
    """What a revision was built from: enough to ask for it again (`modelrollout undo`)."""

    version: str = Field(description="The model version.")
    revision: str = Field(description="Hash of the model and template.")
    model: dict[str, Any] = Field(
        description="spec.model as it was.", json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    template: dict[str, Any] = Field(
        description="spec.template as it was.", json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )


class Summary(ApiModel):
    """What `kubectl get modelrollouts` shows, in words (printer columns can only read fields)."""

    candidate: str = Field(
        default="", description="The candidate's version; with its revision when only the template changed."
    )
    traffic: str = Field(default="", description="The split in force: 90/10, +mirror 20%, header name=value.")
    step: str = Field(default="", description="Canary: the step being run of all steps, as n/m.")


class PendingEvent(ApiModel):
    """A Kubernetes Event recorded with the status that explains it, kept until its delivery is confirmed."""

    name: str = Field(description="The Event's name: fixed, so posting it again after a restart is harmless.")
    type: Literal["Normal", "Warning"] = Field(description="Normal or Warning.")
    reason: str = Field(description="The Event's reason, e.g. StepCompleted.")
    message: str = Field(description="The Event's message.")
    at: str = Field(description="When the pass that recorded it ran.")


class GateStatus(ApiModel):
    """A webhook gate of the candidate in flight: whether it let the rollout on, and why it waits."""

    name: str = Field(description="The gate's name (spec.webhooks[].name).")
    type: str = Field(description="The gate's type (spec.webhooks[].type).")
    scope: str = Field(description="What it gates: rollout, step N or promotion.")
    revision: str = Field(description="The candidate revision it was asked about.")
    state: Literal["Waiting", "Open"] = Field(description="Waiting (not yet), Open (it said go).")
    message: str = Field(default="", description="Why it waits: the last answer, or the error.")
    checked_at: str | None = Field(default=None, description="When it was last asked (RFC 3339).")
    attempts: int = Field(default=0, description="Calls so far.")


class NotificationStatus(ApiModel):
    """A message to one destination, from the status write that recorded what it tells until it is sent."""

    id: str = Field(description="The Event it tells of, and the destination: fixed, so it is sent at most once.")
    destination: str = Field(description="The destination's name (spec or the operator's ConfigMap).")
    trigger: str = Field(description="on-rollout-started, on-step-completed, ...")
    state: Literal["Sending", "Retrying"] = Field(
        description="Sending: an attempt is made after this status is stored (never repeated after a restart: it "
        "may have arrived); Retrying: the last attempt surely did not arrive and another is due."
    )
    attempts: int = Field(default=1, description="Attempts, counting the one in flight.")
    next_attempt_at: str | None = Field(default=None, description="Retrying: when the next attempt is due.")
    last_error: str = Field(default="", description="Why the last attempt did not arrive (no secret in it).")
    values: dict[str, str] = Field(
        default_factory=dict, description="What the message says (the template's variables)."
    )


class NotificationOutcome(ApiModel):
    """How the last messages ended (kept: the last 10)."""

    id: str = Field(description="The notification's id.")
    destination: str = Field(description="The destination's name.")
    trigger: str = Field(description="What it told of.")
    outcome: Literal["Delivered", "Failed", "Unknown"] = Field(
        description="Delivered (2xx), Failed (given up, or refused) or Unknown (the operator stopped while sending, "
        "or the answer timed out: not sent again, so it arrives at most once)."
    )
    attempts: int = Field(default=1, description="Attempts made.")
    message: str = Field(default="", description="The last answer or error.")
    at: str = Field(description="When it ended.")


class ModelRolloutStatus(ApiModel):
    """Everything the operator needs to continue after a restart lives here, never only in memory."""

    phase: Phase = Field(default=Phase.PENDING, description="Where the rollout is.")
    message: str = Field(default="", description="What is happening, for a person.")
    observed_generation: int | None = Field(default=None, description="The spec generation acted on.")
    stable_version: str | None = Field(default=None, description="Model version serving as stable.")
    stable_revision: str | None = Field(default=None, description="Hash of the stable model and template.")
    candidate_version: str | None = Field(default=None, description="Model version being delivered.")
    candidate_revision: str | None = Field(default=None, description="Hash of the candidate model and template.")
    stage: WireStage | None = Field(
        default=None, description=f"Where the rollout stands; phase and pauseReason follow from it. {STAGES_IN_WORDS}"
    )
    interrupted_stage: WireStage | None = Field(
        default=None, description="While Invalid: the stage to go on from once the spec and route are valid."
    )
    current_step_index: int | None = Field(default=None, description="Canary: index of the step being run.")
    step_started_at: str | None = Field(default=None, description="When the current step started.")
    rollout_started_at: str | None = Field(default=None, description="When delivery of the candidate began.")
    pause_reason: PauseReason | None = Field(
        default=None,
        description="Why the rollout waits: PauseStep, ManualStep and Promotion wait for `promote`; Inconclusive "
        "(an analysis without data) for `promote` or `abort`; User (paused by a person) for `resume`.",
    )
    weights: Weights = Field(default_factory=Weights, description="Traffic split now in force.")
    background_analysis: AnalysisStatus | None = Field(default=None, description="Analysis run at interval.")
    step_analysis: AnalysisStatus | None = Field(
        default=None,
        description="Analysis of the current step, or of the last finished analysis step until the next one starts.",
    )
    promotion_requested: Literal["step", "full"] | None = Field(
        default=None,
        description="A `promote` (step) or `promote --full` waiting to take effect at the next gate it can open.",
    )
    switched_at: str | None = Field(
        default=None, description="Blue-green: when traffic switched to the new version (for scaleDownDelaySeconds)."
    )
    rolled_back_revision: str | None = Field(
        default=None, description="A revision that was rolled back; not retried until the spec or `retry` says so."
    )
    monitoring: MonitoringStatus | None = Field(default=None, description="Watching the promoted model.")
    last_command: LastCommand | None = Field(
        default=None, description="The operator's answer to the last command a person sent."
    )
    last_command_id: str | None = Field(
        default=None, description="Written by older operators: the id of the last command handled (see lastCommand)."
    )
    stable_source: RevisionSource | None = Field(default=None, description="What the stable revision was built from.")
    previous_stable: RevisionSource | None = Field(
        default=None, description="The stable revision before the last promotion (`modelrollout undo` goes back to it)."
    )
    restarted_at: str | None = Field(
        default=None, description="When a person last asked to restart the stable pods (`modelrollout restart`)."
    )
    summary: Summary | None = Field(default=None, description="What `kubectl get modelrollouts` shows.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Progressing, Degraded, Reconciling, Stalled."
    )
    pending_events: list[PendingEvent] | None = Field(
        default=None,
        description="Events written with this status and not yet known to be posted: an operator that dies "
        "between the status write and the Event (or whose Event POST failed) posts them after it restarts, "
        "under the same names, so none is lost or doubled. Cleared by a later status write once posted.",
    )
    gates: list[GateStatus] | None = Field(
        default=None, description="The webhook gates of the candidate in flight: open, or why they wait."
    )
    notifications: list[NotificationStatus] | None = Field(
        default=None, description="Messages being sent (docs/notifications.md): at most once each."
    )
    notified: list[NotificationOutcome] | None = Field(
        default=None, description="How the last messages ended (the last 10)."
    )

    def condition(self, kind: str) -> Condition | None:
        return next((condition for condition in self.conditions if condition.type == kind), None)

    @model_validator(mode="before")
    @classmethod
    def _read_older_status(cls, data: Any) -> Any:
        """Status written before stages existed stored a promotion as `pauseReason: Promoting`; the
        rest of such a status is given its stage by the engine, which knows the strategy."""
        if isinstance(data, dict) and data.get("pauseReason") == "Promoting":
            data = {key: value for key, value in data.items() if key != "pauseReason"}
            data["stage"] = CanaryStage.PROMOTING.value
        return data


class ModelRollout(ApiModel):
    """Delivers a new version of a machine-learning model: canary steps judged on Prometheus metrics."""

    api_version: str = Field(default="modelrollout.io/v1alpha1", description="modelrollout.io/v1alpha1")
    kind: str = Field(default="ModelRollout", description="ModelRollout")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: ModelRolloutSpec = Field(description="What to deliver and how.")
    status: ModelRolloutStatus | None = Field(default=None, description="Observed state, written by the operator.")


class TemplateArgument(ApiModel):
    """An argument of an analysis template, written {{name}} in its queries."""

    name: str = Field(description="Argument name.")
    default: str | None = Field(default=None, description="Value when the rollout gives none; none: required.")
    description: str = Field(default="", description="What it means.")


class TemplateQuery(ApiModel):
    """A template's queries: like a metric's, and they may use the template's {{arguments}}."""

    query: str = Field(description="The candidate's query (see ModelRollout spec.analysis.metrics[].prometheus).")
    stable_query: str | None = Field(default=None, description="The stable version's query.")
    count_query: str | None = Field(default=None, description="The candidate's sample size.")
    stable_count_query: str | None = Field(default=None, description="The stable version's sample size.")
    address: str | None = Field(default=None, description="Prometheus base URL.")


class ModelAnalysisTemplateSpec(ApiModel):
    """A reusable analysis metric that rollouts name in spec.analysis.metrics[].template."""

    args: list[TemplateArgument] = Field(default_factory=list, description="The template's arguments.")
    prometheus: TemplateQuery = Field(description="The queries.")
    threshold: Threshold | None = Field(default=None, description="Judge one number against bounds.")
    compare: Compare | None = Field(default=None, description="Judge the candidate against stable.")
    drift: Drift | None = Field(default=None, description="Judge a distribution against a reference.")
    min_count: float | None = Field(default=None, ge=0, description="Minimum sample size; below it: Inconclusive.")

    @model_validator(mode="after")
    def _one_judgement(self) -> ModelAnalysisTemplateSpec:
        chosen = [kind for kind in ("threshold", "compare", "drift") if getattr(self, kind) is not None]
        if len(chosen) != 1:
            raise ValueError(f"set exactly one of threshold, compare, drift (found: {', '.join(chosen) or 'none'})")
        return self
