"""The PromQL of an `accuracy:` metric, built from the SDK's feedback series (``docs/metrics.md``).

Every query is a count over the window by the labels' *arrival*: ``sum(increase(...[window]))`` of the
series of the version that made the predictions. Roles, as the other kinds name them: ``candidate`` (the
correct predictions, or the summed absolute error), ``count`` (the labelled predictions), and the same
for stable (``stable``, ``stableCount``). Pure string work; template variables are left for
``render_template``.
"""

from __future__ import annotations

from modelrollout.api.models import Accuracy, promql_string
from modelrollout.vocabulary.builtin_templates import series_selector
from modelrollout_sdk import names


def _selector(version: str, **extra: str) -> str:
    # The extra values come from the spec (a recall's class): escaped, unlike the built-in templates' own.
    return series_selector(version, **{key: promql_string(value) for key, value in extra.items()})


def _increase(metric: str, version: str, window: str, **extra: str) -> str:
    return f"sum(increase({metric}{_selector(version, **extra)}[{window}]))"


def side(accuracy: Accuracy, version: str) -> tuple[str, str]:
    """The numerator and the labelled count of one version (`candidate` or `stable`)."""
    window = accuracy.window
    if accuracy.statistic == "error":
        return (
            _increase(names.FEEDBACK_ABSOLUTE_ERROR + "_sum", version, window),
            _increase(names.FEEDBACK_ABSOLUTE_ERROR + "_count", version, window),
        )
    if accuracy.statistic == "recall":
        assert accuracy.class_name is not None
        cls = accuracy.class_name
        true_class = {names.LABEL_TRUE_CLASS: cls}
        return (
            _increase(names.FEEDBACK_CONFUSION_TOTAL, version, window, **true_class, predicted_class=cls),
            _increase(names.FEEDBACK_CONFUSION_TOTAL, version, window, **true_class),
        )
    return (
        _increase(names.FEEDBACK_TOTAL, version, window, outcome=names.OUTCOME_CORRECT),
        _increase(names.FEEDBACK_TOTAL, version, window),
    )


def accuracy_queries(accuracy: Accuracy, with_stable: bool) -> dict[str, str]:
    """The query templates by role; `with_stable` adds stable's side (maxDrop against stable)."""
    candidate, count = side(accuracy, "candidate")
    queries = {"candidate": candidate, "count": count}
    if with_stable:
        stable, stable_count = side(accuracy, "stable")
        queries |= {"stable": stable, "stableCount": stable_count}
    return queries
