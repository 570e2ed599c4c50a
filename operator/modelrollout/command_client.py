"""Sending a person's command to a rollout and reading the operator's answer: what `modelrollout
promote` (and the other commands) does, for any client (the CLI, a dashboard).

A command is the annotation `modelrollout.io/command` = JSON `{"id", "action", "at"}`, written with a
merge patch, never into `spec`, so a GitOps tool that owns the manifest sees no drift. The operator
answers in `status.lastCommand` (`{id, action, outcome: Applied | Ignored, reason, at}`): a client
that waits for its id there can tell the person what happened.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from modelrollout.api.models import LastCommand, ModelRolloutStatus
from modelrollout.engine.types import CommandAction
from modelrollout.kube.api import MODELROLLOUTS, KubeApi
from modelrollout.vocabulary.names import COMMAND_ANNOTATION


def new_command(action: CommandAction, now: datetime | None = None) -> dict[str, str]:
    """A command with a fresh id, as the annotation carries it."""
    moment = now or datetime.now(UTC)
    return {"id": uuid.uuid4().hex[:12], "action": action.value, "at": moment.isoformat()}


def command_patch(command: dict[str, str]) -> dict[str, Any]:
    """The merge patch that writes a command on a ModelRollout."""
    return {"metadata": {"annotations": {COMMAND_ANNOTATION: json.dumps(command)}}}


async def send(api: KubeApi, namespace: str, name: str, action: CommandAction) -> str:
    """Write the command; its id. An ApiError (404 for no such rollout) is the caller's to say."""
    command = new_command(action)
    await api.merge_patch(MODELROLLOUTS, namespace, name, command_patch(command))
    return command["id"]


def answer_to(rollout: dict[str, Any] | None, command_id: str) -> LastCommand | None:
    """The operator's answer to the command, if the rollout's status holds it."""
    if rollout is None:
        return None
    status = ModelRolloutStatus.model_validate(rollout.get("status") or {})
    last = status.last_command
    return last if last is not None and last.id == command_id else None


async def wait_for_answer(
    api: KubeApi, namespace: str, name: str, command_id: str, seconds: float, poll: float = 0.5
) -> LastCommand | None:
    """Read the rollout until its status answers the command, for up to `seconds`; None if it did not.

    A read every half second: the answer usually comes within a pass (well under a second), and a
    watch would hold a connection open for one answer."""
    deadline = time.monotonic() + seconds
    while True:
        answer = answer_to(await api.get(MODELROLLOUTS, namespace, name), command_id)
        if answer is not None:
            return answer
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        await asyncio.sleep(min(poll, left))
