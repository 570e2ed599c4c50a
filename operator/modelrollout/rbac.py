"""Every Kubernetes API permission the operator needs, with the reason for each, in one place.

The Helm chart's ClusterRole / Roles (`charts/modelrollout-operator/templates/rbac.yaml`) are written
by hand for readability, and `tests/chart/test_rbac.py` renders the chart in each install mode and
checks that it grants exactly what `grants()` says: no rule missing, nothing extra, no wildcard.
So a new API call starts here, then goes into the template; the test fails until both agree.

Scopes:

* `Scope.CLUSTER`: a cluster-scoped resource (CRDs, namespaces, ClusterKopfPeerings); always
  granted by a ClusterRole, also when the operator watches only some namespaces.
* `Scope.NAMESPACED`: a namespaced resource; granted by the ClusterRole when the operator watches
  every namespace, and by one Role per watched namespace otherwise.
* `Scope.OWN_NAMESPACE_ROLE`: a namespaced resource in the operator's own namespace only, by a Role
  there in every install mode (sharding's Leases, `When.SHARDED`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from modelrollout import GROUP, PLURAL

READ = ("get", "list", "watch")


class Scope(enum.StrEnum):
    CLUSTER = "cluster"
    NAMESPACED = "namespaced"
    # In the operator's own namespace only, and only when it watches named namespaces (watching every
    # namespace, the namespaced rules cover it): the operator-wide notification ConfigMap and Secret.
    OPERATOR_NAMESPACE = "operator-namespace"
    # In the operator's own namespace by a Role there, whatever it watches: the shard Leases must not
    # be writable cluster-wide (a Lease of another component is none of the operator's business).
    OWN_NAMESPACE_ROLE = "own-namespace-role"


class When(enum.StrEnum):
    """Which installs need a rule."""

    ALWAYS = "always"
    # kopf keeps peering state in a ClusterKopfPeering when it watches the whole cluster, and in a
    # KopfPeering per namespace when it watches named namespaces (kopf's `guess_selectors`).
    PEERING_CLUSTERWIDE = "peering-clusterwide"
    PEERING_NAMESPACED = "peering-namespaced"
    # More than one shard (`--shards N`, the chart's `shards`): the replicas coordinate through Leases.
    SHARDED = "sharded"


@dataclass(frozen=True)
class Rule:
    api_group: str  # "" is the core group
    resource: str
    verbs: tuple[str, ...]
    scope: Scope
    why: str
    when: When = When.ALWAYS
    # True for permissions granted ahead of the code that uses them (announced traffic routers,
    # analysis jobs, Prometheus credentials), so that upgrading the operator image alone works.
    planned: bool = False


RULES: tuple[Rule, ...] = (
    Rule(
        GROUP,
        PLURAL,
        ("get", "list", "watch", "patch"),
        Scope.NAMESPACED,
        "kopf watches ModelRollouts and patches their finalizer and its own annotations; "
        "commands from people arrive as an annotation on them; sharded, the shard labels are patched on",
    ),
    Rule(
        GROUP,
        f"{PLURAL}/status",
        ("get", "patch", "update"),
        Scope.NAMESPACED,
        "all rollout state is written to status (the status subresource)",
    ),
    Rule(
        "apps",
        "deployments",
        ("get", "list", "watch", "create", "patch", "delete"),
        Scope.NAMESPACED,
        "one Deployment per model revision (stable, candidate); kopf indexes them by watch; sharded, they "
        "carry their rollout's shard labels (patched on)",
    ),
    Rule(
        "",
        "services",
        ("get", "list", "watch", "create", "patch", "delete"),
        Scope.NAMESPACED,
        "the Service in front of the model servers; traffic split by replica ratio uses its selector; sharded, "
        "it carries its rollout's shard labels (patched on)",
    ),
    Rule(
        "",
        "events",
        ("create", "patch"),
        Scope.NAMESPACED,
        "the operator posts its Events on ModelRollouts (core API, kept in status until posted); kopf patches "
        "its own when one repeats",
    ),
    Rule(
        "events.k8s.io",
        "events",
        ("create", "patch"),
        Scope.NAMESPACED,
        "the same Events through the events.k8s.io API, which newer clients use",
    ),
    Rule(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        READ,
        Scope.CLUSTER,
        "kopf reads the CRDs to discover the resources it serves; CRDs are cluster-scoped, so this "
        "stays in the ClusterRole even when the operator watches only some namespaces",
    ),
    Rule(
        "",
        "namespaces",
        READ,
        Scope.CLUSTER,
        "kopf lists and watches namespaces to resolve namespace patterns (-n 'team-*')",
    ),
    Rule(
        "kopf.dev",
        "clusterkopfpeerings",
        ("get", "list", "watch", "patch"),
        Scope.CLUSTER,
        "kopf peering: replicas publish keep-alives so only the highest-priority one works",
        when=When.PEERING_CLUSTERWIDE,
    ),
    Rule(
        "coordination.k8s.io",
        "leases",
        ("get", "list", "watch", "create", "update", "delete"),
        Scope.OWN_NAMESPACE_ROLE,
        "sharding: each shard is held through a Lease, and each replica keeps a member Lease renewed, in the "
        "operator's namespace; a replica creates, renews (update) and releases (delete) them, and watches them "
        "all to see who is alive",
        when=When.SHARDED,
    ),
    Rule(
        "kopf.dev",
        "kopfpeerings",
        ("get", "list", "watch", "patch"),
        Scope.NAMESPACED,
        "kopf peering when the operator watches named namespaces: one KopfPeering per namespace",
        when=When.PEERING_NAMESPACED,
    ),
    # The traffic routers (traffic/gateway_api.py, traffic/istio.py) set backend weights, mirrors
    # and one header rule on routes that users own; they never create or delete them.
    Rule(
        "gateway.networking.k8s.io",
        "httproutes",
        ("get", "list", "watch", "patch", "update"),
        Scope.NAMESPACED,
        "Gateway API traffic routing: set the stable/candidate backend weights of an HTTPRoute",
    ),
    Rule(
        "networking.istio.io",
        "virtualservices",
        ("get", "list", "watch", "patch", "update"),
        Scope.NAMESPACED,
        "Istio traffic routing: set the weights and mirror of a VirtualService",
    ),
    Rule(
        "batch",
        "jobs",
        ("create", "get", "list", "watch", "delete"),
        Scope.NAMESPACED,
        "the retraining hook creates a Job (spec.monitoring.hook.job) once per drift episode; a job metric "
        "(offline evaluation) creates a Job per measurement, reads how it went and deletes it once measured",
    ),
    Rule(
        "",
        "pods",
        ("get", "list"),
        Scope.NAMESPACED,
        "a job metric's number is the termination message of its Job's pod (read only)",
    ),
    Rule(
        "",
        "configmaps",
        ("get",),
        Scope.NAMESPACED,
        "drift against a training reference reads the SDK's feature-edges JSON from a ConfigMap (get only)",
    ),
    Rule(
        GROUP,
        "modelanalysistemplates",
        ("get",),
        Scope.NAMESPACED,
        "metrics that name a ModelAnalysisTemplate are resolved from it on every pass",
    ),
    Rule(
        GROUP,
        "clustermodelanalysistemplates",
        ("get",),
        Scope.CLUSTER,
        "metrics that name a ClusterModelAnalysisTemplate (cluster-scoped) are resolved from it",
    ),
    Rule(
        "",
        "secrets",
        ("get",),
        Scope.NAMESPACED,
        "read the Prometheus credentials a ModelRollout names in spec.analysis.prometheus.auth, a web "
        "metric's headers, and notification URLs and headers from Secrets (get only: never list or watch)",
    ),
    Rule(
        "",
        "configmaps",
        ("get",),
        Scope.OPERATOR_NAMESPACE,
        "the operator-wide notification destinations: the ConfigMap modelrollout-notifications in the operator's "
        "namespace (the chart limits it to that name)",
    ),
    Rule(
        "",
        "secrets",
        ("get",),
        Scope.OPERATOR_NAMESPACE,
        "the credentials of the operator-wide notification destinations: the Secret modelrollout-notifications "
        "beside that ConfigMap (the chart limits it to that name)",
    ),
)


def rules(*, cluster_wide: bool, peering: bool, sharded: bool = False) -> list[Rule]:
    """The rules an install needs: watching every namespace or named ones, with or without peering,
    sharded or not."""
    wanted = {When.ALWAYS}
    if peering:
        wanted.add(When.PEERING_CLUSTERWIDE if cluster_wide else When.PEERING_NAMESPACED)
    if sharded:
        wanted.add(When.SHARDED)
    return [rule for rule in RULES if rule.when in wanted]


Grant = tuple[str, str, str, str]  # (where, apiGroup, resource, verb); where is "*cluster*" or a namespace

CLUSTER = "*cluster*"


def grants(
    *, namespaces: list[str], peering: bool, operator_namespace: str | None = None, sharded: bool = False
) -> set[Grant]:
    """Every (where, apiGroup, resource, verb) an install must grant.

    `namespaces` empty means the operator watches the whole cluster: everything is cluster-wide.
    Otherwise namespaced rules are granted in each listed namespace only, and the operator-namespace
    rules in `operator_namespace` (the chart's release namespace). The own-namespace rules (sharding's
    Leases) are granted in `operator_namespace` in either case.
    """
    cluster_wide = not namespaces
    granted: set[Grant] = set()
    for rule in rules(cluster_wide=cluster_wide, peering=peering, sharded=sharded):
        if rule.scope is Scope.OWN_NAMESPACE_ROLE:
            places = [operator_namespace] if operator_namespace else []
        elif rule.scope is Scope.OPERATOR_NAMESPACE:
            places = [CLUSTER] if cluster_wide else ([operator_namespace] if operator_namespace else [])
        else:
            places = [CLUSTER] if cluster_wide or rule.scope is Scope.CLUSTER else namespaces
        for where in places:
            granted.update((where, rule.api_group, rule.resource, verb) for verb in rule.verbs)
    return granted
