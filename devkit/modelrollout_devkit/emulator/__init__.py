"""A strict, in-memory Kubernetes API server for tests and the sandbox.

It extends :class:`kmock.KubernetesEmulator` (its handler protocol, served by aiohttp), but replaces
kmock's object handling wholesale, so that production code written against it works against a real
kube-apiserver. What it emulates:

* Object semantics: ``uid``, ``creationTimestamp``, one global etcd-like ``resourceVersion``,
  ``generation`` (bumped on spec changes only; for custom resources on anything but metadata and,
  with the status subresource, status), ``generateName``, namespace from the URL (400 if the body
  disagrees, 404 if the namespace does not exist, 403 if it is terminating), 201 on create, 409
  AlreadyExists/Conflict (stale ``resourceVersion`` in a PUT or a patch body, delete preconditions),
  404 with a ``Status`` body, 422 Invalid with ``details.causes``, no-op writes not bumping the
  ``resourceVersion``, finalizers and ``deletionTimestamp`` (no new finalizers while deleting),
  ``dryRun=All``, and ``fieldValidation`` (Strict/Warn/Ignore, with ``Warning`` headers).
* Patches: JSON patch (RFC 6902, a failed ``test`` is 422), JSON merge patch (RFC 7386), strategic
  merge patch for built-ins (merge keys of containers/volumes/env/ports/..., ``$patch``,
  ``$retainKeys``, ``$setElementOrder``, ``$deleteFromPrimitiveList``; 415 for custom resources);
  PUT; server-side apply answers 415.
* Subresources: ``/status`` isolation in both directions, ``/scale`` for Deployments.
* CRDs: structural-schema checks (422), registration with discovery once Established (a moment
  after the create, as in a real cluster), pruning, defaulting, OpenAPI validation, multiple versions
  (conversion strategy None), cleanup of the custom resources when a CRD is deleted.
* Built-ins: core/v1 namespaces, services, pods, configmaps, secrets, events, serviceaccounts,
  endpoints; apps/v1 deployments; batch/v1 jobs; coordination.k8s.io/v1 leases; events.k8s.io/v1
  events; apiextensions.k8s.io/v1 CRDs; with the common server-side defaults (Deployment strategy,
  pod template fields, Service clusterIP, Secret stringData, ...) and the common validation.
* Controllers: garbage collection by ``ownerReferences`` (Background, Foreground and Orphan
  propagation; dangling owners), namespace termination, CRD cleanup. No workload controllers:
  Deployments never get pods or a status unless someone (the sandbox) writes it.
* Lists and watches: ``<Kind>List`` with a real ``resourceVersion``, ``limit``/``continue``,
  label selectors (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``, ``<``, ``>``) and field
  selectors (``metadata.name``, ``metadata.namespace``, and the per-type fields such as events'
  ``involvedObject.*``; unsupported fields are 400); watches from a ``resourceVersion`` with a bounded
  per-resource event window (410 Expired as an ERROR event beyond it), synthetic ADDED events
  otherwise, race-free, ``application/json`` streaming, ``timeoutSeconds``, selector-leaving
  MODIFIED events turned into DELETED (and entering ones into ADDED), ``sendInitialEvents``.
* kubectl: discovery, server-side Tables for ``kubectl get``.
* Fault injection: :meth:`KubernetesApiEmulator.inject_faults` (409/429 with Retry-After/500/503/504).

Stricter than a real apiserver: protobuf request bodies are refused with 415 (so kubectl's generator
commands such as ``kubectl create namespace X`` fail; ``kubectl create/apply -f`` send JSON and work),
and ``/openapi`` is 404 (so kubectl needs ``--validate=false``). Still more lenient (remaining gaps):

* Built-in objects other than Leases are not pruned against their Go types: unknown fields are kept
  (a real server drops them), and only the common built-in fields are validated and defaulted.
* No CEL (``x-kubernetes-validations``), ``format``, validation ratcheting, or ``metadata`` schemas
  of custom resources; defaults are applied on writes only, not when reading old objects.
* No server-side apply, no ``managedFields``, no protobuf, no aggregated discovery, no ``/openapi``
  (kubectl falls back to its compiled-in types), no authentication/authorization/admission webhooks.
* Continue tokens page through the current state, not a snapshot at the first page's version.
* ``PUT`` creates only Leases (a real server also creates Endpoints, Events and RBAC objects so).
* Pods and namespaces are deleted without grace periods; no BOOKMARK events except the one of
  ``sendInitialEvents``; watches do not wait for a future ``resourceVersion`` before streaming.
"""

from modelrollout_devkit.emulator.errors import ApiError
from modelrollout_devkit.emulator.faults import FaultRule
from modelrollout_devkit.emulator.resources import Registry, ResourceType
from modelrollout_devkit.emulator.server import (
    CONTEXT_NAME,
    EmulatorServer,
    KubernetesApiEmulator,
    RequestRecord,
    ThreadedEmulator,
    kubeconfig,
    start_in_thread,
)
from modelrollout_devkit.emulator.store import Store

__all__ = [
    "CONTEXT_NAME",
    "ApiError",
    "EmulatorServer",
    "FaultRule",
    "KubernetesApiEmulator",
    "Registry",
    "RequestRecord",
    "ResourceType",
    "Store",
    "ThreadedEmulator",
    "kubeconfig",
    "start_in_thread",
]
