"""`modelrollout run`'s options: from flags or MODELROLLOUT_* variables, each checked, with a clear error."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from modelrollout.cli import build_parser
from modelrollout.settings import OperatorOptions

# Every option of `run` that has an environment variable, with the OperatorOptions field it sets.
OPTIONS = {
    "--prometheus-url": "prometheus_url",
    "--prometheus-timeout": "prometheus_timeout",
    "--prometheus-batch-seconds": "prometheus_batch_seconds",
    "--log-format": "log_format",
    "--peering": "peering",
    "--peering-lifetime": "peering_lifetime",
    "--resync-seconds": "resync_seconds",
    "--quiet-write-seconds": "quiet_write_seconds",
    "--api-answer-target-seconds": "api_answer_target_seconds",
    "--metrics-port": "metrics_port",
    "--metrics-host": "metrics_host",
    "--health-endpoint": "liveness_endpoint",
}


def variable(flag: str) -> str:
    return "MODELROLLOUT_" + flag.lstrip("-").replace("-", "_").upper()


@pytest.fixture(autouse=True)
def no_operator_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for flag in OPTIONS:
        monkeypatch.delenv(variable(flag), raising=False)


def parse_run(*argv: str) -> dict[str, object]:
    return vars(build_parser().parse_args(["run", *argv]))


def test_the_defaults_are_the_operator_options_defaults() -> None:
    parsed = parse_run()
    defaults = {field.name: field.default for field in dataclasses.fields(OperatorOptions)}
    for flag, option in OPTIONS.items():
        dest = flag.lstrip("-").replace("-", "_")
        assert parsed[dest] == defaults[option], flag


@pytest.mark.parametrize(
    ("flag", "text", "value", "flag_text", "flag_value"),
    [
        ("--prometheus-timeout", "2.5", 2.5, "1", 1.0),
        ("--prometheus-batch-seconds", "0", 0.0, "0.2", 0.2),
        ("--log-format", "json", "json", "text", "text"),
        ("--peering-lifetime", "15", 15, "30", 30),
        ("--resync-seconds", "30", 30.0, "5", 5.0),
        ("--quiet-write-seconds", "0", 0.0, "120", 120.0),
        ("--api-answer-target-seconds", "1", 1.0, "0.25", 0.25),
        ("--metrics-port", "0", 0, "9090", 9090),
        (
            "--prometheus-url",
            "http://prometheus:9090",
            "http://prometheus:9090",
            "http://other:9090",
            "http://other:9090",
        ),
    ],
)
def test_a_variable_sets_the_option_and_the_flag_wins(
    monkeypatch: pytest.MonkeyPatch, flag: str, text: str, value: object, flag_text: str, flag_value: object
) -> None:
    monkeypatch.setenv(variable(flag), text)
    dest = flag.lstrip("-").replace("-", "_")
    assert parse_run()[dest] == value
    assert parse_run(f"{flag}={flag_text}")[dest] == flag_value


BAD = [
    ("--prometheus-timeout", "abc", "'abc' is not a number of seconds of at least 0.001"),
    ("--prometheus-timeout", "0", "'0' is not a number of seconds of at least 0.001"),
    ("--prometheus-timeout", "nan", "'nan' is not a number of seconds of at least 0.001"),
    ("--prometheus-batch-seconds", "-0.1", "'-0.1' is not a number of seconds, 0 or more"),
    ("--quiet-write-seconds", "inf", "'inf' is not a number of seconds, 0 or more"),
    ("--resync-seconds", "-5", "'-5' is not a number of seconds of at least 0.001"),
    ("--api-answer-target-seconds", "0", "'0' is not a number of seconds of at least 0.001"),
    ("--peering-lifetime", "1.5", "'1.5' is not a whole number of seconds, 1 or more"),
    ("--peering-lifetime", "0", "'0' is not a whole number of seconds, 1 or more"),
    ("--metrics-port", "70000", "'70000' is not a port number from 0 to 65535"),
    ("--metrics-port", "http", "'http' is not a port number from 0 to 65535"),
    ("--log-format", "xml", "'xml' is not one of: text, json"),
]


@pytest.mark.parametrize(("flag", "text", "message"), BAD)
def test_a_bad_variable_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flag: str, text: str, message: str
) -> None:
    monkeypatch.setenv(variable(flag), text)
    with pytest.raises(SystemExit) as exited:
        parse_run()
    assert exited.value.code == 2
    assert f"argument {flag}: {message} (from {flag} or ${variable(flag)})" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "text", "message"), BAD)
def test_a_bad_flag_is_refused_naming_it(
    capsys: pytest.CaptureFixture[str], flag: str, text: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_run(f"{flag}={text}")
    assert exited.value.code == 2
    assert f"argument {flag}: {message}" in capsys.readouterr().err


def test_a_bad_operator_variable_does_not_stop_the_other_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    # It used to: the variables were converted while the parser was built, for every command.
    monkeypatch.setenv("MODELROLLOUT_PROMETHEUS_TIMEOUT", "abc")
    parsed = build_parser().parse_args(["promote", "fraud-scorer", "-n", "ml"])
    assert (parsed.command, parsed.name, parsed.namespace) == ("promote", "fraud-scorer", "ml")


def test_docs_bad_input_lists_what_each_option_allows() -> None:
    table = (Path(__file__).parents[2] / "docs" / "bad-input.md").read_text().split("## The operator's own options")[1]
    rows = {
        flag: allowed
        for line in table.splitlines()
        if line.startswith("| `--")
        for flags, allowed in [line.strip("|").split("|")[:2]]
        for flag in re.findall(r"`(--[a-z-]+)`", flags)
    }
    for flag, text, message in BAD:
        allowed = message.removeprefix(f"{text!r} is not ")
        assert rows.get(flag, "").strip() == f"`{allowed}`", flag
