"""The REST router: every documented path, and arbitrary paths never raise anything but ours."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.core.errors import InvalidArgument, NotFound, ShipyardError
from shipyard.transports.rest import routes


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2", (routes.SERVER_METADATA, None, None)),
        ("/v2/health/live", (routes.LIVE, None, None)),
        ("/v2/health/ready", (routes.READY, None, None)),
        ("/v2/repository/index", (routes.REPOSITORY_INDEX, None, None)),
        ("/v2/models/fraud", (routes.MODEL_METADATA, "fraud", None)),
        ("/v2/models/fraud/ready", (routes.MODEL_READY, "fraud", None)),
        ("/v2/models/fraud/infer", (routes.INFER, "fraud", None)),
        ("/v2/models/fraud/versions/3", (routes.MODEL_METADATA, "fraud", "3")),
        ("/v2/models/fraud/versions/007/ready", (routes.MODEL_READY, "fraud", "7")),
        ("/v2/models/f.r-a_ud/versions/12/infer", (routes.INFER, "f.r-a_ud", "12")),
        ("/v2/repository/models/fraud/load", (routes.LOAD, "fraud", None)),
        ("/v2/repository/models/fraud/unload", (routes.UNLOAD, "fraud", None)),
        ("/v1/models/fraud", (routes.V1_MODEL, "fraud", None)),
        ("/v1/models/fraud:predict", (routes.V1_PREDICT, "fraud", None)),
        ("/invocations", (routes.INVOCATIONS, None, None)),
        ("/ping", (routes.PING, None, None)),
        ("/health", (routes.HEALTH, None, None)),
        ("/version", (routes.VERSION, None, None)),
        ("/metrics", (routes.METRICS, None, None)),
    ],
)
def test_documented_paths(path: str, expected: routes.Route) -> None:
    assert routes.match(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/v2/",
        "/v2/models",
        "/v2/models/fraud/infer/x",
        "/v2/models/fraud/versions",
        "/v2/models/fraud/versions/1/explain",
        "/v2/models/fraud/explain",
        "/v1/models/fraud:explain",
        "/v2/repository/models/fraud",
        "/v2/repository/models/fraud/delete",
        "/etc/passwd",
        "/v2/models/a/b/infer",  # a decoded %2F never becomes part of a name
        "/x" * 2000,
    ],
)
def test_unknown_paths_are_not_found(path: str) -> None:
    with pytest.raises(NotFound):
        routes.match(path)


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/../infer",
        "/v2/models/..",
        "/v2/models/a..b/ready",
        "/v2/models/fraud\x00/infer",
        "/v2/models//infer",
        "/v2/models/-x/infer",
        "/v1/models/..:predict",
        "/v2/repository/models/../load",
        "/v2/models/fraud/versions/0/infer",
        "/v2/models/fraud/versions/-1/infer",
        "/v2/models/fraud/versions/latest/infer",
        "/v2/models/fraud/versions/1234567890123/infer",
        "/v2/models/fraud/versions/\u0663/infer",  # a non-ASCII digit
    ],
)
def test_path_tricks_are_invalid(path: str) -> None:
    with pytest.raises(InvalidArgument):
        routes.match(path)


_SEGMENTS = st.sampled_from(
    ["v2", "v1", "models", "versions", "infer", "ready", "repository", "load", "..", ".", "",
     "fraud", "1", "0", "\x00", "%2e%2e", "a:predict", ":predict", "x" * 300]
)  # fmt: skip


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(_SEGMENTS, max_size=8).map("/".join)))
def test_arbitrary_paths_raise_only_our_errors(path: str) -> None:
    try:
        endpoint, model, version = routes.match("/" + path)
    except ShipyardError as exc:
        assert isinstance(exc, NotFound | InvalidArgument)
        assert len(exc.message) < 400
        return
    assert endpoint in set(routes.FIXED.values()) | {
        routes.MODEL_METADATA, routes.MODEL_READY, routes.INFER, routes.LOAD, routes.UNLOAD,
        routes.V1_MODEL, routes.V1_PREDICT,
    }  # fmt: skip
    if model is not None:
        assert ".." not in model and "/" not in model and "\x00" not in model
    if version is not None:
        assert version.isdigit() and int(version) >= 1
