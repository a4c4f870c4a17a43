"""API keys on both databases: issue, authenticate, authorize, revoke, expire; secrets never stored."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import Session

from shipyard.auth.keys import ApiKey, KeyStore, Scope, ensure_admin_key
from shipyard.core.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from shipyard.registry.service import Registry
from shipyard.storage.database import MIGRATIONS, Database, parse_url


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(registry: Registry, clock: Clock) -> KeyStore:
    return KeyStore.for_registry(registry, clock=clock)


def _secret(token: str) -> str:
    return token[len("sy_") + 12 + 1 :]


# held scope -> the scopes it grants (admin ⊇ deploy ⊇ read, admin ⊇ predict).
GRANTS = {
    Scope.READ: {Scope.READ},
    Scope.PREDICT: {Scope.PREDICT},
    Scope.DEPLOY: {Scope.DEPLOY, Scope.READ},
    Scope.ADMIN: set(Scope),
}


@pytest.mark.parametrize("held", list(Scope), ids=lambda s: s.value)
def test_create_authenticate_authorize_by_hierarchy(keys: KeyStore, held: Scope) -> None:
    key, token = keys.create("svc", [held.value])
    assert token.startswith(f"sy_{key.id}_") and len(key.id) == 12 and len(_secret(token)) == 43
    found = keys.authenticate(token)
    assert found.id == key.id and found.scopes == (held,) and found.principal == f"key:{key.id}"
    for required in Scope:
        if required in GRANTS[held]:
            keys.authorize(found, required)
            assert keys.check(token, required).id == key.id
        else:
            with pytest.raises(PermissionDenied) as caught:
                keys.authorize(found, required)
            assert caught.value.message == f"this key lacks the '{required.value}' scope"


def test_several_scopes_are_a_union(keys: KeyStore) -> None:
    key, token = keys.create("app", ["predict", Scope.READ, "READ"])
    assert key.scopes == (Scope.READ, Scope.PREDICT)
    keys.check(token, "read")
    keys.check(token, Scope.PREDICT)
    with pytest.raises(PermissionDenied, match="'deploy'"):
        keys.check(token, Scope.DEPLOY)


@pytest.mark.parametrize(
    ("name", "scopes"),
    [("", ["read"]), ("x\x00y", ["read"]), ("bell\x07", ["read"]), ("ok", []), ("ok", ["root"])],
)
def test_bad_create_arguments_store_nothing(
    keys: KeyStore, registry: Registry, name: str, scopes: list[str]
) -> None:
    with pytest.raises(InvalidArgument):
        keys.create(name, scopes)
    assert keys.list() == [] and registry.ledger() == []


def test_unknown_id_and_wrong_secret_get_the_same_answer(keys: KeyStore) -> None:
    key, token = keys.create("svc", ["read"])
    wrong_secret = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    unknown_id = f"sy_{'0' * 12 if key.id != '0' * 12 else '1' * 12}_{_secret(token)}"
    errors = []
    for candidate in (wrong_secret, unknown_id):
        with pytest.raises(Unauthenticated) as caught:
            keys.authenticate(candidate)
        errors.append((type(caught.value), caught.value.message, caught.value.details))
    assert errors[0] == errors[1] == (Unauthenticated, "invalid API key", {})


def _malformed(token: str) -> list[str]:
    return [
        "abc", "sy_", "sy__", token.upper(), " " + token, token + "\n", token + "x", token[:-1],
        token.replace("sy_", "sk_", 1), token[:20] + "\x00" + token[21:],
        token[:20] + "é" + token[21:], "sy_" + "a" * 100_000, "Bearer " + token,
    ]  # fmt: skip


def test_missing_and_malformed_tokens_are_unauthenticated(keys: KeyStore) -> None:
    _, token = keys.create("svc", ["read"])
    for missing in (None, ""):
        with pytest.raises(Unauthenticated, match="^missing API key$"):
            keys.authenticate(missing)
    for bad in _malformed(token):
        with pytest.raises(Unauthenticated, match="^invalid API key$"):
            keys.authenticate(bad)
    with pytest.raises(Unauthenticated, match="^invalid API key$"):
        keys.authenticate(token.encode())  # type: ignore[arg-type]


def test_revoked_keys_are_refused_at_once_in_the_revoking_process(
    keys: KeyStore, registry: Registry
) -> None:
    key, token = keys.create("svc", ["predict"])
    keys.authenticate(token)  # now cached
    revoked = keys.revoke(key.id, reason="leaked")
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthenticated, match="^API key revoked$"):
        keys.authenticate(token)
    assert keys.revoke(key.id).revoked_at == revoked.revoked_at  # idempotent
    assert [e.action for e in registry.ledger()] == ["key.created", "key.revoked"]


def test_revocation_elsewhere_takes_effect_within_the_cache_ttl(
    registry: Registry, open_registry: Callable[..., Registry], clock: Clock
) -> None:
    data_plane = KeyStore(registry.database, clock=clock, cache_ttl_s=5.0)
    control_plane = KeyStore.for_registry(open_registry(), clock=clock)
    key, token = control_plane.create("svc", ["predict"])
    assert data_plane.authenticate(token).id == key.id
    control_plane.revoke(key.id)
    clock.advance(4.0)
    assert data_plane.authenticate(token).id == key.id  # still cached: at most the TTL late
    clock.advance(1.5)
    with pytest.raises(Unauthenticated, match="^API key revoked$"):
        data_plane.authenticate(token)


def test_expired_keys_are_refused(keys: KeyStore, clock: Clock) -> None:
    key, token = keys.create("temp", ["read"], expires_at=clock.now + timedelta(hours=1))
    keys.authenticate(token)
    clock.advance(3600)
    with pytest.raises(Unauthenticated, match="^API key expired$"):
        keys.authenticate(token)
    with pytest.raises(InvalidArgument, match="future"):
        keys.create("past", ["read"], expires_at=clock.now - timedelta(seconds=1))
    with pytest.raises(InvalidArgument, match="timezone-aware"):
        keys.create("naive", ["read"], expires_at=datetime(2099, 1, 1))


def _everything_stored(session: Session) -> str:
    """Every row of every table, as text."""
    bind = session.connection()
    dump: list[str] = []
    for table in inspect(bind).get_table_names():
        dump.extend(repr(tuple(row)) for row in session.execute(text(f'SELECT * FROM "{table}"')))
    return "\n".join(dump)


def test_secrets_are_never_stored(keys: KeyStore, registry: Registry, tmp_path: Path) -> None:
    issued = [keys.create(f"k{i}", ["admin", "predict"]) for i in range(3)]
    keys.revoke(issued[0][0].id)
    for _, token in issued[1:]:
        keys.authenticate(token)
    with registry.database.read() as session:
        stored = _everything_stored(session)
        rows = session.execute(text("SELECT id, digest FROM api_keys")).all()
        digests: dict[str, str] = {str(r[0]): str(r[1]) for r in rows}
    ledger = repr(registry.ledger())
    for key, token in issued:
        assert key.id in stored and key.id in ledger
        for part in (token, _secret(token), _secret(token)[:16]):
            assert part not in stored and part not in ledger
        assert digests[key.id] == hashlib.sha256(token.encode()).hexdigest()
        assert _secret(token) not in repr(key) and token not in repr(keys.list())
    if registry.database.dialect == "sqlite":  # the raw files, WAL included
        raw = b"".join(p.read_bytes() for p in (tmp_path / "db").iterdir() if p.is_file())
        assert raw and not any(_secret(t).encode() in raw for _, t in issued)


def test_ledger_records_who_issued_and_revoked_what(keys: KeyStore, registry: Registry) -> None:
    key, _ = keys.create("ci", ["deploy"], actor="alice")
    keys.revoke(key.id, actor="bob", reason="rotated")
    created, revoked = registry.ledger()
    assert (created.action, created.actor, created.details["key_id"]) == (
        "key.created", "alice", key.id,
    )  # fmt: skip
    assert created.details["scopes"] == ["deploy"] and created.model is None
    assert (revoked.action, revoked.actor, revoked.reason) == ("key.revoked", "bob", "rotated")
    assert revoked.details["key_id"] == key.id


def test_revoke_and_get_check_the_id(keys: KeyStore) -> None:
    _, token = keys.create("svc", ["read"])
    with pytest.raises(NotFound, match="no API key 'abcdefabcdef'"):
        keys.revoke("abcdefabcdef")
    with pytest.raises(InvalidArgument) as caught:
        keys.revoke(token)  # a whole token pasted by mistake is not echoed back
    assert _secret(token) not in str(caught.value)


def test_last_used_is_written_at_most_once_a_minute(keys: KeyStore, clock: Clock) -> None:
    key, token = keys.create("svc", ["predict"])
    assert keys.get(key.id).last_used_at is None
    keys.authenticate(token)
    first = keys.get(key.id).last_used_at
    assert first == clock.now
    for _ in range(5):
        clock.advance(10)
        keys.authenticate(token)
    assert keys.get(key.id).last_used_at == first
    clock.advance(15)
    keys.authenticate(token)
    assert keys.get(key.id).last_used_at == clock.now


@contextmanager
def _down() -> Iterator[Session]:
    raise Unavailable("cannot reach the database")
    yield  # pragma: no cover


def test_cached_keys_survive_a_database_outage(
    keys: KeyStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, token = keys.create("svc", ["predict"])
    _, other = keys.create("other", ["predict"])
    keys.authenticate(token)
    down: Callable[[], AbstractContextManager[Session]] = _down
    monkeypatch.setattr(keys.database, "read", down)
    monkeypatch.setattr(keys.database, "write", down)
    clock.advance(1)
    assert keys.authenticate(token).id == key.id  # fresh cache: no database needed
    clock.advance(120)
    assert keys.authenticate(token).id == key.id  # stale, allowed only while the database is down
    with pytest.raises(Unavailable):
        keys.authenticate(other)  # never seen: cannot be checked, and is not let through
    clock.advance(600)
    with pytest.raises(Unavailable):
        keys.authenticate(token)


def test_concurrent_creates_get_distinct_ids(
    registry: Registry, open_registry: Callable[..., Registry]
) -> None:
    stores = [KeyStore.for_registry(open_registry()) for _ in range(4)]
    issued: list[tuple[ApiKey, str]] = []
    errors: list[BaseException] = []

    def work(store: KeyStore) -> None:
        try:
            for i in range(5):
                issued.append(store.create(f"k{i}", ["read"]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({key.id for key, _ in issued}) == len({t for _, t in issued}) == 20
    assert len(KeyStore(registry.database).list()) == 20
    assert len(registry.ledger(action="key.created")) == 20


def test_ensure_admin_key_only_on_a_keyless_database(
    registry: Registry, open_registry: Callable[..., Registry]
) -> None:
    stores = [KeyStore.for_registry(open_registry()) for _ in range(4)]
    results: list[tuple[ApiKey, str] | None] = []
    threads = [threading.Thread(target=lambda s=s: results.append(ensure_admin_key(s))) for s in stores]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    issued = [r for r in results if r is not None]
    assert len(results) == 4 and len(issued) == 1
    key, token = issued[0]
    assert key.scopes == (Scope.ADMIN,) and key.name == "admin"
    store = KeyStore.for_registry(registry)
    store.check(token, Scope.DEPLOY)
    store.revoke(key.id)
    assert ensure_admin_key(store) is None  # revoking everything does not mint a new key


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    token=st.one_of(
        st.text(max_size=600),
        st.from_regex(r"sy_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", fullmatch=True),
        st.from_regex(r"sy_[0-9a-f]{0,14}_.{0,50}", fullmatch=True),
    )
)
def test_arbitrary_strings_only_ever_raise_unauthenticated(keys: KeyStore, token: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        keys.authenticate(token)
    assert caught.value.message in ("missing API key", "invalid API key")


def test_a_v0001_database_gains_the_keys_table_on_open(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    engine = create_engine(parse_url(database_url))
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "v0001")
        assert "api_keys" not in inspect(connection).get_table_names()
    engine.dispose()
    with Database(database_url) as database:
        assert database.schema_is_current()
        key, token = KeyStore(database).create("after-upgrade", ["read"])
        assert KeyStore(database).authenticate(token).id == key.id
