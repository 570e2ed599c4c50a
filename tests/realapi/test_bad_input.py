"""docs/bad-input.md on the real API server: which bad specs the CRD schema refuses (HTTP 422,
naming the field), which it stores for the operator to report, and what happens to unknown fields
(refused only under strict field validation; otherwise dropped with a warning)."""

from __future__ import annotations

import json
import uuid

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from modelrollout import GROUP, KIND, PLURAL, VERSION
from tests.docs.bad_input_cases import SPEC_CASES, SpecCase, base_spec

# The rows docs/bad-input.md says the schema catches, and the field the server names.
REFUSED_BY_THE_SCHEMA = {
    "a wrong type": "spec.replicas",
    "an unknown automation": "spec.automation",
    "no model": "spec.model",
    "no template": "spec.template",
    "no model.version": "spec.model.version",
}


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


def test_the_doc_names_every_case_the_schema_refuses() -> None:
    assert set(REFUSED_BY_THE_SCHEMA) <= {case.what for case in SPEC_CASES}


@pytest.mark.parametrize("case", SPEC_CASES, ids=lambda case: case.what)
def test_the_server_refuses_exactly_the_shape_errors(
    case: SpecCase, admin: kubernetes.client.ApiClient, namespace: str
) -> None:
    if case.what not in REFUSED_BY_THE_SCHEMA:
        # Wrong in meaning: stored; the operator reports it (status.phase Failed, InvalidSpec).
        create(admin, namespace, case.spec(), "Strict")
        return
    with pytest.raises(ApiException) as refused:
        create(admin, namespace, case.spec(), "Strict")
    status = json.loads(refused.value.body)
    assert refused.value.status == 422, status
    assert status["reason"] == "Invalid"
    fields = [cause["field"] for cause in status["details"]["causes"]]
    assert fields == [REFUSED_BY_THE_SCHEMA[case.what]], status


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
