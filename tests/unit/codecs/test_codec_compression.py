"""Content-Encoding: round trips, bombs stopped at the limit with bounded memory, bad data."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib

import pytest

from shipyard.codecs.compression import accepted_encoding, compress, decompress
from shipyard.core.errors import InvalidArgument, PayloadTooLarge, UnsupportedMedia

MIB = 1024 * 1024
BODY = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}' * 50


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """1 GiB of zeros, gzip-compressed to about 1 MiB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MIB)
    parts = [packer.compress(block) for _ in range(1024)]
    return b"".join(parts) + packer.flush()


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", " GZIP ", "deflate", None, "identity"])
def test_round_trip(encoding: str | None) -> None:
    assert decompress(compress(BODY, encoding), encoding, 64 * MIB) == BODY


def test_stdlib_gzip_and_raw_deflate_are_accepted() -> None:
    assert decompress(gzip.compress(BODY), "gzip", MIB) == BODY
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert decompress(raw.compress(BODY) + raw.flush(), "deflate", MIB) == BODY


def test_multi_member_gzip_is_joined_and_bounded() -> None:
    body = gzip.compress(b"a" * 1000) + gzip.compress(b"b" * 1000)
    assert decompress(body, "gzip", 2000) == b"a" * 1000 + b"b" * 1000
    with pytest.raises(PayloadTooLarge):
        decompress(body, "gzip", 1999)


def test_gzip_bomb_stops_at_the_limit_quickly_with_bounded_memory(gzip_bomb: bytes) -> None:
    assert len(gzip_bomb) < 2 * MIB
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(PayloadTooLarge, match="decompressed body exceeds 64 MiB"):
            decompress(gzip_bomb, "gzip", 64 * MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 5.0
    assert peak < 70 * MIB  # the output cap, not the 1 GiB the body expands to


def test_exact_limit_is_allowed() -> None:
    assert len(decompress(gzip.compress(bytes(1000)), "gzip", 1000)) == 1000
    with pytest.raises(PayloadTooLarge):
        decompress(gzip.compress(bytes(1001)), "gzip", 1000)


def test_identity_body_over_the_limit() -> None:
    with pytest.raises(PayloadTooLarge):
        decompress(bytes(11), None, 10)


@pytest.mark.parametrize(
    "body, encoding",
    [
        (b"not gzip at all", "gzip"),
        (gzip.compress(BODY)[:-20], "gzip"),
        (gzip.compress(BODY) + b"garbage", "gzip"),
        (zlib.compress(BODY)[:10], "deflate"),
        (b"\x78\x9c\xff\xff", "deflate"),
    ],
    # Named ids: gzip headers hold the time, and xdist's workers must collect the same names.
    ids=["not-gzip", "gzip-truncated", "gzip-trailing-garbage", "deflate-truncated", "deflate-bad"],
)
def test_corrupt_or_truncated_data_is_invalid_argument(body: bytes, encoding: str) -> None:
    with pytest.raises(InvalidArgument):
        decompress(body, encoding, MIB)


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, deflate", "compress"])
def test_unknown_encoding_is_unsupported_media(encoding: str) -> None:
    with pytest.raises(UnsupportedMedia, match="Content-Encoding"):
        decompress(BODY, encoding, MIB)
    with pytest.raises(UnsupportedMedia):
        compress(BODY, encoding)


@pytest.mark.parametrize(
    "header, chosen",
    [
        (None, None),
        ("", None),
        ("gzip", "gzip"),
        ("br, gzip;q=0.5", "gzip"),
        ("deflate", "deflate"),
        ("gzip;q=0, deflate", "deflate"),
        ("*", "gzip"),
        ("identity", None),
        ("gzip;q=abc", None),
    ],
)
def test_accepted_encoding(header: str | None, chosen: str | None) -> None:
    assert accepted_encoding(header) == chosen
