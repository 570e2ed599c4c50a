"""The words every room of the operator shares, in a leaf package that imports no other room.

* `names`: labels, annotations and the names of what the operator creates;
* `samples`: `Sample`, one series of a metric query, what the metric backends fetch and the
  analysis judges;
* `routes`: `RouteState` (what a traffic router sends to the candidate), `HeaderMatch` and
  `RouteView` (a route as observed), shared by the engine, the routers and `kube.routing`;
* `builtin_templates`: the built-in analysis templates as data, and the template variables the
  operator fills in, read by `api` (to resolve a template) and by the docs.

Nothing here does I/O. `tests/unit/test_layers.py` keeps this package a leaf.
"""
