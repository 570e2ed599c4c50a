"""``modelrollout sandbox up|down|status``: the whole delivery loop on one machine, on loopback.

Wired into ``modelrollout.cli`` by :func:`add_sandbox_commands`; each sub-command stores its handler in
``args.sandbox_handler``. Heavy imports (the emulator, aiohttp) wait until a command runs, so that the
rest of the CLI starts as fast as before.

Exit codes of ``up``: 0 ready, 1 failed to start, 2 a port is taken, 3 Prometheus is missing, 4 a
sandbox already runs from that directory. In every failure nothing is left running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelrollout_devkit.sandbox.arguments import add_up_arguments

if TYPE_CHECKING:
    from modelrollout_devkit.sandbox.supervisor import Sandbox

UP_TIMEOUT_S = 180.0
DOWN_TIMEOUT_S = 30.0


def add_sandbox_commands(subparsers: Any) -> None:
    """Add ``sandbox up|down|status`` to the CLI's sub-parsers (``argparse._SubParsersAction``)."""
    sandbox = subparsers.add_parser(
        "sandbox", help="run the operator, an API server, model servers, a data plane and Prometheus locally"
    )
    commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    up = commands.add_parser("up", help="start the sandbox (returns once it is ready)")
    add_up_arguments(up)
    up.add_argument("--foreground", action="store_true", help="stay in the foreground until Ctrl-C")
    up.add_argument("--timeout", type=float, default=UP_TIMEOUT_S, help="seconds to wait for readiness")
    up.set_defaults(sandbox_handler=sandbox_up)
    down = commands.add_parser("down", help="stop everything the sandbox started")
    down.add_argument("--dir", type=Path, default=Path(".sandbox"))
    down.set_defaults(sandbox_handler=sandbox_down)
    status = commands.add_parser("status", help="show what the sandbox runs")
    status.add_argument("--dir", type=Path, default=Path(".sandbox"))
    status.add_argument("-o", "--output", choices=["text", "json"], default="text")
    status.set_defaults(sandbox_handler=sandbox_status)


def _err(message: str) -> None:
    print(f"modelrollout sandbox: {message}", file=sys.stderr)


def summary(state: dict[str, Any]) -> str:
    """What a person needs once the sandbox is up."""
    directory = state.get("dir", "")
    lines = [f"sandbox ready in {state.get('ready_after_s') or 0:.1f}s (dir {directory})"]
    api = state.get("api_url") or "(from --kubeconfig)"
    if state.get("emulated"):
        kind = " (emulator)"
    elif state.get("control_plane"):
        kind = " (real control plane: kube-apiserver, controller manager, scheduler; kubelet simulated)"
    else:
        kind = ""
    lines.append(f"  API server   {api}{kind}")
    lines.append(f"  data plane   {state.get('dataplane_url')}/<namespace>/<service>/<path>")
    lines.append(f"               stats: {state.get('dataplane_url')}/_dataplane/stats")
    lines.append(f"  Prometheus   {state.get('prometheus_url')}")
    operator = state.get("operator")
    if operator:
        lines.append(f"  operator     pid {operator['pid']}, metrics {operator['metrics_url']}, log {operator['log']}")
        if state.get("operator_identity", "").startswith("service-account"):
            lines.append(f"               as {state['operator_identity']} (the Helm chart's permissions)")
    else:
        lines.append("  operator     not started (--no-operator)")
    dashboard = f"modelrollout dashboard --kubeconfig {state.get('kubeconfig')}"
    lines.append(f"  dashboard    http://127.0.0.1:8765/ once you run: {dashboard}")
    lines.append(f"  logs         {directory}/logs")
    lines.append(f"stop it with: modelrollout sandbox down --dir {directory}")
    lines.append(f"export KUBECONFIG={state.get('kubeconfig')}")
    return "\n".join(lines)


def emulator_notice(config: Any) -> str | None:
    """The one line that says the emulator stands in for a real control plane, and how to get one."""
    from modelrollout_devkit.sandbox.control_plane import HOW_TO_GET_BINARIES

    if config.kubeconfig is not None or config.emulator or config.assets() is not None:
        return None
    return f"no control-plane binaries found: using the built-in API emulator; for a real one, {HOW_TO_GET_BINARIES}"


def sandbox_up(args: argparse.Namespace) -> int:
    from modelrollout_devkit.sandbox.supervisor import SandboxError, config_from_args, preflight

    config = config_from_args(args)
    try:
        preflight(config)
    except SandboxError as error:
        _err(str(error))
        return error.exit_code
    notice = emulator_notice(config)
    if notice:
        _err(notice)
    if args.foreground:
        return _up_foreground(config)
    return _up_daemon(config, args.timeout)


def _up_foreground(config: Any) -> int:
    import asyncio
    import logging

    from modelrollout_devkit.sandbox.supervisor import quiet_access_logs, supervise

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_access_logs()

    def ready(sandbox: Sandbox) -> None:
        print(summary(sandbox.state("ready")), flush=True)
        print("Ctrl-C stops it.", flush=True)

    code = asyncio.run(supervise(config, daemon=False, on_ready=ready))
    if code:
        failure = _read_failure(config.dir)
        _err(failure.get("error", "the sandbox failed to start"))
    return code


def _read_failure(directory: Path) -> dict[str, Any]:
    try:
        failure: dict[str, Any] = json.loads((directory / "failure.json").read_text())
    except (OSError, ValueError):
        return {}
    return failure


def _up_daemon(config: Any, timeout: float) -> int:
    from modelrollout_devkit.sandbox.supervisor import EXIT_FAILED, read_state

    directory: Path = config.dir
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        (directory / "failure.json").unlink()
    log_path = directory / "logs" / "supervisor.log"
    with log_path.open("ab") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "modelrollout_devkit.sandbox.supervisor", *config.to_argv()],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            # Its own session: it outlives this command and the terminal's Ctrl-C.
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            code = supervisor.poll()
            if code is not None:
                failure = _read_failure(directory)
                _err(failure.get("error") or f"the supervisor exited with {code}; see {log_path}")
                return int(failure.get("exit_code") or code or EXIT_FAILED)
            state = read_state(directory)
            if state and (state.get("supervisor") or {}).get("pid") == supervisor.pid and state["status"] == "ready":
                print(summary(state))
                return 0
            time.sleep(0.1)
    except KeyboardInterrupt:
        _err("interrupted: stopping the sandbox")
        _stop_supervisor(supervisor)
        return EXIT_FAILED
    _err(f"the sandbox was not ready after {timeout:g}s; stopping it (log: {log_path})")
    _stop_supervisor(supervisor)
    return EXIT_FAILED


def _stop_supervisor(supervisor: subprocess.Popen[bytes]) -> None:
    supervisor.terminate()
    try:
        supervisor.wait(DOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        supervisor.kill()  # its children get SIGTERM from the kernel (PR_SET_PDEATHSIG)
        supervisor.wait(10)


def _recorded(state: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every process the state file names, supervisor first."""
    found: list[tuple[str, dict[str, Any]]] = []
    for role in ("supervisor", "operator", "prometheus"):
        entry = state.get(role)
        if entry:
            found.append((role, entry))
    found += [(str(c.get("name")), c) for c in state.get("control_plane") or [] if c.get("pid")]
    found += [(f"pod {p['namespace']}/{p['name']}", p) for p in state.get("pods") or [] if p.get("pid")]
    return found


def sandbox_down(args: argparse.Namespace) -> int:
    from modelrollout_devkit.sandbox import procs
    from modelrollout_devkit.sandbox.supervisor import STATE_FILE, read_state, recorded_process_alive

    directory: Path = args.dir.resolve()
    state = read_state(directory)
    if state is None:
        print(f"no sandbox running from {directory}")
        return 0
    supervisor = state.get("supervisor") or {}
    if recorded_process_alive(supervisor):
        # The supervisor stops its children in order (operator first) and exits.
        os.kill(int(supervisor["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + DOWN_TIMEOUT_S
        while recorded_process_alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.1)
        if recorded_process_alive(supervisor):
            _err(f"the supervisor (pid {supervisor['pid']}) did not stop in {DOWN_TIMEOUT_S:g}s: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(supervisor["pid"]), signal.SIGKILL)
    # Anything it recorded and left behind (it was killed, say): only those exact processes.
    time.sleep(0.2)
    leftovers = [(role, entry) for role, entry in _recorded(state) if recorded_process_alive(entry)]
    for role, entry in leftovers:
        _err(f"stopping leftover {role} (pid {entry['pid']})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(entry["pid"]), signal.SIGKILL)
    for _role, entry in leftovers:
        deadline = time.monotonic() + 5
        while procs.pid_alive(int(entry["pid"])) and time.monotonic() < deadline:
            time.sleep(0.05)
    with contextlib.suppress(OSError):
        (directory / STATE_FILE).unlink()
    print(f"sandbox in {directory} stopped")
    return 0


def sandbox_status(args: argparse.Namespace) -> int:
    from modelrollout_devkit.sandbox.supervisor import read_state, recorded_process_alive

    directory: Path = args.dir.resolve()
    state = read_state(directory)
    running = state is not None and recorded_process_alive(state.get("supervisor"))
    if args.output == "json":
        print(json.dumps({"running": running, **(state or {})}, indent=2))
        return 0 if running else 1
    if state is None or not running:
        print(f"no sandbox running from {directory}")
        return 1
    print(f"sandbox {state['status']} (dir {directory}, supervisor pid {state['supervisor']['pid']})")
    for role, entry in _recorded(state)[1:]:
        if role.startswith("pod "):
            continue
        alive = "running" if recorded_process_alive(entry) else "NOT RUNNING"
        print(f"  {role:<12} pid {entry['pid']:<8} {alive}")
    print(f"  API server   {state.get('api_url') or '(from --kubeconfig)'}")
    print(f"  data plane   {state.get('dataplane_url')}")
    print(f"  Prometheus   {state.get('prometheus_url')}")
    pods = state.get("pods") or []
    print(f"  pods         {len(pods)}")
    for pod in sorted(pods, key=lambda p: (p["namespace"], p["name"])):
        ready = "ready" if pod["ready"] else "not ready"
        print(
            f"    {pod['namespace']}/{pod['name']:<40} v{pod['version']:<12} {pod['address']:<16} "
            f"{ready:<9} {pod['state']:<11} restarts {pod['restarts']}"
        )
    print(f"export KUBECONFIG={state.get('kubeconfig')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m modelrollout_devkit.sandbox.cli up|down|status ...``: the same as ``modelrollout sandbox ...``."""
    parser = argparse.ArgumentParser(prog="python -m modelrollout_devkit.sandbox.cli")
    add_sandbox_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sandbox", *(sys.argv[1:] if argv is None else argv)])
    return int(args.sandbox_handler(args))


if __name__ == "__main__":
    sys.exit(main())
