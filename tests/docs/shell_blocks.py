"""The shell blocks of a Markdown document, as a reader would type them, and one bash script of them.

A block is a fenced ```sh, ```bash or ```console block. In a console block the commands are the lines
after `$ ` (a line ending in `\\` goes on on the next one); the other lines are what a reader sees.
An HTML comment on the line before a block (blank lines between are allowed) changes how it runs:

    <!-- docs-test: skip: WHY -->          not run (say why: it needs Docker, network, ...)
    <!-- docs-test: background: WHY -->    run in the background, as with `&`
    <!-- docs-test: fails: WHY -->         its last command must fail (the doc shows a refusal); in a
                                           console block, saying what the shown output ends with
                                           (after its last ": ")

and `<!-- docs-test: skip-section: WHY -->` right after a heading skips every block of that section
(until the next heading of the same or a higher level).

    python -m tests.docs.shell_blocks docs/getting-started.md     # print the script it runs
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

SHELLS = {"sh", "bash", "console"}
_FENCE = re.compile(r"^```\s*([\w-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(skip-section|skip|background|fails)\s*:?\s*(.*?)\s*-->\s*$")
_HEADING = re.compile(r"^(#+)\s")


@dataclass(frozen=True)
class Block:
    path: str
    line: int  # of the opening fence, 1-based
    language: str
    commands: str  # what a reader types, one command per line (continuations kept)
    how: str  # "run", "skip", "background" or "fails"
    why: str = ""
    says: str = ""  # for "fails": what its output must contain (the shown error's last part)


def shown_error(text: str) -> str:
    """The end of the last line a console block shows (after its last ": "): how a refusal ends."""
    shown = [line for line in text.splitlines() if line.strip() and not line.startswith("$ ")]
    return shown[-1].rsplit(": ", 1)[-1].strip() if shown else ""


def console_commands(text: str) -> str:
    commands: list[str] = []
    going_on = False
    for line in text.splitlines():
        if going_on:
            commands.append(line)
            going_on = line.rstrip().endswith("\\")
        elif line.startswith("$ "):
            commands.append(line[2:])
            going_on = line.rstrip().endswith("\\")
    return "\n".join(commands)


def blocks(path: Path, name: str | None = None) -> list[Block]:
    lines = path.read_text().splitlines()
    found: list[Block] = []
    marker: tuple[str, str] | None = None
    skipped_section: int | None = None  # the heading level whose section is skipped
    section_why = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        heading = _HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            if skipped_section is not None and level <= skipped_section:
                skipped_section = None
            following = next((text for text in lines[index + 1 :] if text.strip()), "")
            section = _MARKER.match(following)
            if section and section.group(1) == "skip-section":
                skipped_section, section_why = level, section.group(2)
            marker = None
            index += 1
            continue
        found_marker = _MARKER.match(line)
        if found_marker and found_marker.group(1) != "skip-section":
            marker = (found_marker.group(1), found_marker.group(2))
            index += 1
            continue
        fence = _FENCE.match(line)
        if fence is None:
            if line.strip():
                marker = None
            index += 1
            continue
        language = fence.group(1)
        end = next(at for at in range(index + 1, len(lines)) if lines[at].startswith("```"))
        body = "\n".join(lines[index + 1 : end])
        if language in SHELLS:
            commands = console_commands(body) if language == "console" else body
            how, why = marker if marker is not None else ("run", "")
            if skipped_section is not None:
                how, why = "skip", section_why
            says = shown_error(body) if how == "fails" and language == "console" else ""
            found.append(Block(name or str(path), index + 1, language, commands, how, why, says))
        marker = None
        index = end + 1
    return found


def script(found: list[Block]) -> str:
    """One bash script: the blocks in order, in one shell (an `export` or `cd` holds for the next),
    each announced on stderr with where it is in the document."""
    parts = ["set -eo pipefail"]
    for block in found:
        where = f"{block.path}:{block.line}"
        if block.how == "skip":
            parts.append(f"# {where}: skipped ({block.why})")
            continue
        parts.append(f"printf '\\n%s\\n' {shlex.quote(f'### {where} ({block.how})')} >&2")
        if block.how == "background":
            parts.append(f"(\n{block.commands}\n) &")
        elif block.how == "fails":
            parts.append(f"if said=$( {{\n{block.commands}\n}} 2>&1 ); then")
            parts.append(f"  echo {shlex.quote(f'{where}: expected to fail')} >&2; exit 1")
            parts.append('fi\nprintf "%s\\n" "$said"')
            if block.says:
                parts.append(f'grep -qF -- {shlex.quote(block.says)} <<<"$said" || {{')
                parts.append(f"  echo {shlex.quote(f'{where}: the failure does not say {block.says}')} >&2; exit 1\n}}")
        else:
            parts.append(block.commands)
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(script(blocks(Path(argument), argument)))
