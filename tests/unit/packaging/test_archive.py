"""The bundle archive extractor: malicious members refused before anything is written (P8)."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.core.errors import InvalidArgument, PayloadTooLarge, ShipyardError
from shipyard.packaging.archive import (
    ArchiveLimits,
    check_members,
    check_relative_name,
    extract_archive,
    write_archive,
)

Member = tuple[str, bytes, str]  # name, type flag, link name
# P8 asks for 20,000 examples: SHIPYARD_P8_EXAMPLES=20000 (the default keeps the suite fast).
_EXAMPLES = int(os.environ.get("SHIPYARD_P8_EXAMPLES", "2000"))


def _tar(path: Path, members: list[Member], payload: bytes = b"data") -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            if kind == tarfile.REGTYPE:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return path


def _everything_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("../evil", tarfile.REGTYPE, "")], r"leaves its directory"),
        ([("a/../../evil", tarfile.REGTYPE, "")], r"leaves its directory"),
        ([("/etc/evil", tarfile.REGTYPE, "")], r"absolute path"),
        ([("a\\..\\evil", tarfile.REGTYPE, "")], r"backslash"),
        ([("link", tarfile.SYMTYPE, "/etc/passwd")], r"link, device or fifo"),
        ([("d", tarfile.SYMTYPE, ".."), ("d/x", tarfile.REGTYPE, "")], r"link, device"),
        ([("f", tarfile.REGTYPE, ""), ("h", tarfile.LNKTYPE, "f")], r"link, device"),
        ([("dev", tarfile.CHRTYPE, "")], r"link, device or fifo"),
        ([("blk", tarfile.BLKTYPE, "")], r"link, device or fifo"),
        ([("fifo", tarfile.FIFOTYPE, "")], r"link, device or fifo"),
        ([("a", tarfile.REGTYPE, ""), ("./a", tarfile.REGTYPE, "")], r"appears twice"),
        ([("a", tarfile.REGTYPE, ""), ("a/b", tarfile.REGTYPE, "")], r"inside a file"),
    ],
)
def test_malicious_members_are_refused_before_writing(
    tmp_path: Path, members: list[Member], message: str
) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", [("ok.txt", tarfile.REGTYPE, ""), *members])
    target = tmp_path / "target"
    with pytest.raises(InvalidArgument, match=message):
        extract_archive(archive, target)
    assert list(target.iterdir()) == []
    assert {p.name for p in tmp_path.iterdir()} == {"bad.tar.gz", "target"}


def test_bombs_are_refused(tmp_path: Path) -> None:
    zeros = _tar(tmp_path / "zeros.tar.gz", [("z", tarfile.REGTYPE, "")], b"\0" * 4_000_000)
    assert zeros.stat().st_size < 100_000
    with pytest.raises(PayloadTooLarge, match="expands to more than"):
        extract_archive(zeros, tmp_path / "t1", ArchiveLimits(total_bytes=1_000_000))
    assert list((tmp_path / "t1").iterdir()) == []
    many = _tar(tmp_path / "many.tar.gz", [(f"f{i}", tarfile.REGTYPE, "") for i in range(50)])
    with pytest.raises(PayloadTooLarge, match="more than 10 members"):
        extract_archive(many, tmp_path / "t2", ArchiveLimits(members=10))


def test_not_an_archive_and_non_empty_target(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(InvalidArgument, match="not a readable .tar.gz"):
        extract_archive(junk, tmp_path / "t")
    good = _tar(tmp_path / "good.tar.gz", [("a", tarfile.REGTYPE, "")])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InvalidArgument, match="not empty"):
        extract_archive(good, tmp_path / "full")


def test_write_then_extract_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "model" / "native").mkdir(parents=True)
    (source / "model" / "native" / "m.bin").write_bytes(b"\x00\x01" * 1000)
    (source / "version.json").write_text("{}")
    archive = write_archive(source, tmp_path / "b.tar.gz")
    root = extract_archive(archive, tmp_path / "out")
    assert (root / "model" / "native" / "m.bin").read_bytes() == b"\x00\x01" * 1000
    assert (root / "version.json").read_text() == "{}"
    (source / "link").symlink_to(source / "version.json")
    with pytest.raises(InvalidArgument, match="not a regular file"):
        write_archive(source, tmp_path / "c.tar.gz")


_SEGMENTS = st.sampled_from(["a", "b", "..", ".", "", "/", "\\", "..\\x", "c\x00", "~", "a:b"])
_NAMES = st.lists(_SEGMENTS, min_size=1, max_size=5).map("/".join) | st.text(max_size=12)
_KINDS = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.DIRTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.CHRTYPE,
        tarfile.FIFOTYPE,
    ]
)
_LINKS = st.sampled_from(["", "..", "/etc/passwd", "a", "../../x", "/tmp"])


@settings(max_examples=_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=st.lists(st.tuples(_NAMES, _KINDS, _LINKS), min_size=1, max_size=6))
def test_accepted_member_lists_stay_inside_the_root(members: list[Member]) -> None:
    """P8 on the checker alone (no I/O, so 20,000 examples fit in seconds)."""
    infos = []
    for name, kind, link in members:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        infos.append(info)
    try:
        check_members(infos)
    except ShipyardError:
        return
    root = Path("/srv/target")
    for info in infos:
        assert info.isreg() or info.isdir()
        resolved = Path(os.path.normpath(root / check_relative_name(info.name)))
        assert resolved.is_relative_to(root) and resolved != root


@settings(max_examples=_EXAMPLES // 5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=st.lists(st.tuples(_NAMES, _KINDS, _LINKS), min_size=1, max_size=6))
def test_generated_archives_never_write_outside_the_target(members: list[Member]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        sandbox = Path(scratch)
        try:
            archive = _tar(sandbox / "a.tar.gz", members)
        except (ValueError, UnicodeError):
            return  # tarfile itself cannot write this name
        target = sandbox / "target"
        try:
            extract_archive(archive, target)
        except ShipyardError:
            assert list(target.iterdir()) == []  # refused before any write
        outside = _everything_under(sandbox) - {archive, target}
        assert all(p.is_relative_to(target) for p in outside), outside
        assert not any(p.is_symlink() for p in outside)
        assert all(p.is_file() or p.is_dir() for p in outside)


@given(st.text(max_size=40))
@settings(max_examples=2000, deadline=None)
def test_checked_names_stay_relative(name: str) -> None:
    try:
        path = check_relative_name(name)
    except InvalidArgument:
        return
    assert not path.is_absolute() and ".." not in path.parts and "\\" not in name
    assert (Path("/root") / path).resolve().is_relative_to(Path("/root").resolve())
