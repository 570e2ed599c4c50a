"""The rollout page's webhook gates and notifications, from ModelRollouts as the API server returns
them (no server, no browser): which gate, open or waiting and why, the last answer; each
notification's destination, trigger and outcome, and never a URL or a credential."""

from __future__ import annotations

import json
from typing import Any

from modelrollout.dashboard import view
from modelrollout.dashboard.gates_view import masked
from tests.unit.test_dashboard_view import NOW, _at, rollout

GREEN, OLDER = "9607d2580a", "1234abcd00"


def gate_entry(name: str, kind: str, scope: str, state: str, message: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "scope": scope, "revision": GREEN, "state": state, "message": message, **extra}


def status_with_gates() -> dict[str, Any]:
    return {
        "phase": "Progressing",
        "stableVersion": "1",
        "candidateVersion": "2",
        "candidateRevision": GREEN,
        "gates": [
            gate_entry("load-test", "pre-rollout", "rollout", "Open", "HTTP 200", attempts=1, checkedAt=_at(60)),
            gate_entry("pager", "rollback", "rollout", "Waiting", "not yet: HTTP 403", attempts=7, checkedAt=_at(2)),
            gate_entry(
                "change-window",
                "confirm-promotion",
                "promotion",
                "Waiting",
                "not yet: HTTP 403 frozen",
                attempts=3,
                checkedAt=_at(5),
            ),
            {**gate_entry("old", "confirm-rollout", "rollout", "Waiting"), "revision": OLDER},
        ],
    }


def test_the_page_shows_each_gate_of_the_candidate_waiting_first_with_why_and_the_last_answer() -> None:
    shown = view.detail(rollout(status_with_gates()), [], [], NOW, read_only=True)["gates"]
    assert [(g["name"], g["state"]) for g in shown] == [
        ("change-window", "waiting"),
        ("pager", "watching"),
        ("load-test", "open"),
    ]  # an earlier candidate's gate is history, not shown
    waiting, rollback, opened = shown
    assert (waiting["type"], waiting["scope"], waiting["why"]) == (
        "confirm-promotion",
        "promotion",
        "not yet: HTTP 403 frozen",
    )
    assert waiting["attempts"] == 3 and waiting["checkedAt"] == NOW - 5
    assert rollback["why"] is None and rollback["lastAnswer"] == "not yet: HTTP 403" and rollback["attempts"] == 7
    assert opened["why"] is None and opened["lastAnswer"] == "HTTP 200"


def test_a_gate_not_asked_yet_says_so_and_a_promoted_rollout_shows_none() -> None:
    status = {"candidateRevision": GREEN, "gates": [gate_entry("ok", "confirm-rollout", "rollout", "Waiting")]}
    [entry] = view.detail(rollout(status), [], [], NOW, read_only=True)["gates"]
    assert entry["why"] == "not asked yet" and entry["lastAnswer"] is None and entry["checkedAt"] is None
    promoted = {"phase": "Succeeded", "gates": status["gates"]}  # no candidate: its gates are gone
    assert view.detail(rollout(promoted), [], [], NOW, read_only=True)["gates"] == []
    assert view.detail(rollout({}), [], [], NOW, read_only=True)["gates"] == []


def test_notifications_show_destination_trigger_and_outcome_newest_first_never_urls_or_credentials() -> None:
    status = {
        "notifications": [
            {
                "id": "evt-9/chat",
                "destination": "chat",
                "trigger": "on-rollout-paused",
                "state": "Retrying",
                "attempts": 2,
                "nextAttemptAt": _at(-4),
                "lastError": "HTTP 503",
                "values": {"rollout": "fraud", "message": "secret-ish words"},
            }
        ],
        "notified": [
            {
                "id": "evt-1/chat",
                "destination": "chat",
                "trigger": "on-rollout-started",
                "outcome": "Delivered",
                "attempts": 1,
                "message": "HTTP 200",
                "at": _at(120),
            },
            {
                "id": "evt-2/teams",
                "destination": "teams",
                "trigger": "on-step-completed",
                "outcome": "Failed",
                "attempts": 5,
                "message": "HTTP 400: refused by https://hooks.example/T0/B0/abcdef token=s3cr3t",
                "at": _at(30),
            },
        ],
    }
    shown = view.detail(rollout(status), [], [], NOW, read_only=True)["notifications"]
    assert [(n["destination"], n["trigger"], n["outcome"]) for n in shown["last"]] == [
        ("teams", "on-step-completed", "Failed"),
        ("chat", "on-rollout-started", "Delivered"),
    ]
    assert shown["last"][0]["attempts"] == 5 and shown["last"][1]["at"] == NOW - 120
    [pending] = shown["pending"]
    assert (pending["destination"], pending["state"], pending["attempts"]) == ("chat", "Retrying", 2)
    assert pending["nextAttemptAt"] == NOW + 4 and pending["lastError"] == "HTTP 503"
    words = json.dumps(shown)
    for secret in ("hooks.example", "abcdef", "s3cr3t", "secret-ish", "evt-"):
        assert secret not in words
    assert "<url>" in words and "token=<hidden>" in words


def test_only_the_last_ten_notifications_are_shown_and_none_when_status_has_none() -> None:
    many = [
        {"destination": f"d{i}", "trigger": "on-rollout-started", "outcome": "Delivered", "at": _at(100 - i)}
        for i in range(14)
    ]
    shown = view.detail(rollout({"notified": many}), [], [], NOW, read_only=True)["notifications"]
    assert [n["destination"] for n in shown["last"]] == [f"d{i}" for i in range(13, 3, -1)]
    assert view.detail(rollout({}), [], [], NOW, read_only=True)["notifications"] == {"pending": [], "last": []}


def test_masking_keeps_the_words_and_hides_urls_and_credentials() -> None:
    said = masked("not yet: HTTP 401 see http://auth.test/x?k=1; Authorization: Bearer abc.def, password=hunter2")
    assert said == "not yet: HTTP 401 see <url> Authorization: Bearer <hidden>, password=<hidden>"
    assert masked("not yet: HTTP 403 the token header is missing") == "not yet: HTTP 403 the token header is missing"
    assert len(masked("x" * 1000)) == 300


def test_the_page_has_the_places_its_script_fills_for_gates_and_notifications() -> None:
    from pathlib import Path

    static = Path(view.__file__).parent / "static"
    page, script = (static / "rollout.html").read_text(), (static / "rollout.js").read_text()
    for place in ("gates-card", "gates", "notifications-card", "notifications"):
        assert f'id="{place}"' in page and f'getElementById("{place}")' in script
    assert "renderGates(detail)" in script and "renderNotifications(detail)" in script
    assert "innerHTML" not in script  # answers are text nodes: a gate's body cannot inject markup
