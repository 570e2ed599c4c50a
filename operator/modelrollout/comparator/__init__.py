"""The shadow comparator: the mirror target of a shadow step with agreement (see docs/shadow-agreement.md).

`join` (pure): answers reduced to classes, scores and digests, joined by request id, bounded in memory
and time. `series`: the Prometheus series. `app`: the Starlette app. `serve`: `modelrollout comparator`
(or `python -m modelrollout.comparator.serve`), configured from the environment the operator's
Deployment gives it.
"""
