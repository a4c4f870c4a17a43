"""API key endpoints (admin): issue (the token is in this response only), list, revoke."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from shipyard.storage.tables import utcnow
from shipyard.transports.api.context import Caller, services
from shipyard.transports.api.errors import ERROR_RESPONSES
from shipyard.transports.api.schemas import KeyCreated, KeyOut
from shipyard.transports.api.security import ADMIN

router = APIRouter(responses=ERROR_RESPONSES, tags=["keys"])

KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="The key id (not the token).")]


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1, max_length=4)
    expires_in_days: int | None = Field(default=None, ge=1, le=36_500)


@router.post("/keys", response_model=KeyCreated, status_code=201)
def create_key(request: Request, body: NewKey, caller: Caller = ADMIN) -> KeyCreated:
    """Issue a key. Its token is returned here once and never again (only a digest is kept)."""
    expires = utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    key, token = services(request).keys.create(
        body.name, body.scopes, expires_at=expires, actor=caller.key.principal
    )
    return KeyCreated(key=KeyOut.of(key), token=token)


@router.get("/keys", response_model=list[KeyOut])
def list_keys(request: Request, caller: Caller = ADMIN) -> list[KeyOut]:
    return [KeyOut.of(k) for k in services(request).keys.list()]


@router.delete("/keys/{key_id}", response_model=KeyOut)
def revoke_key(request: Request, key_id: KeyId, caller: Caller = ADMIN) -> KeyOut:
    """Revoke a key for good; requests with it are refused from now on."""
    return KeyOut.of(services(request).keys.revoke(key_id, actor=caller.key.principal))
