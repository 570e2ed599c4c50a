"""The operator's rooms import each other in one direction only.

Every module of `operator/modelrollout` is parsed (not imported) with `ast`; each import of another
part of the package becomes an arrow between rooms. A room is a subpackage (`engine`, `traffic`,
...) or a top-level module (`reconcile`, `handlers`, ...). The test fails on a cycle between rooms
and on the arrows the design forbids, naming the module and line that draws it.

The package root (`modelrollout/__init__.py`: the API group and version, nothing else) is not a
room: every module may read it. `sandbox`, `emulator` and `sdk` are test machinery and the SDK that
are leaving the operator package; they are not looked at.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "modelrollout"
ROOT = "modelrollout"
LEAVING = {"sandbox", "emulator", "sdk"}

# What a room must never import: the pure rooms stay free of I/O and of the runtime that drives them.
FORBIDDEN: dict[str, set[str]] = {
    "vocabulary": {"*"},  # the shared words of every room: it imports no other room
    "engine": {"kube", "traffic", "metrics", "handlers", "reconcile", "runtime"},
    "analysis": {"kube", "traffic", "metrics", "handlers", "reconcile", "engine", "runtime"},
    "api": {"engine", "kube", "traffic", "metrics", "handlers", "reconcile", "analysis", "runtime"},
    "traffic": {"kube", "engine", "handlers", "reconcile", "runtime"},
    # the runtime schedules and caches passes; what a pass does it is handed (no cycle through it)
    "runtime": {"handlers", "reconcile"},
}


@dataclass(frozen=True)
class Arrow:
    source: str  # room
    target: str  # room
    where: str  # file:line, for the failure message


def room_of(module: str) -> str | None:
    """`modelrollout.engine.canary` -> `engine`; None for the root and for what is not ours."""
    parts = module.split(".")
    if parts[0] != ROOT or len(parts) == 1:
        return None
    return parts[1]


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """Every module an import statement names: `from x import y` names x, and x.y too when y is a
    module (`from modelrollout import engine`); the caller keeps only names that are modules."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            yield source, node.lineno
            for alias in node.names:
                yield f"{source}.{alias.name}", node.lineno


def arrows() -> list[Arrow]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    found: list[Arrow] = []
    for path in paths:
        module = module_name(path)
        source = room_of(module)
        if source is None or source in LEAVING:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for imported, line in imported_modules(tree, module, path.name == "__init__.py"):
            if imported not in modules:
                continue  # a name imported from a module, not a module
            target = room_of(imported)
            if target is None or target == source or target in LEAVING:
                continue
            found.append(Arrow(source, target, f"{path.relative_to(PACKAGE.parent)}:{line}"))
    return found


def cycle_through(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of rooms, as a path that ends where it starts, or None."""
    done: set[str] = set()

    def visit(room: str, path: list[str]) -> list[str] | None:
        if room in path:
            return [*path[path.index(room) :], room]
        if room in done:
            return None
        for target in sorted(graph.get(room, ())):
            cycle = visit(target, [*path, room])
            if cycle is not None:
                return cycle
        done.add(room)
        return None

    for room in sorted(graph):
        cycle = visit(room, [])
        if cycle is not None:
            return cycle
    return None


def rooms() -> set[str]:
    found = {room_of(module_name(path)) for path in PACKAGE.rglob("*.py")}
    return {room for room in found if room is not None and room not in LEAVING}


def test_every_rule_names_a_room_that_exists() -> None:
    # A room renamed or moved must not silently switch its rule off.
    named = set(FORBIDDEN) | {target for targets in FORBIDDEN.values() for target in targets if target != "*"}
    assert named <= rooms(), f"no such room: {sorted(named - rooms())}"


def test_no_room_imports_itself_around_a_cycle() -> None:
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for arrow in arrows():
        graph.setdefault(arrow.source, set()).add(arrow.target)
        where.setdefault((arrow.source, arrow.target), arrow.where)
    cycle = cycle_through(graph)
    assert cycle is None, "import cycle between rooms: " + ", ".join(
        f"{source} -> {target} ({where[source, target]})" for source, target in itertools.pairwise(cycle)
    )


def test_no_forbidden_arrows() -> None:
    wrong = [
        f"{arrow.where}: {arrow.source} imports {arrow.target}"
        for arrow in arrows()
        if arrow.target in FORBIDDEN.get(arrow.source, set()) or "*" in FORBIDDEN.get(arrow.source, set())
    ]
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_cycle() -> None:
    assert cycle_through({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_through({"a": {"b"}, "b": {"c"}}) is None
