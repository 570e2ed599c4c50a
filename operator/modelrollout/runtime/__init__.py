"""The runtime room: what the operator keeps between passes, when it runs them, and which writes wait.

kopf logs in, runs the watches, keeps two indexes (the operator's Deployments and Services per
rollout), runs one daemon per ModelRollout and does the peering, all through its public API
(`modelrollout.handlers` is the only module that knows kopf). Everything else about running passes
lives here, in five pieces:

    watch events ──> wakeups.WakeUps ──wake──> worker.run_rollout (one per rollout, passes one at a time)
                         │ echo?                   │  ▲ sleeps until the next deadline / a wake-up
                         ▼                         │  │
    our writes ──> cache.OwnWrites ◀───merged──────┤  pacing.RoutineGate: a background-measurement
                   cache.fresher (status)          │  pass waits for one of a few slots; pacing.PassGate:
                   cache.ParsedSpecs/Statuses      │  others for one of 64, a rollout under way first
                                                   ▼
                                              reconcile.reconcile (observe, decide, act, record)
                                                   │
                                              status_writer: a status that only adds quiet
                                              measurements is held, not written (HeldStatus)

* `cache`: the view a pass decides from. kopf's indexes and bodies learn of our own writes only when
  their watch events arrive; the answers of our writes (`OwnWrites` for Deployments and Services,
  `fresher` for the ModelRollout's status) are kept until the watch is as new (resourceVersion), so
  a pass right after a write does not replay it. The parsed spec and status are kept per rollout
  with the dicts they came from, and parsed again only when those change.
* `wakeups`: which watch events wake a worker before its deadline: a change that can move the
  rollout, never the echo of its own write (what `OwnWrites` answered).
* `worker`: the loop kopf's daemon runs: a pass, then sleep until the soonest of the engine's
  deadlines (`decision.deadlines`), a held status falling due, an Event to post again, the resync.
* `pacing`: when the operator is saturated, steps of rollouts under way go first, then new starts,
  then background measurements; at most 64 measurements, and 16 to 88 other passes as the API
  server's answers allow (64 unless it keeps up or says it is overloaded), run at once, so the
  waiting happens where that order is kept, not in the API client's connection pool or the API
  server's queues.
* `status_writer`: which status writes may wait (`quiet_change`, `HeldStatus`); `reconcile.record`
  writes the status and holds back the quiet ones.
* `gc_policy`: the collector's policy for the large, long-lived heap all of this keeps.

State is per live rollout, in memory, and only an optimisation: a restarted operator rebuilds it
from the watches, and everything a decision needs is in the ModelRollout's status. A rollout that
is deleted is forgotten in every piece (`worker.forget_rollout`).
"""
