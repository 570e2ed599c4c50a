"""The sandbox listens on loopback only: every listening socket of every process it starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cluster import REPO
from tests.support.prometheus import prometheus_binary

LISTEN = "0A"
LOOPBACK_V4 = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it (little-endian hex)
LOOPBACK_V6 = "00000000000000000000000001000000"  # ::1


def _children(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    family, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in family:
                family.add(pid)
                frontier.append(pid)
    return family


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _listening() -> dict[str, str]:
    """inode -> local address of every listening TCP socket on the machine."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN:
                found[fields[9]] = fields[1].split(":")[0]
    return found


def test_everything_the_sandbox_starts_listens_on_loopback_only(tmp_path: Path) -> None:
    prometheus_binary()
    if not Path("/proc/net/tcp").exists():
        pytest.skip("reads /proc/net/tcp (Linux)")
    directory = tmp_path / "sandbox"
    up = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelrollout.cli",
            "sandbox",
            "up",
            "--dir",
            str(directory),
            "--dataplane-port",
            "0",
            "--prometheus-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((directory / "state.json").read_text())
        family = _children(int(state["supervisor"]["pid"]))
        assert len(family) >= 3  # the supervisor, the operator, Prometheus (and its pods, if any)
        listening = _listening()
        owned = {inode: listening[inode] for pid in family for inode in _socket_inodes(pid) if inode in listening}
        assert owned, "the sandbox's processes listen on no TCP socket?"
        exposed = {inode: address for inode, address in owned.items() if address not in (LOOPBACK_V4, LOOPBACK_V6)}
        assert exposed == {}, f"sockets not on loopback: {exposed}"
    finally:
        subprocess.run(
            [sys.executable, "-m", "modelrollout.cli", "sandbox", "down", "--dir", str(directory)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
