"""Three distributions in one repository: the operator never ships nor loads the dev kit.

The operator (`modelrollout`, operator/), the SDK model servers import (`modelrollout-sdk`, sdk/) and
the dev kit (`modelrollout-devkit`, devkit/: emulator, sandbox, reference model server, demo), which
adds `sandbox` and `demo` to the CLI through entry points loaded only when one of them is called.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from setuptools import find_packages

from modelrollout import cli
from modelrollout.client_errors import EXIT_USAGE

REPO = Path(__file__).resolve().parents[2]
#: What the operator must not load: the dev kit and what only the dev kit needs.
DEV_KIT_MODULES = {"modelrollout_devkit", "kmock", "sklearn", "jsonpatch"}
#: What only `modelrollout dashboard` loads.
DASHBOARD_MODULES = {"starlette", "uvicorn"}


def _loaded_top_level_modules(code: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after running `code`."""
    script = (
        textwrap.dedent(code)
        + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def _pyproject(path: str) -> dict[str, object]:
    with (REPO / path).open("rb") as file:
        return tomllib.load(file)


def test_the_run_command_loads_nothing_of_the_dev_kit() -> None:
    loaded = _loaded_top_level_modules(
        """
        from modelrollout.cli import build_parser
        args = build_parser().parse_args(["run", "--prometheus-url", "http://prometheus:9090"])
        assert args.command == "run"
        """
    )
    assert "modelrollout" in loaded
    # rich is the status command's, the web server the dashboard's: each imported by its command alone.
    assert not loaded & (DEV_KIT_MODULES | {"rich"} | DASHBOARD_MODULES)


def test_the_run_command_does_not_import_the_dashboard() -> None:
    script = (
        "import sys\n"
        "from modelrollout.cli import build_parser\n"
        "build_parser().parse_args(['run'])\n"
        "import modelrollout.handlers\n"
        "print(sorted(m for m in sys.modules if m.startswith('modelrollout.dashboard')))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_dashboard_ships_its_page_and_chart_library_in_the_operator_distribution() -> None:
    static = REPO / "operator" / "modelrollout" / "dashboard" / "static"
    for name in ("index.html", "rollout.html", "chart.umd.min.js", "chart.js-LICENSE.md"):
        assert (static / name).is_file(), name
    pages = (static / "index.html").read_text() + (static / "rollout.html").read_text()
    assert "http://" not in pages and "https://" not in pages  # nothing fetched from elsewhere at run time


def test_no_operator_module_imports_the_dev_kit() -> None:
    """Every module of the package, so whatever `modelrollout run` imports (kopf itself loads jsonpatch)."""
    loaded = _loaded_top_level_modules(
        """
        import importlib, pkgutil, modelrollout
        for module in pkgutil.walk_packages(modelrollout.__path__, "modelrollout."):
            importlib.import_module(module.name)
        """
    )
    assert "kopf" in loaded
    assert not loaded & (DEV_KIT_MODULES - {"jsonpatch"})


def test_help_lists_the_dev_kit_commands_without_importing_them() -> None:
    if not {"sandbox", "demo"} <= set(cli.plugin_commands()):
        pytest.skip("the dev kit is not installed")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom modelrollout.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('devkit loaded' if 'modelrollout_devkit' in sys.modules else 'devkit not loaded')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "sandbox" in result.stdout and "demo" in result.stdout
    assert result.stdout.rstrip().endswith("devkit not loaded")


def test_the_dev_kit_commands_come_from_its_entry_points() -> None:
    entry_points = _pyproject("devkit/pyproject.toml")["project"]["entry-points"]  # type: ignore[index]
    assert set(entry_points[cli.COMMAND_ENTRY_POINTS]) == set(cli.DEVKIT_COMMANDS)
    installed = cli.plugin_commands()
    if not set(cli.DEVKIT_COMMANDS) <= set(installed):
        pytest.skip("the dev kit is not installed")
    for name in cli.DEVKIT_COMMANDS:
        assert installed[name].value == entry_points[cli.COMMAND_ENTRY_POINTS][name]
        assert callable(installed[name].load())


@pytest.mark.parametrize("command", ["sandbox", "demo"])
def test_a_dev_kit_command_without_the_dev_kit_says_so_in_one_line(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "plugin_commands", dict)
    assert cli.main([command, "--help"]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"modelrollout {command}: ") and "modelrollout-devkit" in err and "pip install" in err


def test_a_dev_kit_command_that_cannot_load_says_why_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = EntryPoint("sandbox", "modelrollout_devkit_missing_module:sandbox", cli.COMMAND_ENTRY_POINTS)
    monkeypatch.setattr(cli, "plugin_commands", lambda: {"sandbox": broken})
    assert cli.main(["sandbox", "up"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (
        err.startswith("modelrollout sandbox: cannot load the command: ")
        and "modelrollout_devkit_missing_module" in err
    )


def test_a_plugin_command_does_not_shadow_an_operator_command(monkeypatch: pytest.MonkeyPatch) -> None:
    impostor = EntryPoint("run", "modelrollout_devkit_missing_module:run", cli.COMMAND_ENTRY_POINTS)
    monkeypatch.setattr(cli, "plugin_commands", lambda: {"run": impostor})
    assert cli.build_parser(load="run").parse_args(["run"]).command == "run"


def test_the_operator_distribution_packages_no_dev_kit() -> None:
    """What `pip install .` puts into the operator's wheel (and image), from the setuptools configuration."""
    project = _pyproject("pyproject.toml")
    setuptools = project["tool"]["setuptools"]  # type: ignore[index]
    find = setuptools["packages"]["find"]
    packages = find_packages(where=str(REPO / find["where"][0]), include=find["include"])
    assert "modelrollout" in packages and "modelrollout.engine" in packages
    assert all(package == "modelrollout" or package.startswith("modelrollout.") for package in packages)
    assert not [package for package in packages if {"sandbox", "emulator", "sdk"} & set(package.split("."))]
    assert setuptools["package-data"] == {"modelrollout": ["py.typed", "dashboard/static/*"]}
    for moved in ("sandbox", "emulator", "sdk"):  # (a checkout may keep their __pycache__ folders)
        assert not list((REPO / "operator" / "modelrollout" / moved).glob("**/*.py"))


def test_each_distribution_declares_what_it_imports() -> None:
    def names(path: str) -> set[str]:
        requirements = _pyproject(path)["project"]["dependencies"]  # type: ignore[index]
        return {requirement.split("=")[0].split(">")[0].split("<")[0].strip() for requirement in requirements}

    operator, sdk, devkit = names("pyproject.toml"), names("sdk/pyproject.toml"), names("devkit/pyproject.toml")
    # The sync kubernetes client too: the operator logs in through kubernetes_asyncio's loader, and
    # kopf, which imports the sync client whenever it is installed, starts faster without it.
    assert not operator & {"kmock", "scikit-learn", "jsonpatch", "modelrollout-devkit", "kubernetes"}
    assert "modelrollout-sdk" in operator  # the analysis reads the SDK's names and feature edges
    assert sdk == {"prometheus-client", "numpy"}
    assert {"modelrollout", "modelrollout-sdk", "kmock", "scikit-learn", "jsonpatch"} <= devkit
