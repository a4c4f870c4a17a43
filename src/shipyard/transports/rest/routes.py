"""The tiny router: exact paths from a dict, and one parser for paths that carry a model.

`match(path)` returns `(endpoint, model, version)` or raises NotFound / InvalidArgument. The
path is the ASGI `path` (already percent-decoded), so `%2e%2e` arrives as `..` and `%2F` as
`/`: model names and versions are checked against core.refs rules and never touch a file
system, and a decoded `/` just makes a path that matches nothing.
"""

from __future__ import annotations

from typing import Final

from shipyard.core.errors import InvalidArgument, NotFound
from shipyard.core.refs import check_name

# Endpoint names: plain strings, compared by identity-fast dict lookups in the app.
SERVER_METADATA: Final = "server_metadata"
LIVE: Final = "live"
READY: Final = "ready"
REPOSITORY_INDEX: Final = "repository_index"
MODEL_METADATA: Final = "model_metadata"
MODEL_READY: Final = "model_ready"
INFER: Final = "infer"
LOAD: Final = "load"
UNLOAD: Final = "unload"
V1_MODEL: Final = "v1_model"
V1_PREDICT: Final = "v1_predict"
INVOCATIONS: Final = "invocations"
PING: Final = "ping"
HEALTH: Final = "health"
VERSION: Final = "version"
METRICS: Final = "metrics"

FIXED: Final[dict[str, str]] = {
    "/v2": SERVER_METADATA,
    "/v2/health/live": LIVE,
    "/v2/health/ready": READY,
    "/v2/repository/index": REPOSITORY_INDEX,
    "/invocations": INVOCATIONS,
    "/ping": PING,
    "/health": HEALTH,
    "/version": VERSION,
    "/metrics": METRICS,
}

_V2_MODELS = "/v2/models/"
_V1_MODELS = "/v1/models/"
_REPOSITORY = "/v2/repository/models/"
_MODEL_ACTIONS = {"ready": MODEL_READY, "infer": INFER}
_REPOSITORY_ACTIONS = {"load": LOAD, "unload": UNLOAD}
_MAX_PATH = 1024  # longer than any valid name + version + action
_MAX_VERSION_DIGITS = 12

Route = tuple[str, str | None, str | None]


def match(path: str) -> Route:
    """The endpoint, model name and version a request path names."""
    endpoint = FIXED.get(path)
    if endpoint is not None:
        return endpoint, None, None
    if len(path) <= _MAX_PATH:
        if path.startswith(_V2_MODELS):
            return _v2_model(path[len(_V2_MODELS) :], path)
        if path.startswith(_V1_MODELS):
            return _v1_model(path[len(_V1_MODELS) :], path)
        if path.startswith(_REPOSITORY):
            return _repository(path[len(_REPOSITORY) :], path)
    raise _no_route(path)


def _v2_model(rest: str, path: str) -> Route:
    parts = rest.split("/")
    count = len(parts)
    if count == 1:
        return MODEL_METADATA, _model(parts[0]), None
    if count == 2 and parts[1] in _MODEL_ACTIONS:
        return _MODEL_ACTIONS[parts[1]], _model(parts[0]), None
    if count in (3, 4) and parts[1] == "versions":
        name, version = _model(parts[0]), _version(parts[2])
        if count == 3:
            return MODEL_METADATA, name, version
        if parts[3] in _MODEL_ACTIONS:
            return _MODEL_ACTIONS[parts[3]], name, version
    raise _no_route(path)


def _v1_model(rest: str, path: str) -> Route:
    name, colon, verb = rest.partition(":")
    if not colon:
        return V1_MODEL, _model(name), None
    if verb == "predict":
        return V1_PREDICT, _model(name), None
    raise _no_route(path)


def _repository(rest: str, path: str) -> Route:
    name, slash, action = rest.partition("/")
    if slash and action in _REPOSITORY_ACTIONS:
        return _REPOSITORY_ACTIONS[action], _model(name), None
    raise _no_route(path)


def _model(name: str) -> str:
    return check_name(name)


def _version(text: str) -> str:
    if not (text.isdigit() and text.isascii() and len(text) <= _MAX_VERSION_DIGITS):
        raise InvalidArgument(f"model version must be a positive integer; got {text[:40]!r}")
    if int(text) < 1:
        raise InvalidArgument("model version must be a positive integer; got 0")
    return str(int(text))  # canonical: "007" and "7" are the same version


def _no_route(path: str) -> NotFound:
    shown = path[:80] + ("..." if len(path) > 80 else "")
    return NotFound(f"no endpoint at {shown!r}")
