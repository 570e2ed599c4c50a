"""Where messages go: the rollout's `spec.notifications`, and the operator-wide ConfigMap/Secret pair
`modelrollout-notifications` in the operator's namespace (as Argo Rollouts' notifications do).

The ConfigMap's key `webhooks` holds a YAML list of destinations shaped as `spec.notifications.webhooks`
(name, url, headers, template, body, on, timeoutSeconds, maxAttempts). A `url` or header `value` that
starts with `$` names a key of the Secret `modelrollout-notifications` beside it, as Argo's
`$slack-token` does: credentials live in that Secret only. Parsing is pure; reading is in `notifier`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from modelrollout.api.models import NOTIFICATION_TRIGGERS, NotificationWebhook, SecretKeyRef
from modelrollout.notify.ledger import Route

CLUSTER_CONFIG = "modelrollout-notifications"  # the ConfigMap, and the Secret beside it
CLUSTER_PREFIX = "cluster/"


@dataclass(frozen=True)
class Destination:
    """A webhook, and the namespace whose Secrets its secret parts are read from."""

    name: str  # as status shows it: the spec's name, or cluster/<name> for the operator-wide ones
    webhook: NotificationWebhook
    secrets_namespace: str

    @property
    def route(self) -> Route:
        return Route(self.name, frozenset(self.webhook.triggers or NOTIFICATION_TRIGGERS), self.webhook.max_attempts)


@dataclass(frozen=True)
class ClusterConfig:
    destinations: list[Destination]
    problems: list[str]  # what was wrong with entries that were left out (names and fields, never a value)


def _secret_ref(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("$") and len(value) > 1:
        return {"secretKeyRef": SecretKeyRef(name=CLUSTER_CONFIG, key=value[1:]).wire()}
    return None


def parse_cluster_config(data: dict[str, str] | None, namespace: str) -> ClusterConfig:
    """The operator-wide destinations from the ConfigMap's data."""
    text = (data or {}).get("webhooks")
    if not text:
        return ClusterConfig([], [])
    where = f"ConfigMap {namespace}/{CLUSTER_CONFIG} key 'webhooks'"
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return ClusterConfig([], [f"{where}: not YAML: {error}"])
    if not isinstance(document, list):
        return ClusterConfig([], [f"{where}: must be a YAML list of webhooks"])
    destinations: list[Destination] = []
    problems: list[str] = []
    for position, raw in enumerate(document):
        if not isinstance(raw, dict):
            problems.append(f"{where}[{position}]: must be a mapping")
            continue
        item = dict(raw)
        reference = _secret_ref(item.get("url"))
        if reference is not None:
            item.pop("url")
            item["urlFrom"] = reference
        headers = []
        for header in item.get("headers") or []:
            if isinstance(header, dict) and _secret_ref(header.get("value")) is not None:
                header = {"name": header.get("name"), "valueFrom": _secret_ref(header["value"])}
            headers.append(header)
        if headers:
            item["headers"] = headers
        try:
            webhook = NotificationWebhook.model_validate(item)
        except ValidationError as error:
            fields = "; ".join(
                f"{'.'.join(str(part) for part in e['loc']) or 'entry'}: {e['msg']}" for e in error.errors()
            )
            problems.append(f"{where}[{position}]: {fields}")
            continue
        destinations.append(Destination(CLUSTER_PREFIX + webhook.name, webhook, namespace))
    return ClusterConfig(destinations, problems)
