"""Notifications: a message to webhooks (generic JSON, Slack, Teams) when a rollout starts, completes a
step, pauses, is rolled back, is promoted or drifts.

The engine decides what happened (its Events); `triggers` says, purely, which of those are worth a
message and what it says; `ledger` keeps, purely, each message's delivery state in status so that it
is sent at most once across restarts; `templates` renders the bodies; `config` reads where messages
go (the rollout's `spec.notifications` and the operator-wide ConfigMap/Secret pair
`modelrollout-notifications`); `notifier` delivers them off the rollout's pass, so a slow or dead
receiver never holds a rollout up. See docs/notifications.md.
"""
