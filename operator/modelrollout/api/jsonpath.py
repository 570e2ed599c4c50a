"""JSONPath expressions of web metrics: parsed once with jsonpath-ng, refused with the parser's reason."""

from __future__ import annotations

import functools
from typing import Any

from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext.parser import parse


@functools.lru_cache(maxsize=1024)
def compile_path(expression: str) -> Any:
    """The parsed expression (jsonpath-ng's extended syntax: filters, arithmetic); ValueError if it does not parse.

    Argo Rollouts writes JSONPath in braces (`{$.data.value}`, the kubectl style): those are accepted too."""
    text = expression.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if not text:
        raise ValueError("jsonPath is empty; e.g. $.data.value")
    try:
        return parse(text)
    except (JsonPathLexerError, JsonPathParserError, Exception) as error:  # the parser raises plain Exception too
        raise ValueError(f"jsonPath {expression!r} does not parse: {error}") from None
