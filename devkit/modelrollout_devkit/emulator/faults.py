"""Fault injection: make a share of matching API requests fail as an overloaded or flaky apiserver would."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from modelrollout_devkit.emulator.errors import ApiError

_MESSAGES = {
    # What a real API server answers a request its RBAC denies (the user name is the emulator's).
    403: (
        "Forbidden",
        'User "system:serviceaccount:modelrollout:modelrollout" cannot access this resource:'
        " RBAC: access denied (injected fault)",
    ),
    409: (
        "Conflict",
        "Operation cannot be fulfilled: the object has been modified; please apply your changes"
        " to the latest version and try again (injected fault)",
    ),
    429: ("TooManyRequests", "Too many requests, please try again later. (injected fault)"),
    500: ("InternalError", "Internal error occurred: injected fault"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request (injected fault)"),
    504: ("Timeout", "the server was unable to return a response in the time allotted (injected fault)"),
}


def _lowered(values: Iterable[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(v.lower() for v in values)


@dataclass
class FaultRule:
    """One injected fault; the filters that are None match everything."""

    status: int
    ratio: float = 1.0
    verbs: frozenset[str] | None = None  # get, list, watch, create, update, patch, delete, deletecollection
    methods: frozenset[str] | None = None  # HTTP methods, lower-case
    resources: frozenset[str] | None = None  # "plural", "plural.group", or "plural/subresource"
    namespaces: frozenset[str] | None = None
    limit: int | None = None  # stop after this many injected failures
    retry_after: int = 1  # seconds, for 429
    injected: int = 0  # how many requests it has failed so far

    def matches(self, verb: str, method: str, resource: tuple[str, str, str | None], namespace: str | None) -> bool:
        plural, group, subresource = resource
        names = {plural, f"{plural}.{group}" if group else plural}
        if subresource:
            names = {f"{name}/{subresource}" for name in names}
        return (
            (self.limit is None or self.injected < self.limit)
            and (self.verbs is None or verb in self.verbs)
            and (self.methods is None or method.lower() in self.methods)
            and (self.resources is None or bool(names & self.resources))
            and (self.namespaces is None or (namespace or "") in self.namespaces)
        )

    def error(self) -> ApiError:
        reason, message = _MESSAGES[self.status]
        if self.status == 429:
            return ApiError(
                429, message, reason, {"retryAfterSeconds": self.retry_after}, {"Retry-After": str(self.retry_after)}
            )
        return ApiError(self.status, message, reason)


@dataclass
class FaultInjector:
    rules: list[FaultRule] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    def add(
        self,
        status: int,
        *,
        ratio: float = 1.0,
        verbs: Iterable[str] | None = None,
        methods: Iterable[str] | None = None,
        resources: Iterable[str] | None = None,
        namespaces: Iterable[str] | None = None,
        limit: int | None = None,
        retry_after: int = 1,
    ) -> FaultRule:
        if status not in _MESSAGES:
            raise ValueError(f"Unsupported fault status {status}; use one of {sorted(_MESSAGES)}")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"The ratio must be within [0, 1], got {ratio}")
        rule = FaultRule(
            status,
            ratio,
            _lowered(verbs),
            _lowered(methods),
            _lowered(resources),
            None if namespaces is None else frozenset(namespaces),
            limit,
            retry_after,
        )
        self.rules.append(rule)
        return rule

    def pick(
        self, verb: str, method: str, resource: tuple[str, str, str | None], namespace: str | None
    ) -> ApiError | None:
        for rule in self.rules:
            if rule.matches(verb, method, resource, namespace) and self.rng.random() < rule.ratio:
                rule.injected += 1
                return rule.error()
        return None
