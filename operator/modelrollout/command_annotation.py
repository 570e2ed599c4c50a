"""A command from a person, as the operator reads it: the annotation `modelrollout.io/command`
holding JSON `{"id", "action", "at"}`, written with a merge patch (never into `spec`, so a GitOps
tool that owns the manifest sees no drift). Shared by the CLI's commands and the dashboard's buttons."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from modelrollout.engine.types import CommandAction
from modelrollout.vocabulary.names import COMMAND_ANNOTATION


def new_command(action: CommandAction) -> dict[str, str]:
    """A command with a fresh id: the operator's acknowledgement (`status.lastCommand.id`) names it."""
    return {"id": uuid.uuid4().hex[:12], "action": action.value, "at": datetime.now(UTC).isoformat()}


def command_patch(command: dict[str, str]) -> dict[str, Any]:
    """The merge patch that hands `command` to the operator."""
    return {"metadata": {"annotations": {COMMAND_ANNOTATION: json.dumps(command)}}}
