"""The page and its static files, read from the package once and served from memory.

Only files that exist under `static/` when the server starts can be served: a request names a
key of that table, never a path on disk. The page gets a strict Content-Security-Policy (its own
scripts and styles only, requests to its own origin only), so even a rendering mistake cannot
run injected script or send data elsewhere.
"""

from __future__ import annotations

import functools
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter
from fastapi.responses import Response

from shipyard.core.errors import NotFound

router = APIRouter(include_in_schema=False)

STATIC_PREFIX = "/ui/"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    "": "text/plain; charset=utf-8",  # LICENSE, VERSION
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}


def _suffix(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    return "." + last.rsplit(".", 1)[1] if "." in last else ""


def _walk(folder: Traversable, prefix: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            found.update(_walk(entry, name + "/"))
        elif _suffix(name) in _TYPES:
            found[name] = entry.read_bytes()
    return found


@functools.cache
def files() -> dict[str, bytes]:
    """Every servable file: path relative to static/ → content."""
    return _walk(resources.files("shipyard.transports.ui").joinpath("static"), "")


def _serve(name: str) -> Response:
    content = files().get(name)
    if content is None:
        raise NotFound("no such file")
    return Response(content, media_type=_TYPES[_suffix(name)], headers=HEADERS)


@router.get("/")
def page() -> Response:
    """The single page; it routes by the URL's fragment (#/models, #/deployments/web, ...)."""
    return _serve("index.html")


@router.get(STATIC_PREFIX + "{name:path}")
def static_file(name: str) -> Response:
    return _serve(name)
