"""The operator uses kopf and the Kubernetes client through their public API only: no import of a
private module, no monkeypatching of their classes. (The hot path once depended on kopf 1.45.2's
internals; an upgrade would have broken it silently.)"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import modelrollout

PACKAGE = Path(modelrollout.__file__).parent
THIRD_PARTY = ("kopf", "kubernetes", "kubernetes_asyncio", "aiohttp")
# The dev kit is leaving the operator package; the source scan covers it, the import check does not.
NOT_IMPORTED = ("modelrollout.__main__",)  # runs the CLI when imported; the dev kit and the SDK are other distributions


# What the Kubernetes client's ApiClient keeps inside: replacing them (as a swapped aiohttp session
# once did) is a patch of the client, whatever the variable holding it is called.
CLIENT_INTERNALS = {"rest_client", "pool_manager", "refresh_api_key_hook"}


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def third_party(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in THIRD_PARTY


def private(dotted: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split(".")[1:])


def findings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    imported: set[str] = set()  # local names bound to kopf / kubernetes modules or classes
    found: list[str] = []
    where = str(path.relative_to(PACKAGE.parent)) if path.is_relative_to(PACKAGE.parent) else path.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if third_party(alias.name):
                    imported.add((alias.asname or alias.name).split(".")[0])
                    if private(alias.name):
                        found.append(f"{where}:{node.lineno}: imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and third_party(node.module):
            assert node.module is not None
            for alias in node.names:
                imported.add(alias.asname or alias.name)
                if private(f"{node.module}.{alias.name}"):
                    found.append(f"{where}:{node.lineno}: imports {alias.name} from {node.module}")
    for node in ast.walk(tree):
        name = node.value.id if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) else None
        if isinstance(node, ast.Attribute) and name in imported and private(f"{name}.{node.attr}"):
            found.append(f"{where}:{node.lineno}: uses {node.value.id}.{node.attr}")
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            root = target
            while isinstance(root, ast.Attribute):
                root = root.value
            if target is not root and isinstance(root, ast.Name) and root.id in imported:
                found.append(f"{where}:{node.lineno}: assigns to {ast.unparse(target)}")
            elif isinstance(target, ast.Attribute) and target.attr in CLIENT_INTERNALS:
                found.append(f"{where}:{node.lineno}: replaces {ast.unparse(target)}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Name | ast.Attribute) and ast.unparse(first).split(".")[0] in imported:
                found.append(f"{where}:{node.lineno}: {node.func.id} on {ast.unparse(first)}")
    return found


def test_no_module_imports_private_kopf_or_patches_kopf_and_kubernetes_in_its_source() -> None:
    assert len(sources()) > 20
    found = [finding for path in sources() for finding in findings(path)]
    assert found == []


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "probe.py"
    bad.write_text(
        "import kopf\n"
        "from kopf._cogs.structs import bodies\n"
        "from kubernetes_asyncio.client import rest\n"
        "kopf.Body.meta = property(lambda self: None)\n"
        "setattr(rest.RESTClientObject, 'request', None)\n"
        "x = kopf._core\n"
        "def swap(api_client):\n"
        "    api_client.rest_client.pool_manager = None\n"
    )
    assert sorted(line.split(": ", 1)[1] for line in findings(bad)) == [
        "assigns to kopf.Body.meta",
        "imports bodies from kopf._cogs.structs",
        "replaces api_client.rest_client.pool_manager",
        "setattr on rest.RESTClientObject",
        "uses kopf._core",
    ]


def test_after_the_operator_is_imported_every_kopf_and_client_class_is_as_its_library_defined_it() -> None:
    for module in pkgutil.walk_packages(modelrollout.__path__, "modelrollout."):
        if not module.name.startswith(NOT_IMPORTED):
            importlib.import_module(module.name)
    foreign: list[str] = []
    for name, module in list(sys.modules.items()):
        if not third_party(name) or module is None:
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if not third_party(cls.__module__):
                continue
            for attribute, value in vars(cls).items():
                function = value.fget if isinstance(value, property) else value
                defined_in = getattr(function, "__module__", None)
                # A function of ours on one of their classes is a patch (theirs come from their own or
                # the standard library's modules).
                if inspect.isfunction(function) and str(defined_in).startswith("modelrollout"):
                    foreign.append(f"{cls.__module__}.{cls.__qualname__}.{attribute} from {defined_in}")
    assert foreign == []


def test_the_operator_does_not_import_the_synchronous_kubernetes_client() -> None:
    """It logs in and talks to the API through kubernetes_asyncio's loader and its own session, so the
    operator's distribution can go without the sync client (kopf imports it only when installed)."""
    dev_kit = tuple(PACKAGE / part.removeprefix("modelrollout.") for part in NOT_IMPORTED)
    found: list[str] = []
    for path in sources():
        if any(path.is_relative_to(where) for where in dev_kit):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
                names = [node.module]
            found += [f"{path.name}:{node.lineno}: {name}" for name in names if name.split(".")[0] == "kubernetes"]
    assert found == []
