"""The reference model server's evaluation entry point, as an evaluation Job runs it: a real subprocess
that scores the model MODEL_URI names and writes {"value": accuracy} to its termination log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelrollout_devkit.sandbox.model_server import EXIT_CONFIG


def evaluate(tmp_path: Path, **env: str) -> tuple[int, Path]:
    log = tmp_path / "termination-log"
    done = subprocess.run(
        [sys.executable, "-m", "modelrollout_devkit.sandbox.model_server", "--evaluate"],
        env={**os.environ, "TERMINATION_MESSAGE_PATH": str(log), **env},
        capture_output=True,
        timeout=120,
    )
    return done.returncode, log


@pytest.mark.parametrize(("uri", "low", "high"), [("sandbox://baseline", 0.95, 1.0), ("sandbox://drifted", 0.55, 0.7)])
def test_evaluate_reports_the_accuracy_of_the_model_the_uri_names(
    tmp_path: Path, uri: str, low: float, high: float
) -> None:
    code, log = evaluate(tmp_path, MODEL_URI=uri, MODEL_VERSION="1.1.0")
    assert code == 0
    value = json.loads(log.read_text())["value"]
    assert low <= value <= high


def test_an_unknown_sandbox_model_is_a_configuration_error(tmp_path: Path) -> None:
    code, log = evaluate(tmp_path, MODEL_URI="sandbox://no-such-model")
    assert code == EXIT_CONFIG
    assert not log.exists()
