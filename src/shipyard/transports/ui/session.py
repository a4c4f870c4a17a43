"""Session endpoints: sign in with an API key (it goes into an HttpOnly cookie), who am I,
sign out. Documented in the OpenAPI like the rest of /api/v1."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Cookie, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from shipyard.auth.keys import ApiKey
from shipyard.auth.scopes import Scope
from shipyard.core.errors import PermissionDenied, UnsupportedMedia
from shipyard.transports.api.context import Caller, services
from shipyard.transports.api.errors import ERROR_RESPONSES
from shipyard.transports.api.security import KEY_STATE, READ
from shipyard.transports.ui import cookies

router = APIRouter(responses=ERROR_RESPONSES, tags=["session"])


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=512, description="An API key, `sy_<id>_<secret>`.")


class SessionOut(BaseModel):
    id: str
    name: str
    principal: str
    scopes: list[str]
    expires_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> SessionOut:
        scopes = [s.value for s in key.scopes]
        return cls(
            id=key.id, name=key.name, principal=key.principal, scopes=scopes,
            expires_at=key.expires_at,
        )  # fmt: skip


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


def _json_only(content_type: str | None) -> None:
    media = (content_type or "").partition(";")[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMedia("send the key as application/json")


@router.post("/session", response_model=SessionOut)
def sign_in(
    request: Request,
    response: Response,
    body: SignIn,
    content_type: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> SessionOut:
    """Check `key` and keep it in an HttpOnly, SameSite=Strict cookie for the web UI, with a
    CSRF token in a readable cookie (`shipyard_csrf`) that state-changing requests made with
    the session must send back as `X-CSRF-Token`. The key needs the `read` scope."""
    _json_only(content_type)
    found = services(request)
    key = found.keys.authenticate(body.key)
    setattr(request.state, KEY_STATE, key)
    found.keys.authorize(key, Scope.READ)
    cookies.start(response, body.key, secure=_https(request))
    return SessionOut.of(key)


@router.get("/session", response_model=SessionOut)
def who_am_i(caller: Caller = READ) -> SessionOut:
    """The calling key: id, name and scopes (never its token)."""
    return SessionOut.of(caller.key)


@router.delete("/session", status_code=204, response_class=Response)
def sign_out(
    request: Request,
    shipyard_session: Annotated[
        str | None, Cookie(max_length=512, description="The session (an API key).")
    ] = None,
    x_csrf_token: Annotated[
        str | None, Header(max_length=512, description="The `shipyard_csrf` cookie's value.")
    ] = None,
) -> Response:
    """Forget the session cookies. Needs the CSRF header when a session cookie is sent, but no
    valid key: a revoked or expired key can still sign out."""
    # Both parameters are declared for the OpenAPI document; `cookies` compares them.
    if shipyard_session and not cookies.csrf_matches(request):
        raise PermissionDenied(cookies.CSRF_REFUSED)
    response = Response(status_code=204)
    cookies.end(response, secure=_https(request))
    return response
