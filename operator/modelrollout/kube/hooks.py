"""Fire a retraining hook: create a Job (idempotent by name) or POST a JSON payload to a URL.

Each attempt's outcome goes back into status (monitoring.hook); the engine decides when to retry.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import aiohttp

from modelrollout.api.models import ModelRolloutSpec
from modelrollout.engine.types import FireHook, HookResult
from modelrollout.kube.api import JOBS, ApiError, KubeApi
from modelrollout.kube.manifests import Owner

WEBHOOK_TIMEOUT_SECONDS = 10.0


def job_name(rollout: str, episode: str) -> str:
    # One Job per drift episode: a stable name makes a replayed attempt an AlreadyExists, not a second Job.
    return f"{rollout}-retrain-{hashlib.sha256(episode.encode()).hexdigest()[:8]}"


def payload(owner: Owner, hook: FireHook) -> dict[str, Any]:
    return {
        "kind": hook.kind,
        "rollout": owner.name,
        "namespace": owner.namespace,
        "version": hook.version,
        "episode": hook.episode,
        "reason": hook.reason,
    }


class HookRunner:
    async def fire(self, api: KubeApi, owner: Owner, spec: ModelRolloutSpec, hook: FireHook) -> HookResult:
        settings = spec.monitoring.hook if spec.monitoring is not None else None
        if settings is None:
            return HookResult(hook.episode, delivered=False, error="no hook is configured any more")
        if settings.job is not None:
            return await self._job(api, owner, settings.job, hook)
        assert settings.webhook is not None
        return await self._webhook(settings.webhook.url, settings.webhook.headers, payload(owner, hook), hook)

    async def _job(self, api: KubeApi, owner: Owner, job_spec: dict[str, Any], hook: FireHook) -> HookResult:
        spec = copy.deepcopy(job_spec)
        env = [
            {"name": "DRIFT_ROLLOUT", "value": owner.name},
            {"name": "DRIFT_NAMESPACE", "value": owner.namespace},
            {"name": "DRIFT_VERSION", "value": hook.version},
            {"name": "DRIFT_EPISODE", "value": hook.episode},
            {"name": "DRIFT_REASON", "value": hook.reason[:1000]},
            {"name": "DRIFT_KIND", "value": hook.kind},
        ]
        for container in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []:
            container["env"] = [*container.get("env", []), *env]
        name = job_name(owner.name, hook.episode)
        body: dict[str, Any] = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": owner.namespace,
                "labels": {"modelrollout.io/rollout": owner.name, "app.kubernetes.io/managed-by": "modelrollout"},
                "ownerReferences": [owner.reference()],
            },
            "spec": spec,
        }
        try:
            await api.create_or_get(JOBS, owner.namespace, body)
        except ApiError as error:
            return HookResult(hook.episode, delivered=False, error=f"creating Job {name}: {error}")
        return HookResult(hook.episode, delivered=True)

    async def _webhook(self, url: str, headers: dict[str, str], body: dict[str, Any], hook: FireHook) -> HookResult:
        timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_SECONDS)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, json=body, headers=headers) as answer,
            ):
                if 200 <= answer.status < 300:
                    return HookResult(hook.episode, delivered=True)
                text = (await answer.text())[:200]
                return HookResult(hook.episode, delivered=False, error=f"POST {url}: HTTP {answer.status} {text}")
        except (aiohttp.ClientError, TimeoutError) as error:
            return HookResult(hook.episode, delivered=False, error=f"POST {url}: {type(error).__name__}: {error}")
