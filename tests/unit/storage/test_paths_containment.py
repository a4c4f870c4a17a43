"""P8: whatever relative path comes in, `contained` never returns a path outside its root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.core.errors import InvalidArgument
from shipyard.storage.paths import contained


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding ordinary entries and symlinks that point inside and outside it."""
    base = tmp_path_factory.mktemp("containment")
    root = base / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "file.txt").write_text("x")
    (base / "outside").mkdir()
    (root / "out").symlink_to(base / "outside")
    (root / "a" / "up").symlink_to("../..")
    (root / "etc").symlink_to("/etc")
    (root / "in").symlink_to("a/b")
    (root / "loop").symlink_to("loop")
    return root


def _inside(root: Path, path: Path) -> bool:
    real = os.path.realpath(root)
    return os.path.commonpath([real, os.path.realpath(path)]) == real


def test_plain_relative_paths_resolve_under_the_root(sandbox: Path) -> None:
    assert contained(sandbox, "a/file.txt") == Path(os.path.realpath(sandbox)) / "a" / "file.txt"
    assert (
        contained(sandbox, "in/new.bin") == Path(os.path.realpath(sandbox)) / "a" / "b" / "new.bin"
    )
    assert contained(sandbox, "./a") == Path(os.path.realpath(sandbox)) / "a"


@pytest.mark.parametrize(
    "relative",
    [
        "",
        "/etc/passwd",
        "\\windows",
        "C:/x",
        "..",
        "../x",
        "a/../../x",
        "a\\..\\..\\x",
        "a/\x00b",
        "out/secret",
        "out",
        "etc/passwd",
        "a/up/x",
        "x" * 5000,
    ],
)
def test_escapes_are_refused(sandbox: Path, relative: str) -> None:
    with pytest.raises(InvalidArgument):
        contained(sandbox, relative)


_PARTS = st.sampled_from(
    [
        "a",
        "b",
        "file.txt",
        "..",
        ".",
        "",
        "out",
        "etc",
        "in",
        "up",
        "loop",
        "x\x00",
        "/",
        "\\",
        "C:",
        "~",
    ]
)
_PATHS = st.one_of(
    st.lists(_PARTS, max_size=8).map("/".join),
    st.lists(_PARTS, max_size=8).map("\\".join),
    st.text(alphabet=st.sampled_from(list("ab./\\\x00:~ ")), max_size=30),
    st.text(max_size=30),
)


@settings(max_examples=4_000, deadline=None)
@given(relative=_PATHS)
def test_nothing_escapes_the_root(sandbox: Path, relative: str) -> None:
    try:
        result = contained(sandbox, relative)
    except InvalidArgument:
        return
    assert _inside(sandbox, result), f"{relative!r} escaped to {result}"
