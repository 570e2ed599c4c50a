"""The dev kit's commands of the ``modelrollout`` CLI, found through the ``modelrollout.commands`` entry points.

Each entry point is a :data:`modelrollout.cli.AddCommand`: given the CLI's sub-parsers, it adds its
command's parser and returns the function that runs the parsed command. ``modelrollout.cli`` loads one
only when its command is called, so nothing here (nor the emulator, kmock or scikit-learn behind it) is
imported by ``modelrollout run``.
"""

from __future__ import annotations

import argparse
from typing import Any

from modelrollout.cli import CommandHandler


def sandbox(subparsers: Any) -> CommandHandler:
    """``modelrollout sandbox up|down|status``."""
    from modelrollout_devkit.sandbox.cli import add_sandbox_commands

    add_sandbox_commands(subparsers)

    def run(args: argparse.Namespace) -> int:
        # Each of up/down/status stores its own function (see add_sandbox_commands).
        return int(args.sandbox_handler(args))

    return run


def demo(subparsers: Any) -> CommandHandler:
    """``modelrollout demo``: its module imports rich and the sandbox, hence the import here."""
    from modelrollout_devkit.sandbox.demo import add_demo_command, run_demo

    add_demo_command(subparsers)
    return run_demo
