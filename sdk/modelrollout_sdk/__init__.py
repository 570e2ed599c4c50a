"""modelrollout_sdk: the model-metrics contract a model server imports.

Publishes the standard model metrics (requests and outcomes, latency, input feature distributions,
missing values, prediction classes and scores, null predictions) with prometheus-client, every series
labelled ``rollout``, ``version`` and ``model`` so that the operator can compare a candidate version
with the stable one. See ``docs/metrics.md`` for the metric reference.

    from modelrollout_sdk import ModelMonitor
    monitor = ModelMonitor.from_env(feature_edges="feature_edges.json")
    with monitor.observe_request() as req:
        req.record_input(features)
        req.record_output(label, score)
"""

from modelrollout_sdk import names
from modelrollout_sdk.asgi import ModelMetricsASGIMiddleware
from modelrollout_sdk.edges import DECILES, CategoricalFeature, FeatureEdges, NumericFeature, bin_index
from modelrollout_sdk.feedback import FeedbackError, FeedbackRecorder, JoinResult, PredictionStore
from modelrollout_sdk.monitor import (
    FeatureValue,
    InvalidInputError,
    ModelMonitor,
    RequestObservation,
    current_request,
)
from modelrollout_sdk.shadow import ShadowReporter
from modelrollout_sdk.wsgi import ModelMetricsWSGIMiddleware

__all__ = [
    "DECILES",
    "CategoricalFeature",
    "FeatureEdges",
    "FeatureValue",
    "FeedbackError",
    "FeedbackRecorder",
    "InvalidInputError",
    "JoinResult",
    "ModelMetricsASGIMiddleware",
    "ModelMetricsWSGIMiddleware",
    "ModelMonitor",
    "NumericFeature",
    "PredictionStore",
    "RequestObservation",
    "ShadowReporter",
    "bin_index",
    "current_request",
    "names",
]
