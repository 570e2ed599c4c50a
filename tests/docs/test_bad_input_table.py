"""docs/bad-input.md shows the messages the operator really gives (regenerate with
`python -m tests.docs.bad_input_cases`)."""

from __future__ import annotations

import pytest

from tests.docs.bad_input_cases import DOC, ROUTE_CASES, SPEC_CASES, SpecCase, generated_part, render_tables


def test_the_page_matches_the_code() -> None:
    assert generated_part(DOC.read_text()) == render_tables(), (
        "docs/bad-input.md is stale: paste the output of `python -m tests.docs.bad_input_cases` between its markers"
    )


@pytest.mark.parametrize("case", SPEC_CASES, ids=lambda case: case.what)
def test_each_spec_case_names_a_field(case: SpecCase) -> None:
    messages = case.messages()
    assert len(messages) == 1, f"{case.what}: more than one thing is wrong: {messages}"
    assert messages[0].startswith("spec."), messages[0]


def test_route_messages_name_the_object() -> None:
    for case in ROUTE_CASES:
        message = case.message()
        assert "ml/fraud-scorer" in message, message
