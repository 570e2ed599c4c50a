"""`modelrollout` (also installed as `kubectl-modelrollout`): run the operator, render the CRD, and
talk to rollouts: list, status, promote, abort, retry, pause, resume, restart, undo.

Other distributions add commands through the `modelrollout.commands` entry points (the dev kit adds
`sandbox` and `demo`). Only the called one is imported: `modelrollout run` loads nothing of them.

Commands from people are written as an annotation, never into `spec`, so a GitOps tool that owns
the manifest sees no drift (`command_client`), and the CLI waits for the operator's answer. `undo`
alone edits spec: going back to an earlier revision is a change of what is asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import socket
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from modelrollout import __version__, command_client
from modelrollout.api.models import ModelRolloutStatus
from modelrollout.client_errors import (
    EXIT_API,
    EXIT_IGNORED,
    EXIT_NO_ANSWER,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    explain,
)
from modelrollout.engine.types import CommandAction
from modelrollout.kube.api import JSON_PATCH, MODELROLLOUTS, ApiError, KubeApi
from modelrollout.settings import OperatorOptions, in_cluster_namespace

#: The entry-point group through which other distributions add commands to the CLI.
COMMAND_ENTRY_POINTS = "modelrollout.commands"
#: Runs a parsed command; its result is the exit code.
CommandHandler = Callable[[argparse.Namespace], int]
#: What a `modelrollout.commands` entry point loads: given the CLI's sub-parsers
#: (`argparse._SubParsersAction`), it adds the parser of the command named like the entry point and
#: returns the function that runs it.
AddCommand = Callable[[Any], CommandHandler]
#: The dev kit's commands, named here only to say how to get them when it is not installed.
DEVKIT_COMMANDS = ("sandbox", "demo")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"MODELROLLOUT_{name}", default)


def _number(kind: Callable[[str], float], low: float, what: str, high: float = math.inf) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return convert


_POSITIVE_SECONDS = _number(float, 1e-3, "a number of seconds of at least 0.001")
_SECONDS_OR_ZERO = _number(float, 0, "a number of seconds, 0 or more")
_POSITIVE_WHOLE_SECONDS = _number(int, 1, "a whole number of seconds, 1 or more")


_PORT = _number(int, 0, "a port number from 0 to 65535", high=65535)
_SHARDS = _number(int, 1, "a whole number from 1 to 64", high=64)
_LEASE_SECONDS = _number(int, 3, "a whole number of seconds, 3 or more")


def _one_of(*choices: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of: {', '.join(choices)}")
        return text

    return convert


def _add_option(
    parser: argparse.ArgumentParser, flag: str, help: str, default: str | None = None, **kwargs: Any
) -> None:
    """A flag whose default comes from MODELROLLOUT_<FLAG>, else `default`.

    Defaults are given as text so that argparse converts and checks an environment variable's
    value as it does the flag's (it does not check `choices` of a default: `_one_of` does)."""
    variable = "MODELROLLOUT_" + flag.lstrip("-").replace("-", "_").upper()
    convert = kwargs.pop("type", None)
    if convert is not None:
        kwargs["type"] = _naming(convert, flag, variable)
    shown = f"default: %(default)s; env {variable}" if default is not None else f"env {variable}"
    parser.add_argument(flag, default=os.environ.get(variable, default), help=f"{help} ({shown})", **kwargs)


def _naming(convert: Callable[[str], Any], flag: str, variable: str) -> Callable[[str], Any]:
    """The converter, with an error that names both places the value can come from."""

    def named(text: str) -> Any:
        try:
            return convert(text)
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentTypeError(f"{error} (from {flag} or ${variable})") from None

    return named


def _add_kube_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)",
    )
    parser.add_argument("--context", default=None, help="kubeconfig context")


def plugin_commands() -> dict[str, EntryPoint]:
    """The installed `modelrollout.commands` entry points by command name (metadata only: nothing is imported)."""
    return {entry.name: entry for entry in entry_points(group=COMMAND_ENTRY_POINTS)}


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; `load` names the one plugin command whose own parser is imported and added.

    Every other plugin command is listed by name only, so that parsing `run` imports none of them."""
    parser = argparse.ArgumentParser(
        prog="modelrollout",
        description="Progressive delivery of machine-learning models on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"modelrollout {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator")
    _add_kube_flags(run)
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="watch only this namespace (repeatable; env MODELROLLOUT_NAMESPACES, comma-separated); default: all",
    )
    _add_option(run, "--prometheus-url", "default Prometheus base URL")
    _add_option(run, "--prometheus-timeout", "seconds per query", "10", type=_POSITIVE_SECONDS)
    _add_option(
        run,
        "--prometheus-batch-seconds",
        "how long a query may wait for others to the same Prometheus, to go as one request (0: each alone)",
        "0.05",
        type=_SECONDS_OR_ZERO,
    )
    _add_option(run, "--log-format", "log format: text or json", "text", type=_one_of("text", "json"))
    run.add_argument("--verbose", action="store_true", help="debug logging")
    _add_option(run, "--peering", "kopf peering name: run several replicas, one active")
    _add_option(
        run,
        "--peering-lifetime",
        "seconds a replica's peering keep-alive stays valid: a standby takes over within about this long "
        "after the active replica dies (kopf's default 60)",
        "60",
        type=_POSITIVE_WHOLE_SECONDS,
    )
    _add_option(
        run,
        "--shards",
        "split the rollouts into this many shards, each held by one replica through a Lease in "
        "--operator-namespace (1: unsharded; see docs/sharding.md)",
        "1",
        type=_SHARDS,
    )
    _add_option(run, "--shard-identity", "this replica's name in the shard Leases (default: the host name)")
    _add_option(
        run,
        "--shard-lease-prefix",
        "the shard Leases are <prefix>-shard-<k>: one prefix per operator installation",
        "modelrollout",
    )
    _add_option(
        run,
        "--shard-lease-seconds",
        "how long a shard Lease lasts unrenewed: a dead replica's shard is taken over within about this long",
        "30",
        type=_LEASE_SECONDS,
    )
    _add_option(run, "--resync-seconds", "look at every rollout at least this often", "60", type=_POSITIVE_SECONDS)
    _add_option(
        run,
        "--quiet-write-seconds",
        "how long a background measurement that changes no verdict may wait to be written to status, "
        "with the next change (0: write each at once)",
        "60",
        type=_SECONDS_OR_ZERO,
    )
    _add_option(
        run,
        "--api-answer-target-seconds",
        "how soon the API server should answer nine of the operator's requests in ten: while it does, "
        "up to 88 passes run at once, while it does not, 64, and while it says it is overloaded, down to 16",
        "0.25",
        type=_POSITIVE_SECONDS,
    )
    _add_option(
        run,
        "--operator-namespace",
        "the operator's own namespace, where the ConfigMap and Secret modelrollout-notifications hold "
        "operator-wide notification destinations (default: the pod's namespace in a cluster; none: off)",
    )
    _add_option(run, "--metrics-port", "port of the operator's /metrics (0: off)", "8080", type=_PORT)
    _add_option(run, "--metrics-host", "address of the operator's /metrics", "0.0.0.0")
    _add_option(run, "--health-endpoint", "kopf liveness endpoint ('' to disable)", "http://0.0.0.0:8081/healthz")

    crd = commands.add_parser("crd", help="render the CRD from the API models")
    crd.add_argument("--output", type=Path, default=None, help="write the files into this directory (default: print)")
    crd.add_argument(
        "--check", type=Path, default=None, metavar="DIR", help="exit 1 if DIR's CRDs differ from the models"
    )

    status = commands.add_parser("status", help="show a rollout: steps, weights, last measurements")
    _add_target(status)
    status.add_argument("--watch", "-w", action="store_true", help="follow live")
    status.add_argument("-o", "--output", choices=["table", "json"], default="table")
    _add_option(
        status,
        "--operator-namespace",
        "where the operator's shard Leases are, to find which replica owns a sharded rollout "
        "(default: every namespace)",
    )

    for action, text in COMMANDS.items():
        sub = commands.add_parser(action, help=text)
        _add_target(sub)
        if action == "promote":
            sub.add_argument("--full", action="store_true", help="skip the remaining steps and promote")
        sub.add_argument(
            "--wait-seconds",
            type=_POSITIVE_SECONDS,
            default=30.0,
            help="how long to wait for the operator's answer (default: 30)",
        )
        sub.add_argument(
            "--no-wait", action="store_true", help="only send the command; do not wait for the operator's answer"
        )

    undo = commands.add_parser(
        "undo", help="ask for the previous stable revision again (edits spec: a GitOps tool will revert it)"
    )
    _add_target(undo)

    listing = commands.add_parser("list", help="every rollout: phase, versions, traffic, step, age")
    listing.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    listing.add_argument("-A", "--all-namespaces", action="store_true", help="rollouts of every namespace")
    _add_kube_flags(listing)
    dashboard = commands.add_parser("dashboard", help="a live web page of the rollouts, as your kubeconfig identity")
    _add_kube_flags(dashboard)
    dashboard.add_argument(
        "-n", "--namespace", action="append", default=None, help="show only this namespace (repeatable); default: all"
    )
    dashboard.add_argument("--address", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback)")
    dashboard.add_argument("--port", type=_PORT, default=8765, help="port to listen on (default: 8765; 0: any free)")
    dashboard.add_argument("--read-only", action="store_true", help="no promote/pause/abort buttons")
    commands.add_parser(
        "comparator",
        help="the shadow comparator the operator deploys as a mirror target (configured from its environment; "
        "see docs/shadow-agreement.md)",
    )
    _add_plugin_commands(commands, plugin_commands(), load)
    return parser


#: The commands a person sends to a rollout, answered by the operator in `status.lastCommand`.
COMMANDS = {
    "promote": "go past the current pause or gate (--full: skip every remaining step)",
    "abort": "roll back now",
    "retry": "deliver a rolled-back version again",
    "pause": "hold the rollout where it is",
    "resume": "continue a paused rollout",
    "restart": "replace the stable version's pods, one at a time",
}


def _add_plugin_commands(commands: Any, plugins: Mapping[str, EntryPoint], load: str | None) -> None:
    for name, entry in sorted(plugins.items()):
        if name in commands.choices:
            continue  # a plugin does not replace a command of the operator's own
        if name == load:
            add: AddCommand = entry.load()
            handler = add(commands)
            commands.choices[name].set_defaults(plugin_handler=handler)
        else:
            origin = entry.dist.name if entry.dist is not None else "a plugin"
            commands.add_parser(name, help=f"from {origin}: see `modelrollout {name} --help`")


def _called_command(argv: Sequence[str]) -> str | None:
    """The command's name: the first argument that is no option (the top level has only -h and --version)."""
    return next((argument for argument in argv if not argument.startswith("-")), None)


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="ModelRollout name")
    parser.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    _add_kube_flags(parser)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    called = _called_command(arguments)
    plugins = plugin_commands()
    if called in DEVKIT_COMMANDS and called not in plugins:
        print(
            f"modelrollout {called}: this command comes with the dev kit (modelrollout-devkit), which is not "
            "installed; from a checkout: pip install ./devkit (./dev installs everything)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        parser = build_parser(load=called if called in plugins else None)
    except ImportError as error:
        # Installed, but something it needs is not: one line, not a traceback.
        print(f"modelrollout {called}: cannot load the command: {error}", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(arguments)
    plugin_handler: CommandHandler | None = getattr(args, "plugin_handler", None)
    if plugin_handler is not None:
        return int(plugin_handler(args))
    if args.command == "run":
        return run_operator(args)
    if args.command == "crd":
        return crd_command(args)
    if args.command == "dashboard":
        from modelrollout.dashboard.serve import serve_dashboard

        return _talk_to_the_api(args, lambda: serve_dashboard(args))
    if args.command == "comparator":
        from modelrollout.comparator.serve import main as comparator_main

        return comparator_main()
    if args.command == "status":
        from modelrollout.status_view import show_status

        return _talk_to_the_api(args, lambda: show_status(args))
    if args.command == "list":
        from modelrollout.status_view import list_rollouts

        return _talk_to_the_api(args, lambda: list_rollouts(args))
    if args.command == "undo":
        return _talk_to_the_api(args, lambda: undo(args))
    return _talk_to_the_api(args, lambda: send_command(args))


def _talk_to_the_api(args: argparse.Namespace, command: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a command that talks to the API server; an ordinary failure is one line and an exit code."""
    if args.kubeconfig and not Path(args.kubeconfig).is_file():
        print(f"modelrollout {args.command}: kubeconfig {args.kubeconfig}: no such file", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(command())
    except Exception as error:
        failure = explain(error, args.kubeconfig)
        if failure is None:
            raise
        print(f"modelrollout {args.command}: {failure.message}", file=sys.stderr)
        return failure.exit_code


def crd_command(args: argparse.Namespace) -> int:
    from modelrollout.api.crd import render_crds, write_crds

    if args.check is not None:
        stale = [
            name
            for name, text in render_crds().items()
            if not (args.check / name).exists() or (args.check / name).read_text() != text
        ]
        if stale:
            print(f"out of date: {', '.join(stale)}; run `modelrollout crd --output {args.check}`", file=sys.stderr)
            return 1
        print("CRDs match the models")
        return 0
    if args.output is not None:
        for path in write_crds(args.output):
            print(path)
        return 0
    for text in render_crds().values():
        sys.stdout.write(text)
    return 0


async def send_command(args: argparse.Namespace) -> int:
    """Send the command and, unless --no-wait, say what the operator did with it."""
    action = CommandAction.PROMOTE_FULL if args.command == "promote" and args.full else CommandAction(args.command)
    target = f"{args.namespace}/{args.name}"
    api = await KubeApi.connect(args.kubeconfig, args.context)
    try:
        try:
            command_id = await command_client.send(api, args.namespace, args.name, action)
        except ApiError as error:
            if error.status != 404:
                raise  # said in one line by _talk_to_the_api
            print(f"modelrollout {args.command}: {target}: {error.message}", file=sys.stderr)
            return EXIT_NOT_FOUND
        if args.no_wait:
            print(f"{action.value} sent to {target} (command {command_id})")
            return 0
        answer = await command_client.wait_for_answer(api, args.namespace, args.name, command_id, args.wait_seconds)
    finally:
        await api.close()
    if answer is None:
        print(
            f"modelrollout {args.command}: sent to {target} (command {command_id}), but the operator did not "
            f"answer within {args.wait_seconds:g}s; is it running and watching namespace {args.namespace}? "
            f"`modelrollout status {args.name} -n {args.namespace}` shows whether it was handled later",
            file=sys.stderr,
        )
        return EXIT_NO_ANSWER
    if answer.outcome == "Applied":
        print(f"{action.value} applied to {target}: {answer.reason}")
        return 0
    print(f"{action.value} ignored by {target}: {answer.reason}", file=sys.stderr)
    return EXIT_IGNORED


async def undo(args: argparse.Namespace) -> int:
    """Write the previous stable revision's model and template back into spec; the operator delivers
    it by the rollout's own strategy, as any spec change.

    "Previous" is the revision before the spec's: the stable one while a candidate is in flight (or
    was rolled back), the one stable before the last promotion once the spec is on the stable one."""
    target = f"{args.namespace}/{args.name}"
    api = await KubeApi.connect(args.kubeconfig, args.context)
    try:
        rollout = await api.get(MODELROLLOUTS, args.namespace, args.name)
        if rollout is None:
            print(f"modelrollout undo: ModelRollout {target} not found", file=sys.stderr)
            return EXIT_NOT_FOUND
        spec = rollout.get("spec") or {}
        status = ModelRolloutStatus.model_validate(rollout.get("status") or {})
        current = {"model": spec.get("model"), "template": spec.get("template")}
        stable = status.stable_source
        on_stable = stable is not None and current == {"model": stable.model, "template": stable.template}
        back_to = status.previous_stable if on_stable else stable
        if back_to is None:
            why = (
                "no earlier stable revision is recorded (none was promoted since the operator began recording it)"
                if on_stable or stable is None
                else "no stable revision is recorded yet"
            )
            print(f"modelrollout undo: {target}: nothing to go back to: {why}", file=sys.stderr)
            return EXIT_IGNORED
        # A JSON patch that replaces both (a merge patch would merge the old template into the new),
        # guarded by the resourceVersion read: an edit in between is not overwritten unseen.
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": rollout["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/spec/model", "value": back_to.model},
            {"op": "replace", "path": "/spec/template", "value": back_to.template},
        ]
        try:
            await api.request("PATCH", MODELROLLOUTS.path(args.namespace, args.name), patch, JSON_PATCH)
        except ApiError as error:
            # A failed `test` is a 422 like any refused patch: tell them apart by reading again.
            again = await api.get(MODELROLLOUTS, args.namespace, args.name) if error.status == 422 else None
            if again is None or again["metadata"]["resourceVersion"] == rollout["metadata"]["resourceVersion"]:
                raise
            print(
                f"modelrollout undo: {target} changed while undo read it; nothing written, run it again",
                file=sys.stderr,
            )
            return EXIT_API
    finally:
        await api.close()
    now = (spec.get("model") or {}).get("version")
    changed = ["spec.model"] + (["spec.template"] if current["template"] != back_to.template else [])
    print(f"undo: {target}: spec.model.version {now} -> {back_to.version} ({' and '.join(changed)} replaced)")
    print(
        "warning: undo edited the spec; if a GitOps tool (Argo CD, Flux) owns this manifest it will change it "
        f"back: put {back_to.version} in Git instead",
        file=sys.stderr,
    )
    return 0


def run_operator(args: argparse.Namespace) -> int:
    import kopf

    from modelrollout import handlers  # importing handlers registers them with kopf
    from modelrollout.operator_metrics import OPERATOR_METRICS
    from modelrollout.runtime.gc_policy import FREEZE_SURVIVORS

    namespaces = args.namespace or [n for n in (_env("NAMESPACES") or "").split(",") if n]
    options = OperatorOptions(
        namespaces=namespaces,
        prometheus_url=args.prometheus_url,
        prometheus_timeout=args.prometheus_timeout,
        prometheus_batch_seconds=args.prometheus_batch_seconds,
        kubeconfig=args.kubeconfig,
        peering=args.peering,
        peering_lifetime=args.peering_lifetime,
        resync_seconds=args.resync_seconds,
        quiet_write_seconds=args.quiet_write_seconds,
        api_answer_target_seconds=args.api_answer_target_seconds,
        operator_namespace=args.operator_namespace or in_cluster_namespace(),
        log_format=args.log_format,
        metrics_port=args.metrics_port or None,
        metrics_host=args.metrics_host,
        liveness_endpoint=args.health_endpoint or None,
    )
    if args.shards > 1 and options.peering:
        print("modelrollout run: --shards and --peering exclude each other: shards replace peering", file=sys.stderr)
        return EXIT_USAGE
    if args.shards > 1 and not options.operator_namespace:
        print(
            "modelrollout run: --shards needs --operator-namespace (where the shard Leases are) outside a cluster",
            file=sys.stderr,
        )
        return EXIT_USAGE
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger("modelrollout").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    FREEZE_SURVIVORS.install()
    if options.metrics_port:
        OPERATOR_METRICS.watch_gc()
        OPERATOR_METRICS.serve(options.metrics_port, options.metrics_host)
    assert handlers.rollout_loop is not None
    if args.shards > 1:
        from modelrollout.sharding.run import ShardingOptions, run_sharded

        identity = args.shard_identity or socket.gethostname()
        sharding = ShardingOptions(args.shards, identity, args.shard_lease_seconds, args.shard_lease_prefix)
        run_sharded(options, sharding)
        return 0
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=options.peering is None,
        peering_name=options.peering,
        liveness_endpoint=options.liveness_endpoint,
        memo=kopf.Memo(options=options),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
