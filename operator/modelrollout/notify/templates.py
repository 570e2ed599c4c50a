"""The bodies messages are sent with: generic JSON, Slack, Microsoft Teams, or a template of one's own (pure)."""

from __future__ import annotations

import json
from typing import Any

from modelrollout.api.models import NOTIFICATION_VARIABLES, json_string_part, render_template

TITLES = {
    "on-rollout-started": "rollout started",
    "on-step-completed": "step completed",
    "on-rollout-paused": "rollout paused",
    "on-rollout-rolled-back": "rolled back",
    "on-rollout-promoted": "promoted",
    "on-drift": "drift",
}
# Slack's mrkdwn and Teams' MessageCard themeColor: green for good news, amber for a wait, red for bad.
COLOURS = {
    "on-rollout-started": "0076D7",
    "on-step-completed": "0076D7",
    "on-rollout-paused": "FFA500",
    "on-rollout-rolled-back": "D70000",
    "on-rollout-promoted": "2EB67D",
    "on-drift": "D70000",
}


def headline(values: dict[str, str]) -> str:
    title = TITLES.get(values["trigger"], values["trigger"])
    return f"{values['namespace']}/{values['rollout']}: {title}"


def facts(values: dict[str, str]) -> list[tuple[str, str]]:
    shown = [("stable", "stable"), ("candidate", "candidate"), ("step", "step"), ("phase", "phase")]
    shown += [("metric", "metric"), ("value", "value"), ("threshold", "threshold")]
    return [(label, values[key]) for label, key in shown if values.get(key)]


def generic(values: dict[str, str]) -> dict[str, Any]:
    return {"kind": "ModelRolloutNotification", **{key: values.get(key, "") for key in NOTIFICATION_VARIABLES}}


def slack(values: dict[str, str]) -> dict[str, Any]:
    """An incoming-webhook message: `text` (the notification's fallback) and Block Kit blocks."""
    text = f"*{headline(values)}*\n{values['message']}"
    detail = " · ".join(f"{label}: {value}" for label, value in facts(values))
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if detail:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": detail}]})
    return {"text": f"{headline(values)}: {values['message']}", "blocks": blocks}


def teams(values: dict[str, str]) -> dict[str, Any]:
    """A MessageCard, which Teams incoming webhooks and workflows accept."""
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": headline(values),
        "themeColor": COLOURS.get(values["trigger"], "0076D7"),
        "title": headline(values),
        "text": values["message"],
        "sections": [{"facts": [{"name": label, "value": value} for label, value in facts(values)]}],
    }


SHIPPED = {"generic": generic, "slack": slack, "teams": teams}


def render(template: str, body: str | None, values: dict[str, str]) -> dict[str, Any]:
    """The JSON body: a template of one's own (`body`, variables JSON-string-escaped) or a shipped one."""
    if body is not None:
        filled = {key: values.get(key, "") for key in NOTIFICATION_VARIABLES}
        document = json.loads(render_template(body, filled, escape=json_string_part))
        if not isinstance(document, dict):
            raise ValueError("the body is not a JSON object")
        return document
    return SHIPPED[template](values)
