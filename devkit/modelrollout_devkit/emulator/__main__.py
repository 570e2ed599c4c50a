"""``python -m modelrollout_devkit.emulator``: run the emulator as a process until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import signal
import sys

from modelrollout_devkit.emulator.server import CONTEXT_NAME, EmulatorServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m modelrollout_devkit.emulator",
        description="A strict in-memory Kubernetes API server for tests and sandboxes.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--kubeconfig", type=pathlib.Path, help=f"write a kubeconfig (context {CONTEXT_NAME!r})")
    parser.add_argument("--url-file", type=pathlib.Path, help="also write the server URL into this file")
    parser.add_argument(
        "--crd",
        action="append",
        default=[],
        type=pathlib.Path,
        metavar="FILE",
        help="YAML manifests to create at start-up (CRDs first); repeatable",
    )
    parser.add_argument(
        "--event-window",
        type=int,
        default=10_000,
        help="watch events retained per resource; older resourceVersions get 410 Gone",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    async with EmulatorServer(host=args.host, port=args.port, crds=args.crd, event_window=args.event_window) as server:
        if args.kubeconfig is not None:
            server.write_kubeconfig(args.kubeconfig)
        if args.url_file is not None:
            args.url_file.write_text(server.url + "\n")
        # The URL line is the readiness signal for a parent process reading our stdout.
        print(server.url, flush=True)
        await stopping.wait()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
