"""`modelrollout comparator`: serve the comparator with uvicorn, configured from the environment.

The operator's comparator Deployment sets (see `kube.comparator`):

* `COMPARATOR_STABLE_URL`, `COMPARATOR_CANDIDATE_URL`: base URLs of the two Services (required);
* `ROLLOUT_NAME`, `MODEL_NAME`, `STABLE_VERSION`, `CANDIDATE_VERSION`: the labels of the series;
* `COMPARATOR_STABLE_SOURCE`: `reask` (default: the copy goes to stable too) or `report` (stable's
  answers are POSTed to `/_comparator/answers`);
* `COMPARATOR_REQUEST_ID_HEADER`: the header that joins the two answers (default `x-request-id`);
* `COMPARATOR_CLASS_FIELD`, `COMPARATOR_SCORE_FIELD`, `COMPARATOR_BATCH_FIELD`: where class, score and a
  batch are in an answer (`prediction`, `score`, `predictions`);
* `COMPARATOR_JOIN_TTL_SECONDS`, `COMPARATOR_MAX_PENDING`: how long (30 s) and for how many ids (10000)
  the join keeps one answer waiting for the other;
* `COMPARATOR_MAX_IN_FLIGHT`, `COMPARATOR_TIMEOUT_SECONDS`: copies handled at once (64; more are
  dropped and counted), seconds per backend call (10);
* `HOST`, `PORT`: where to listen (`0.0.0.0`, 8080).

A bad value stops it at once with exit code 2 and a line naming the variable and what is allowed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from typing import Literal, cast

import uvicorn

from modelrollout.comparator.app import Comparator, ComparatorConfig, build_app
from modelrollout.comparator.series import Identity

EXIT_CONFIG = 2


class ConfigError(ValueError):
    pass


def _number(env: Mapping[str, str], name: str, default: float, low: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number (at least {low:g})") from None
    if not value >= low:
        raise ConfigError(f"{name}={raw!r} must be at least {low:g}")
    return value


def config_from_env(env: Mapping[str, str] | None = None) -> tuple[ComparatorConfig, str, int]:
    e = os.environ if env is None else env
    stable_url, candidate_url = (
        e.get("COMPARATOR_STABLE_URL", "").strip(),
        e.get("COMPARATOR_CANDIDATE_URL", "").strip(),
    )
    for name, value in (("COMPARATOR_STABLE_URL", stable_url), ("COMPARATOR_CANDIDATE_URL", candidate_url)):
        if not value.startswith(("http://", "https://")):
            raise ConfigError(f"{name}={value!r}: required, an http(s) URL of the Service")
    source = e.get("COMPARATOR_STABLE_SOURCE", "reask").strip() or "reask"
    if source not in ("reask", "report"):
        raise ConfigError(f"COMPARATOR_STABLE_SOURCE={source!r} must be reask or report")
    port = int(_number(e, "PORT", 8080, 0))
    if port > 65535:
        raise ConfigError(f"PORT={port} is not a TCP port")
    identity = Identity(
        rollout=e.get("ROLLOUT_NAME", "unknown") or "unknown",
        model=e.get("MODEL_NAME", "unknown") or "unknown",
        stable=e.get("STABLE_VERSION", "unknown") or "unknown",
        candidate=e.get("CANDIDATE_VERSION", "unknown") or "unknown",
    )
    config = ComparatorConfig(
        identity=identity,
        stable_url=stable_url,
        candidate_url=candidate_url,
        stable_source=cast(Literal["reask", "report"], source),
        request_id_header=e.get("COMPARATOR_REQUEST_ID_HEADER", "").strip() or "x-request-id",
        class_field=e.get("COMPARATOR_CLASS_FIELD", "").strip() or "prediction",
        score_field=e.get("COMPARATOR_SCORE_FIELD", "").strip() or "score",
        batch_field=e.get("COMPARATOR_BATCH_FIELD", "").strip() or "predictions",
        join_ttl_seconds=_number(e, "COMPARATOR_JOIN_TTL_SECONDS", 30.0, 0.001),
        max_pending=int(_number(e, "COMPARATOR_MAX_PENDING", 10_000, 1)),
        max_in_flight=int(_number(e, "COMPARATOR_MAX_IN_FLIGHT", 64, 1)),
        timeout_seconds=_number(e, "COMPARATOR_TIMEOUT_SECONDS", 10.0, 0.001),
    )
    return config, e.get("HOST", "").strip() or "0.0.0.0", port


async def serve(config: ComparatorConfig, host: str, port: int) -> int:
    comparator = Comparator(config)
    server = uvicorn.Server(
        uvicorn.Config(build_app(comparator), host=host, port=port, log_level="warning", lifespan="off")
    )
    try:
        await server.serve()
    finally:
        await comparator.close()
    return 0


def main(env: Mapping[str, str] | None = None) -> int:
    try:
        config, host, port = config_from_env(env)
    except ConfigError as error:
        print(f"modelrollout comparator: {error}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"comparator for {config.identity.rollout}: {config.identity.stable} vs {config.identity.candidate} "
        f"on {host}:{port}",
        flush=True,
    )
    return asyncio.run(serve(config, host, port))


if __name__ == "__main__":
    raise SystemExit(main())
