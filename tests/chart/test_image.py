"""The Dockerfile agrees with the chart and pins what CI tested (it cannot be built here: no Docker)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import yaml

from tests.chart.conftest import CHART, ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _stage(name: str) -> str:
    match = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S)
    assert match, f"no stage {name} in the Dockerfile"
    return match.group(1)


def test_image_user_is_the_chart_uid() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid, gid = values["securityContext"]["runAsUser"], values["securityContext"]["runAsGroup"]
    assert f"--uid {uid} --gid {gid}" in DOCKERFILE
    assert f"USER {uid}:{gid}" in _stage("runtime")


def test_operator_is_the_default_target_and_runs_modelrollout() -> None:
    stages = re.findall(r"^FROM \S+ AS (\S+)", DOCKERFILE, re.M)
    assert stages[-1] == "operator"
    operator = _stage("operator")
    assert 'ENTRYPOINT ["modelrollout"]' in operator
    assert 'CMD ["run"]' in operator
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE, re.M)


def test_model_server_target_runs_the_reference_server() -> None:
    stage = _stage("model-server")
    entrypoint = re.search(r"^ENTRYPOINT (.*)$", stage, re.M)
    server = ["python", "-m", "modelrollout_devkit.sandbox.model_server"]
    assert entrypoint and json.loads(entrypoint.group(1)) == server
    assert "HOST=0.0.0.0" in stage
    # The reference server comes with the dev kit, which this image (and only this one) adds.
    assert "/devkit-wheels/*.whl" in stage


def test_operator_image_holds_the_operator_and_the_sdk_only() -> None:
    wheels = re.search(r"pip wheel --no-deps --wheel-dir /wheels (.*?)\s*(?:\\|&&|$)", _stage("build"), re.M)
    assert wheels and wheels.group(1).split() == [".", "./sdk"]
    for stage in ("runtime", "operator"):
        assert "devkit" not in _stage(stage)


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    """.dockerignore admits only what it names: every COPY source must be among them."""
    admitted = {
        line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    copied = {
        source.rstrip("*").rstrip("/")
        for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE, re.M)
        for source in line.split()[:-1]
    }
    assert copied and copied <= admitted, copied - admitted


def test_runtime_writes_nothing_outside_tmp() -> None:
    runtime = _stage("runtime")
    assert "PYTHONDONTWRITEBYTECODE=1" in runtime
    assert "HOME=/tmp" in runtime


def test_image_constraints_pin_the_tested_versions() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "lock_image_deps.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--constraint /tmp/constraints.txt" in DOCKERFILE
