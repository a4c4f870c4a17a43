"""Two ASGI layers around the management API: the audit trail and the body size limit.

AuditTrail writes one audit entry per authentication failure (401/403) and per
state-changing call (POST/PUT/PATCH/DELETE, any outcome, 5xx included) before the response
starts, so the entry exists by the time the caller sees the answer. It records the route
template, the concrete path, the key (id and name) and the client address: never a header
value or a body.

BodyLimit refuses a body over its limit with 413, before the application reads it when the
Content-Length says so, and while it streams otherwise.
"""

from __future__ import annotations

import re

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.auth.audit import ANONYMOUS, AuditLog
from shipyard.auth.keys import ApiKey
from shipyard.transports.api.errors import BodyTooLarge, error_response
from shipyard.transports.api.security import KEY_STATE

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUTH_FAILURES = frozenset({401, 403})
UPLOAD_PATH = re.compile(r"/api/v1/models/[^/]+/versions/?")


def _actor(scope: Scope) -> str:
    key = (scope.get("state") or {}).get(KEY_STATE)
    return f"{key.principal} ({key.name})" if isinstance(key, ApiKey) else ANONYMOUS


def _action(scope: Scope, prefix: str) -> str:
    # Routes of included routers carry their template without the router's prefix, so a
    # template is prefixed unless the concrete path matches it as it is (/metrics, the UI).
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):  # refused before routing (413) or no such route
        return f"{scope['method']} {scope.get('path', '')}"
    pattern = getattr(route, "path_regex", None)
    bare = isinstance(pattern, re.Pattern) and pattern.match(scope.get("path", "")) is not None
    full = template if bare or template.startswith(prefix) else prefix + template
    return f"{scope['method']} {full}"


def _remote(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


class AuditTrail:
    def __init__(self, app: ASGIApp, audit: AuditLog, prefix: str) -> None:
        self.app = app
        self.audit = audit
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        written = False

        async def write(status: int) -> None:
            nonlocal written
            if written or not (scope["method"] in MUTATING or status in AUTH_FAILURES):
                return
            written = True
            await anyio.to_thread.run_sync(
                lambda: self.audit.try_record(
                    actor=_actor(scope),
                    action=_action(scope, self.prefix),
                    target=scope.get("path"),
                    remote=_remote(scope),
                    status=status,
                )
            )

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await write(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except BaseException:
            await write(500)  # the outer error middleware answers 500
            raise


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.max_upload = max_upload_bytes

    def _limit(self, scope: Scope) -> int:
        if scope["method"] == "POST" and UPLOAD_PATH.fullmatch(scope.get("path", "")):
            return self.max_upload
        return self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            message = f"request body is over the limit of {limit} bytes"
            await error_response(413, message)(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
