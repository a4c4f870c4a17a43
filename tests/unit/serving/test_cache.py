"""The response cache: keys, the in-process LRU, and the data plane using it (fake host)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipyard.core.errors import InvalidArgument
from shipyard.core.signatures import Prepared, Signature, TensorSpec
from shipyard.core.tensors import InferRequest, RequestedOutput, Tensor
from shipyard.runtimes.base import Outputs
from shipyard.serving.cache import (
    KEY_BYTES,
    LruCache,
    ResponseCache,
    cache_from_spec,
    cache_key,
    outputs_size,
)
from shipyard.serving.convert import ConversionPlan
from shipyard.serving.dataplane import DataPlane
from shipyard.serving.types import Served


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def out(*values: float) -> Outputs:
    return {"predict": np.array(values, dtype=np.float64)}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- keys ------------------------------------------------------------------------------------


def test_key_is_16_bytes_and_stable_for_equal_inputs() -> None:
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    key = cache_key("m", 1, a)
    assert key is not None and len(key) == KEY_BYTES == 16
    assert cache_key("m", 1, a.copy()) == key
    assert cache_key("m", 1, np.asfortranarray(a)) == key  # layout is not content
    assert cache_key("m", 1, a.T.copy().T) == key


def test_key_differs_by_model_version_dtype_shape_and_values() -> None:
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    key = cache_key("m", 1, a)
    others = [
        cache_key("m", 2, a),
        cache_key("n", 1, a),
        cache_key("m", 1, a.astype(np.float64)),
        cache_key("m", 1, a.view(np.int32)),  # same bytes, another dtype
        cache_key("m", 1, a.reshape(3, 4)),  # same bytes, another shape
        cache_key("m", 1, a + 1),
    ]
    assert len({key, *others}) == 1 + len(others)
    # A name and a version cannot run into each other.
    assert cache_key("m1", 1, a) != cache_key("m", 11, a)


def test_frame_keys_cover_names_dtypes_order_and_values() -> None:
    frame = pd.DataFrame({"amount": [1.0, 2.5], "country": ["fr", "de"]})
    key = cache_key("m", 1, frame)
    assert key is not None
    assert cache_key("m", 1, frame.copy()) == key
    variants = [
        frame.rename(columns={"amount": "total"}),
        frame[["country", "amount"]],
        frame.astype({"amount": np.float32}),
        frame.astype({"country": "category"}),
        frame.assign(country=["fr", "it"]),
        frame.assign(country=[b"fr", b"de"]),  # bytes are not str
        frame.assign(country=["f", "rde"]),  # no ambiguity in how values are joined
    ]
    keys = {cache_key("m", 1, v) for v in variants}
    assert len(keys) == len(variants) and key not in keys


def test_object_arrays_and_dict_keys() -> None:
    words = np.array(["a", "bc", None], dtype=object)
    assert cache_key("m", 1, words) == cache_key("m", 1, np.array(["a", "bc", None], object))
    assert cache_key("m", 1, words) != cache_key("m", 1, np.array(["ab", "c", None], object))
    x, y = np.zeros((2, 2), np.float32), np.ones(2, np.int64)
    key = cache_key("m", 1, {"x": x, "y": y})
    assert key == cache_key("m", 1, {"y": y, "x": x})  # sorted keys
    assert key != cache_key("m", 1, {"x": y, "y": x})
    assert key != cache_key("m", 1, {"x": x, "y": y.astype(np.int32)})


def test_datetimes_and_nullable_columns_are_keyed() -> None:
    when = pd.to_datetime(["2026-01-01", "2026-06-01"])
    frame = pd.DataFrame({"at": when, "n": pd.array([1, None], dtype="Int64")})
    key = cache_key("m", 1, frame)
    assert key is not None and key == cache_key("m", 1, frame.copy())
    assert key != cache_key("m", 1, frame.assign(n=pd.array([1, 2], dtype="Int64")))
    stamps = when.to_numpy()
    assert cache_key("m", 1, stamps) != cache_key("m", 1, stamps.view(np.int64))


def test_unknown_input_types_are_not_keyed() -> None:
    assert cache_key("m", 1, [[1.0, 2.0]]) is None
    assert cache_key("m", 1, {"x": [1.0]}) is None


# -- the LRU ---------------------------------------------------------------------------------


def test_hit_and_miss_are_counted() -> None:
    cache = LruCache()
    assert isinstance(cache, ResponseCache)
    assert run(cache.get(b"k")) is None
    run(cache.put(b"k", out(1, 2)))
    got = run(cache.get(b"k"))
    assert got is not None
    np.testing.assert_array_equal(got["predict"], [1, 2])
    assert (cache.hits, cache.misses) == (1, 1)


def test_stored_outputs_are_read_only_copies() -> None:
    mine = out(1, 2)
    cache = LruCache()
    cache.put_now(b"k", mine)
    mine["predict"][0] = 99  # the caller changes its own array afterwards
    got = cache.get_now(b"k")
    assert got is not None
    np.testing.assert_array_equal(got["predict"], [1, 2])
    assert not got["predict"].flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        got["predict"][0] = 5
    got["other"] = np.zeros(1)  # the returned dict is the caller's own
    again = cache.get_now(b"k")
    assert again is not None and set(again) == {"predict"}


def test_eviction_by_entries_is_least_recently_used() -> None:
    cache = LruCache(max_entries=2)
    cache.put_now(b"a", out(1))
    cache.put_now(b"b", out(2))
    assert cache.get_now(b"a") is not None  # a is now the most recent
    cache.put_now(b"c", out(3))
    assert cache.get_now(b"b") is None
    assert cache.get_now(b"a") is not None and cache.get_now(b"c") is not None
    assert len(cache) == 2 and cache.evictions == 1


def test_eviction_by_bytes() -> None:
    row = out(*range(100))  # 800 bytes
    assert outputs_size(row) == 800
    cache = LruCache(max_bytes=2000)
    for key in (b"a", b"b", b"c"):
        cache.put_now(key, row)
    assert cache.get_now(b"a") is None
    assert cache.get_now(b"b") is not None and cache.get_now(b"c") is not None
    assert cache.bytes == 1600
    cache.put_now(b"huge", out(*range(1000)))  # larger than the whole cache: not stored
    assert cache.get_now(b"huge") is None and len(cache) == 2
    cache.put_now(b"b", out(1))  # replacing an entry frees its old size
    assert cache.bytes == 808


def test_object_outputs_count_their_elements() -> None:
    labels = {"predict": np.array(["x" * 1000, "y"], dtype=object)}
    assert outputs_size(labels) > 1000


def test_ttl_with_an_injected_clock() -> None:
    clock = Clock()
    cache = LruCache(ttl_s=10, clock=clock)
    cache.put_now(b"k", out(1))
    clock.now += 9.9
    assert cache.get_now(b"k") is not None
    clock.now += 0.2
    assert cache.get_now(b"k") is None
    assert len(cache) == 0 and cache.bytes == 0
    cache.put_now(b"k", out(1))
    run(cache.close())
    assert len(cache) == 0 and cache.bytes == 0


def test_bad_settings_and_specs() -> None:
    with pytest.raises(ValueError):
        LruCache(max_entries=0)
    with pytest.raises(ValueError):
        LruCache(ttl_s=0)
    with pytest.raises(ValueError, match="unknown cache"):
        cache_from_spec("memcached://x")
    made = cache_from_spec("lru", max_entries=5)
    assert isinstance(made, LruCache) and made.max_entries == 5


# -- the data plane with a cache -------------------------------------------------------------

SIGNATURE = Signature(
    (TensorSpec("x", "FP32", (-1, 2)),),
    (TensorSpec("predict", "FP64", (-1,)), TensorSpec("double", "FP64", (-1,))),
)


class FakeServed:
    """What DataPlane uses of a ServedModel: a real conversion plan and a counting model."""

    def __init__(self, version: int) -> None:
        self.name = "m"
        self.version = version
        self.served = Served(self.name, version)
        self.plan = ConversionPlan(SIGNATURE, SIGNATURE.prepare)
        self.calls = 0

    async def infer(self, prepared: Prepared, rows: int) -> Outputs:
        self.calls += 1
        assert isinstance(prepared, np.ndarray)
        total = prepared.sum(axis=1, dtype=np.float64) * self.version
        return {"predict": total, "double": total * 2}


class FakeHost:
    started = True
    default_model = "m"

    def __init__(self) -> None:
        self.current = FakeServed(1)

    def get(self, name: str, version: str | None = None) -> FakeServed:
        return self.current


def plane(cache: ResponseCache | None) -> tuple[DataPlane, FakeHost]:
    host = FakeHost()
    return DataPlane(host, server_version="test", cache=cache), host  # type: ignore[arg-type]


def request(x: np.ndarray, outputs: tuple[str, ...] = ()) -> InferRequest:
    tensor = Tensor("x", "FP32", x.shape, x)
    return InferRequest("m", (tensor,), outputs=tuple(RequestedOutput(n) for n in outputs))


X = np.array([[1, 2], [3, 4]], dtype=np.float32)


def test_a_repeated_request_is_answered_from_the_cache() -> None:
    cache = LruCache()
    data_plane, host = plane(cache)

    async def main() -> None:
        first = await data_plane.infer(request(X))
        second = await data_plane.infer(request(X.copy()))
        assert host.current.calls == 1 and (cache.hits, cache.misses) == (1, 1)
        assert second.model_version == first.model_version == "1"
        for a, b in zip(first.outputs, second.outputs, strict=True):
            assert (a.name, a.datatype, a.shape) == (b.name, b.datatype, b.shape)
            np.testing.assert_array_equal(a.data, b.data)
        # Requested outputs are filtered after the cache, which holds full outputs.
        only = await data_plane.infer(request(X, ("double",)))
        assert [t.name for t in only.outputs] == ["double"] and host.current.calls == 1
        np.testing.assert_array_equal(only.outputs[0].data, [6.0, 14.0])
        await data_plane.infer(request(X[:1]))
        assert host.current.calls == 2

    run(main())


def test_a_hot_swap_misses_and_answers_with_the_new_version() -> None:
    cache = LruCache()
    data_plane, host = plane(cache)

    async def main() -> None:
        assert (await data_plane.infer(request(X))).outputs[0].data.tolist() == [3.0, 7.0]
        host.current = FakeServed(2)
        result = await data_plane.infer(request(X))
        assert result.model_version == "2" and result.outputs[0].data.tolist() == [6.0, 14.0]
        assert host.current.calls == 1 and cache.hits == 0

    run(main())


def test_invalid_input_is_refused_before_the_cache() -> None:
    cache = LruCache()
    data_plane, host = plane(cache)

    async def main() -> None:
        with pytest.raises(InvalidArgument):
            await data_plane.infer(request(np.ones((2, 3), np.float32)))
        with pytest.raises(InvalidArgument):
            await data_plane.infer(request(X, ("nope",)))
        assert (cache.hits, cache.misses, len(cache)) == (0, 0, 0) and host.current.calls == 0

    run(main())


def test_failures_are_not_cached() -> None:
    cache = LruCache()
    data_plane, host = plane(cache)

    async def failing(prepared: Prepared, rows: int) -> Outputs:
        raise RuntimeError("model failed")

    host.current.infer = failing  # type: ignore[method-assign]

    async def main() -> None:
        with pytest.raises(RuntimeError):
            await data_plane.infer(request(X))
        assert len(cache) == 0

    run(main())


def test_predict_uses_the_cache_and_without_one_nothing_changes() -> None:
    cache = LruCache()
    data_plane, host = plane(cache)

    async def main() -> None:
        served, first = await data_plane.predict(None, None, X)
        _, second = await data_plane.predict(None, None, X.copy())
        assert served == Served("m", 1) and host.current.calls == 1 and cache.hits == 1
        np.testing.assert_array_equal(first["predict"], second["predict"])
        assert not second["predict"].flags.writeable

        uncached, bare = plane(None)
        await uncached.infer(request(X))
        await uncached.infer(request(X))
        assert bare.current.calls == 2

    run(main())


def test_lookups_are_exported_as_metrics() -> None:
    from prometheus_client import CollectorRegistry

    from shipyard.serving.metrics import ServingMetrics

    registry = CollectorRegistry()
    host = FakeHost()
    data_plane = DataPlane(host, ServingMetrics(registry), server_version="test", cache=LruCache())  # type: ignore[arg-type]

    async def main() -> None:
        for _ in range(3):
            await data_plane.infer(request(X))

    run(main())
    labels = {"model": "m", "version": "1"}
    assert (
        registry.get_sample_value("shipyard_cache_lookups_total", {**labels, "result": "miss"}) == 1
    )
    assert (
        registry.get_sample_value("shipyard_cache_lookups_total", {**labels, "result": "hit"}) == 2
    )
