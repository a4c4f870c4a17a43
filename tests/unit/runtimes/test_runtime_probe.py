"""A native parser that crashes on a file must not take the process down with it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from shipyard.core.errors import InvalidArgument
from shipyard.runtimes.probe import survives


def crash(path: Path) -> object:
    os.kill(os.getpid(), signal.SIGSEGV)  # what libxgboost did on a damaged UBJ file
    return None


def refuse(path: Path) -> object:
    raise ValueError("not a model")


def accept(path: Path) -> object:
    return path.read_bytes()


def test_a_crashing_parser_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    model = tmp_path / "model.ubj"
    model.write_bytes(b"\x00" * 10)
    with pytest.raises(
        InvalidArgument, match=r"model.ubj: the XGBoost parser crashed on this file \(signal 11\)"
    ):
        survives(crash, model, "XGBoost")


def test_parsers_that_raise_or_succeed_pass_through(tmp_path: Path) -> None:
    model = tmp_path / "model.txt"
    model.write_text("tree")
    survives(accept, model, "LightGBM")
    survives(refuse, model, "LightGBM")  # the caller's own parse reports the error
