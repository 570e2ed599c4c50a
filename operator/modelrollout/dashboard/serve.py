"""`modelrollout dashboard`: serve the dashboard with uvicorn until Ctrl-C, as the kubeconfig's identity."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import socket
import sys

import uvicorn

from modelrollout.client_errors import EXIT_USAGE
from modelrollout.dashboard.app import build_app
from modelrollout.dashboard.store import RolloutStore
from modelrollout.kube.api import KubeApi

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def allowed_hosts(address: str) -> list[str]:
    """The Host headers to accept: on loopback only the loopback names; else any (the address was chosen)."""
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = address == "localhost"
    return LOOPBACK_NAMES if loopback else ["*"]


def _url(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/"


def listen(address: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a taken port is one clear line (and port 0 finds a free one)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((address, port))
    except OSError as error:
        listener.close()
        raise DashboardError(f"cannot listen on {address}:{port}: {error.strerror or error}") from None
    listener.listen(128)
    listener.setblocking(False)
    return listener


class DashboardError(Exception):
    """An ordinary reason the dashboard cannot start, said in one line."""


async def serve_dashboard(args: argparse.Namespace) -> int:
    try:
        listener = listen(args.address, args.port)
    except DashboardError as error:
        print(f"modelrollout dashboard: {error}", file=sys.stderr)
        return EXIT_USAGE
    api = await KubeApi.connect(args.kubeconfig, args.context)
    store = RolloutStore(api, args.namespace)
    app = build_app(api, store, read_only=args.read_only, allowed_hosts=allowed_hosts(args.address))
    # Open pages hold their event streams forever: Ctrl-C must not wait for them.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2))
    watching = asyncio.create_task(store.run())
    try:
        mode = " (read-only)" if args.read_only else ""
        url = _url(args.address, listener.getsockname()[1])
        print(f"dashboard{mode} at {url} (Ctrl-C stops it)", flush=True)
        await server.serve(sockets=[listener])
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await api.close()
    return 0
