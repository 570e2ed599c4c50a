"""docs/sharding.md says what the chart and `modelrollout status` really do: its helm commands' values
render, the refusals it quotes are the chart's, its values table has the chart's defaults, and its
Owner rows are the words `status` uses. (Its kubectl commands run on the real API server in
tests/realapi/test_sharding_doc.py.)"""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrollout.sharding.owner import Owner, describe, owner_from_leases
from tests.docs.shell_blocks import blocks

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is needed to render the chart")

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "sharding.md"
CHART = ROOT / "charts" / "modelrollout-operator"
NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fenced(language: str) -> list[str]:
    """The bodies of the document's fenced blocks of this language ("": plain)."""
    found: list[str] = []
    lines = DOC.read_text().splitlines()
    opened: tuple[str, int] | None = None
    for index, line in enumerate(lines):
        if not line.startswith("```"):
            continue
        if opened is None:
            opened = (line[3:].strip(), index)
            continue
        if opened[0] == language:
            found.append("\n".join(lines[opened[1] + 1 : index]))
        opened = None
    return found


def _helm_commands() -> list[list[str]]:
    commands = []
    for block in blocks(DOC):
        for line in block.commands.replace("\\\n", " ").splitlines():
            words = shlex.split(line)
            if words[:1] == ["helm"]:
                commands.append(words)
    return commands


def _set_values(words: list[str], values: dict[str, Any]) -> dict[str, Any]:
    values = {} if "--reuse-values" not in words else dict(values)
    for position, word in enumerate(words):
        if word == "--set":
            key, value = words[position + 1].split("=", 1)
            values[key] = yaml.safe_load(value)
    return values


def test_every_helm_command_renders_the_shards_it_sets() -> None:
    commands = _helm_commands()
    assert [words[1] for words in commands] == ["install", "upgrade"]
    values: dict[str, Any] = {}
    with helm.Chart.load(CHART) as chart:
        for words in commands:
            values = _set_values(words, values)
            namespace = words[words.index("--namespace" if "--namespace" in words else "-n") + 1]
            rendered = chart.render(values, name=words[2], namespace=namespace, is_install=words[1] == "install")
            [deployment] = [
                document
                for path, text in rendered.items()
                if path.endswith(".yaml")
                for document in yaml.safe_load_all(text)
                if document and document.get("kind") == "Deployment"
            ]
            assert deployment["spec"]["replicas"] == values["shards"]
            args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            assert f"--shards={values['shards']}" in args
            assert f"--operator-namespace={namespace}" in args
    assert values == {"shards": 3}


@pytest.mark.parametrize(
    ("values", "starts"),
    [
        ({"shards": 3, "replicaCount": 2}, "shards=3 and replicaCount=2"),
        ({"shards": 2, "leaderElection": {"enabled": True}}, "shards=2 and leaderElection"),
    ],
)
def test_the_refusals_it_quotes_are_the_charts(values: dict[str, Any], starts: str) -> None:
    quoted = [_one_line(body) for body in _fenced("") if body.startswith(starts)]
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmRenderError) as refused:
        chart.render(values, name="modelrollout", namespace="modelrollout-system", is_install=True)
    said = str(refused.value).split("): ", 1)[1]
    assert quoted == [_one_line(said)]


def test_the_values_table_gives_the_charts_defaults() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", DOC.read_text(), flags=re.M))
    assert rows == {
        "shards": str(defaults["shards"]),
        "shardLeaseSeconds": str(defaults["shardLeaseSeconds"]),
        "shardLeaseFlowSchema": str(defaults["shardLeaseFlowSchema"]).lower(),
    }


def _lease(shard: int, shards: int, holder: str | None, renewed_ago: float) -> dict[str, Any]:
    spec: dict[str, Any] = {"leaseDurationSeconds": 30, "renewTime": (NOW - timedelta(seconds=renewed_ago)).isoformat()}
    if holder:
        spec["holderIdentity"] = holder
    return {
        "metadata": {
            "name": f"modelrollout-shard-{shard}",
            "namespace": "modelrollout-system",
            "annotations": {"modelrollout.io/shards": str(shards)},
        },
        "spec": spec,
    }


def test_the_owner_rows_are_the_words_status_uses() -> None:
    table = DOC.read_text().split("| Owner row | what it means |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \|", table, flags=re.M)
    said: list[Owner] = [
        owner_from_leases(0, 2, [_lease(0, 2, "NAME", renewed_ago=72)], "modelrollout-system", NOW),
        owner_from_leases(0, 2, [_lease(0, 2, None, renewed_ago=1)], "modelrollout-system", NOW),
        owner_from_leases(0, 2, [], None, NOW),
        owner_from_leases(0, 2, [_lease(0, 3, "NAME", renewed_ago=1)], "modelrollout-system", NOW),
        Owner(0, 2, problem="owner unknown: cannot list leases (403 Forbidden: leases is forbidden)"),
    ]
    assert len(rows) == len(said)
    for row, owner in zip(rows, said, strict=True):
        shown = row.removesuffix("...)").removesuffix("...")
        assert describe(owner).startswith(shown), (row, describe(owner))
