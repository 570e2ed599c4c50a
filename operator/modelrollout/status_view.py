"""`modelrollout status`: a ModelRollout drawn for a person (rich), or as JSON for a program."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from modelrollout.api.models import (
    AnalysisStatus,
    GateStatus,
    MetricResult,
    ModelRolloutStatus,
    MonitoringStatus,
    Phase,
    Verdict,
)
from modelrollout.api.validation import InvalidSpec, parse_spec
from modelrollout.engine.common import measured
from modelrollout.kube.api import MODELROLLOUTS, KubeApi
from modelrollout.sharding.owner import Owner, describe, find_owner

PHASE_STYLE = {
    Phase.SUCCEEDED: "bold green",
    Phase.PROGRESSING: "bold cyan",
    Phase.PAUSED: "bold yellow",
    Phase.ROLLED_BACK: "bold red",
    Phase.FAILED: "bold red",
    Phase.PENDING: "dim",
}
VERDICT_STYLE = {
    Verdict.SUCCESSFUL: "green",
    Verdict.FAILED: "red",
    Verdict.ERROR: "red",
    Verdict.INCONCLUSIVE: "yellow",
    Verdict.RUNNING: "cyan",
    Verdict.PENDING: "dim",
}


def render(rollout: dict[str, Any], owner: Owner | None = None) -> Group:
    """Everything a person asks of a rollout, in one screen: what is true now first (phase, traffic,
    conditions, the last command's outcome), then the measurements, then the steps, compact enough
    for a 24-row terminal. `owner`: the shard and replica that own a sharded rollout."""
    metadata = rollout.get("metadata", {})
    spec = rollout.get("spec") or {}
    status = ModelRolloutStatus.model_validate(rollout.get("status") or {})
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    phase = Text(status.phase.value, style=PHASE_STYLE[status.phase])
    if status.stage is not None and status.stage.value != status.phase.value:  # older status has none
        phase.append(f"  stage {status.stage.value}", style="")
    header.add_row("Name", f"{metadata.get('namespace')}/{metadata.get('name')}")
    if owner is not None:
        header.add_row("Owner", Text(describe(owner), style="green" if owner.alive else "yellow"))
    header.add_row("Phase", phase)
    header.add_row("Message", status.message or "-")
    header.add_row("Versions", versions(status, spec))
    header.add_row("Traffic", traffic(status, compared=_mirror_compared(spec)))
    header.add_row("Conditions", _conditions(status))
    if status.last_command is not None:
        last = status.last_command
        style = "green" if last.outcome == "Applied" else "yellow"
        header.add_row("Last command", Text(f"{last.action} {last.outcome.lower()}: {last.reason}", style=style))
    for gate in current_gates(status):
        text = gate_words(gate)
        header.add_row("Gate", Text(text, style="green" if gate.state == "Open" else "yellow"))
    if status.notifications:
        waiting = ", ".join(f"{n.trigger} to {n.destination} ({n.state.lower()})" for n in status.notifications)
        header.add_row("Notifying", waiting)
    parts: list[Any] = [header]
    for analysis in (status.step_analysis, status.background_analysis):
        if analysis is not None:
            parts.append(_analysis(analysis, ended=status.phase in ENDED_AT_STEP))
            parts.extend(_features(result) for result in analysis.metrics if result.drift is not None)
    if status.monitoring is not None:
        parts.append(_analysis(status.monitoring.analysis, title=_monitoring_title(status.monitoring)))
        parts.extend(_features(result) for result in status.monitoring.analysis.metrics if result.drift is not None)
    parts.append(_steps(spec, status))
    return Group(*parts)


def versions(status: ModelRolloutStatus, spec: dict[str, Any]) -> str:
    """Stable and candidate, the candidate's revision when only its template differs, and what the
    spec asks for when the operator has not taken it up (an invalid edit, or not seen yet)."""
    text = f"stable {status.stable_version or '-'}"
    if status.candidate_version is not None:
        text += f"  candidate {status.candidate_version}"
        if status.candidate_version == status.stable_version and status.candidate_revision:
            text += f" (rev {status.candidate_revision[:7]}: the pod template changed)"
    requested = (spec.get("model") or {}).get("version") if isinstance(spec.get("model"), dict) else None
    if requested is not None and requested not in (status.candidate_version, status.stable_version):
        text += f"  requested {requested} (not taken up: see Message)"
    return text


def _conditions(status: ModelRolloutStatus) -> Text:
    """The conditions on one line: which are True (the others are False), and their reason."""
    if not status.conditions:
        return Text("-")
    true = [condition.type for condition in status.conditions if condition.status == "True"]
    text = Text("True: ")
    for position, kind in enumerate(true):
        text.append(kind, style="red" if kind in ("Degraded", "Stalled", "Drifted", "ConceptDrift") else "green")
        if position < len(true) - 1:
            text.append(", ")
    if not true:
        text.append("none", style="dim")
    reasons = sorted({condition.reason for condition in status.conditions if condition.reason})
    if reasons:
        text.append(f"  (reason {', '.join(reasons)})")
    return text


def _steps(spec: dict[str, Any], status: ModelRolloutStatus) -> Table:
    table = Table(title="Steps", title_justify="left", box=None, header_style="bold underline")
    table.add_column("#", justify="right")
    table.add_column("Step")
    table.add_column("State")
    try:
        steps = parse_spec(spec).strategy.steps
    except InvalidSpec as error:
        table.add_row("", Text(str(error), style="red"), "")
        return table
    current = status.current_step_index
    ended = ENDED_AT_STEP.get(status.phase)
    for index, step in enumerate(steps):
        state: str | Text = ""
        if current is not None and index < current:
            state = "done"
        elif current is not None and index == current:
            if ended is not None:
                state = Text(ended, style=PHASE_STYLE[status.phase])
            else:
                state = Text(status.pause_reason or "running", style="bold cyan")
        elif current is not None and ended is not None:
            state = Text("not run", style="dim")
        table.add_row(str(index), step.describe(), state)
    return table


#: What the step a rollout stopped at says once the rollout has ended there (it runs no more).
ENDED_AT_STEP = {Phase.ROLLED_BACK: "stopped: rolled back", Phase.FAILED: "stopped: spec invalid"}


def _mirror_compared(spec: dict[str, Any]) -> bool:
    """Whether the rollout's mirror steps ask for compare: then the mirror goes to its comparator."""
    steps = ((spec.get("strategy") or {}).get("canary") or {}).get("steps") or []
    return any(isinstance(step, dict) and (step.get("mirror") or {}).get("compare") is not None for step in steps)


def traffic(status: ModelRolloutStatus, compared: bool = False) -> str:
    """The split in force, with a live shadow or header route said in words: a mirror sends the
    candidate real requests even at weight 0. With `compared`, the mirror goes to the comparator,
    which compares the candidate's answers with stable's (users still never see them)."""
    weights = status.weights
    parts = [f"stable {weights.stable}%", f"candidate {weights.candidate}%"]
    if weights.mirror and compared:
        parts.append(f"mirror {weights.mirror}% (shadow: answers compared with stable's by the comparator)")
    elif weights.mirror:
        parts.append(f"mirror {weights.mirror}% (shadow: answers discarded)")
    if weights.header_route:
        match = f" {weights.header}" if weights.header else ""
        parts.append(f"header route{match} to the candidate")
    return "  ".join(parts)


def current_gates(status: ModelRolloutStatus) -> list[GateStatus]:
    """The webhook gates of the candidate in flight (those of an earlier candidate are history)."""
    if status.candidate_revision is None:
        return []
    return [gate for gate in status.gates or [] if gate.revision == status.candidate_revision]


def gate_words(gate: GateStatus) -> str:
    if gate.type == "rollback":
        said = gate.message or "not asked yet"
        return f"{gate.name} (rollback): asked {gate.attempts} time(s), last: {said}"
    if gate.state == "Open":
        return f"{gate.name} ({gate.type}, {gate.scope}): open"
    return f"{gate.name} ({gate.type}, {gate.scope}): waiting, {gate.message or 'not asked yet'}"


def summary_line(rollout: dict[str, Any]) -> str:
    """One line for a change, for `status --watch` into a pipe or a file (no screen to redraw)."""
    status = ModelRolloutStatus.model_validate(rollout.get("status") or {})
    step = "-" if status.current_step_index is None else str(status.current_step_index)
    fields = [
        f"phase={status.phase.value}",
        f"step={step}",
        f"stable={status.stable_version or '-'}",
        f"candidate={status.candidate_version or '-'}",
        f"weights={status.weights.stable}/{status.weights.candidate}",
    ]
    if status.weights.mirror:
        fields.append(f"mirror={status.weights.mirror}")
    if status.weights.header_route:
        fields.append("headerRoute=on")
    if status.pause_reason:
        fields.append(f"paused={status.pause_reason}")
    if status.stage is not None:
        fields.append(f"stage={status.stage.value}")
    if status.last_command is not None:
        fields.append(f"lastCommand={status.last_command.action}:{status.last_command.outcome}")
    waiting = [gate.name for gate in current_gates(status) if gate.state == "Waiting" and gate.type != "rollback"]
    if waiting:
        fields.append(f"gates={','.join(waiting)}")
    return " ".join(fields) + (f"  {status.message}" if status.message else "")


def _analysis(analysis: AnalysisStatus, *, ended: bool = False, title: str | None = None) -> Table:
    gated = f"stage {analysis.stage.value}" if analysis.stage is not None else f"step {analysis.step_index}"
    if title is None:
        title = "Background analysis" if analysis.kind == "background" else f"Analysis of {gated}"
        phase = "stopped" if ended and analysis.phase is Verdict.RUNNING else analysis.phase.value
        title = f"{title}: {phase}"
    table = Table(title=title, title_justify="left", box=None, header_style="bold underline")
    for column in ("Metric", "Verdict", "Last value", "Measured", "Why"):
        table.add_column(column)
    for result in analysis.metrics:
        last = result.measurements[-1] if result.measurements else None
        value = "-" if last is None or last.value is None else f"{last.value:g}"
        # A rollout that ended takes no more measurements: "Running" would say otherwise.
        verdict = Text("stopped", style="dim") if ended and result.phase is Verdict.RUNNING else None
        table.add_row(
            f"{result.name} (dry run)" if result.dry_run else result.name,
            verdict or Text(result.phase.value, style=VERDICT_STYLE[result.phase]),
            value,
            measured(result) if result.count else "-",
            result.message or (last.message if last else ""),
        )
    return table


#: Features shown per drift metric on a terminal; the rest are in `-o json` (status keeps drift.topFeatures).
FEATURES_SHOWN = 5


def _monitoring_title(monitoring: MonitoringStatus) -> str:
    state = f"drifted since {monitoring.drifted_since}" if monitoring.drifted_since else "no drift episode"
    return f"Monitoring of {monitoring.version}: {state}"


def _features(result: MetricResult) -> Group:
    """A drift metric's last measurement feature by feature, worst first: statistic, limit, p-value."""
    drift = result.drift
    assert drift is not None
    limit = f", max {drift.max:g}" if drift.max is not None else ""
    counts = f"{drift.drifted} of {drift.compared} features drifted"
    if drift.inconclusive:
        counts += f", {drift.inconclusive} with too few observations"
    title = Text(f"  {result.name} per feature ({drift.statistic}{limit}; at {drift.at}): {counts}")
    table = Table(box=None, header_style="underline")
    for column in ("  Feature", "Statistic", "Adj. p", "Drifted"):
        table.add_column(column)
    for feature in drift.features[:FEATURES_SHOWN]:
        if feature.value is None:
            statistic = Text("too few observations", style="yellow")
        else:
            over = drift.max is not None and feature.value > drift.max
            shown = f"{feature.value:.3g}" + (
                f" {'>' if over else '<='} {drift.max:g}" if drift.max is not None else ""
            )
            statistic = Text(shown, style="red" if over else "")
        p_value = "-" if feature.p_value is None else f"{feature.p_value:.3g}"
        if feature.p_value is not None:
            p_value += f" {'<' if feature.p_value < drift.p_value_level else '>='} {drift.p_value_level:g}"
        drifted = Text("yes", style="bold red") if feature.drifted else Text("no", style="green")
        table.add_row(f"  {feature.name}", statistic, p_value, drifted)
    hidden = drift.compared - min(len(drift.features), FEATURES_SHOWN)
    if hidden > 0:
        table.add_row(Text(f"  and {hidden} more", style="dim"), "", "", "")
    return Group(title, table)


def status_json(rollout: dict[str, Any], owner: Owner | None) -> dict[str, Any]:
    """What `-o json` prints: the rollout's status, and for a sharded rollout its `owner` too."""
    shown: dict[str, Any] = dict(rollout.get("status") or {})
    if owner is not None:
        shown["owner"] = owner.as_json()
    return shown


async def show_status(args: argparse.Namespace) -> int:
    api = await KubeApi.connect(args.kubeconfig, args.context)
    console = Console()

    async def owner_of(rollout: dict[str, Any]) -> Owner | None:
        return await find_owner(api, rollout, getattr(args, "operator_namespace", None), datetime.now(UTC))

    try:
        rollout = await _fetch(api, args)
        if rollout is None:
            return 3
        if args.output == "json":
            print(json.dumps(status_json(rollout, await owner_of(rollout)), indent=2))
            return 0
        if not args.watch:
            console.print(render(rollout, await owner_of(rollout)))
            return 0
        if not sys.stdout.isatty():
            return await _watch_lines(api, args, rollout)
        first = render(rollout, await owner_of(rollout))
        with Live(first, console=console, refresh_per_second=4, vertical_overflow="ellipsis") as live:
            while True:
                await asyncio.sleep(1)
                fresh = await _fetch(api, args)
                if fresh is None:
                    return 3
                live.update(render(fresh, await owner_of(fresh)))
    except KeyboardInterrupt:
        return 0
    finally:
        await api.close()


async def _watch_lines(api: KubeApi, args: argparse.Namespace, rollout: dict[str, Any]) -> int:
    """A line per change, flushed at once, so `status --watch | tee` or a CI log shows progress."""
    last = ""
    while True:
        line = summary_line(rollout)
        if line != last:
            stamp = datetime.now().strftime("%H:%M:%S")
            print(f"{stamp} {args.namespace}/{args.name} {line}", flush=True)
            last = line
        await asyncio.sleep(1)
        fresh = await _fetch(api, args)
        if fresh is None:
            return 3
        rollout = fresh


async def _fetch(api: KubeApi, args: argparse.Namespace) -> dict[str, Any] | None:
    """The rollout, or None (said on stderr) when there is none; other API errors go to the CLI's
    one-line report (`client_errors`)."""
    rollout = await api.get(MODELROLLOUTS, args.namespace, args.name)
    if rollout is None:
        print(f"modelrollout status: ModelRollout {args.namespace}/{args.name} not found", file=sys.stderr)
    return rollout


# --- `modelrollout list` ---------------------------------------------------------------------------

LIST_COLUMNS = ("NAMESPACE", "NAME", "PHASE", "STABLE", "CANDIDATE", "TRAFFIC", "STEP", "AGE")


def list_row(rollout: dict[str, Any], now: datetime) -> dict[str, str]:
    """One rollout as `list` shows it (the same words as `kubectl get mro`'s columns)."""
    metadata = rollout.get("metadata") or {}
    status = ModelRolloutStatus.model_validate(rollout.get("status") or {})
    summary = status.summary
    phase = status.phase.value + (f" ({status.pause_reason})" if status.pause_reason else "")
    return {
        "NAMESPACE": str(metadata.get("namespace", "")),
        "NAME": str(metadata.get("name", "")),
        "PHASE": phase,
        "STABLE": status.stable_version or "-",
        "CANDIDATE": (summary.candidate if summary is not None else status.candidate_version) or "-",
        "TRAFFIC": summary.traffic if summary is not None and summary.traffic else traffic_short(status),
        "STEP": (summary.step if summary is not None else "") or "-",
        "AGE": age(metadata.get("creationTimestamp"), now),
    }


def traffic_short(status: ModelRolloutStatus) -> str:
    weights = status.weights
    text = f"{weights.stable}/{weights.candidate}"
    if weights.mirror:
        text += f" +mirror {weights.mirror}%"
    if weights.header_route:
        text += " +header route"
    return text


def age(created: str | None, now: datetime) -> str:
    """kubectl's way: 45s, 12m, 5h, 3d."""
    if not created:
        return "-"
    seconds = max(0, int((now - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()))
    for unit, size, up_to in (("s", 1, 120), ("m", 60, 120 * 60), ("h", 3600, 48 * 3600)):
        if seconds < up_to:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"


def list_table(rollouts: list[dict[str, Any]], now: datetime, *, all_namespaces: bool, terminal: bool) -> Any:
    """A rich table for a terminal; plain aligned columns (one line per rollout) for a pipe."""
    columns = LIST_COLUMNS if all_namespaces else LIST_COLUMNS[1:]
    rows = [list_row(rollout, now) for rollout in sorted(rollouts, key=_namespace_and_name)]
    if terminal:
        table = Table(box=None, header_style="bold")
        for column in columns:
            table.add_column(column)
        for row in rows:
            style = {"Succeeded": "green", "RolledBack": "red", "Failed": "red"}.get(row["PHASE"].split()[0])
            table.add_row(*(row[column] for column in columns), style=style)
        return table
    widths = {column: max(len(column), *(len(row[column]) for row in rows)) for column in columns}
    lines = ["   ".join(column.ljust(widths[column]) for column in columns).rstrip()]
    lines += ["   ".join(row[column].ljust(widths[column]) for column in columns).rstrip() for row in rows]
    return "\n".join(lines)


def _namespace_and_name(rollout: dict[str, Any]) -> tuple[str, str]:
    metadata = rollout.get("metadata") or {}
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))


async def list_rollouts(args: argparse.Namespace) -> int:
    api = await KubeApi.connect(args.kubeconfig, args.context)
    try:
        rollouts = await api.list(MODELROLLOUTS, None if args.all_namespaces else args.namespace)
    finally:
        await api.close()
    if not rollouts:
        where = "any namespace" if args.all_namespaces else f"namespace {args.namespace}"
        print(f"No ModelRollouts in {where}.", file=sys.stderr)
        return 0
    terminal = sys.stdout.isatty()
    shown = list_table(rollouts, datetime.now(UTC), all_namespaces=args.all_namespaces, terminal=terminal)
    if terminal:
        Console().print(shown)
    else:
        print(shown)
    return 0
