"""docs/bad-input.md on the real API server: which bad specs the CRD schema refuses (HTTP 422,
naming the field and, for a bound, what is allowed: word for word as the doc's first table says),
which it stores for the operator to report, and what happens to unknown fields (refused only under
strict field validation; otherwise dropped with a warning)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from modelrollout import GROUP, KIND, PLURAL, VERSION
from tests.docs.bad_input_cases import SPEC_CASES, SpecCase, base_spec, refused_by_the_server

# The rows docs/bad-input.md says the schema catches: its first table, with the API server's words.
REFUSED_BY_THE_SCHEMA = {case.what: case.server for case in refused_by_the_server()}


def create(admin: kubernetes.client.ApiClient, namespace: str, spec: dict, validation: str, dry: bool = True) -> dict:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": f"bad-{uuid.uuid4().hex[:8]}", "namespace": namespace},
        "spec": spec,
    }
    custom = kubernetes.client.CustomObjectsApi(admin)
    extra = {"dry_run": "All"} if dry else {}
    return custom.create_namespaced_custom_object(  # type: ignore[no-any-return]
        GROUP, VERSION, namespace, PLURAL, body, field_validation=validation, **extra
    )


def test_the_schema_refuses_the_shape_errors_and_the_bounds() -> None:
    # A wrong type, an unknown enum value, three missing fields, and every bound of the table.
    assert len(REFUSED_BY_THE_SCHEMA) == 22
    assert {"a weight over 100", "negative replicas", "a port out of range", "a p-value over 1"} <= set(
        REFUSED_BY_THE_SCHEMA
    )


@pytest.mark.parametrize("case", SPEC_CASES, ids=lambda case: case.what)
def test_the_server_refuses_exactly_the_first_tables_rows(
    case: SpecCase, admin: kubernetes.client.ApiClient, namespace: str
) -> None:
    if case.server is None:
        # Wrong in meaning: stored; the operator reports it (status.phase Failed, InvalidSpec).
        create(admin, namespace, case.spec(), "Strict")
        return
    with pytest.raises(ApiException) as refused:
        create(admin, namespace, case.spec(), "Strict")
    status = json.loads(refused.value.body)
    assert refused.value.status == 422, status
    assert status["reason"] == "Invalid"
    causes = [f"{cause['field']}: {cause['message']}" for cause in status["details"]["causes"]]
    assert causes == [case.server], status
    assert status["message"].endswith(f" is invalid: {case.server}")


@pytest.mark.parametrize(
    ("change", "field", "bound"),
    [
        ({"strategy": {"canary": {"steps": [{"setWeight": 150}]}}}, "spec.strategy.canary.steps[0].setWeight", 100),
        ({"replicas": -2}, "spec.replicas", 1),
    ],
    ids=["setWeight 150", "replicas -2"],
)
def test_the_bounds_of_issue_16_are_refused_with_the_field_and_the_bound(
    change: dict[str, Any], field: str, bound: int, admin: kubernetes.client.ApiClient, namespace: str
) -> None:
    # Before the bounds were in the schema, both were stored and failed only in status.
    with pytest.raises(ApiException) as refused:
        create(admin, namespace, {**base_spec(), **change}, "Strict", dry=False)
    assert refused.value.status == 422
    (cause,) = json.loads(refused.value.body)["details"]["causes"]
    assert cause["field"] == field
    relation = "less than or equal to" if bound == 100 else "greater than or equal to"
    assert cause["message"].endswith(f"{field} in body should be {relation} {bound}"), cause
    assert (
        kubernetes.client.CustomObjectsApi(admin).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
            "items"
        ]
        == []
    )


@pytest.mark.parametrize("where", ["spec", "step"])
def test_an_unknown_field_is_refused_only_under_strict_validation(
    where: str, admin: kubernetes.client.ApiClient, namespace: str
) -> None:
    spec = base_spec()
    if where == "spec":
        spec["replica"] = 4
        path = "spec.replica"
    else:
        spec["strategy"]["canary"]["steps"][0]["setWieght"] = 10
        path = "spec.strategy.canary.steps[0].setWieght"

    # kubectl's default (--validate=strict) asks for this: HTTP 400, the field named.
    with pytest.raises(ApiException) as refused:
        create(admin, namespace, spec, "Strict")
    assert refused.value.status == 400
    assert f'unknown field "{path}"' in json.loads(refused.value.body)["message"]

    # Any other client (the server's default is Warn): stored without the field, and a warning.
    for validation in ("Warn", "Ignore"):
        stored = create(admin, namespace, spec, validation, dry=False)
        assert "replica" not in stored["spec"]
        assert "setWieght" not in stored["spec"]["strategy"]["canary"]["steps"][0]
