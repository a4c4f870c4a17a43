"""The response cache in a real Redis (127.0.0.1:6379, from `scripts/services redis`), and
serving going on when Redis is unreachable.

Like PostgreSQL in tests/conftest.py, a Redis that does not answer fails these tests instead
of skipping them. Each test uses its own key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
import redis
import redis.asyncio as aioredis

from shipyard.core.signatures import Prepared, Signature, TensorSpec
from shipyard.core.tensors import InferRequest, Tensor
from shipyard.runtimes.base import Outputs
from shipyard.serving.cache import cache_from_spec, cache_key
from shipyard.serving.cache_redis import RedisCache, dumps, loads
from shipyard.serving.convert import ConversionPlan
from shipyard.serving.dataplane import DataPlane
from shipyard.serving.types import Served

REDIS_URL = os.environ.get("SHIPYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
UNREACHABLE = "redis://127.0.0.1:1/0"


SIGNATURE = Signature((TensorSpec("x", "FP32", (-1, 2)),), (TensorSpec("predict", "FP64", (-1,)),))
X = np.array([[1, 2], [3, 4]], dtype=np.float32)


class FakeServed:
    """What DataPlane uses of a ServedModel: a real conversion plan and a counting model."""

    def __init__(self) -> None:
        self.name, self.version = "m", 1
        self.served = Served("m", 1)
        self.plan = ConversionPlan(SIGNATURE, SIGNATURE.prepare)
        self.calls = 0

    async def infer(self, prepared: Prepared, rows: int) -> Outputs:
        self.calls += 1
        assert isinstance(prepared, np.ndarray)
        return {"predict": prepared.sum(axis=1, dtype=np.float64)}


class FakeHost:
    started = True
    default_model = "m"

    def __init__(self) -> None:
        self.current = FakeServed()

    def get(self, name: str, version: str | None = None) -> FakeServed:
        return self.current


def request(x: np.ndarray) -> InferRequest:
    return InferRequest("m", (Tensor("x", "FP32", x.shape, x),))


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture(scope="module", autouse=True)
def _redis_answers() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis at {REDIS_URL} is not reachable ({exc}); run scripts/services redis",
            pytrace=False,
        )


@asynccontextmanager
async def redis_cache(**options: Any) -> AsyncIterator[tuple[RedisCache, aioredis.Redis]]:
    """A RedisCache under a fresh prefix (a generous timeout: CI machines stall) and a raw
    client to look at what it wrote."""
    prefix = f"shipyard:test:{secrets.token_hex(6)}:"
    options.setdefault("timeout_s", 2.0)
    cache = RedisCache(REDIS_URL, prefix=prefix, **options)
    raw = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield cache, raw
    finally:
        keys = [k async for k in raw.scan_iter(match=f"{prefix}*")]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()
        await cache.close()


def test_value_format_round_trips_every_output_kind() -> None:
    outputs: dict[str, np.ndarray] = {
        "predict": np.array([0, 1, 1], dtype=np.int64),
        "predict_proba": np.random.default_rng(0).random((3, 2), dtype=np.float32),
        "flags": np.array([True, False, True]),
        "labels": np.array(["yes", "no", "é" * 3], dtype=object),
        "raw": np.array([[b"a\x00", b""], [b"xyz", b"\xff"]], dtype=object),
        "fixed": np.array(["ab", "c"]),
        "empty": np.zeros((0, 4), dtype=np.float64),
        "ü": np.arange(6, dtype=np.float16).reshape(2, 3)[:, ::2],  # not contiguous
    }
    back = loads(dumps(outputs))
    assert list(back) == list(outputs)
    for name, array in outputs.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape, name
        assert back[name].tolist() == array.tolist(), name
        assert not back[name].flags.writeable
    with pytest.raises(ValueError):
        loads(b"pickle" + dumps(outputs))
    with pytest.raises(ValueError):
        loads(dumps(outputs)[:-3])


def test_round_trip_with_a_ttl() -> None:
    async def main() -> None:
        async with redis_cache(ttl_s=30) as (cache, raw):
            key = cache_key("m", 3, X)
            assert key is not None
            assert await cache.get(key) is None
            outputs = {"predict": np.array([1.5, 2.5]), "label": np.array(["a", "b"], object)}
            await cache.put(key, outputs)
            got = await cache.get(key)
            assert got is not None and set(got) == {"predict", "label"}
            np.testing.assert_array_equal(got["predict"], outputs["predict"])
            assert got["label"].tolist() == ["a", "b"] and got["label"].dtype == object
            assert (cache.hits, cache.misses, cache.errors) == (1, 1, 0)
            ttl_ms = await raw.pttl(cache.redis_key(key))
            assert 0 < ttl_ms <= 30_000
            stored = await raw.get(cache.redis_key(key))
            assert isinstance(stored, bytes) and stored.startswith(b"SYC1")

    run(main())


def test_unstorable_and_oversized_outputs_are_skipped() -> None:
    async def main() -> None:
        async with redis_cache(max_value_bytes=1000) as (cache, raw):
            await cache.put(b"k" * 16, {"predict": np.array([{"a": 1}], dtype=object)})
            await cache.put(b"j" * 16, {"predict": np.zeros(1000)})
            assert cache.skipped == 2 and cache.errors == 0
            assert await cache.get(b"k" * 16) is None and await cache.get(b"j" * 16) is None

    run(main())


def test_data_plane_answers_from_redis_across_planes() -> None:
    """Two workers sharing one Redis: the second answers without running its model."""

    async def main() -> None:
        async with redis_cache() as (cache, _):
            first_host, second_host = FakeHost(), FakeHost()
            first = DataPlane(first_host, cache=cache)  # type: ignore[arg-type]
            second = DataPlane(second_host, cache=cache)  # type: ignore[arg-type]
            want = await first.infer(request(X))
            got = await second.infer(request(X))
            assert (first_host.current.calls, second_host.current.calls) == (1, 0)
            assert got.model_version == want.model_version == "1"
            np.testing.assert_array_equal(got.outputs[0].data, want.outputs[0].data)

    run(main())


def test_unreachable_redis_counts_misses_and_serving_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    cache = RedisCache(UNREACHABLE, clock=clock, retry_after_s=1.0)
    host = FakeHost()
    plane = DataPlane(host, cache=cache)  # type: ignore[arg-type]

    async def main() -> None:
        with caplog.at_level(logging.WARNING, logger="shipyard.serving.cache_redis"):
            for _ in range(3):
                result = await plane.infer(request(X))
                assert result.outputs[0].data.tolist() == [3.0, 7.0]
            # One failed get opened the breaker: later calls do not touch Redis for 1 s.
            assert (cache.errors, cache.misses, cache.hits, host.current.calls) == (1, 3, 0, 3)
            clock.now += 1.5
            await plane.infer(request(X))
            assert cache.errors >= 2 and cache.misses == 4 and host.current.calls == 4
        warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert len(warnings) == 1  # at most once a minute
        await cache.close()

    run(main())


def test_a_redis_that_does_not_answer_in_time_is_a_miss() -> None:
    async def main() -> None:
        done = asyncio.Event()
        handlers: list[asyncio.Task[Any]] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            handlers.append(asyncio.current_task())  # type: ignore[arg-type]
            await reader.read(1 << 16)  # take the command, never answer
            await done.wait()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        cache = RedisCache(f"redis://127.0.0.1:{port}/0", timeout_s=0.05)
        host = FakeHost()
        plane = DataPlane(host, cache=cache)  # type: ignore[arg-type]
        try:
            result = await plane.infer(request(X))
            assert result.outputs[0].data.tolist() == [3.0, 7.0]
            assert (cache.errors, cache.misses, host.current.calls) == (1, 1, 1)
        finally:
            await cache.close()
            done.set()
            await asyncio.gather(*handlers)
            server.close()
            await server.wait_closed()

    run(main())


def test_cache_from_spec_makes_a_redis_cache() -> None:
    async def main() -> None:
        cache = cache_from_spec(REDIS_URL, ttl_s=7)
        assert isinstance(cache, RedisCache) and cache.ttl_ms == 7000
        await cache.close()

    run(main())
