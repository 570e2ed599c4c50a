"""docs/bad-input.md shows the messages the operator really gives (regenerate with
`python -m tests.docs.bad_input_cases`)."""

from __future__ import annotations

import pytest

from tests.docs.bad_input_cases import (
    DOC,
    ROUTE_CASES,
    SPEC_CASES,
    SpecCase,
    generated_part,
    refused_by_the_server,
    render_tables,
)


def test_the_page_matches_the_code() -> None:
    assert generated_part(DOC.read_text()) == render_tables(), (
        "docs/bad-input.md is stale: paste the output of `python -m tests.docs.bad_input_cases` between its markers"
    )


@pytest.mark.parametrize("case", SPEC_CASES, ids=lambda case: case.what)
def test_each_spec_case_names_a_field(case: SpecCase) -> None:
    messages = case.messages()
    assert len(messages) == 1, f"{case.what}: more than one thing is wrong: {messages}"
    assert messages[0].startswith("spec."), messages[0]


@pytest.mark.parametrize("case", refused_by_the_server(), ids=lambda case: case.what)
def test_a_refused_case_names_the_same_field_for_the_server_and_the_operator(case: SpecCase) -> None:
    # The server's words are checked on a real API server (tests/realapi/test_bad_input.py); here,
    # that the table's two messages are about one field.
    assert case.server is not None
    server_field = case.server.split(": ", 1)[0]
    assert case.messages()[0].split(": ", 1)[0] == server_field


def test_the_bounds_of_the_issue_are_refused_by_the_server() -> None:
    refused = {case.change for case in refused_by_the_server()}
    assert {"`setWeight: 150`", "`replicas: -2`"} <= refused


def test_route_messages_name_the_object() -> None:
    for case in ROUTE_CASES:
        message = case.message()
        assert "ml/fraud-scorer" in message, message
