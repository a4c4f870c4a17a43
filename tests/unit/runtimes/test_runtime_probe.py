"""A native parser that crashes on a file must not take the process down with it."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from shipyard.core.errors import InvalidArgument
from shipyard.runtimes import probe
from shipyard.runtimes.probe import canonical


def crash(path: Path) -> bytes:
    os.kill(os.getpid(), signal.SIGSEGV)  # what libxgboost did on a damaged UBJ file
    return b""


def refuse(path: Path) -> bytes:
    raise InvalidArgument(f"{path.name} is not a model", details={"path": path.name})


def foreign(path: Path) -> bytes:
    raise ValueError("a library's own error")


def hang(path: Path) -> bytes:
    time.sleep(60)
    return b""


def linger(path: Path) -> bytes:
    # Keeps the child from exiting for an hour: past pytest's faulthandler_timeout, so a
    # caller that waited for it would fail the test, not pass it late.
    threading.Thread(target=time.sleep, args=(3600,)).start()
    return b"parsed"


def rewrite(path: Path) -> bytes:
    return path.read_bytes().upper() * 100_000  # larger than a pipe's buffer


def test_a_crashing_parser_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    model = tmp_path / "model.ubj"
    model.write_bytes(b"\x00" * 10)
    with pytest.raises(
        InvalidArgument, match=r"model.ubj: the XGBoost parser crashed on this file \(signal 11\)"
    ):
        canonical(crash, model, "XGBoost")
    assert model.read_bytes() == b"\x00" * 10


def test_the_childs_refusal_is_raised_here_unchanged(tmp_path: Path) -> None:
    model = tmp_path / "model.txt"
    model.write_text("tree")
    with pytest.raises(InvalidArgument, match="^model.txt is not a model$") as caught:
        canonical(refuse, model, "LightGBM")
    assert caught.value.details == {"path": "model.txt"}
    with pytest.raises(
        InvalidArgument,
        match=r"^model.txt is not a valid LightGBM file \(corrupt or truncated\?\): ValueError$",
    ) as foreign_error:
        canonical(foreign, model, "LightGBM")
    assert foreign_error.value.details == {"path": "model.txt", "format": "LightGBM"}


def test_a_hanging_parser_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "PROBE_TIMEOUT_S", 1.0)
    model = tmp_path / "model.txt"
    model.write_text("tree")
    with pytest.raises(InvalidArgument, match="the LightGBM parser did not finish in 1 s"):
        canonical(hang, model, "LightGBM")


def test_the_parent_gets_the_childs_bytes_not_the_files(tmp_path: Path) -> None:
    model = tmp_path / "model.txt"
    model.write_text("tree")
    assert canonical(rewrite, model, "LightGBM") == b"TREE" * 100_000


def test_a_child_that_answers_but_does_not_exit_is_killed_and_its_answer_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probe, "EXIT_GRACE_S", 1.0)  # the answer may take its time
    model = tmp_path / "model.txt"
    model.write_text("tree")
    assert canonical(linger, model, "LightGBM") == b"parsed"
