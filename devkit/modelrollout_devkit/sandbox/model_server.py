"""The reference model server: a real small model with the standard model metrics and fault knobs.

``python -m modelrollout_devkit.sandbox.model_server`` serves a scikit-learn model (StandardScaler +
LogisticRegression) trained on the breast-cancer data set that ships inside scikit-learn, and publishes
the ``modelrollout_sdk`` metrics. The sandbox runs one process per replica of a model Deployment; the
fault knobs make a version slow, erroring, crash-looping, slow to become ready, drifted or null-returning,
which is what the operator's analysis has to catch.

HTTP: ``POST /predict`` (``{"features": {...}}`` or ``{"instances": [...]}``), ``GET /healthz``,
``GET /ready``, ``GET /metrics``, ``POST /feedback`` (the true label of a prediction id, answered in
``predictionId`` and the ``X-Prediction-Id`` header; ``X-Feedback-Url`` says where to send it: see
``sandbox/ground_truth.py``).

``--evaluate`` is the entry point of an offline-evaluation Job instead: it scores the model ``MODEL_URI``
names (``sandbox://baseline`` or ``sandbox://drifted``; otherwise MODEL_VARIANT's) on the labelled evaluation
set, writes ``{"value": accuracy}`` to ``--termination-log`` (default: $TERMINATION_MESSAGE_PATH, else
/dev/termination-log) and exits.

Environment (all optional):
  PORT (8080), HOST (127.0.0.1: loopback unless told otherwise), MODEL_NAME, MODEL_VERSION,
  ROLLOUT_NAME, ROLLOUT_NAMESPACE, MODEL_URI (echoed only when serving), MODEL_VARIANT (baseline | drifted),
  FAULT_LATENCY_MS, FAULT_ERROR_RATE, FAULT_NULL_RATE, FAULT_CRASH_ON_START, FAULT_CRASH_DELAY_S,
  FAULT_STARTUP_DELAY_S, FAULT_SEED, FAULT_CONFUSE (a share: less accurate, same output mix),
  FEEDBACK_URL (default http://HOST:PORT/feedback), MODEL_CACHE_DIR (empty: no cache),
  FAULT_DISAGREE_RATE (0..1: that share of predictions answers the other class, score 1 - score, with the
  same latency and errors: a candidate a shadow comparison must catch).

Start-up is dominated by importing scikit-learn (~1.8 s here), so the fitted parameters are cached as a
small JSON per variant (in the temp dir by default) and a cached start serves with numpy alone.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import math
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from aiohttp import web

from modelrollout_devkit.sandbox.ground_truth import Confuser, take_feedback
from modelrollout_sdk import FeatureEdges, FeedbackError, FeedbackRecorder, ModelMonitor

log = logging.getLogger("modelrollout.model_server")

_BASES: Final = (
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave points",
    "symmetry",
    "fractal dimension",
)
#: The column order of ``sklearn.datasets.load_breast_cancer`` (checked against it by a test).
FEATURE_NAMES: Final[tuple[str, ...]] = (
    *(f"mean {b}" for b in _BASES),
    *(f"{b} error" for b in _BASES),
    *(f"worst {b}" for b in _BASES),
)
#: Target 0 is malignant, 1 benign, as in scikit-learn.
CLASS_NAMES: Final = ("malignant", "benign")
#: ``score`` is the probability of this class: what the model exists to detect.
POSITIVE_CLASS: Final = "malignant"
VARIANTS: Final = ("baseline", "drifted")
DATA_DIR: Final = Path(__file__).resolve().parent / "data"
REFERENCE_PATH: Final = DATA_DIR / "breast_cancer_feature_edges.json"
DATASET_SOURCE: Final = "sklearn.datasets.load_breast_cancer"
#: Bumped whenever training changes, so that stale cached models are not served.
MODEL_FORMAT: Final = 1
MAX_INSTANCES: Final = 1000
EXIT_CONFIG: Final = 2
EXIT_CRASH_FAULT: Final = 3

# --- data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """The training data: rows x features, integer targets."""

    X: npt.NDArray[np.float64]
    y: npt.NDArray[np.int64]
    feature_names: tuple[str, ...] = FEATURE_NAMES
    class_names: tuple[str, ...] = CLASS_NAMES


def _sklearn_csv() -> Path | None:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "breast_cancer.csv"
    return path if path.is_file() else None


def load_dataset() -> Dataset:
    """The breast-cancer data set, read from scikit-learn's package file.

    Reading the CSV directly avoids importing scikit-learn (~1.8 s) in processes that only need data:
    a cached model server, the load generator. Falls back to ``load_breast_cancer()`` if the file moved.
    """
    path = _sklearn_csv()
    if path is not None:
        with path.open(encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
            raw = np.loadtxt(fh, delimiter=",", dtype=float)
        if header[2:] == list(CLASS_NAMES) and raw.shape == (int(header[0]), len(FEATURE_NAMES) + 1):
            return Dataset(X=raw[:, :-1].copy(), y=raw[:, -1].astype(np.int64))
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return Dataset(X=np.asarray(bunch.data, dtype=float), y=np.asarray(bunch.target, dtype=np.int64))


def build_feature_edges(dataset: Dataset | None = None) -> FeatureEdges:
    """Decile edges and reference histograms of every training column (the drift reference)."""
    data = dataset or load_dataset()
    return FeatureEdges.from_training_data(data.X, list(data.feature_names), source=DATASET_SOURCE)


def load_feature_edges() -> FeatureEdges:
    """The shipped reference file, or (if absent or unreadable) edges computed from the data set."""
    try:
        edges = FeatureEdges.load(REFERENCE_PATH)
        if set(edges.numeric) == set(FEATURE_NAMES):
            return edges
    except (OSError, ValueError, KeyError) as exc:
        log.warning("cannot read %s (%s); computing edges from the data set", REFERENCE_PATH, exc)
    return build_feature_edges()


# --- model ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearModel:
    """A fitted StandardScaler + binary LogisticRegression, as plain arrays.

    ``predict_proba`` is the pipeline's own arithmetic (standardise, dot, logistic), so serving needs
    numpy only; a test checks it against scikit-learn's ``predict_proba``.
    """

    variant: str
    mean: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    coef: npt.NDArray[np.float64]
    intercept: float
    impute: npt.NDArray[np.float64]  # training means, used for missing features
    feature_names: tuple[str, ...] = FEATURE_NAMES
    class_names: tuple[str, ...] = CLASS_NAMES

    def proba_class1(self, X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        z = ((X - self.mean) / self.scale) @ self.coef + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)

    def predict(self, X: npt.NDArray[np.float64]) -> list[tuple[str, float]]:
        """(predicted class, probability of the positive class) per row."""
        p1 = self.proba_class1(X)
        positive = self.class_names.index(POSITIVE_CLASS)
        out: list[tuple[str, float]] = []
        for p in p1:
            label = self.class_names[1] if p >= 0.5 else self.class_names[0]
            out.append((label, float(p) if positive == 1 else float(1.0 - p)))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "variant": self.variant,
            "intercept": self.intercept,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "impute": self.impute.tolist(),
            "feature_names": list(self.feature_names),
            "class_names": list(self.class_names),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinearModel:
        if data.get("format") != MODEL_FORMAT:
            raise ValueError(f"model format {data.get('format')!r} is not {MODEL_FORMAT}")
        return cls(
            variant=str(data["variant"]),
            intercept=float(data["intercept"]),
            mean=np.asarray(data["mean"], dtype=float),
            scale=np.asarray(data["scale"], dtype=float),
            coef=np.asarray(data["coef"], dtype=float),
            impute=np.asarray(data["impute"], dtype=float),
            feature_names=tuple(data["feature_names"]),
            class_names=tuple(data["class_names"]),
        )


def training_labels(dataset: Dataset, variant: str) -> npt.NDArray[np.int64]:
    """The labels a variant is trained on.

    ``drifted`` relabels the benign cases with the highest ``worst texture`` (above the 40th percentile
    of benign cases) as malignant: a plausible labelling bug that yields a model predicting malignant
    far more often on the same inputs (measured: ~75% vs ~37% on the training rows).
    """
    if variant == "baseline":
        return dataset.y
    if variant == "drifted":
        col = dataset.X[:, dataset.feature_names.index("worst texture")]
        benign = dataset.y == 1
        flip = benign & (col > np.quantile(col[benign], 0.4))
        y = dataset.y.copy()
        y[flip] = 0
        return y
    raise ValueError(f"MODEL_VARIANT must be one of {VARIANTS}, not {variant!r}")


def train_model(variant: str, dataset: Dataset | None = None) -> LinearModel:
    """Fit the scikit-learn pipeline for a variant (deterministic: lbfgs, no sampling)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    data = dataset or load_dataset()
    y = training_labels(data, variant)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=2000))])
    pipe.fit(data.X, y)
    scaler: Any = pipe.named_steps["scale"]
    clf: Any = pipe.named_steps["clf"]
    return LinearModel(
        variant=variant,
        mean=np.asarray(scaler.mean_, dtype=float),
        scale=np.asarray(scaler.scale_, dtype=float),
        coef=np.asarray(clf.coef_[0], dtype=float),
        intercept=float(clf.intercept_[0]),
        impute=data.X.mean(axis=0),
    )


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "modelrollout-model-cache"


def load_or_train(variant: str, cache_dir: Path | None) -> tuple[LinearModel, bool]:
    """The fitted model of a variant, from the cache when possible; returns (model, was_cached)."""
    path = cache_dir / f"model-{variant}-v{MODEL_FORMAT}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            return LinearModel.from_dict(json.loads(path.read_text(encoding="utf-8"))), True
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable cached model %s: %s", path, exc)
    model = train_model(variant)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Replicas of one version start together: write aside and rename, so none reads half a file.
            fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(model.to_dict(), fh)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot cache the model in %s: %s", path, exc)
    return model, False


# --- configuration -------------------------------------------------------------------------------


class ConfigError(ValueError):
    """A bad environment value: the server exits with EXIT_CONFIG rather than run misconfigured."""


def _env_float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not (lo <= value <= hi):
        raise ConfigError(f"{name}={raw!r} must be within [{lo}, {hi}]")
    return value


def _env_bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name}={raw!r} is not a boolean")


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server reads from its environment."""

    host: str = "127.0.0.1"
    port: int = 8080
    model_name: str = "breast-cancer"
    model_version: str = "unknown"
    rollout_name: str = "unknown"
    rollout_namespace: str = "default"
    model_uri: str = ""
    variant: str = "baseline"
    latency_ms: float = 0.0
    error_rate: float = 0.0
    null_rate: float = 0.0
    disagree_rate: float = 0.0
    crash_on_start: bool = False
    crash_delay_s: float = 0.2
    startup_delay_s: float = 0.0
    seed: int | None = None
    confuse: float = 0.0
    feedback_url: str = ""
    cache_dir: Path | None = field(default_factory=default_cache_dir)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerConfig:
        e = os.environ if env is None else env
        variant = e.get("MODEL_VARIANT", "baseline").strip() or "baseline"
        if variant not in VARIANTS:
            raise ConfigError(f"MODEL_VARIANT={variant!r} must be one of {VARIANTS}")
        port_raw = e.get("PORT", "8080").strip() or "8080"
        if not port_raw.isdigit() or not 0 <= int(port_raw) < 65536:
            raise ConfigError(f"PORT={port_raw!r} is not a TCP port")
        seed_raw = e.get("FAULT_SEED", "").strip()
        if seed_raw and not seed_raw.lstrip("-").isdigit():
            raise ConfigError(f"FAULT_SEED={seed_raw!r} is not an integer")
        cache_raw = e.get("MODEL_CACHE_DIR")
        return cls(
            host=e.get("HOST", "127.0.0.1").strip() or "127.0.0.1",
            port=int(port_raw),
            model_name=e.get("MODEL_NAME", "").strip() or "breast-cancer",
            model_version=e.get("MODEL_VERSION", "").strip() or "unknown",
            rollout_name=e.get("ROLLOUT_NAME", "").strip() or "unknown",
            rollout_namespace=e.get("ROLLOUT_NAMESPACE", "").strip() or "default",
            model_uri=e.get("MODEL_URI", "").strip(),
            variant=variant,
            latency_ms=_env_float(e, "FAULT_LATENCY_MS", 0.0, 0.0, 600_000.0),
            error_rate=_env_float(e, "FAULT_ERROR_RATE", 0.0, 0.0, 1.0),
            null_rate=_env_float(e, "FAULT_NULL_RATE", 0.0, 0.0, 1.0),
            disagree_rate=_env_float(e, "FAULT_DISAGREE_RATE", 0.0, 0.0, 1.0),
            crash_on_start=_env_bool(e, "FAULT_CRASH_ON_START"),
            crash_delay_s=_env_float(e, "FAULT_CRASH_DELAY_S", 0.2, 0.0, 3600.0),
            startup_delay_s=_env_float(e, "FAULT_STARTUP_DELAY_S", 0.0, 0.0, 3600.0),
            seed=int(seed_raw) if seed_raw else None,
            confuse=_env_float(e, "FAULT_CONFUSE", 0.0, 0.0, 1.0),
            feedback_url=e.get("FEEDBACK_URL", "").strip(),
            cache_dir=default_cache_dir() if cache_raw is None else (Path(cache_raw) if cache_raw.strip() else None),
        )


# --- request parsing -----------------------------------------------------------------------------


class BadRequest(ValueError):
    """The payload cannot be scored: answered 400 and counted as ``outcome=invalid_input``."""


_INDEX: Final = {name: i for i, name in enumerate(FEATURE_NAMES)}


def parse_instance(raw: object) -> dict[str, float | None]:
    """One instance: a {feature: number|null} object, or a list of all features in column order."""
    if isinstance(raw, list):
        if len(raw) != len(FEATURE_NAMES):
            raise BadRequest(f"a list instance needs {len(FEATURE_NAMES)} values, got {len(raw)}")
        raw = dict(zip(FEATURE_NAMES, raw, strict=True))
    if not isinstance(raw, dict):
        raise BadRequest("an instance must be an object of feature values (or a list in column order)")
    out: dict[str, float | None] = {}
    for name, value in raw.items():
        if name not in _INDEX:
            raise BadRequest(f"unknown feature {name!r}")
        if value is None:
            out[name] = None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
        else:
            raise BadRequest(f"feature {name!r} must be a number or null, not {type(value).__name__}")
    if not any(v is not None and math.isfinite(v) for v in out.values()):
        raise BadRequest("no feature values given")
    return out


def parse_payload(payload: object) -> tuple[list[dict[str, float | None]], bool]:
    """The instances of a request and whether it was a batch (``instances``) request."""
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    if "features" in payload:
        return [parse_instance(payload["features"])], False
    instances = payload.get("instances")
    if not isinstance(instances, list) or not instances:
        raise BadRequest('the body needs "features": {...} or a non-empty "instances": [...]')
    if len(instances) > MAX_INSTANCES:
        raise BadRequest(f"at most {MAX_INSTANCES} instances per request")
    return [parse_instance(i) for i in instances], True


def to_matrix(
    instances: Sequence[Mapping[str, float | None]], impute: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Rows in column order; missing and non-finite values take the training mean."""
    X = np.tile(impute, (len(instances), 1))
    for r, inst in enumerate(instances):
        for name, value in inst.items():
            if value is not None and math.isfinite(value):
                X[r, _INDEX[name]] = value
    return X


# --- the server ----------------------------------------------------------------------------------


class ModelServer:
    """The aiohttp application and its state; ``start()``/``stop()`` for embedding, ``serve()`` for a process."""

    def __init__(self, config: ServerConfig, *, monitor: ModelMonitor | None = None) -> None:
        self.config = config
        self.monitor = monitor or ModelMonitor(
            rollout=config.rollout_name,
            version=config.model_version,
            model=config.model_name,
            feature_edges=load_feature_edges(),
            classes=CLASS_NAMES,
        )
        self.feedback = FeedbackRecorder(
            rollout=config.rollout_name,
            version=config.model_version,
            model=config.model_name,
            classes=CLASS_NAMES,
            registry=self.monitor.registry,
        )
        self.confuser: Confuser | None = None
        self.model: LinearModel | None = None
        self.ready = False
        self.started_at = time.monotonic()
        self.ready_after_s: float | None = None
        self._rng = random.Random(config.seed)
        self._runner: web.AppRunner | None = None
        self._load_task: asyncio.Task[None] | None = None
        self.app = web.Application()
        self.app.add_routes(
            [
                web.post("/predict", self.handle_predict),
                web.get("/healthz", self.handle_healthz),
                web.get("/ready", self.handle_ready),
                web.get("/metrics", self.handle_metrics),
                web.post("/feedback", self.handle_feedback),
            ]
        )

    @property
    def port(self) -> int:
        """The bound port (useful with PORT=0)."""
        if self._runner is None or not self._runner.addresses:
            return self.config.port
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        """Bind and answer probes at once; load the model in the background (readiness follows it)."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.config.host, self.config.port).start()
        if not self.config.crash_on_start:
            self._load_task = asyncio.create_task(self._load())

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        model, cached = await loop.run_in_executor(None, load_or_train, self.config.variant, self.config.cache_dir)
        log.info("model %s loaded (%s)", model.variant, "cached" if cached else "trained")
        if self.config.startup_delay_s > 0:
            await asyncio.sleep(self.config.startup_delay_s)
        if self.config.confuse > 0:
            self.confuser = await loop.run_in_executor(None, confuser_for, model, self.config.confuse)
        self.model = model
        self.ready = True
        self.ready_after_s = time.monotonic() - self.started_at
        log.info("ready after %.2fs", self.ready_after_s)

    async def stop(self) -> None:
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _info(self) -> dict[str, Any]:
        c = self.config
        return {
            "model": c.model_name,
            "version": c.model_version,
            "rollout": c.rollout_name,
            "namespace": c.rollout_namespace,
            "variant": c.variant,
            "uri": c.model_uri,
        }

    async def handle_healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **self._info()})

    async def handle_ready(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.json_response({"ready": False}, status=503)
        return web.json_response({"ready": True, "ready_after_s": self.ready_after_s, **self._info()})

    async def handle_metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.monitor.exposition(request.headers.get("Accept"))
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = content_type
        return resp

    def _json(
        self, data: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        # The version header lets a router or load generator attribute a response without parsing it.
        return web.json_response(
            data, status=status, headers={"X-Model-Version": self.config.model_version, **(headers or {})}
        )

    def _feedback_url(self) -> str:
        c = self.config
        return c.feedback_url or (f"http://{c.host}:{self.port}/feedback" if c.host not in ("0.0.0.0", "::") else "")

    async def handle_feedback(self, request: web.Request) -> web.Response:
        try:
            counts = take_feedback(self.feedback, await request.json())
        except FeedbackError as exc:
            return self._json({"error": str(exc)}, status=400)
        except ValueError:
            return self._json({"error": "the body is not valid JSON"}, status=400)
        return self._json(counts)

    async def handle_predict(self, request: web.Request) -> web.Response:
        model = self.model
        if model is None:
            # Not a prediction the model made or failed: routers must not send traffic here yet.
            return self._json({"error": "not ready"}, status=503)
        cfg = self.config
        version = cfg.model_version
        with self.monitor.observe_request() as obs:
            if cfg.latency_ms > 0:
                await asyncio.sleep(cfg.latency_ms / 1000.0)
            try:
                instances, batch = parse_payload(await request.json())
            except BadRequest as exc:
                obs.mark_invalid_input()
                return self._json({"error": str(exc), "version": version}, status=400)
            except ValueError:
                obs.mark_invalid_input()
                return self._json({"error": "the body is not valid JSON", "version": version}, status=400)
            for inst in instances:
                obs.record_input(inst)
            if cfg.error_rate > 0 and self._rng.random() < cfg.error_rate:
                obs.mark_error()
                return self._json({"error": "injected fault (FAULT_ERROR_RATE)", "version": version}, status=500)
            results: list[dict[str, Any]] = []
            given = request.headers.get("X-Request-Id", "")
            request_id = given if 0 < len(given) <= 100 else uuid.uuid4().hex
            matrix = to_matrix(instances, model.impute)
            for index, (label, score) in enumerate(model.predict(matrix)):
                prediction_id = f"{request_id}-{index}" if batch else request_id
                if cfg.null_rate > 0 and self._rng.random() < cfg.null_rate:
                    obs.record_null_prediction()
                    results.append({"prediction": None, "score": None, "predictionId": prediction_id})
                else:
                    if self.confuser is not None:
                        label = self.confuser.answer(label, matrix[index])
                    if cfg.disagree_rate > 0 and self._rng.random() < cfg.disagree_rate:
                        label = next(name for name in model.class_names if name != label)
                        score = 1.0 - score
                    obs.record_output(label, score)
                    self.feedback.remember(prediction_id, label)
                    results.append({"prediction": label, "score": round(score, 6), "predictionId": prediction_id})
            headers = {"X-Prediction-Id": request_id}
            if self._feedback_url():
                headers["X-Feedback-Url"] = self._feedback_url()
            if batch:
                answer = {"predictions": results, "version": version, "model": cfg.model_name}
                return self._json(answer, headers=headers)
            return self._json({**results[0], "version": version, "model": cfg.model_name}, headers=headers)


async def serve(config: ServerConfig) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    server = ModelServer(config)
    await server.start()
    log.info(
        "serving %s version %s (variant %s) on http://%s:%d",
        config.model_name,
        config.model_version,
        config.variant,
        config.host,
        server.port,
    )
    if config.crash_on_start:
        # A crash-looping version: alive for a moment, never ready, then a non-zero exit.
        await asyncio.sleep(config.crash_delay_s)
        log.error("FAULT_CRASH_ON_START is set: exiting with status %d", EXIT_CRASH_FAULT)
        await server.stop()
        return EXIT_CRASH_FAULT
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    return 0


# --- offline evaluation ----------------------------------------------------------------------------

#: The labelled evaluation set: every EVALUATION_STRIDE-th row of the data set.
EVALUATION_STRIDE: Final = 5
DEFAULT_TERMINATION_LOG: Final = "/dev/termination-log"


def variant_of(uri: str, default: str) -> str:
    """The variant a model URI names: ``sandbox://<variant>`` (the sandbox's stand-in for a model artefact's
    address); any other URI, or none, keeps ``default``."""
    prefix = "sandbox://"
    if uri.startswith(prefix):
        variant = uri[len(prefix) :].strip("/")
        if variant not in VARIANTS:
            raise ConfigError(f"MODEL_URI {uri!r}: the sandbox knows the models {', '.join(VARIANTS)}")
        return variant
    return default


def confuser_for(model: LinearModel, share: float, dataset: Dataset | None = None) -> Confuser:
    """FAULT_CONFUSE's swap for this model: as many answers each way, at its own malignant share."""
    data = dataset or load_dataset()
    predicted = [label for label, _ in model.predict(data.X)]
    positive_share = predicted.count(POSITIVE_CLASS) / len(predicted)
    negative = next(name for name in CLASS_NAMES if name != POSITIVE_CLASS)
    return Confuser.of(share, positive_share, POSITIVE_CLASS, negative)


def evaluate_accuracy(model: LinearModel, dataset: Dataset | None = None) -> float:
    """The share of the evaluation set's labels the model predicts. (The reference model is fitted on every
    row, so this measures which labels a version learnt, not how it generalises: a version trained on
    wrong labels scores ~0.63, the baseline ~0.98.)"""
    data = dataset or load_dataset()
    rows = np.arange(len(data.y)) % EVALUATION_STRIDE == 0
    predicted = np.array([data.class_names.index(label) for label, _ in model.predict(data.X[rows])])
    return float(np.mean(predicted == data.y[rows]))


def evaluate(config: ServerConfig, termination_log: Path, env: Mapping[str, str] | None = None) -> int:
    """The entry point of an offline-evaluation Job: score the version's model on the labelled evaluation
    set and report ``{"value": accuracy}`` in the termination message, as a Job metric reads it."""
    e = os.environ if env is None else env
    try:
        variant = variant_of(e.get("MODEL_URI", ""), config.variant)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    model, _ = load_or_train(variant, config.cache_dir)
    accuracy = evaluate_accuracy(model)
    termination_log.parent.mkdir(parents=True, exist_ok=True)
    termination_log.write_text(json.dumps({"value": round(accuracy, 6)}), encoding="utf-8")
    log.info("evaluated %s %s (%s): accuracy %.4f", config.model_name, config.model_version, variant, accuracy)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelrollout_devkit.sandbox.model_server",
        description="Reference model server (configuration from the environment; see the module docstring).",
    )
    parser.add_argument("--port", type=int, help="overrides PORT")
    parser.add_argument("--host", help="overrides HOST")
    parser.add_argument(
        "--write-reference",
        metavar="PATH",
        nargs="?",
        const=str(REFERENCE_PATH),
        help="write the feature edges / reference histogram JSON (default: the shipped file) and exit",
    )
    parser.add_argument(
        "--warm-cache",
        action="store_true",
        help="train every variant into MODEL_CACHE_DIR and exit (then servers start in well under a second)",
    )
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="score the version's model (MODEL_URI sandbox://<variant>, else MODEL_VARIANT) on the labelled "
        'evaluation set, write {"value": accuracy} to the termination log and exit (an evaluation Job)',
    )
    parser.add_argument(
        "--termination-log",
        metavar="PATH",
        default=os.environ.get("TERMINATION_MESSAGE_PATH", DEFAULT_TERMINATION_LOG),
        help="where --evaluate writes its result (default: $TERMINATION_MESSAGE_PATH, else /dev/termination-log)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.write_reference:
        path = build_feature_edges().save(args.write_reference)
        print(path)
        return 0
    try:
        config = ServerConfig.from_env()
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    if args.evaluate:
        return evaluate(config, Path(args.termination_log))
    if args.warm_cache:
        if config.cache_dir is None:
            log.error("--warm-cache needs a cache: MODEL_CACHE_DIR is empty")
            return EXIT_CONFIG
        for variant in VARIANTS:
            _, cached = load_or_train(variant, config.cache_dir)
            log.info("%s: %s", variant, "already cached" if cached else "trained and cached")
        return 0
    overrides: dict[str, Any] = {}
    if args.port is not None:
        overrides["port"] = args.port
    if args.host is not None:
        overrides["host"] = args.host
    if overrides:
        config = ServerConfig(**{**config.__dict__, **overrides})
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
