from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.core.errors import ErrorKind, InvalidArgument
from shipyard.core.refs import MAX_NAME_LENGTH, ModelRef, check_alias, check_name


@pytest.mark.parametrize(
    ("text", "name", "version", "alias"),
    [
        ("fraud", "fraud", None, None),
        ("fraud:3", "fraud", 3, None),
        ("fraud@production", "fraud", None, "production"),
        ("a.b-c_d:12", "a.b-c_d", 12, None),
    ],
)
def test_parse_round_trips(text: str, name: str, version: int | None, alias: str | None) -> None:
    ref = ModelRef.parse(text)
    assert (ref.name, ref.version, ref.alias) == (name, version, alias)
    assert str(ref) == text


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("a/b", "must not contain"),
        ("../etc", "must not contain"),
        ("..", "must not contain"),
        ("a\x00b", "NUL"),
        ("x" * (MAX_NAME_LENGTH + 1), "limit is 200"),
        ("", "non-empty"),
        ("-lead", "start and end"),
        ("sp ace", "letters, digits"),
        ("a\\b", "must not contain"),
    ],
)
def test_bad_names_are_refused_with_a_reason(bad: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment) as info:
        check_name(bad)
    assert info.value.kind is ErrorKind.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "bad", ["fraud:0", "fraud:-1", "fraud:x", "fraud:", "fraud@", "fraud@1abc", "fraud:1@a"]
)
def test_bad_refs(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        ModelRef.parse(bad)


def test_alias_must_start_with_a_letter() -> None:
    assert check_alias("production") == "production"
    with pytest.raises(InvalidArgument, match="start with a letter"):
        check_alias("3rd")


def test_version_and_alias_together_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="not both"):
        ModelRef("a", version=1, alias="b")


@given(st.text(max_size=300))
def test_accepted_names_are_safe_path_segments(text: str) -> None:
    try:
        name = check_name(text)
    except InvalidArgument:
        return
    assert "/" not in name and "\\" not in name and ".." not in name and "\x00" not in name
    assert name not in (".", "..") and len(name) <= MAX_NAME_LENGTH and name.isascii()
