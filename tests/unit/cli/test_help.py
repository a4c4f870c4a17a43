"""Every command and sub-command renders its --help (rich markup in help text breaks it)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from shipyard.cli import app


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, sub in getattr(command, "commands", {}).items():  # typer's groups (own click)
        found += _paths(sub, (*prefix, name))
    return found


PATHS = _paths(typer.main.get_command(app))


def test_the_command_tree_is_found() -> None:
    assert ("serve",) in PATHS and ("feedback",) in PATHS and len(PATHS) > 30


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "shipyard")
def test_help_renders(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "Usage" in result.output


def test_starting_the_cli_leaves_the_heavy_libraries_unloaded() -> None:
    """Every `shipyard` command imports the whole command tree: what only some commands use
    (scipy for `ab report`, FastAPI for `server`, scikit-learn and the servers for `demo`,
    torch, Ray) is imported when that command runs, so `runs list` does not pay ~3 s for it."""
    heavy = ("scipy", "fastapi", "sklearn", "torch", "ray", "uvicorn", "grpc")
    code = (
        "import sys, shipyard.cli\n"
        f"heavy = {heavy!r}\n"
        "loaded = sorted({n.split('.')[0] for n in sys.modules} & set(heavy))\n"
        "assert not loaded, loaded"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
