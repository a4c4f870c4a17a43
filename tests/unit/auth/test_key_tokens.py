"""Token parsing and scope hierarchy, without a database."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.auth.scopes import Scope, parse_scopes, stored_scopes
from shipyard.auth.tokens import bearer_token, digest, new_token, parse_token
from shipyard.core.errors import InvalidArgument, Unauthenticated


def test_new_tokens_parse_back_to_their_id_and_digest() -> None:
    seen = set()
    for _ in range(200):
        key_id, token = new_token()
        assert parse_token(token) == (key_id, digest(token))
        seen.add(key_id)
    assert len(seen) == 200


@settings(max_examples=2_000)
@given(st.one_of(st.none(), st.text(max_size=700), st.binary(max_size=100), st.integers()))
def test_parse_token_raises_only_unauthenticated(value: object) -> None:
    try:
        parse_token(value)
    except Unauthenticated as exc:
        assert exc.message in ("missing API key", "invalid API key")


def test_hierarchy() -> None:
    assert Scope.ADMIN.grants(Scope.PREDICT) and Scope.ADMIN.grants(Scope.DEPLOY)
    assert Scope.DEPLOY.grants(Scope.READ) and not Scope.DEPLOY.grants(Scope.PREDICT)
    assert not Scope.PREDICT.grants(Scope.READ) and not Scope.READ.grants(Scope.PREDICT)
    assert not Scope.READ.grants(Scope.DEPLOY)


def test_scope_parsing() -> None:
    assert parse_scopes(["admin", "read", "Read"]) == (Scope.READ, Scope.ADMIN)
    assert parse_scopes("predict") == (Scope.PREDICT,)
    with pytest.raises(InvalidArgument, match="unknown scope 'superuser'"):
        parse_scopes(["superuser"])
    with pytest.raises(InvalidArgument, match="at least one"):
        parse_scopes([])
    # A scope a newer version wrote is dropped, never widened into something else.
    assert stored_scopes(["read", "telepathy", 3]) == (Scope.READ,)
    assert stored_scopes("read") == ()


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer sy_abc", "sy_abc"),
        ("bearer   sy_abc ", "sy_abc"),
        ("Basic dXNlcjpwdw==", None),
        ("Bearer", None),
        ("", None),
        (None, None),
        ("Bearer " + "x" * 10_000, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token
