"""ModelMonitor: publishes the standard model metrics of one model server with prometheus-client.

The operator judges a candidate version by comparing these series with the stable version's, so every
series carries ``rollout``, ``version`` and ``model`` labels, and every series a rule may divide by or
take ``increase()`` of is created at zero when the monitor is built (a counter that first appears at 1
hides its first increment from ``increase()``/``rate()``).

Typical use::

    monitor = ModelMonitor.from_env(feature_edges="edges.json")
    with monitor.observe_request() as req:
        req.record_input({"age": 41, "country": "fr", "income": None})
        label, score = model.predict(...)
        req.record_output(label, score)

Per-client strings (category values, class labels, unknown feature names) are capped so that a caller
cannot create unbounded series; the overflow is published under ``__other__`` or dropped.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import math
import numbers
import os
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeAlias, TypeVar, cast, overload

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client import start_http_server as _prom_start_http_server
from prometheus_client.asgi import make_asgi_app
from prometheus_client.exposition import choose_encoder, make_wsgi_app
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _untyped_float_to_go

from modelrollout_sdk import names
from modelrollout_sdk.edges import FeatureEdges, bin_index

#: What a feature value may be: numbers go to the value histogram, strings and bools are categories,
#: None (and NaN / infinities) count as missing.
FeatureValue: TypeAlias = float | int | str | bool | None
EdgesSource: TypeAlias = FeatureEdges | Mapping[str, "Iterable[float]"] | str | os.PathLike[str] | None

P = ParamSpec("P")
R = TypeVar("R")

ENV_ROLLOUT = "ROLLOUT_NAME"
ENV_VERSION = "MODEL_VERSION"
ENV_MODEL = "MODEL_NAME"
UNKNOWN = "unknown"

#: The exposition's own float formatting, so that `le` values match what prometheus-client would print.
_float_to_go = cast(Callable[[float], str], _untyped_float_to_go)

_current_request: contextvars.ContextVar[RequestObservation | None] = contextvars.ContextVar(
    "modelrollout_current_request", default=None
)


class _Decorator(Protocol):
    def __call__(self, fn: Callable[P, R], /) -> Callable[P, R]: ...


class InvalidInputError(ValueError):
    """Raise inside ``observe_request()`` (or an instrumented function) to count ``outcome=invalid_input``."""


def current_request() -> RequestObservation | None:
    """The request being observed in this context (set by ``observe_request`` and the middlewares)."""
    obs = _current_request.get()
    return obs if obs is not None and not obs.finished else None


def _load_edges(source: EdgesSource) -> FeatureEdges:
    if source is None:
        return FeatureEdges()
    if isinstance(source, FeatureEdges):
        return source
    if isinstance(source, str | os.PathLike):
        return FeatureEdges.load(Path(source))
    return FeatureEdges.from_mapping({k: list(v) for k, v in source.items()})


class _FeatureValueHistograms(Collector):
    """``model_input_feature_value`` with its own bucket edges per feature.

    prometheus-client's ``Histogram`` has one bucket set per metric name, and a registry refuses a name
    twice, so per-feature edges need a custom collector. It emits an ordinary histogram family
    (``_bucket{le}``, ``_sum``, ``_count``), which ``histogram_quantile`` and ``increase`` handle as usual:
    each (feature) series simply has its own ``le`` values.
    """

    def __init__(self, common: tuple[str, str, str], edges: Mapping[str, tuple[float, ...]]) -> None:
        self._common = common
        self._edges = dict(edges)
        self._le = {name: [_float_to_go(e) for e in es] for name, es in self._edges.items()}
        self._counts = {name: [0] * (len(es) + 1) for name, es in self._edges.items()}
        self._sums = dict.fromkeys(self._edges, 0.0)
        self._lock = threading.Lock()

    def has(self, feature: str) -> bool:
        return feature in self._edges

    def observe(self, feature: str, value: float) -> None:
        edges = self._edges.get(feature)
        if edges is None:
            return
        i = bin_index(edges, value)
        with self._lock:
            self._counts[feature][i] += 1
            self._sums[feature] += value

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(
            names.INPUT_FEATURE_VALUE,
            "Values of numeric input features, in per-feature buckets fixed from training data.",
            labels=[*names.COMMON_LABELS, names.LABEL_FEATURE],
        )

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        with self._lock:
            snapshot = {name: (list(c), self._sums[name]) for name, c in self._counts.items()}
        for name, (counts, total_sum) in snapshot.items():
            buckets: list[tuple[str, float]] = []
            running = 0
            for le, count in zip([*self._le[name], "+Inf"], counts, strict=True):
                running += count
                buckets.append((le, float(running)))
            family.add_metric([*self._common, name], buckets, total_sum)
        return [family]


class RequestObservation:
    """One request being observed: its duration, outcome, inputs and outputs.

    The outcome is ``success`` unless set explicitly, or the block raised (``InvalidInputError`` gives
    ``invalid_input``, any other exception ``error``). Exceptions are never swallowed.
    """

    def __init__(self, monitor: ModelMonitor) -> None:
        self._monitor = monitor
        self._start: float | None = None
        self._token: contextvars.Token[RequestObservation | None] | None = None
        self.outcome: str | None = None
        self.finished = False

    def record_input(self, features: Mapping[str, FeatureValue]) -> None:
        """Record one input (call once per instance for batch requests)."""
        self._monitor.record_input(features)

    def record_output(self, label: object, score: float | None = None) -> None:
        """Record one prediction; a None label or a NaN / out-of-range score counts as a null prediction."""
        self._monitor.record_output(label, score)

    def record_null_prediction(self) -> None:
        self._monitor.record_null_prediction()

    def set_outcome(self, outcome: str) -> None:
        if outcome not in names.OUTCOMES:
            raise ValueError(f"outcome must be one of {names.OUTCOMES}, not {outcome!r}")
        self.outcome = outcome

    def mark_invalid_input(self) -> None:
        self.set_outcome(names.OUTCOME_INVALID_INPUT)

    def mark_error(self) -> None:
        self.set_outcome(names.OUTCOME_ERROR)

    def start(self) -> RequestObservation:
        """Start timing (``with`` does this); returns self."""
        if self._start is None:
            self._start = time.perf_counter()
            self._token = _current_request.set(self)
        return self

    def finish(self, exc: BaseException | None = None) -> None:
        """Publish duration and outcome; idempotent, so middlewares may call it from several exit paths."""
        if self.finished:
            return
        self.finished = True
        if self._token is not None:
            # A WSGI body may be closed from another context than the one that started the request.
            with contextlib.suppress(ValueError):
                _current_request.reset(self._token)
            self._token = None
        elapsed = time.perf_counter() - self._start if self._start is not None else 0.0
        outcome = self.outcome
        if outcome is None:
            if exc is None:
                outcome = names.OUTCOME_SUCCESS
            elif isinstance(exc, InvalidInputError):
                outcome = names.OUTCOME_INVALID_INPUT
            else:
                outcome = names.OUTCOME_ERROR
        self.outcome = outcome
        self._monitor._finish_request(outcome, elapsed)

    def __enter__(self) -> RequestObservation:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish(exc)

    async def __aenter__(self) -> RequestObservation:
        return self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish(exc)


class ModelMonitor:
    """The standard model metrics of one model server (one rollout, one version, one model)."""

    def __init__(
        self,
        *,
        rollout: str,
        version: str,
        model: str,
        feature_edges: EdgesSource = None,
        features: Collection[str] = (),
        classes: Collection[object] = (),
        registry: CollectorRegistry | None = None,
        duration_buckets: Iterable[float] = names.DURATION_BUCKETS,
        max_categories: int = 50,
        max_classes: int = 100,
        max_features: int = 256,
    ) -> None:
        """Build and register the metrics.

        ``feature_edges``: a :class:`FeatureEdges`, a JSON file written by ``FeatureEdges.save``, or a
        mapping feature -> edges. Its features (and ``features``) are the expected ones: absent from an
        input, they count as missing. With no expected feature at all, names are learnt from inputs up to
        ``max_features``. ``classes`` pre-creates ``model_predictions_total`` at zero for those classes.
        ``registry``: defaults to a private registry, so that several monitors (tests, multi-model
        servers) never collide; pass ``prometheus_client.REGISTRY`` to share the global one.
        """
        self.rollout, self.version, self.model = rollout, version, model
        self.edges = _load_edges(feature_edges)
        self.registry = registry if registry is not None else CollectorRegistry()
        self._max_categories = max_categories
        self._max_classes = max_classes
        self._max_features = max_features
        self._lock = threading.Lock()
        common = (rollout, version, model)
        self._common = common

        self._expected: tuple[str, ...] = tuple(dict.fromkeys([*self.edges.feature_names, *features]))
        self._known_features: set[str] = set(self._expected)
        self._learn_features = not self._expected
        self._categories: dict[str, set[str]] = {
            name: set(feat.categories) for name, feat in self.edges.categorical.items()
        }
        self._fixed_categories = set(self.edges.categorical)
        self._classes: set[str] = set()

        labels = list(names.COMMON_LABELS)
        reg = self.registry
        self._requests = Counter(
            names.REQUESTS_TOTAL.removesuffix("_total"),
            "Prediction requests by outcome (success, error, invalid_input).",
            [*labels, names.LABEL_OUTCOME],
            registry=reg,
        )
        self._duration = Histogram(
            names.REQUEST_DURATION_SECONDS,
            "Time to handle a prediction request, in seconds.",
            labels,
            buckets=tuple(duration_buckets),
            registry=reg,
        )
        self._feature_values = _FeatureValueHistograms(
            common, {name: feat.edges for name, feat in self.edges.numeric.items()}
        )
        reg.register(self._feature_values)
        self._category = Counter(
            names.INPUT_CATEGORY_TOTAL.removesuffix("_total"),
            "Values of categorical input features, by category.",
            [*labels, names.LABEL_FEATURE, names.LABEL_CATEGORY],
            registry=reg,
        )
        self._missing = Counter(
            names.INPUT_MISSING_TOTAL.removesuffix("_total"),
            "Missing input feature values (absent, null, NaN or infinite).",
            [*labels, names.LABEL_FEATURE],
            registry=reg,
        )
        self._input_size = Histogram(
            names.INPUT_SIZE,
            "Number of features present in one input.",
            labels,
            buckets=names.INPUT_SIZE_BUCKETS,
            registry=reg,
        )
        self._predictions = Counter(
            names.PREDICTIONS_TOTAL.removesuffix("_total"),
            "Predictions by predicted class.",
            [*labels, names.LABEL_CLASS],
            registry=reg,
        )
        self._score = Histogram(
            names.PREDICTION_SCORE,
            "Prediction score: probability of the positive class (binary) or of the top class.",
            labels,
            buckets=names.SCORE_BUCKETS,
            registry=reg,
        )
        self._null = Counter(
            names.NULL_PREDICTIONS_TOTAL.removesuffix("_total"),
            "Null, NaN or otherwise invalid predictions.",
            labels,
            registry=reg,
        )

        # Bind the children once: label lookups are the costly part of an observation.
        self._requests_by_outcome = {o: self._requests.labels(*common, o) for o in names.OUTCOMES}
        self._duration_child = self._duration.labels(*common)
        self._input_size_child = self._input_size.labels(*common)
        self._score_child = self._score.labels(*common)
        self._null_child = self._null.labels(*common)
        self._null_child.inc(0)
        for name in self._expected:
            self._missing.labels(*common, name).inc(0)
        for name, cats in self._categories.items():
            for cat in cats:
                self._category.labels(*common, name, cat).inc(0)
        for cls in classes:
            self._class_child(str(cls)).inc(0)

    @classmethod
    def from_env(
        cls,
        *,
        feature_edges: EdgesSource = None,
        rollout: str | None = None,
        version: str | None = None,
        model: str | None = None,
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> ModelMonitor:
        """Labels from ``ROLLOUT_NAME``, ``MODEL_VERSION``, ``MODEL_NAME`` (the operator injects them);
        explicit arguments win; unset values become ``unknown``. Other keywords go to the constructor."""
        env = os.environ if environ is None else environ
        return cls(
            rollout=rollout or env.get(ENV_ROLLOUT) or UNKNOWN,
            version=version or env.get(ENV_VERSION) or UNKNOWN,
            model=model or env.get(ENV_MODEL) or UNKNOWN,
            feature_edges=feature_edges,
            **kwargs,
        )

    @property
    def expected_features(self) -> tuple[str, ...]:
        """The features counted as missing when absent from an input."""
        return self._expected

    @property
    def labels(self) -> dict[str, str]:
        """The common label values of every series of this monitor."""
        return dict(zip(names.COMMON_LABELS, self._common, strict=True))

    # -- requests -------------------------------------------------------------------------------

    def observe_request(self) -> RequestObservation:
        """A context manager (sync or async) timing one request and recording its outcome."""
        return RequestObservation(self)

    def _finish_request(self, outcome: str, elapsed: float) -> None:
        self._requests_by_outcome[outcome].inc()
        self._duration_child.observe(elapsed)

    # -- inputs ---------------------------------------------------------------------------------

    def _accept_feature(self, name: str) -> bool:
        if name in self._known_features:
            return True
        if not self._learn_features:
            return False
        with self._lock:
            if len(self._known_features) >= self._max_features:
                return False
            self._known_features.add(name)
            return True

    def _category_label(self, feature: str, category: str) -> str:
        known = self._categories.get(feature)
        if known is not None and category in known:
            return category
        if feature in self._fixed_categories:
            return names.OTHER
        with self._lock:
            known = self._categories.setdefault(feature, set())
            if category in known:
                return category
            if len(known) >= self._max_categories:
                return names.OTHER
            known.add(category)
            return category

    def record_input(self, features: Mapping[str, FeatureValue]) -> None:
        """Record one input's features: values, categories, missing values and size."""
        common = self._common
        present = 0
        for name, value in features.items():
            if value is None:
                if self._accept_feature(name):
                    self._missing.labels(*common, name).inc()
                continue
            if isinstance(value, bool):
                present += 1
                if self._accept_feature(name):
                    self._category.labels(*common, name, self._category_label(name, str(value).lower())).inc()
                continue
            if isinstance(value, numbers.Real):
                number = float(value)
                if not math.isfinite(number):
                    if self._accept_feature(name):
                        self._missing.labels(*common, name).inc()
                    continue
                present += 1
                self._feature_values.observe(name, number)
                continue
            present += 1
            if isinstance(value, str) and self._accept_feature(name):
                self._category.labels(*common, name, self._category_label(name, value)).inc()
        for name in self._expected:
            if name not in features:
                self._missing.labels(*common, name).inc()
        self._input_size_child.observe(present)

    # -- outputs --------------------------------------------------------------------------------

    def _class_child(self, label: str) -> Any:
        if label not in self._classes:
            with self._lock:
                if label not in self._classes:
                    if len(self._classes) >= self._max_classes:
                        label = names.OTHER
                    self._classes.add(label)
        return self._predictions.labels(*self._common, label)

    def record_output(self, label: object, score: float | None = None) -> None:
        """Record one prediction: its class and, if given, its score in [0, 1]."""
        if label is None or (isinstance(label, float) and math.isnan(label)):
            self.record_null_prediction()
            return
        value: float | None = None
        if score is not None:
            try:
                value = float(score)
            except (TypeError, ValueError):
                value = math.nan
            if not (0.0 <= value <= 1.0):  # also false for NaN
                self.record_null_prediction()
                return
        self._class_child(str(label)).inc()
        if value is not None:
            self._score_child.observe(value)

    def record_null_prediction(self) -> None:
        self._null_child.inc()

    # -- decorator ------------------------------------------------------------------------------

    @overload
    def instrument(self, func: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def instrument(
        self,
        /,
        *,
        features: Callable[..., Mapping[str, FeatureValue] | None] | None = None,
        output: Callable[[Any], object] | None = None,
    ) -> _Decorator: ...

    def instrument(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        features: Callable[..., Mapping[str, FeatureValue] | None] | None = None,
        output: Callable[[Any], object] | None = None,
    ) -> Any:
        """Decorate a prediction function (sync or async): each call is one observed request.

        ``features(*args, **kwargs)`` extracts the input mapping from the call's arguments;
        ``output(result)`` returns ``label`` or ``(label, score)`` from the result. Without them, only
        duration and outcome are recorded (the function may still call ``current_request()``).
        """

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            def before(args: tuple[Any, ...], kwargs: dict[str, Any], req: RequestObservation) -> None:
                if features is not None:
                    mapping = features(*args, **kwargs)
                    if mapping is not None:
                        req.record_input(mapping)

            def after(result: object, req: RequestObservation) -> None:
                if output is None:
                    return
                out = output(result)
                if isinstance(out, tuple) and len(out) == 2:
                    req.record_output(out[0], out[1])
                else:
                    req.record_output(out)

            if inspect.iscoroutinefunction(fn):
                async_fn = cast(Callable[..., Awaitable[Any]], fn)

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    with self.observe_request() as req:
                        before(args, kwargs, req)
                        result = await async_fn(*args, **kwargs)
                        after(result, req)
                        return result

                return cast(Callable[P, R], async_wrapper)

            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                with self.observe_request() as req:
                    before(args, kwargs, req)
                    result = fn(*args, **kwargs)
                    after(result, req)
                    return result

            return wrapper

        if func is not None:
            return decorate(func)
        return decorate

    # -- exposition -----------------------------------------------------------------------------

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics in the format the ``Accept`` header asks for: (body, content type)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def metrics_app(self) -> Callable[..., Iterable[bytes]]:
        """A WSGI app serving this monitor's metrics (mount it at ``/metrics``)."""
        return cast(Callable[..., Iterable[bytes]], make_wsgi_app(self.registry))

    def metrics_asgi_app(self) -> Callable[..., Awaitable[None]]:
        """An ASGI app serving this monitor's metrics."""
        return cast(Callable[..., Awaitable[None]], make_asgi_app(self.registry))

    def start_http_server(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` on a side port from a background thread (for servers without HTTP of their own)."""
        return _prom_start_http_server(port, addr=addr, registry=self.registry)

    def wsgi_middleware(self, app: Any, **kwargs: Any) -> Any:
        """Wrap a WSGI app: see :class:`modelrollout_sdk.wsgi.ModelMetricsWSGIMiddleware`."""
        from modelrollout_sdk.wsgi import ModelMetricsWSGIMiddleware

        return ModelMetricsWSGIMiddleware(app, self, **kwargs)

    def asgi_middleware(self, app: Any, **kwargs: Any) -> Any:
        """Wrap an ASGI app: see :class:`modelrollout_sdk.asgi.ModelMetricsASGIMiddleware`."""
        from modelrollout_sdk.asgi import ModelMetricsASGIMiddleware

        return ModelMetricsASGIMiddleware(app, self, **kwargs)
