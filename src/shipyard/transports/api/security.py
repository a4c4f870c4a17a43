"""API keys on the management API: every endpoint needs a key holding its scope.

`Authorization: Bearer sy_...` (documented in OpenAPI as an HTTP bearer scheme). A failure is
Unauthenticated (401) or PermissionDenied (403), written to the audit log by the middleware;
the authenticated key is left in the request state for the audit entry of the call.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shipyard.auth import tokens
from shipyard.auth.scopes import Scope
from shipyard.transports.api.context import Caller, acting_as, services
from shipyard.transports.ui import cookies

bearer = HTTPBearer(auto_error=False, description="An API key: `Bearer sy_<id>_<secret>`.")

KEY_STATE = "shipyard_key"  # request.state attribute the audit middleware reads


def _caller(request: Request, scope: Scope) -> Caller:
    found = services(request)
    token = tokens.bearer_token(request.headers.get("authorization"))
    # No Bearer header: the web UI's session cookie, which needs its CSRF token to change things.
    key = found.keys.authenticate(token if token is not None else cookies.session_token(request))
    setattr(request.state, KEY_STATE, key)
    if token is None:
        cookies.check_csrf(request)
    found.keys.authorize(key, scope)
    return Caller(key, acting_as(found.registry, key.principal))


def needs(scope: Scope) -> Callable[..., Caller]:
    """A dependency that authenticates the caller and requires `scope` (or one implying it)."""

    def dependency(
        request: Request,
        _credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> Caller:
        return _caller(request, scope)

    return dependency


READ = Depends(needs(Scope.READ))
PREDICT = Depends(needs(Scope.PREDICT))
DEPLOY = Depends(needs(Scope.DEPLOY))
ADMIN = Depends(needs(Scope.ADMIN))
