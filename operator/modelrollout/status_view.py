"""`modelrollout status`: a ModelRollout drawn for a person (rich), or as JSON for a program."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from modelrollout.api.models import AnalysisStatus, ModelRolloutStatus, Phase, Verdict
from modelrollout.api.validation import InvalidSpec, parse_spec
from modelrollout.kube.api import MODELROLLOUTS, KubeApi

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


def render(rollout: dict[str, Any]) -> Group:
    """Everything a person asks of a rollout, in one screen."""
    metadata = rollout.get("metadata", {})
    status = ModelRolloutStatus.model_validate(rollout.get("status") or {})
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    header.add_row("Name", f"{metadata.get('namespace')}/{metadata.get('name')}")
    header.add_row("Phase", Text(status.phase.value, style=PHASE_STYLE[status.phase]))
    if status.stage is not None:  # a status written before stages has none
        header.add_row("Stage", status.stage.value)
    header.add_row("Message", status.message or "-")
    header.add_row("Stable", status.stable_version or "-")
    header.add_row("Candidate", status.candidate_version or "-")
    header.add_row("Traffic", traffic(status))
    parts: list[Any] = [header, _steps(rollout.get("spec") or {}, status)]
    for analysis in (status.background_analysis, status.step_analysis):
        if analysis is not None:
            parts.append(_analysis(analysis, ended=status.phase in ENDED_AT_STEP))
    conditions = Table(title="Conditions", title_justify="left")
    for column in ("Type", "Status", "Reason", "Since"):
        conditions.add_column(column)
    for condition in status.conditions:
        conditions.add_row(condition.type, condition.status, condition.reason, condition.last_transition_time or "")
    parts.append(conditions)
    return Group(*parts)


def _steps(spec: dict[str, Any], status: ModelRolloutStatus) -> Table:
    table = Table(title="Steps", title_justify="left")
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
        table.add_row(str(index), step.describe(), state)
    return table


#: What the step a rollout stopped at says once the rollout has ended there (it runs no more).
ENDED_AT_STEP = {Phase.ROLLED_BACK: "stopped: rolled back", Phase.FAILED: "stopped: spec invalid"}


def traffic(status: ModelRolloutStatus) -> str:
    """The split in force, with a live shadow or header route said in words: a mirror sends the
    candidate real requests even at weight 0."""
    weights = status.weights
    parts = [f"stable {weights.stable}%", f"candidate {weights.candidate}%"]
    if weights.mirror:
        parts.append(f"mirror {weights.mirror}% (shadow: answers discarded)")
    if weights.header_route:
        parts.append("header route to the candidate")
    return "  ".join(parts)


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
    return " ".join(fields) + (f"  {status.message}" if status.message else "")


def _analysis(analysis: AnalysisStatus, *, ended: bool = False) -> Table:
    gated = f"stage {analysis.stage.value}" if analysis.stage is not None else f"step {analysis.step_index}"
    title = "Background analysis" if analysis.kind == "background" else f"Analysis of {gated}"
    phase = "stopped" if ended and analysis.phase is Verdict.RUNNING else analysis.phase.value
    table = Table(title=f"{title}: {phase}", title_justify="left")
    for column in ("Metric", "Verdict", "Last value", "Ok/Total", "Why"):
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
            f"{result.successful}/{result.count}",
            result.message or (last.message if last else ""),
        )
    return table


async def show_status(args: argparse.Namespace) -> int:
    api = await KubeApi.connect(args.kubeconfig, args.context)
    console = Console()
    try:
        rollout = await _fetch(api, args)
        if rollout is None:
            return 3
        if args.output == "json":
            print(json.dumps(rollout.get("status") or {}, indent=2))
            return 0
        if not args.watch:
            console.print(render(rollout))
            return 0
        if not sys.stdout.isatty():
            return await _watch_lines(api, args, rollout)
        with Live(render(rollout), console=console, refresh_per_second=4, vertical_overflow="visible") as live:
            while True:
                await asyncio.sleep(1)
                fresh = await _fetch(api, args)
                if fresh is None:
                    return 3
                live.update(render(fresh))
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
