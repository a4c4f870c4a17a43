"""The web UI's one router: the page and its assets at `/` and `/ui/...`, and the session
endpoints at /api/v1/session. `create_app` includes it."""

from __future__ import annotations

from fastapi import APIRouter

from shipyard.transports.ui import assets, session

API_PREFIX = "/api/v1"

router = APIRouter()
router.include_router(assets.router)
router.include_router(session.router, prefix=API_PREFIX)
