"""Notifications without a cluster: which Events make messages, what they say, the delivery ledger in
status (at most once, backoff, give up), the bodies, and the operator-wide ConfigMap."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from modelrollout.api.models import (
    AnalysisStatus,
    Measurement,
    MetricResult,
    ModelRolloutSpec,
    ModelRolloutStatus,
    NotificationWebhook,
    PendingEvent,
    Phase,
    Verdict,
)
from modelrollout.notify.config import parse_cluster_config
from modelrollout.notify.ledger import Attempt, Result, Route, backoff, due, next_retry_in, queue, settle
from modelrollout.notify.notifier import spec_destinations
from modelrollout.notify.templates import render
from modelrollout.notify.triggers import messages_for

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ALL = frozenset({"on-rollout-started", "on-rollout-rolled-back", "on-rollout-promoted", "on-step-completed"})


def event(reason: str, name: str = "r.1", message: str = "something happened") -> PendingEvent:
    return PendingEvent(name=name, type="Normal", reason=reason, message=message, at="2026-01-01T00:00:00.000Z")


def spec(**extra: object) -> ModelRolloutSpec:
    return ModelRolloutSpec.model_validate(
        {
            "model": {"name": "m", "version": "2"},
            "template": {"spec": {"containers": [{"name": "c"}]}},
            "analysis": {"metrics": [{"name": "err", "prometheus": {"query": "q"}, "threshold": {"max": 0.05}}]},
            **extra,
        }
    )


def test_events_that_tell_of_a_rollout_make_messages_and_others_do_not() -> None:
    status = ModelRolloutStatus(phase=Phase.PROGRESSING, stable_version="1", candidate_version="2")
    events = [event("RolloutStarted", "r.1"), event("AnalysisStarted", "r.2"), event("StepCompleted", "r.3")]
    found = messages_for(events, status, spec(), "r", "ns")
    assert [(m.event, m.trigger) for m in found] == [("r.1", "on-rollout-started"), ("r.3", "on-step-completed")]
    assert found[0].values["stable"] == "1" and found[0].values["candidate"] == "2"


def test_a_rollback_names_the_metric_its_value_and_threshold() -> None:
    analysis = AnalysisStatus(
        kind="step",
        phase=Verdict.FAILED,
        started_at="t",
        metrics=[
            MetricResult(
                name="err",
                phase=Verdict.FAILED,
                count=1,
                failed=1,
                measurements=[Measurement(phase=Verdict.FAILED, value=0.4, at="t", message="0.4 > 0.05")],
            )
        ],
    )
    status = ModelRolloutStatus(
        phase=Phase.ROLLED_BACK, stable_version="1", candidate_version="2", step_analysis=analysis
    )
    [message] = messages_for([event("AnalysisFailed")], status, spec(), "r", "ns")
    assert message.trigger == "on-rollout-rolled-back"
    assert (message.values["metric"], message.values["value"], message.values["threshold"]) == (
        "err",
        "0.4",
        "max 0.05",
    )


def test_a_first_deployment_that_misses_its_deadline_is_no_rollback() -> None:
    status = ModelRolloutStatus(phase=Phase.FAILED)
    assert messages_for([event("ProgressDeadlineExceeded")], status, spec(), "r", "ns") == []


def routes(max_attempts: int = 3) -> list[Route]:
    return [Route("hook", ALL, max_attempts)]


def test_a_message_is_queued_once_and_settles_as_delivered() -> None:
    status = ModelRolloutStatus()
    added = queue(status, [("r.1", "on-rollout-started", {"a": "b"})], routes(), NOW)
    assert [(e.id, e.state, e.attempts) for e in added] == [("r.1/hook", "Sending", 1)]
    assert queue(status, [("r.1", "on-rollout-started", {})], routes(), NOW) == []  # the same Event: not again
    settle(status, {"r.1/hook": Attempt(Result.DELIVERED, "HTTP 200")}, {"r.1/hook"}, {"hook": routes()[0]}, NOW)
    assert status.notifications is None
    assert [(o.id, o.outcome) for o in status.notified or []] == [("r.1/hook", "Delivered")]


def test_a_trigger_the_destination_does_not_want_is_not_queued() -> None:
    status = ModelRolloutStatus()
    assert queue(status, [("r.1", "on-drift", {})], routes(), NOW) == []


def test_sending_left_by_another_process_is_unknown_and_never_sent_again() -> None:
    status = ModelRolloutStatus()
    queue(status, [("r.1", "on-rollout-started", {})], routes(), NOW)
    settle(status, {}, set(), {"hook": routes()[0]}, NOW)  # a restarted operator: it did not send r.1/hook
    assert status.notifications is None
    assert [o.outcome for o in status.notified or []] == ["Unknown"]


def test_a_refused_connection_is_retried_with_backoff_then_given_up() -> None:
    status = ModelRolloutStatus()
    route = routes(max_attempts=2)[0]
    queue(status, [("r.1", "on-rollout-started", {})], [route], NOW)
    settle(status, {"r.1/hook": Attempt(Result.RETRY, "cannot connect")}, {"r.1/hook"}, {"hook": route}, NOW)
    [entry] = status.notifications or []
    assert entry.state == "Retrying" and entry.last_error == "cannot connect"
    assert next_retry_in(status, NOW) == pytest.approx(backoff(1))
    assert due(status, NOW) == []  # not yet
    [again] = due(status, NOW + timedelta(seconds=backoff(1)))
    assert (again.state, again.attempts) == ("Sending", 2)
    settle(status, {"r.1/hook": Attempt(Result.RETRY, "cannot connect")}, {"r.1/hook"}, {"hook": route}, NOW)
    assert status.notifications is None
    [outcome] = status.notified or []
    assert outcome.outcome == "Failed" and "gave up after 2" in outcome.message


def test_backoff_doubles_and_is_bounded() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert backoff(30) == 300.0


def test_shipped_bodies() -> None:
    values = {
        "rollout": "r",
        "namespace": "ns",
        "trigger": "on-rollout-rolled-back",
        "reason": "AnalysisFailed",
        "message": 'rolled back 2: "bad"',
        "metric": "err",
        "value": "0.4",
        "threshold": "max 0.05",
    }
    slack = render("slack", None, values)
    assert slack["text"].startswith("ns/r: rolled back") and slack["blocks"][0]["type"] == "section"
    teams = render("teams", None, values)
    assert teams["@type"] == "MessageCard" and {"name": "metric", "value": "err"} in teams["sections"][0]["facts"]
    generic = render("generic", None, values)
    assert generic["kind"] == "ModelRolloutNotification" and generic["stable"] == ""
    own = render("generic", '{"msg": "{{message}}", "who": "{{rollout}}"}', values)
    assert own == {"msg": 'rolled back 2: "bad"', "who": "r"}  # escaped into the JSON string


def test_a_body_of_ones_own_is_checked_when_the_spec_is_read() -> None:
    with pytest.raises(ValidationError, match="unknown variable"):
        NotificationWebhook.model_validate({"name": "x", "url": "http://h", "body": '{"a": "{{nope}}"}'})
    with pytest.raises(ValidationError, match="not JSON"):
        NotificationWebhook.model_validate({"name": "x", "url": "http://h", "body": '{"a": {{message}}}'})
    with pytest.raises(ValidationError, match="exactly one of url, urlFrom"):
        NotificationWebhook.model_validate({"name": "x"})


def test_the_operator_wide_configmap_takes_secret_parts_from_its_secret() -> None:
    data = {
        "webhooks": "- name: slack\n  url: $slack-url\n  template: slack\n"
        "  headers: [{name: Authorization, value: $token}]\n"
        "- name: broken\n  url: ftp://nope\n"
    }
    config = parse_cluster_config(data, "ops")
    [slack] = config.destinations
    assert slack.name == "cluster/slack" and slack.secrets_namespace == "ops"
    assert slack.webhook.url is None and slack.webhook.url_from is not None
    assert slack.webhook.url_from.secret_key_ref.name == "modelrollout-notifications"
    assert slack.webhook.url_from.secret_key_ref.key == "slack-url"
    header = slack.webhook.headers[0]
    assert header.value_from is not None and header.value_from.secret_key_ref.key == "token"
    assert len(config.problems) == 1 and "[1]" in config.problems[0]
    assert parse_cluster_config({"webhooks": "{not: a list}"}, "ops").problems


def test_post_rollout_webhooks_are_told_of_promotion_and_rollback_with_flaggers_payload() -> None:
    with_hook = spec(
        webhooks=[{"name": "done", "type": "post-rollout", "url": "http://h/done", "metadata": {"k": "v"}}]
    )
    [destination] = spec_destinations(with_hook, "ns")
    assert destination.name == "webhook/done"
    assert destination.route.triggers == {"on-rollout-promoted", "on-rollout-rolled-back"}
    body = render("generic", destination.webhook.body, {"rollout": "r", "namespace": "ns", "phase": "Succeeded"})
    assert body["type"] == "post-rollout" and body["metadata"] == {"k": "v"} and body["phase"] == "Succeeded"
    assert json.dumps(body)
