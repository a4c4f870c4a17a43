"""API keys on the data plane: which scope each endpoint needs, and the one check (rule 1, P14).

`Guard` is transport-neutral (the gRPC interceptor uses it too): given a token and the scopes
that may call an endpoint, it returns the key or raises Unauthenticated (401) /
PermissionDenied (403). The hot path stays cheap: a token whose lookup is in the KeyStore's
cache is checked in memory, with no database access, no thread and no task; only a cache miss
runs `KeyStore.authenticate` in a thread (`asyncio.to_thread`), so the event loop never waits
on the database. `last_used_at` is recorded by those misses (at most once per cache TTL).

Scopes per REST endpoint (`ENDPOINT_SCOPES`; None = open, no key needed):

    health: /v2/health/live, /v2/health/ready, /ping, /health     open
    inference: /v2/models/*/infer, /v1/models/*:predict, /invocations
                                                                  predict
    metadata and readiness: /v2, /v2/models/*[/versions/*][/ready], /v1/models/*, /version
                                                                  predict or read
    /v2/repository/index (lists what is served)                   read
    /v2/repository/models/*/load, /unload                         admin
    /metrics                                                      read (open with --metrics-public)

Metadata is allowed to both predict keys (a client needs a model's signature to call it) and
read keys (it is what a read key exists for); admin implies every scope. Tokens are never
logged: callers log `ApiKey.principal` (`key:<id>`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from shipyard.auth import tokens
from shipyard.auth.keys import ApiKey, KeyStore
from shipyard.auth.scopes import Scope, grants
from shipyard.core.errors import PermissionDenied
from shipyard.transports.rest import routes

Needs = tuple[Scope, ...]  # any one of them is enough; () = open

OPEN: Needs = ()
PREDICT: Needs = (Scope.PREDICT,)
METADATA: Needs = (Scope.PREDICT, Scope.READ)
READ: Needs = (Scope.READ,)
ADMIN: Needs = (Scope.ADMIN,)
# Paths that match no endpoint: the caller still needs a valid key to learn that.
ANY_KEY: Needs = tuple(Scope)

ENDPOINT_SCOPES: Mapping[str, Needs] = {
    routes.LIVE: OPEN,
    routes.READY: OPEN,
    routes.PING: OPEN,
    routes.HEALTH: OPEN,
    routes.INFER: PREDICT,
    routes.V1_PREDICT: PREDICT,
    routes.INVOCATIONS: PREDICT,
    routes.SERVER_METADATA: METADATA,
    routes.MODEL_METADATA: METADATA,
    routes.MODEL_READY: METADATA,
    routes.V1_MODEL: METADATA,
    routes.VERSION: METADATA,
    routes.REPOSITORY_INDEX: READ,
    routes.LOAD: ADMIN,
    routes.UNLOAD: ADMIN,
    routes.METRICS: READ,
}

_API_KEY_HEADER = b"x-api-key"
_AUTHORIZATION = b"authorization"


def endpoint_scopes(*, metrics_public: bool = False) -> dict[str, Needs]:
    """The scope table of the REST endpoints, with /metrics open if `metrics_public`."""
    table = dict(ENDPOINT_SCOPES)
    if metrics_public:
        table[routes.METRICS] = OPEN
    return table


def request_token(headers: Mapping[bytes, bytes]) -> str | None:
    """The token of `Authorization: Bearer <token>`, else of `X-API-Key: <token>`, else None."""
    raw = headers.get(_AUTHORIZATION)
    if raw is not None:
        token = tokens.bearer_token(raw.decode("latin-1"))
        if token is not None:
            return token
    raw = headers.get(_API_KEY_HEADER)
    if raw is None:
        return None
    return raw.decode("latin-1").strip() or None


class Guard:
    """Authenticates tokens against a KeyStore and checks that a key holds one of `needs`."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store

    async def check(self, token: str | None, needs: Needs) -> ApiKey:
        """The key of `token` if it may call an endpoint needing `needs` (which must not be
        OPEN); Unauthenticated, PermissionDenied or (database down, key not cached)
        Unavailable otherwise."""
        key = self.cached(token)
        if key is None:
            key = await asyncio.to_thread(self.store.authenticate, token)
        authorize(key, needs)
        return key

    def cached(self, token: str | None) -> ApiKey | None:
        """The usable key of `token` from the store's cache (no database, no thread), or
        None on a miss."""
        return self.store.cached(token)


def authorize(key: ApiKey, needs: Needs) -> None:
    """PermissionDenied unless `key` holds (or implies) one of `needs`."""
    if any(grants(key.scopes, scope) for scope in needs):
        return
    wanted = " or ".join(repr(scope.value) for scope in needs)
    raise PermissionDenied(f"this key lacks the {wanted} scope")
