"""Every shell block of docs/getting-started.md and docs/sandbox.md, run in order as a reader types them,
in a fresh clone of this checkout's HEAD, on the real control plane (see tests/docs/shell_blocks.py
for how a block is read and the few markers that change how it runs).

The clone shares this checkout's `.venv` (a symlink, with the clone's pyproject files dated back so
`./dev` does not install again): the point is what the docs tell a reader to type, PATH included,
not a second install. PATH is cleared of any virtualenv, so a command the docs never put on PATH
fails here as it would for the reader.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.shell_blocks import blocks, script

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["docs/getting-started.md", "docs/sandbox.md"]
SANDBOX_PORTS = (8000, 9090)  # the sandbox's defaults, which the docs use literally

pytestmark = pytest.mark.timeout(2400)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _reader_environment(scratch: Path) -> dict[str, str]:
    path = [entry for entry in os.environ.get("PATH", "").split(os.pathsep) if "/.venv/" not in f"{entry}/"]
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "KUBECONFIG", "PYTHONPATH")}
    return {**env, "PATH": os.pathsep.join(path), "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not os.environ.get("KUBEBUILDER_ASSETS"):
        pytest.skip("the docs' sandbox runs on the real control plane: set KUBEBUILDER_ASSETS")
    missing = [tool for tool in ("git", "kubectl", "curl", "prometheus", "etcd") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("this checkout has no .venv made by ./dev to share with the clone")
    taken = [port for port in SANDBOX_PORTS if not _port_free(port)]
    if taken:
        pytest.skip(f"port(s) {taken} taken (another sandbox?): the docs use the sandbox's default ports")
    base = tmp_path_factory.mktemp("docs")
    target = base / "modelrollout"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True)
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(target)], check=True)
    subprocess.run(["git", "checkout", "-q", head.stdout.strip()], cwd=target, check=True)
    (target / ".venv").symlink_to(ROOT / ".venv")
    for project in ("pyproject.toml", "sdk/pyproject.toml", "devkit/pyproject.toml"):
        os.utime(target / project, (0, 0))  # older than the shared .venv's install
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (base / "shared").symlink_to(shared)  # what `../shared/envtest/unpack` names on this machine
    yield target


def _run(clone: Path, doc: str, log: Path) -> subprocess.CompletedProcess[str]:
    scratch = clone.parent / "tmp"
    scratch.mkdir(exist_ok=True)
    text = script(blocks(clone / doc, doc))
    # Whatever the docs left running goes when the script ends: their background jobs, their sandbox.
    cleanup = (
        "trap 'set +e; jobs -p | xargs -r kill 2>/dev/null; .venv/bin/modelrollout sandbox down >/dev/null 2>&1' EXIT\n"
    )
    (log.parent / f"{Path(doc).stem}.sh").write_text(cleanup + text)
    with log.open("w") as output:
        process = subprocess.Popen(
            ["bash", "-c", cleanup + text],
            cwd=clone,
            env=_reader_environment(scratch),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=1800)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            code = process.wait(timeout=60)
        finally:
            subprocess.run(
                [str(ROOT / ".venv/bin/modelrollout"), "sandbox", "down", "--dir", str(clone / ".sandbox")],
                capture_output=True,
                timeout=120,
            )
    return subprocess.CompletedProcess(process.args, code, log.read_text(errors="replace"), "")


@pytest.mark.parametrize("doc", DOCS)
def test_the_docs_shell_blocks_run_as_written(clone: Path, doc: str, tmp_path: Path) -> None:
    found = blocks(clone / doc, doc)
    assert [block for block in found if block.how != "skip"], f"{doc} has no shell block that runs"
    assert all(block.why for block in found if block.how != "run"), "every marker says why"
    ran = _run(clone, doc, tmp_path / "output.log")
    assert ran.returncode == 0, f"{doc}: exit {ran.returncode} (script in {tmp_path}); the end:\n{ran.stdout[-6000:]}"
    left = sorted(path.name for path in (clone.parent / "tmp").glob("modelrollout-demo-*"))
    assert not left, f"the demo left {left} behind"


SAMPLE = """# Doc

## Kind

<!-- docs-test: skip-section: needs Docker -->

```bash
kind create cluster
```

## Sandbox

```console
$ modelrollout sandbox up \\
    --dir .sandbox
sandbox ready
$ export KUBECONFIG=.sandbox/kubeconfig
```

<!-- docs-test: fails: it is refused -->
```console
$ kubectl create -f bad.yaml
Error from server (BadRequest): strict decoding error: unknown field "spec.replica"
```

```yaml
not: shell
```
"""


def test_blocks_are_read_as_a_reader_types_them(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(SAMPLE)
    found = blocks(doc, "doc.md")
    assert [(block.how, block.commands) for block in found] == [
        ("skip", "kind create cluster"),
        ("run", "modelrollout sandbox up \\\n    --dir .sandbox\nexport KUBECONFIG=.sandbox/kubeconfig"),
        ("fails", "kubectl create -f bad.yaml"),
    ]
    assert found[0].why == "needs Docker" and found[2].says == 'unknown field "spec.replica"'
    text = script(found)
    assert "kind create" not in text and "sandbox ready" not in text
