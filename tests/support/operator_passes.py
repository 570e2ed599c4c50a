"""How a test knows that the operator has looked at a rollout: its passes, from its own /metrics.

`modelrollout_rollout_passes_total{namespace, name}` counts the completed passes over each rollout. A
test that must see that "nothing more happens" (a restarted operator does no harm, a failed rollout
stays put) waits until the operator has done more passes over the rollout than before, then checks:
a fixed sleep would only hope the operator had looked, and on a loaded machine it may not have.
"""

from __future__ import annotations

import socket
import time
import urllib.request

from tests.support.deadline import Deadline
from tests.support.operator_process import OperatorProcess


def serving_metrics() -> list[str]:
    """Flags that give an operator its own /metrics on a free loopback port (the fixtures turn it off)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return ["--metrics-host", "127.0.0.1", "--metrics-port", str(port)]


def passes(metrics_url: str) -> dict[str, int] | None:
    """Each rollout's completed passes in the running operator process, by name, from its /metrics
    (`modelrollout_rollout_passes_total`); None: not serving (yet), or not running. A process's
    counters start at zero, so after a restart they tell what the new process did."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    seen: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("modelrollout_rollout_passes_total{"):
            name = line.split('name="', 1)[1].split('"', 1)[0]
            seen[name] = int(float(line.split()[-1]))
    return seen


def metrics_url(operator: OperatorProcess) -> str:
    """Where an operator started with `serving_metrics()` serves them (the last --metrics-port wins)."""
    flags = operator.extra_args
    port = flags[max(at for at, flag in enumerate(flags) if flag == "--metrics-port") + 1]
    return f"http://127.0.0.1:{port}/metrics"


def wait_for_passes(metrics: str, names: dict[str, int], timeout: float = 90.0) -> dict[str, int]:
    """Wait until the operator serving `metrics` has completed more passes over each rollout than
    `names` gives ({name: 0}: at least one); returns the counts. This is how a test knows the
    operator has looked again, where a fixed sleep would only hope so."""
    found: dict[str, int] = {}

    def done() -> bool:
        nonlocal found
        found = passes(metrics) or {}
        return all(found.get(name, 0) > before for name, before in names.items())

    wanted = ", ".join(f"{name} (more than {before})" for name, before in names.items())
    deadline = Deadline(timeout)
    while not done():
        if deadline.expired():
            raise AssertionError(
                f"timed out after {deadline.describe()} waiting for the operator's passes over {wanted}; seen: {found}"
            )
        time.sleep(0.1)
    return found
