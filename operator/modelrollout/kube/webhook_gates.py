"""Ask webhook gates (engine/gates.py decides what their answers mean): a POST of Flagger's payload;
HTTP 2xx is yes; any other answer, a timeout or an error is "not yet", never "go".

Header values may come from Secrets; messages name the gate and the Secret, never a value or the URL.
"""

from __future__ import annotations

import asyncio
import base64

import aiohttp

from modelrollout.api.models import WebHeader
from modelrollout.engine.types import GateAnswer, GateRequest
from modelrollout.kube.api import SECRETS, ApiError, KubeApi


async def _headers(api: KubeApi, namespace: str, request: GateRequest) -> dict[str, str] | str:
    resolved: dict[str, str] = {}
    for position, header in enumerate(request.headers):
        if header.value is not None:
            resolved[header.name] = header.value
            continue
        value = await _secret_value(api, namespace, header, f"spec.webhooks[{request.name}].headers[{position}]")
        if value.startswith("!"):
            return value[1:]
        resolved[header.name] = value
    return resolved


async def _secret_value(api: KubeApi, namespace: str, header: WebHeader, field: str) -> str:
    """The value, or "!" and what is wrong (names only)."""
    assert header.value_from is not None
    ref = header.value_from.secret_key_ref
    where = f"Secret {namespace}/{ref.name} key {ref.key!r} ({field})"
    try:
        secret = await api.get(SECRETS, namespace, ref.name)
    except ApiError as error:
        return f"!reading {where}: {error.status} {error.reason}"
    raw = (secret or {}).get("data", {}).get(ref.key) if secret is not None else None
    if raw is None:
        return f"!{where}: not found"
    try:
        return base64.b64decode(raw).decode()
    except ValueError:
        return f"!{where}: the value is not UTF-8 text"


async def ask(session: aiohttp.ClientSession, api: KubeApi, namespace: str, request: GateRequest) -> GateAnswer:
    headers = await _headers(api, namespace, request)
    if isinstance(headers, str):
        return GateAnswer(request.scope, False, f"not yet: {headers}")
    try:
        async with session.post(
            request.url,
            json=request.payload,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=request.timeout_seconds),
            allow_redirects=False,
        ) as answer:
            if 200 <= answer.status < 300:
                return GateAnswer(request.scope, True, f"HTTP {answer.status}")
            text = (await answer.text())[:200].strip()
            return GateAnswer(request.scope, False, f"not yet: HTTP {answer.status}" + (f" {text}" if text else ""))
    except TimeoutError:
        return GateAnswer(request.scope, False, f"not yet: no answer within {request.timeout_seconds:g}s")
    except aiohttp.ClientConnectorError as error:
        reason = error.os_error.strerror or type(error.os_error).__name__
        return GateAnswer(request.scope, False, f"not yet: cannot connect ({reason})")
    except aiohttp.ClientError as error:
        return GateAnswer(request.scope, False, f"not yet: {type(error).__name__}")


async def ask_all(
    session: aiohttp.ClientSession, api: KubeApi, namespace: str, requests: list[GateRequest]
) -> dict[str, GateAnswer]:
    """Every gate of the pass, at once; by gate name."""
    answers = await asyncio.gather(*(ask(session, api, namespace, request) for request in requests))
    return {request.name: answer for request, answer in zip(requests, answers, strict=True)}
