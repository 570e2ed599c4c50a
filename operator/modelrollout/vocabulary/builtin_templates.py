"""The built-in analysis templates, as data: what a user gets by naming one (see ``docs/analysis.md``).

Each template is written against the SDK's metric names (``modelrollout_sdk.names``) and labels
(``rollout``, ``version``; ``namespace`` comes from the scrape target), with the operator's template
variables ``{{name}}``, ``{{namespace}}``, ``{{candidate}}`` and ``{{stable}}`` left in place for
``modelrollout.api.models.render_template``, and its own arguments (``{{window}}``, limits) with
defaults. :func:`instantiate` substitutes the arguments and turns the limits into numbers; turning the
result into spec models is the caller's business. Pure data and string work, no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from modelrollout_sdk import names

Kind = Literal["threshold", "compare", "drift"]

#: The operator's own template variables, filled in per rollout (`api.models.render_template`);
#: every other `{{name}}` in a template is one of its arguments.
TEMPLATE_VARIABLES = {
    "name": "the ModelRollout's name",
    "namespace": "the ModelRollout's namespace",
    "model": "spec.model.name",
    "stable": "the stable model version",
    "candidate": "the candidate model version",
}


class TemplateError(ValueError):
    """An unknown template, an unknown or missing argument, or an argument value that does not parse."""


@dataclass(frozen=True)
class TemplateArg:
    """An argument of a template: ``{{name}}`` in its queries or limits."""

    name: str
    default: str | None
    description: str
    kind: Literal["duration", "number"] = "number"


@dataclass(frozen=True)
class BuiltinTemplate:
    """One built-in analysis. String values may hold ``{{arg}}`` placeholders; see :func:`instantiate`."""

    name: str
    kind: Kind
    description: str
    args: tuple[TemplateArg, ...]
    query: str
    """The candidate's query (threshold: the value judged; compare: the candidate's side; drift: its counts)."""
    stable_query: str | None = None
    """The same query for the stable version (compare; drift against stable)."""
    count_query: str | None = None
    """The candidate's sample size in the window, for the minimum-sample-size rule (None: the drift
    counts themselves are the sample)."""
    stable_count_query: str | None = None
    limits: Mapping[str, str] = field(default_factory=dict)
    """threshold: min/max; compare: direction, maxRatio, maxDifference; drift: statistic, max, minPValue.
    ``minCount`` in every kind."""
    source: Mapping[str, str] = field(default_factory=dict)
    """drift only: how to read the samples: ``shape`` (histogram or categorical), ``groupBy`` (one
    distribution per value of this label), ``label`` (the category label), ``reference`` (stable or training)."""

    def to_dict(self) -> dict[str, Any]:
        """The template as data, placeholders included (camelCase keys, as in a spec)."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "args": [
                {"name": arg.name, "description": arg.description, **({"default": arg.default} if arg.default else {})}
                for arg in self.args
            ],
            "query": self.query,
        }
        for key, value in (
            ("stableQuery", self.stable_query),
            ("countQuery", self.count_query),
            ("stableCountQuery", self.stable_count_query),
        ):
            if value is not None:
                out[key] = value
        out[self.kind] = {**self.limits, **self.source}
        return out


_ARG: Final = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]*)\s*\}\}")
#: PromQL range durations: 30s, 5m, 1h30m, 500ms.
_DURATION: Final = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
#: Limits that are numbers once substituted; the others (direction, statistic, source fields) stay strings.
_NUMERIC_LIMITS: Final = frozenset({"min", "max", "maxRatio", "maxDifference", "minPValue", "minCount"})


def series_selector(version: str, **extra: str) -> str:
    """The label selector of a rollout's series for one side (`version`: candidate or stable), with `extra`
    labels whose values are already PromQL-safe."""
    labels = {
        names.LABEL_ROLLOUT: "{{name}}",
        "namespace": "{{namespace}}",
        names.LABEL_VERSION: "{{" + version + "}}",
        **extra,
    }
    return "{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


def _both(build: Callable[[str], str]) -> tuple[str, str]:
    """The candidate's and the stable's version of a query: the same PromQL, only `version` differs."""
    return build("candidate"), build("stable")


WINDOW: Final = TemplateArg(
    "window", "5m", "The range of rate()/increase(): how much recent traffic is judged.", "duration"
)
MIN_REQUESTS: Final = TemplateArg(
    "minCount", "100", "Fewer requests (or observations) than this in the window, on either side: Inconclusive."
)
#: The input-drift templates' minimum sample per feature. 150, not 100: with 30-50 features the
#: false-alarm budget's Holm correction needs it for a 1 SD shift of one feature to fail >= 99 % of
#: measurements (91-93 % at 100, 97.5-98 % at 120: bench/drift_calibration.py, docs/analysis.md).
INPUT_DRIFT_MIN_COUNT: Final = "150"
#: output-drift's default minPValue: half the 1 % false-alarm budget, as for every test read from the
#: chi-square law (modelrollout.analysis.drift.CHI_SQUARE_BUDGET_SHARE); 0.01 measured up to 1.2 %.
OUTPUT_DRIFT_MIN_PVALUE: Final = "0.005"


def _latency_p99(version: str) -> str:
    return (
        "histogram_quantile(0.99, sum by (le) (rate("
        f"{names.REQUEST_DURATION_SECONDS}_bucket{series_selector(version)}[{{{{window}}}}])))"
    )


def _requests(version: str) -> str:
    return f"sum(increase({names.REQUESTS_TOTAL}{series_selector(version)}[{{{{window}}}}]))"


def _error_rate(version: str) -> str:
    errors = series_selector(version, **{names.LABEL_OUTCOME: names.OUTCOME_ERROR})
    return (
        f"sum(rate({names.REQUESTS_TOTAL}{errors}[{{{{window}}}}]))"
        f" / sum(rate({names.REQUESTS_TOTAL}{series_selector(version)}[{{{{window}}}}]))"
    )


def _latency_count(version: str) -> str:
    return f"sum(increase({names.REQUEST_DURATION_SECONDS}_count{series_selector(version)}[{{{{window}}}}]))"


def _feature_buckets(version: str) -> str:
    return (
        f"sum by (le, {names.LABEL_FEATURE}) "
        f"(increase({names.INPUT_FEATURE_VALUE_BUCKET}{series_selector(version)}[{{{{window}}}}]))"
    )


def _predictions_by_class(version: str) -> str:
    selector = series_selector(version)
    return f"sum by ({names.LABEL_CLASS}) (increase({names.PREDICTIONS_TOTAL}{selector}[{{{{window}}}}]))"


def _score_buckets(version: str) -> str:
    return f"sum by (le) (increase({names.PREDICTION_SCORE}_bucket{series_selector(version)}[{{{{window}}}}]))"


def _outputs(version: str) -> str:
    return (
        f"(sum(increase({names.PREDICTIONS_TOTAL}{series_selector(version)}[{{{{window}}}}]))"
        f" + sum(increase({names.NULL_PREDICTIONS_TOTAL}{series_selector(version)}[{{{{window}}}}])))"
    )


def _null_ratio(version: str) -> str:
    selector = series_selector(version)
    return f"sum(increase({names.NULL_PREDICTIONS_TOTAL}{selector}[{{{{window}}}}])) / {_outputs(version)}"


_LATENCY, _LATENCY_STABLE = _both(_latency_p99)
_LATENCY_N, _LATENCY_N_STABLE = _both(_latency_count)
_ERRORS, _ERRORS_STABLE = _both(_error_rate)
_REQUESTS_N, _REQUESTS_N_STABLE = _both(_requests)
_FEATURES, _FEATURES_STABLE = _both(_feature_buckets)
_CLASSES, _CLASSES_STABLE = _both(_predictions_by_class)
_SCORES, _SCORES_STABLE = _both(_score_buckets)

_TEMPLATES: Final = (
    BuiltinTemplate(
        name="latency-p99",
        kind="threshold",
        description="The candidate's 99th-percentile request latency, in seconds, stays at most maxSeconds.",
        args=(WINDOW, TemplateArg("maxSeconds", "0.5", "The highest acceptable p99 latency, seconds."), MIN_REQUESTS),
        query=_LATENCY,
        count_query=_LATENCY_N,
        limits={"max": "{{maxSeconds}}", "minCount": "{{minCount}}"},
    ),
    BuiltinTemplate(
        name="latency-p99-vs-stable",
        kind="compare",
        description="The candidate's p99 latency is at most maxRatio times the stable version's, same window.",
        args=(
            WINDOW,
            TemplateArg("maxRatio", "1.2", "How many times stable's p99 the candidate's may be."),
            MIN_REQUESTS,
        ),
        query=_LATENCY,
        stable_query=_LATENCY_STABLE,
        count_query=_LATENCY_N,
        stable_count_query=_LATENCY_N_STABLE,
        limits={"direction": "lowerIsBetter", "maxRatio": "{{maxRatio}}", "minCount": "{{minCount}}"},
    ),
    BuiltinTemplate(
        name="error-rate",
        kind="threshold",
        description="The share of the candidate's requests that failed (outcome=error; invalid input excluded "
        "from the numerator) stays at most maxRate.",
        args=(WINDOW, TemplateArg("maxRate", "0.01", "The highest acceptable error share (0-1)."), MIN_REQUESTS),
        query=_ERRORS,
        count_query=_REQUESTS_N,
        limits={"max": "{{maxRate}}", "minCount": "{{minCount}}"},
    ),
    BuiltinTemplate(
        name="error-rate-vs-stable",
        kind="compare",
        description="The candidate's error share exceeds the stable version's by at most maxDifference "
        "(a difference, not a ratio: stable's error rate is often 0).",
        args=(WINDOW, TemplateArg("maxDifference", "0.005", "How much higher (absolute) it may be."), MIN_REQUESTS),
        query=_ERRORS,
        stable_query=_ERRORS_STABLE,
        count_query=_REQUESTS_N,
        stable_count_query=_REQUESTS_N_STABLE,
        limits={"direction": "lowerIsBetter", "maxDifference": "{{maxDifference}}", "minCount": "{{minCount}}"},
    ),
    BuiltinTemplate(
        name="input-drift",
        kind="drift",
        description="PSI of every numeric input feature's histogram, candidate vs stable over the same window; "
        "fails when a feature's PSI exceeds maxPsi (0.1-0.2: moderate shift, > 0.2: significant) and its shift is "
        "beyond sampling noise (chi-square, Holm-corrected over the features: at most 1 % false alarms).",
        args=(
            WINDOW,
            TemplateArg("maxPsi", "0.2", "The highest acceptable PSI of any feature."),
            TemplateArg(
                "minCount",
                INPUT_DRIFT_MIN_COUNT,
                "Fewer observations of a feature than this, on either side: Inconclusive.",
            ),
        ),
        query=_FEATURES,
        stable_query=_FEATURES_STABLE,
        limits={"statistic": "psi", "max": "{{maxPsi}}", "minCount": "{{minCount}}"},
        source={"shape": "histogram", "groupBy": names.LABEL_FEATURE, "reference": "stable"},
    ),
    BuiltinTemplate(
        name="input-drift-vs-training",
        kind="drift",
        description="PSI of every numeric input feature's histogram against the training-time reference counts "
        "of the model's feature-edges file (for watching a promoted model); fails as input-drift does.",
        args=(
            WINDOW,
            TemplateArg("maxPsi", "0.2", "The highest acceptable PSI of any feature."),
            TemplateArg("minCount", INPUT_DRIFT_MIN_COUNT, "Fewer observations of a feature than this: Inconclusive."),
        ),
        query=_FEATURES,
        limits={"statistic": "psi", "max": "{{maxPsi}}", "minCount": "{{minCount}}"},
        source={"shape": "histogram", "groupBy": names.LABEL_FEATURE, "reference": "training"},
    ),
    BuiltinTemplate(
        name="output-drift",
        kind="drift",
        description="Chi-square test of the predicted-class mix, candidate vs stable on the same traffic; fails "
        "when the p-value is below minPValue (the mixes are unlikely to come from one distribution).",
        args=(
            WINDOW,
            TemplateArg(
                "minPValue",
                OUTPUT_DRIFT_MIN_PVALUE,
                "The lowest acceptable p-value (Holm-adjusted when grouped): the false-alarm rate.",
            ),
            TemplateArg("minCount", "100", "Fewer predictions than this, on either side: Inconclusive."),
        ),
        query=_CLASSES,
        stable_query=_CLASSES_STABLE,
        limits={"statistic": "chiSquare", "minPValue": "{{minPValue}}", "minCount": "{{minCount}}"},
        source={"shape": "categorical", "label": names.LABEL_CLASS, "reference": "stable"},
    ),
    BuiltinTemplate(
        name="output-score-drift",
        kind="drift",
        description="PSI of the prediction-score histogram, candidate vs stable over the same window; fails when "
        "PSI exceeds maxPsi and the shift is beyond sampling noise (chi-square test).",
        args=(
            WINDOW,
            TemplateArg("maxPsi", "0.2", "The highest acceptable PSI."),
            TemplateArg("minCount", "100", "Fewer predictions than this, on either side: Inconclusive."),
        ),
        query=_SCORES,
        stable_query=_SCORES_STABLE,
        limits={"statistic": "psi", "max": "{{maxPsi}}", "minCount": "{{minCount}}"},
        source={"shape": "histogram", "reference": "stable"},
    ),
    BuiltinTemplate(
        name="null-predictions",
        kind="threshold",
        description="The share of the candidate's outputs that are no prediction (None label, NaN or "
        "out-of-range score) stays at most maxRatio.",
        args=(WINDOW, TemplateArg("maxRatio", "0.01", "The highest acceptable null share (0-1)."), MIN_REQUESTS),
        query=_null_ratio("candidate"),
        count_query=_outputs("candidate"),
        limits={"max": "{{maxRatio}}", "minCount": "{{minCount}}"},
    ),
)

#: The built-in templates by name.
BUILTIN_TEMPLATES: Final[Mapping[str, BuiltinTemplate]] = {template.name: template for template in _TEMPLATES}


def builtin_template(name: str) -> BuiltinTemplate:
    """The built-in template ``name``; :class:`TemplateError` listing the known ones otherwise."""
    try:
        return BUILTIN_TEMPLATES[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_TEMPLATES))
        raise TemplateError(f"unknown analysis template {name!r}; built-in templates: {known}") from None


def _argument_values(template: BuiltinTemplate, args: Mapping[str, str]) -> dict[str, str]:
    declared = {arg.name: arg for arg in template.args}
    unknown = sorted(set(args) - set(declared))
    if unknown:
        raise TemplateError(
            f"template {template.name!r}: unknown argument(s) {', '.join(unknown)}; arguments: {', '.join(declared)}"
        )
    values: dict[str, str] = {}
    for name, arg in declared.items():
        value = args.get(name, arg.default)
        if value is None:
            raise TemplateError(f"template {template.name!r}: argument {name!r} is required ({arg.description})")
        value = str(value).strip()
        if arg.kind == "duration" and not _DURATION.match(value):
            raise TemplateError(
                f"template {template.name!r}: argument {name!r}: {value!r} is not a PromQL duration (e.g. 5m, 1h30m)"
            )
        if arg.kind == "number":
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                raise TemplateError(f"template {template.name!r}: argument {name!r}: {value!r} is not a number")
        values[name] = value
    return values


def _substitute(text: str, values: Mapping[str, str]) -> str:
    # Only the template's own arguments: {{name}}, {{candidate}}, ... are the operator's, filled in later.
    return _ARG.sub(lambda match: values.get(match.group(1), match.group(0)), text)


def instantiate(name: str, args: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The template ``name`` with its arguments filled in (defaults for those not given), limits as numbers.

    The queries keep the operator's variables (``{{name}}``, ``{{namespace}}``, ``{{candidate}}``,
    ``{{stable}}``). Raises :class:`TemplateError` for an unknown template, an unknown argument, a
    required argument without a value, or a value that does not parse.
    """
    template = builtin_template(name)
    values = _argument_values(template, args or {})
    data = template.to_dict()
    data.pop("args")
    for key in ("query", "stableQuery", "countQuery", "stableCountQuery"):
        if key in data:
            data[key] = _substitute(data[key], values)
    section: dict[str, Any] = {}
    for key, raw in data[template.kind].items():
        text = _substitute(raw, values)
        section[key] = float(text) if key in _NUMERIC_LIMITS else text
    data[template.kind] = section
    data["args"] = values
    return data


def _check_variables() -> None:
    # Import-time guard: a template must only leave variables the operator knows, or every rollout naming
    # it would be refused by the spec validator.
    for template in _TEMPLATES:
        arg_names = {arg.name for arg in template.args}
        if arg_names & set(TEMPLATE_VARIABLES):
            raise AssertionError(f"{template.name}: an argument shadows an operator variable")
        texts = [template.query, template.stable_query, template.count_query, template.stable_count_query]
        texts += list(template.limits.values())
        for text in filter(None, texts):
            for variable in _ARG.findall(text):
                if variable not in arg_names and variable not in TEMPLATE_VARIABLES:
                    raise AssertionError(f"{template.name}: {{{{{variable}}}}} is neither an argument nor a variable")


_check_variables()
