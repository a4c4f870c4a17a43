"""The API key token format, `sy_<id>_<secret>`, and the one digest that is stored.

`id` is 12 hex characters (48 random bits): public, shown by `shipyard keys list`, written to the
ledger and logs. `secret` is `secrets.token_urlsafe(32)`: 256 random bits, 43 characters.

Only sha256(token) is stored. A plain, fast hash is the standard choice for machine-generated
secrets (GitHub, Stripe and PyPI tokens work the same way): slow password hashes (bcrypt,
argon2) exist to make guessing low-entropy human passwords expensive, and nobody can enumerate
2^256 secrets however fast the hash is — while a slow hash would cost every request
milliseconds. A pepper would only help if it lived outside the database, which is operational
burden with no gain at this entropy. Hashing the whole token (id included) binds the secret to
its id.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

from shipyard.core.errors import Unauthenticated

PREFIX: Final = "sy_"
ID_CHARS: Final = 12
SECRET_BYTES: Final = 32
# Anything longer is refused before any other work (and before any regex or hashing).
MAX_TOKEN_CHARS: Final = 512
MISSING: Final = "missing API key"
# One message for malformed tokens, unknown ids and wrong secrets: the caller learns nothing.
INVALID: Final = "invalid API key"

_TOKEN = re.compile(r"sy_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_KEY_ID = re.compile(r"[0-9a-f]{12}")


def new_token() -> tuple[str, str]:
    """A fresh (key id, token) pair. The token is shown to its owner once and never stored."""
    key_id = secrets.token_hex(ID_CHARS // 2)
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def parse_token(token: object) -> tuple[str, str]:
    """(key id, digest) of a well-formed token; Unauthenticated for anything else."""
    if token is None or token == "":
        raise Unauthenticated(MISSING)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise Unauthenticated(INVALID)
    # The pattern's classes are ASCII-only, so NUL, spaces and non-ASCII never match.
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise Unauthenticated(INVALID)
    return match.group(1), digest(token)


def is_key_id(value: object) -> bool:
    return isinstance(value, str) and _KEY_ID.fullmatch(value) is not None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value; None when absent or of
    another scheme (which `authenticate` then reports as a missing key)."""
    if not authorization or len(authorization) > MAX_TOKEN_CHARS + 16:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None
