"""The arguments of ``modelrollout sandbox up``, which the supervisor process parses again.

Apart from :mod:`~modelrollout_devkit.sandbox.cli` so that the supervisor (started as
``python -m modelrollout_devkit.sandbox.supervisor`` with the same flags) and the CLI both import it,
and neither imports the other at load time.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_duration_s(text: str) -> float:
    """``1s``, ``500ms``, ``2`` (seconds)."""
    text = text.strip()
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    if text.endswith("s"):
        return float(text[:-1])
    if text.endswith("m"):
        return float(text[:-1]) * 60
    return float(text)


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=Path(".sandbox"), help="state, logs and data (default .sandbox)")
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="use this API server (with its own controller manager and scheduler, or the emulator) "
        "instead of starting one",
    )
    parser.add_argument(
        "--control-plane",
        type=Path,
        default=None,
        metavar="DIR",
        help="start a real control plane from the binaries in DIR (etcd, kube-apiserver, "
        "kube-controller-manager, kube-scheduler; default: $KUBEBUILDER_ASSETS)",
    )
    parser.add_argument(
        "--emulator",
        action="store_true",
        help="use the built-in API emulator even when control-plane binaries are available",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        metavar="PATTERN",
        help="the namespaces this sandbox owns (repeatable; globs as `modelrollout run --namespace`): its "
        "operator and kubelet act only there (default: all)",
    )
    parser.add_argument("--api-port", type=int, default=0, help="port of the emulated API server (0: any free)")
    parser.add_argument("--dataplane-port", type=int, default=8000, help="port of the data plane (default 8000)")
    parser.add_argument("--prometheus-port", type=int, default=9090, help="port of Prometheus (default 9090)")
    parser.add_argument(
        "--scrape-interval",
        type=parse_duration_s,
        default=1.0,
        metavar="DURATION",
        help="Prometheus scrape interval (default 1s)",
    )
    parser.add_argument(
        "--operator", action=argparse.BooleanOptionalAction, default=True, help="run the operator (default: yes)"
    )
