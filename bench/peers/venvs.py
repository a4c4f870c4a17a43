"""Peer venvs for the benches: bench/.venvs/NAME (gitignored), one per peer tool.

Each venv is created once with python3.11 and pip from PyPI; a stamp file records the package
list, and the venv is rebuilt when the list changes. pip's output goes to
bench/.venvs/NAME-pip.log. Used by bench/serving.py and bench/drift.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

VENVS = Path(__file__).resolve().parent.parent / ".venvs"
STAMP = ".shipyard-bench-stamp"


class VenvError(RuntimeError):
    """pip could not install a peer; the message carries the log path and pip's last lines."""


def pip_log(name: str) -> Path:
    return VENVS / f"{name}-pip.log"


def _pip_error(log: Path, lines: int = 6) -> str:
    """The last lines of pip's output that say what went wrong (pip prints ERROR: lines)."""
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = [line for line in text if line.startswith("ERROR")]
    return " | ".join((errors or text)[-lines:]).strip()


def ensure_venv(name: str, packages: Sequence[str]) -> Path:
    """Create bench/.venvs/NAME with `packages` once; a stamp records what went in."""
    path = VENVS / name
    stamp = path / STAMP
    wanted = "\n".join(packages)
    if stamp.exists() and stamp.read_text() == wanted:
        return path
    print(f"[setup] creating venv {path} with {' '.join(packages)}", flush=True)
    if path.exists():
        shutil.rmtree(path)
    VENVS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["python3.11", "-m", "venv", str(path)], check=True)
    log = pip_log(name)
    with log.open("w") as out:
        result = subprocess.run(
            [str(path / "bin" / "pip"), "install", "--quiet", *packages],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        raise VenvError(f"pip install into {path} failed ({_pip_error(log)}); see {log}")
    stamp.write_text(wanted)
    return path


def venv_versions(path: Path, dists: Sequence[str]) -> dict[str, str]:
    """Installed versions of `dists` inside the venv at `path` ('-' when missing)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: out[d] = '-'\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [str(path / "bin" / "python"), "-c", code, *dists],
        capture_output=True,
        text=True,
        check=True,
    )
    versions: dict[str, str] = json.loads(result.stdout)
    return versions
