"""The browser session: an API key held in an HttpOnly cookie, and its CSRF token.

Signing in sets two cookies, both SameSite=Strict (and Secure when the request came over
https): `shipyard_session` (HttpOnly) holds the API key itself, and `shipyard_csrf` holds a
random token that the page's script reads and sends back as `X-CSRF-Token` (double submit).
A state-changing request authenticated by the cookie must carry the matching header; a cross-
site page can make a browser send the cookie but can neither read the token nor set the header.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from shipyard.core.errors import PermissionDenied

SESSION_COOKIE = "shipyard_session"
CSRF_COOKIE = "shipyard_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_REFUSED = "CSRF token missing or wrong"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_COOKIE = 512  # longer than any token: refused unread


def session_token(request: Request) -> str | None:
    """The API key of the session cookie, or None."""
    value = request.cookies.get(SESSION_COOKIE)
    return value if value and len(value) <= _MAX_COOKIE else None


def csrf_matches(request: Request) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    header = request.headers.get(CSRF_HEADER) or ""
    if not cookie or not header or len(cookie) > _MAX_COOKIE or len(header) > _MAX_COOKIE:
        return False
    return hmac.compare_digest(cookie.encode(), header.encode())


def check_csrf(request: Request) -> None:
    """PermissionDenied for a state-changing request without the matching CSRF header."""
    if request.method in MUTATING and not csrf_matches(request):
        raise PermissionDenied(CSRF_REFUSED)


def start(response: Response, token: str, *, secure: bool) -> None:
    """Set the session and a fresh CSRF cookie on `response` (browser-session cookies)."""
    response.set_cookie(
        SESSION_COOKIE, token, path="/", secure=secure, httponly=True, samesite="strict"
    )
    csrf = secrets.token_urlsafe(32)
    response.set_cookie(
        CSRF_COOKIE, csrf, path="/", secure=secure, httponly=False, samesite="strict"
    )


def end(response: Response, *, secure: bool) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(
            name, path="/", secure=secure, httponly=name == SESSION_COOKIE, samesite="strict"
        )
