"""GET /audit (admin): who did what from where, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from shipyard.transports.api.context import Caller, services
from shipyard.transports.api.errors import ERROR_RESPONSES
from shipyard.transports.api.schemas import AuditOut
from shipyard.transports.api.security import ADMIN

router = APIRouter(responses=ERROR_RESPONSES, tags=["audit"])


@router.get("/audit", response_model=list[AuditOut])
def read_audit(
    request: Request,
    caller: Caller = ADMIN,
    actor: Annotated[
        str | None, Query(max_length=200, description="Prefix, e.g. key:<id>.")
    ] = None,
    action: Annotated[
        str | None, Query(max_length=200, description="e.g. POST /api/v1/keys")
    ] = None,
    status: Annotated[int | None, Query(ge=100, le=599)] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    entries = services(request).audit.query(
        actor=actor, action=action, status=status, since=since, limit=limit
    )
    return [AuditOut.of(e) for e in entries]
