"""`shipyard keys`: the token is printed once at creation and never again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from backends import SQLITE_ONLY
from typer.testing import CliRunner

from shipyard.auth.keys import KeyStore
from shipyard.cli import app
from shipyard.core.errors import Unauthenticated
from shipyard.storage.database import Database

pytestmark = SQLITE_ONLY  # backends.py: the CLI's storage runs on both elsewhere


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "SHIPYARD_HOME": str(tmp_path / "home"),
        "SHIPYARD_DATABASE_URL": database_url,
        "SHIPYARD_ACTOR": "ops",
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_create_prints_the_token_once_and_list_never(
    env: dict[str, str], database_url: str
) -> None:
    code, out, err = run(env, "keys", "create", "frontend", "--scope", "read", "--scope", "predict")
    assert code == 0, err
    tokens = [line for line in out.splitlines() if line.startswith("sy_")]
    assert len(tokens) == 1 and out.count(tokens[0]) == 1
    token = tokens[0]
    key_id = token[3:15]
    assert f"created API key {key_id} (frontend; read, predict)" in out
    assert "cannot be shown again" in err

    code, out, err = run(env, "keys", "create", "ci", "--scope", "deploy", "--json")
    assert code == 0, err
    created = json.loads(out)
    assert created["key"]["scopes"] == ["deploy"] and created["token"].startswith("sy_")
    assert created["key"]["created_by"] == "ops"

    for args in (["keys", "list"], ["keys", "list", "--json"]):
        code, out, err = run(env, *args)
        assert code == 0, err
        assert key_id in out and created["key"]["id"] in out
        for secret in (token, token[16:], created["token"], created["token"][16:]):
            assert secret not in out and secret not in err
    listed = json.loads(run(env, "keys", "list", "--json")[1])
    assert [k["name"] for k in listed] == ["frontend", "ci"]
    assert set(listed[0]) >= {"id", "scopes", "created_at", "last_used_at", "expires_at"}

    with Database(database_url) as database:
        assert KeyStore(database).check(token, "predict").id == key_id


def test_revoke(env: dict[str, str], database_url: str) -> None:
    code, out, err = run(env, "keys", "create", "temp", "--scope", "admin", "--json")
    assert code == 0, err
    created = json.loads(out)
    key_id = created["key"]["id"]
    code, out, err = run(env, "keys", "revoke", key_id, "--reason", "rotated")
    assert code == 0 and f"revoked API key {key_id} (temp)" in out, err
    code, out, _ = run(env, "keys", "list")
    assert code == 0 and "revoked" in out
    [listed] = json.loads(run(env, "keys", "list", "--json")[1])
    assert listed["revoked_at"] is not None
    with Database(database_url) as database, pytest.raises(Unauthenticated, match="revoked"):
        KeyStore(database).authenticate(created["token"])


def test_empty_list(env: dict[str, str]) -> None:
    code, out, _ = run(env, "keys", "list")
    assert code == 0 and "no API keys yet" in out


@pytest.mark.parametrize(
    ("args", "exit_code", "fragment"),
    [
        (["create", "x", "--scope", "root"], 3, "unknown scope 'root'; use one of read, predict"),
        (["create", "x"], 3, "needs at least one scope"),
        (["create", "x", "--scope", "read", "--expires-in-days", "0"], 3, "between 1 and"),
        (["revoke", "abcdefabcdef"], 4, "no API key 'abcdefabcdef'"),
        (["revoke", "nonsense"], 3, "12 hexadecimal characters"),
    ],
)
def test_errors_are_one_line_with_an_exit_code(
    env: dict[str, str], args: list[str], exit_code: int, fragment: str
) -> None:
    code, out, err = run(env, "keys", *args)
    assert code == exit_code, (out, err)
    # Rich wraps at the runner's 80 columns; the message itself is one line.
    assert fragment in " ".join(err.split()) and err.startswith("error (")
    assert json.loads(run(env, "keys", "list", "--json")[1]) == []  # nothing stored


def test_expiring_key_shows_its_expiry(env: dict[str, str]) -> None:
    code, out, err = run(
        env, "keys", "create", "t", "--scope", "read", "--expires-in-days", "7", "--json"
    )
    assert code == 0, err
    [listed] = json.loads(run(env, "keys", "list", "--json")[1])
    assert listed["expires_at"] == json.loads(out)["key"]["expires_at"] is not None
