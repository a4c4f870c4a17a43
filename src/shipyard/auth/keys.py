"""API keys: issue, list, revoke, authenticate and authorize (security.md rules 1 and 6, P14).

Keys are shown once (`create` returns the token) and stored as a digest only (see tokens.py).
A transport checks a request with one call, which raises Unauthenticated (401) or
PermissionDenied (403) and otherwise returns the key, whose `principal` is the ledger actor:

    key = store.check(bearer_token(request.headers.get("authorization")), Scope.PREDICT)

Successful lookups are cached in process for `cache_ttl_s` (default 5 s), so a data plane pays
one database read per key every few seconds, not per request; a revocation made elsewhere takes
effect within that TTL (at once in the process that revoked). `last_used_at` is written at most
once per `touch_interval_s` per key, best effort: a failed write never fails a request.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from shipyard.auth import tokens
from shipyard.auth.cache import TtlCache
from shipyard.auth.scopes import Scope, grants, parse_scopes, stored_scopes
from shipyard.core.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from shipyard.registry import checks, ledger
from shipyard.registry.service import Registry
from shipyard.storage.database import Database
from shipyard.storage.keys_table import ApiKeyRow
from shipyard.storage.tables import utcnow

__all__ = ["ApiKey", "KeyStore", "Scope", "ensure_admin_key"]

log = logging.getLogger(__name__)

MAX_NAME = 200
# pg_advisory_xact_lock key serialising the first-start admin key ("SYADMKEY" in ASCII).
_ADMIN_LOCK_KEY = 0x535941444D4B4559
# Compared against when the id is unknown, so both failures take the same path.
_NO_DIGEST = b"0" * 64
_CREATE_ATTEMPTS = 3
_MAX_TOUCHED = 100_000
_BAD_ID = "an API key id is 12 hexadecimal characters (the part after 'sy_' in the token)"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An issued key as stored: everything except the secret, which is never kept."""

    id: str
    name: str
    scopes: tuple[Scope, ...]
    created_at: datetime
    created_by: str
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def principal(self) -> str:
        """Who this key acts as: the `actor` of ledger entries made with it, and in logs."""
        return f"key:{self.id}"

    def allows(self, scope: Scope) -> bool:
        return grants(self.scopes, scope)

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def to_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        scopes=stored_scopes(row.scopes),
        created_at=row.created_at,
        created_by=row.created_by,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument("an API key needs a non-empty name")
    # Printable only: names end up in terminals and tables (no control sequences, no NUL).
    if len(name) > MAX_NAME or not name.isprintable():
        raise InvalidArgument(f"an API key name is at most {MAX_NAME} printable characters")
    return name.strip()


def _check_expiry(expires_at: object, now: datetime) -> datetime | None:
    if expires_at is None:
        return None
    if not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
        raise InvalidArgument("expires_at must be a timezone-aware datetime")
    if expires_at <= now:
        raise InvalidArgument("expires_at must be in the future")
    return expires_at


def _check_usable(key: ApiKey, now: datetime) -> None:
    if key.revoked_at is not None:
        raise Unauthenticated("API key revoked")
    if key.is_expired(now):
        raise Unauthenticated("API key expired")


class KeyStore:
    """API keys in the registry database. Thread-safe; one per process is enough."""

    def __init__(
        self,
        database: Database,
        *,
        actor: str = "system",
        clock: Callable[[], datetime] = utcnow,
        cache_ttl_s: float = 5.0,
        stale_if_unavailable_s: float = 300.0,
        touch_interval_s: float = 60.0,
        cache_entries: int = 10_000,
    ) -> None:
        if cache_ttl_s < 0 or stale_if_unavailable_s < 0 or touch_interval_s < 0:
            raise InvalidArgument("cache and touch intervals must not be negative")
        self.database = database
        self.actor = checks.check_actor(actor)
        self._clock = clock
        self._touch_every = timedelta(seconds=touch_interval_s)
        self._cache: TtlCache[ApiKey] = TtlCache(
            ttl_s=cache_ttl_s, stale_s=stale_if_unavailable_s, max_entries=cache_entries
        )
        self._touched: dict[str, datetime] = {}
        self._touch_lock = threading.Lock()

    @classmethod
    def for_registry(cls, registry: Registry, **options: Any) -> KeyStore:
        """Keys in `registry`'s database, created and revoked as `registry.actor`."""
        return cls(registry.database, actor=registry.actor, **options)

    def __repr__(self) -> str:
        return f"KeyStore({self.database.url!r})"

    # -- management ------------------------------------------------------------------------

    def create(
        self,
        name: str,
        scopes: Iterable[Scope | str],
        *,
        expires_at: datetime | None = None,
        actor: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Issue a key. The token is returned here and only here: it is not stored anywhere."""
        label = _check_name(name)
        chosen = parse_scopes(scopes)
        by = checks.check_actor(actor) if actor is not None else self.actor
        now = self._clock()
        until = _check_expiry(expires_at, now)
        for _ in range(_CREATE_ATTEMPTS - 1):
            try:
                return self._create_once(label, chosen, by, now, until)
            except IntegrityError:
                # Two 48-bit random ids collide about never; if they do, draw again.
                continue
        return self._create_once(label, chosen, by, now, until)

    def _create_once(
        self, name: str, scopes: tuple[Scope, ...], by: str, now: datetime, until: datetime | None
    ) -> tuple[ApiKey, str]:
        with self.database.write() as session:
            return self._insert(session, name, scopes, by, now, until)

    def _insert(
        self,
        session: Session,
        name: str,
        scopes: tuple[Scope, ...],
        by: str,
        now: datetime,
        until: datetime | None,
    ) -> tuple[ApiKey, str]:
        key_id, token = tokens.new_token()
        names = [scope.value for scope in scopes]
        row = ApiKeyRow(
            id=key_id, name=name, digest=tokens.digest(token), scopes=names, created_at=now,
            created_by=by, last_used_at=None, expires_at=until, revoked_at=None,
        )  # fmt: skip
        session.add(row)
        session.flush()
        # Same transaction as the row: a key exists if and only if its ledger entry does.
        details: dict[str, Any] = {"key_id": key_id, "name": name, "scopes": names}
        details["expires_at"] = until.isoformat() if until is not None else None
        ledger.append(session, actor=by, action="key.created", details=details)
        return to_key(row), token

    def ensure_admin(
        self, *, name: str = "admin", actor: str | None = None
    ) -> tuple[ApiKey, str] | None:
        """On a database that has never had a key, issue an admin key; otherwise None.
        Safe when several control planes start at once: exactly one of them gets the key."""
        label = _check_name(name)
        by = checks.check_actor(actor) if actor is not None else self.actor
        with self.database.write() as session:
            if self.database.is_postgres:
                # SQLite's BEGIN IMMEDIATE already serialises this transaction.
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADMIN_LOCK_KEY})
            if session.scalar(select(func.count()).select_from(ApiKeyRow)):
                return None
            return self._insert(session, label, (Scope.ADMIN,), by, self._clock(), None)

    def list(self) -> list[ApiKey]:
        """Every key, revoked and expired included, oldest first. Never a secret."""
        statement = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        with self.database.read() as session:
            return [to_key(row) for row in session.scalars(statement)]

    def get(self, key_id: str) -> ApiKey:
        if not tokens.is_key_id(key_id):
            raise InvalidArgument(_BAD_ID)
        with self.database.read() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFound(f"no API key {key_id!r}")
            return to_key(row)

    def revoke(self, key_id: str, *, actor: str | None = None, reason: str | None = None) -> ApiKey:
        """Revoke a key for good (idempotent: revoking twice keeps the first time)."""
        if not tokens.is_key_id(key_id):
            # Never echo the argument: it may be a whole token pasted by mistake.
            raise InvalidArgument(_BAD_ID)
        by = checks.check_actor(actor) if actor is not None else self.actor
        checks.check_text(reason, "reason")
        with self.database.write() as session:
            row = session.get(ApiKeyRow, key_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no API key {key_id!r}")
            if row.revoked_at is None:
                row.revoked_at = self._clock()
                details = {"key_id": key_id, "name": row.name, "scopes": list(row.scopes)}
                ledger.append(
                    session, actor=by, action="key.revoked", details=details, reason=reason
                )
            key = to_key(row)
        self._cache.remove_values(lambda cached: cached.id == key_id)
        return key

    # -- per request -----------------------------------------------------------------------

    def authenticate(self, token: str | None) -> ApiKey:
        """The key `token` belongs to, if it is valid, unexpired and not revoked; otherwise
        Unauthenticated. Unavailable only if the database is down and the key is not cached."""
        key_id, digest = tokens.parse_token(token)
        now = self._clock()
        key = self._cache.get(digest, now)
        if key is None:
            key = self._lookup(key_id, digest, now)
        _check_usable(key, now)
        self._touch(key, now)
        return key

    def cached(self, token: str | None) -> ApiKey | None:
        """The usable key of `token` if its lookup is cached, else None: the request path's
        check, with no database read and no `last_used_at` write. Unauthenticated for
        malformed tokens and cached keys that are revoked or expired."""
        _, digest = tokens.parse_token(token)
        now = self._clock()
        key = self._cache.get(digest, now)
        if key is not None:
            _check_usable(key, now)
        return key

    @staticmethod
    def authorize(key: ApiKey, scope: Scope | str) -> None:
        required = Scope.parse(scope)
        if not key.allows(required):
            raise PermissionDenied(f"this key lacks the {required.value!r} scope")

    def check(self, token: str | None, scope: Scope | str) -> ApiKey:
        """authenticate + authorize: the one call a transport makes per request."""
        key = self.authenticate(token)
        self.authorize(key, scope)
        return key

    def forget_cached(self) -> None:
        """Drop every cached authentication (the next request of each key reads the database)."""
        self._cache.clear()

    def _lookup(self, key_id: str, digest: str, now: datetime) -> ApiKey:
        try:
            with self.database.read() as session:
                row = session.get(ApiKeyRow, key_id)
                stored = row.digest.encode() if row is not None else _NO_DIGEST
                # Constant-time: the time taken says nothing about how much of the digest matched.
                matches = hmac.compare_digest(stored, digest.encode()) and row is not None
                key = to_key(row) if matches and row is not None else None
        except Unavailable:
            stale = self._cache.get(digest, now, stale_ok=True)
            if stale is None:
                raise
            log.warning("database unavailable: using the cached lookup of API key %s", key_id)
            return stale
        if key is None:
            raise Unauthenticated(tokens.INVALID)
        # Revoked and expired keys are cached too: their state is checked on every request.
        self._cache.put(digest, key, now)
        return key

    def _touch(self, key: ApiKey, now: datetime) -> None:
        """Record use at most once per interval per key, so requests do not all write."""
        if self._recent(key.last_used_at, now):
            return
        with self._touch_lock:
            if self._recent(self._touched.get(key.id), now):
                return
            if len(self._touched) >= _MAX_TOUCHED:
                self._touched.clear()
            self._touched[key.id] = now
        cutoff = now - self._touch_every
        statement = (
            update(ApiKeyRow)
            .where(ApiKeyRow.id == key.id)
            .where(or_(ApiKeyRow.last_used_at.is_(None), ApiKeyRow.last_used_at < cutoff))
            .values(last_used_at=now)
        )
        try:
            with self.database.write() as session:
                session.execute(statement)
        except (Unavailable, SQLAlchemyError) as exc:
            # E.g. a read-only replica or a locked database: losing a timestamp beats failing.
            log.warning("could not record the use of API key %s: %s", key.id, type(exc).__name__)

    def _recent(self, at: datetime | None, now: datetime) -> bool:
        return at is not None and timedelta(0) <= now - at < self._touch_every


def ensure_admin_key(
    store: KeyStore, *, name: str = "admin", actor: str | None = None
) -> tuple[ApiKey, str] | None:
    """For `shipyard server` on first start: an admin key and its token (print it once) if the
    database has never had a key, else None. Revoking every key does not mint a new one on
    restart: create one with `shipyard keys create NAME --scope admin` on the host."""
    return store.ensure_admin(name=name, actor=actor)
