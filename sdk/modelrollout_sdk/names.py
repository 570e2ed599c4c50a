"""The names of the standard model metrics: the contract between model servers and the operator.

Model servers publish these through :class:`modelrollout_sdk.ModelMonitor`; the operator's analysis
queries them by the same constants, so a rename is a breaking change of the contract and must be
made here and in ``docs/metrics.md`` together.
"""

from __future__ import annotations

from typing import Final

#: Every series carries these labels; they identify which rollout and which model version served.
LABEL_ROLLOUT: Final = "rollout"
LABEL_VERSION: Final = "version"
LABEL_MODEL: Final = "model"
COMMON_LABELS: Final = (LABEL_ROLLOUT, LABEL_VERSION, LABEL_MODEL)

LABEL_OUTCOME: Final = "outcome"
LABEL_FEATURE: Final = "feature"
LABEL_CATEGORY: Final = "category"
LABEL_CLASS: Final = "class"

OUTCOME_SUCCESS: Final = "success"
OUTCOME_ERROR: Final = "error"
OUTCOME_INVALID_INPUT: Final = "invalid_input"
OUTCOMES: Final = (OUTCOME_SUCCESS, OUTCOME_ERROR, OUTCOME_INVALID_INPUT)

#: Counter of requests by outcome.
REQUESTS_TOTAL: Final = "model_requests_total"
#: Histogram of request handling time in seconds.
REQUEST_DURATION_SECONDS: Final = "model_request_duration_seconds"
#: Histogram of numeric feature values; each feature has its own bucket edges from training data.
INPUT_FEATURE_VALUE: Final = "model_input_feature_value"
#: Counter of categorical feature values by category.
INPUT_CATEGORY_TOTAL: Final = "model_input_category_total"
#: Counter of missing (absent, null, NaN or infinite) feature values.
INPUT_MISSING_TOTAL: Final = "model_input_missing_total"
#: Histogram of the number of features present per input.
INPUT_SIZE: Final = "model_input_size"
#: Counter of predictions by predicted class.
PREDICTIONS_TOTAL: Final = "model_predictions_total"
#: Histogram of the score (probability of the positive class, or of the top class).
PREDICTION_SCORE: Final = "model_prediction_score"
#: Counter of null / NaN / otherwise invalid predictions.
NULL_PREDICTIONS_TOTAL: Final = "model_null_predictions_total"

#: The metric name as the analysis addresses it (the ``drift: {metric: ...}`` form in a rollout spec).
INPUT_FEATURE_VALUE_BUCKET: Final = INPUT_FEATURE_VALUE + "_bucket"

#: 5 ms .. 10 s: model servers answer from milliseconds (a linear model) to seconds (a large one).
DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Tenths: fine enough for a drift statistic on the score distribution, few enough series.
SCORE_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Powers of two: payload sizes span orders of magnitude across models.
INPUT_SIZE_BUCKETS: Final = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0)

#: Label value for categories / classes beyond the cardinality cap, so that a client cannot blow up
#: the number of series by sending arbitrary strings.
OTHER: Final = "__other__"

# --- ground truth that arrives later (feedback) ------------------------------------------------------

LABEL_TRUE_CLASS: Final = "true_class"
LABEL_PREDICTED_CLASS: Final = "predicted_class"
LABEL_REASON: Final = "reason"

OUTCOME_CORRECT: Final = "correct"
OUTCOME_INCORRECT: Final = "incorrect"
FEEDBACK_OUTCOMES: Final = (OUTCOME_CORRECT, OUTCOME_INCORRECT)

#: Counter of labelled predictions (classification) by outcome: correct or incorrect. The version is the
#: one that made the prediction, whenever the label arrives.
FEEDBACK_TOTAL: Final = "model_feedback_total"
#: Counter of labelled predictions by true and predicted class (classes bounded; the rest is OTHER).
FEEDBACK_CONFUSION_TOTAL: Final = "model_feedback_confusion_total"
#: Histogram of the absolute error |predicted - true| of labelled predictions (regression).
FEEDBACK_ABSOLUTE_ERROR: Final = "model_feedback_absolute_error"
#: Histogram of the time from a prediction to the arrival of its label, in seconds.
FEEDBACK_DELAY_SECONDS: Final = "model_feedback_delay_seconds"
#: Counter of feedback that could not be joined, by reason: unknown (never seen or evicted), expired.
FEEDBACK_UNMATCHED_TOTAL: Final = "model_feedback_unmatched_total"
FEEDBACK_UNMATCHED_REASONS: Final = ("unknown", "expired")

#: 1 s .. 30 days: labels arrive from seconds (a click) to weeks (a chargeback).
FEEDBACK_DELAY_BUCKETS: Final = (
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0,
)  # fmt: skip
#: Absolute errors: decades, since a regression target's scale is the model's own.
ABSOLUTE_ERROR_BUCKETS: Final = (0.001, 0.01, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 100.0, 1000.0)
