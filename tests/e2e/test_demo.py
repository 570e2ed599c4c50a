"""`./dev demo`, the README's first command, as a newcomer runs it: the story runs as told, on the
real control plane when KUBEBUILDER_ASSETS names one (else on the emulator, saying so), and a run
that went as told leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.prometheus import prometheus_binary


def test_the_demo_runs_as_told_and_leaves_no_folder_behind(tmp_path: Path) -> None:
    prometheus_binary()  # skip (or fail, when required) without Prometheus
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1"}
    demo = subprocess.run(
        [sys.executable, "-m", "modelrollout.cli", "demo"], capture_output=True, text=True, env=env, timeout=600
    )
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-2000:]
    said = " ".join(demo.stdout.split())
    assert "The story ran as told." in said, said[-2000:]
    where = "real control plane" if os.environ.get("KUBEBUILDER_ASSETS") else "emulated API"
    assert where in said, said[:600]
    assert not list(scratch.glob("modelrollout-demo-*")), sorted(p.name for p in scratch.iterdir())
