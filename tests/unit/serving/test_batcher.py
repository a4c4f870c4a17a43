"""The adaptive batcher with a fake model (and a fake clock where time matters).

Covers the pitfalls of STYLE.md §6: rows not requests, deadline computed once, mismatched
output rows, cancelled callers, model failures, batch keys, a bounded queue.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from shipyard.core.errors import Internal, InvalidArgument, NotFound, Unavailable
from shipyard.core.signatures import Prepared
from shipyard.runtimes.base import Outputs
from shipyard.serving.batcher import Batcher, BatchSettings

WAIT = 5.0  # liveness bound for anything awaited in these tests, never a timing assertion


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


class FakeModel:
    """Doubles its input and records each batch. A gated model lets one batch through per
    `open()`; `fail` and `drop_rows` make it misbehave."""

    def __init__(self, *, gated: bool = False) -> None:
        self.batches: list[Prepared] = []
        self.gated = gated
        self._permits = threading.Semaphore(0)
        self._started = threading.Semaphore(0)
        self.fail: Exception | None = None
        self.drop_rows = 0

    @property
    def sizes(self) -> list[int]:
        return [
            len(next(iter(b.values()))) if isinstance(b, dict) else len(b) for b in self.batches
        ]

    def open(self, batches: int = 1) -> None:
        self._permits.release(batches)

    def open_all(self) -> None:
        self.gated = False
        self._permits.release(1000)

    async def batch_started(self) -> None:
        assert await asyncio.to_thread(self._started.acquire, True, WAIT)

    def __call__(self, inputs: Prepared) -> Outputs:
        self.batches.append(inputs)
        self._started.release()
        if self.gated:
            assert self._permits.acquire(timeout=WAIT)
        if self.fail is not None:
            raise self.fail
        if isinstance(inputs, pd.DataFrame):
            out = inputs["x"].to_numpy() * 2
        elif isinstance(inputs, dict):
            out = inputs["a"] + inputs["b"]
        else:
            if (inputs < 0).any():
                raise ValueError("negative values are not allowed")
            out = inputs * 2
        return {"predict": out[: len(out) - self.drop_rows]}


def rows(*values: float, dtype: Any = np.float32) -> np.ndarray:
    return np.array(values, dtype=dtype).reshape(-1, 1)


async def queued(batcher: Batcher, count: int) -> None:
    for _ in range(1000):
        if batcher.queued >= count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never saw {count} queued requests")


def threaded(model: FakeModel, **options: Any) -> Batcher:
    return Batcher(model, BatchSettings(executor_threads=1, **options), name="fake")


@pytest.mark.parametrize(
    "options",
    [
        {"max_batch_size": 0},
        {"max_batch_size": True},
        {"max_queue": -1},
        {"max_wait_ms": -1.0},
        {"max_wait_ms": float("nan")},
        {"executor_threads": -1},
        {"max_concurrent_batches": 0},
        {"max_concurrent_batches": 2},  # needs executor_threads
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument, match="batching: "):
        BatchSettings(**options)


def test_a_single_request_gets_its_outputs() -> None:
    async def main() -> None:
        model = FakeModel()
        batcher = Batcher(model, BatchSettings(), name="fake")
        out = await batcher.submit(rows(1, 2), 2)
        np.testing.assert_array_equal(out["predict"], rows(2, 4))
        assert model.sizes == [2]
        await batcher.close()

    run(main())


def test_by_default_requests_arriving_in_one_tick_are_merged() -> None:
    async def main() -> None:
        model = FakeModel()
        batcher = Batcher(model, BatchSettings(max_batch_size=4), name="fake")
        outs = await asyncio.gather(*(batcher.submit(rows(i), 1) for i in range(6)))
        assert [float(o["predict"][0, 0]) for o in outs] == [0, 2, 4, 6, 8, 10]
        assert model.sizes == [4, 2]  # one tick, split by the row budget
        await batcher.close()

    run(main())


def test_the_budget_counts_rows_and_a_full_batch_runs_without_waiting() -> None:
    async def main() -> None:
        model = FakeModel()
        # A 10-minute wait: the batch can only run this early because it is full.
        batcher = Batcher(model, BatchSettings(max_batch_size=64, max_wait_ms=600_000))
        parts = [np.full((16, 1), i, np.float32) for i in range(4)]
        outs = await asyncio.gather(*(batcher.submit(p, 16) for p in parts))
        assert model.sizes == [64]
        for part, out in zip(parts, outs, strict=True):
            np.testing.assert_array_equal(out["predict"], part * 2)
        await batcher.close()

    run(main())


def test_requests_that_do_not_fit_wait_for_the_next_batch_and_big_ones_run_alone() -> None:
    async def main() -> None:
        model = FakeModel(gated=True)
        batcher = threaded(model, max_batch_size=64)
        first = asyncio.ensure_future(batcher.submit(np.ones((100, 1), np.float32), 100))
        await model.batch_started()
        rest = [
            asyncio.ensure_future(batcher.submit(np.full((30, 1), i, np.float32), 30))
            for i in range(3)
        ]
        await queued(batcher, 3)
        model.open_all()
        await asyncio.gather(first, *rest)
        assert model.sizes == [100, 60, 30]  # never split, never refused; rows, not requests
        for i, task in enumerate(rest):
            np.testing.assert_array_equal(task.result()["predict"], np.full((30, 1), 2 * i))
        await batcher.close()

    run(main())


def test_the_wait_ends_at_the_deadline_and_collects_what_arrived() -> None:
    async def main() -> None:
        model = FakeModel()
        batcher = Batcher(model, BatchSettings(max_wait_ms=200))
        first = asyncio.ensure_future(batcher.submit(rows(1), 1))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(batcher.submit(rows(2), 1))
        await asyncio.wait_for(asyncio.gather(first, second), WAIT)
        assert model.sizes == [2]
        np.testing.assert_array_equal(second.result()["predict"], rows(4))
        await batcher.close()

    run(main())


def test_the_deadline_is_computed_once_per_batch() -> None:
    async def main() -> None:
        now = [100.0]
        model = FakeModel()
        settings = BatchSettings(max_wait_ms=10_000)  # 10 s on the fake clock
        batcher = Batcher(model, settings, clock=lambda: now[0])
        tasks = [asyncio.ensure_future(batcher.submit(rows(1), 1))]
        await asyncio.sleep(0.01)
        now[0] = 105.0  # half the window: a new arrival must not extend it
        tasks.append(asyncio.ensure_future(batcher.submit(rows(2), 1)))
        await asyncio.sleep(0.01)
        assert model.sizes == []
        now[0] = 110.5  # past the first request's deadline: the next wake-up runs the batch
        tasks.append(asyncio.ensure_future(batcher.submit(rows(3), 1)))
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        assert model.sizes == [3]
        await batcher.close()

    run(main())


def test_mismatched_output_rows_fail_every_request_of_the_batch() -> None:
    async def main() -> None:
        model = FakeModel()
        model.drop_rows = 1
        batcher = Batcher(model, BatchSettings(max_batch_size=3, max_wait_ms=600_000))
        results = await asyncio.gather(
            batcher.submit(rows(1), 1), batcher.submit(rows(2, 3), 2), return_exceptions=True
        )
        assert all(isinstance(r, Internal) for r in results)
        assert "returned 2 rows of 'predict' for 3 inputs" in str(results[0])
        await batcher.close()

    run(main())


def test_a_caller_cancelling_mid_batch_does_not_disturb_the_others() -> None:
    async def main() -> None:
        model = FakeModel(gated=True)
        batcher = threaded(model)
        blocker = asyncio.ensure_future(batcher.submit(rows(0), 1))
        await model.batch_started()
        gone = asyncio.ensure_future(batcher.submit(rows(1), 1))
        stays = asyncio.ensure_future(batcher.submit(rows(2), 1))
        await queued(batcher, 2)
        gone.cancel()  # cancelled while queued: it never reaches the model
        await asyncio.sleep(0)
        model.open()
        await blocker
        await model.batch_started()
        model.open()
        np.testing.assert_array_equal((await stays)["predict"], rows(4))
        assert model.sizes == [1, 1]

        first = asyncio.ensure_future(batcher.submit(rows(5), 1))
        await model.batch_started()
        gone = asyncio.ensure_future(batcher.submit(rows(6), 1))
        stays = asyncio.ensure_future(batcher.submit(rows(7), 1))
        await queued(batcher, 2)
        model.open()
        await first
        await model.batch_started()  # the batch (gone, stays) is running now
        gone.cancel()
        await asyncio.sleep(0)
        model.open()
        np.testing.assert_array_equal((await stays)["predict"], rows(14))
        assert gone.cancelled() and model.sizes == [1, 1, 1, 2]
        await batcher.close()

    run(main())


def test_a_model_error_reaches_every_caller() -> None:
    async def main() -> None:
        model = FakeModel()
        model.fail = RuntimeError("boom\nsecond line with details")
        settings = BatchSettings(max_batch_size=2, max_wait_ms=600_000)
        batcher = Batcher(model, settings, name="fake")
        results = await asyncio.gather(
            batcher.submit(rows(1), 1), batcher.submit(rows(2), 1), return_exceptions=True
        )
        for result in results:
            assert isinstance(result, InvalidArgument)
            assert str(result) == "model fake could not score this input: RuntimeError: boom"
        await batcher.close()
        model.fail = NotFound("our own errors pass through")
        with pytest.raises(NotFound, match="pass through"):
            await Batcher(model).submit(rows(1), 1)

    run(main())


def test_one_callers_bad_rows_do_not_fail_the_rest_of_its_batch() -> None:
    async def main() -> None:
        model = FakeModel()
        batcher = Batcher(model, BatchSettings(max_batch_size=3, max_wait_ms=600_000))
        good, bad, other = await asyncio.gather(
            batcher.submit(rows(1), 1),
            batcher.submit(rows(-1), 1),
            batcher.submit(rows(3), 1),
            return_exceptions=True,
        )
        assert isinstance(bad, InvalidArgument) and "negative" in str(bad)
        assert not isinstance(good, BaseException) and not isinstance(other, BaseException)
        np.testing.assert_array_equal(good["predict"], rows(2))
        np.testing.assert_array_equal(other["predict"], rows(6))
        assert model.sizes == [3, 1, 1, 1]
        await batcher.close()

    run(main())


def test_only_requests_with_the_same_batch_key_are_merged() -> None:
    async def main() -> None:
        model = FakeModel(gated=True)
        batcher = threaded(model)
        blocker = asyncio.ensure_future(batcher.submit(rows(0), 1))
        await model.batch_started()
        inputs = [rows(1), rows(2, dtype=np.int64), rows(3), np.ones((1, 2), np.float32)]
        tasks = [asyncio.ensure_future(batcher.submit(x, 1)) for x in inputs]
        await queued(batcher, 4)
        model.open_all()
        outs = await asyncio.gather(blocker, *tasks)
        for x, out in zip(inputs, outs[1:], strict=True):
            np.testing.assert_array_equal(out["predict"], x * 2)
            assert out["predict"].dtype == x.dtype
        assert model.sizes == [1, 2, 1, 1]
        assert [cast(np.ndarray, b).dtype for b in model.batches[1:3]] == [np.float32, np.int64]
        await batcher.close()

    run(main())


def test_a_full_queue_refuses_at_once() -> None:
    async def main() -> None:
        model = FakeModel(gated=True)
        batcher = threaded(model, max_queue=2)
        running = asyncio.ensure_future(batcher.submit(rows(0), 1))
        await model.batch_started()
        waiting = [asyncio.ensure_future(batcher.submit(rows(i), 1)) for i in (1, 2)]
        await queued(batcher, 2)
        with pytest.raises(Unavailable, match="model fake is overloaded: 2 requests queued"):
            await batcher.submit(rows(3), 1)
        model.open_all()
        await asyncio.gather(running, *waiting)
        await batcher.close()

    run(main())


def test_close_answers_queued_requests_then_refuses() -> None:
    async def main() -> None:
        model = FakeModel(gated=True)
        batcher = threaded(model)
        tasks = [asyncio.ensure_future(batcher.submit(rows(i), 1)) for i in range(3)]
        await model.batch_started()
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0.01)
        with pytest.raises(Unavailable, match="shutting down"):
            await batcher.submit(rows(9), 1)
        model.open_all()
        outs = await asyncio.gather(*tasks)
        await closing
        assert [float(o["predict"][0, 0]) for o in outs] == [0.0, 2.0, 4.0]

    run(main())


Make = Callable[[int], tuple[Prepared, Callable[[Outputs], None]]]


def _array_case(i: int) -> tuple[Prepared, Callable[[Outputs], None]]:
    x = np.array([[i]], np.float64)

    def check(out: Outputs) -> None:
        assert out["predict"].tolist() == [[2 * i]]

    return x, check


def _frame_case(i: int) -> tuple[Prepared, Callable[[Outputs], None]]:
    frame = pd.DataFrame({"x": [i, i + 1]}, index=[100 + i, 7])

    def check(out: Outputs) -> None:
        assert out["predict"].tolist() == [2 * i, 2 * i + 2]

    return frame, check


def _dict_case(i: int) -> tuple[Prepared, Callable[[Outputs], None]]:
    named = {"a": np.array([i]), "b": np.array([1000])}

    def check(out: Outputs) -> None:
        assert out["predict"].tolist() == [i + 1000]

    return named, check


@pytest.mark.parametrize("make", [_array_case, _frame_case, _dict_case])
@pytest.mark.parametrize("threads", [0, 2])
def test_thousands_of_concurrent_callers_each_get_their_own_rows(make: Make, threads: int) -> None:
    async def main() -> None:
        model = FakeModel()
        settings = BatchSettings(
            max_batch_size=64,
            max_wait_ms=2,
            executor_threads=threads,
            max_concurrent_batches=max(threads, 1),
            max_queue=5000,
        )
        batcher = Batcher(model, settings, name="fake")
        cases = [make(i) for i in range(3000)]

        async def call(inputs: Prepared, check: Callable[[Outputs], None]) -> None:
            await asyncio.sleep(0)
            rows_in = len(next(iter(inputs.values()))) if isinstance(inputs, dict) else len(inputs)
            check(await batcher.submit(inputs, rows_in))

        await asyncio.gather(*(call(x, check) for x, check in cases))
        assert max(model.sizes) > 1 and max(model.sizes) <= 64
        await batcher.close()

    run(main())


def test_metrics_see_every_batch_and_queue_wait() -> None:
    class Seen:
        def __init__(self) -> None:
            self.rows: list[int] = []
            self.waits: list[float] = []

        def queue_wait(self, seconds: float) -> None:
            self.waits.append(seconds)

        def batch(self, rows: int) -> None:
            self.rows.append(rows)

    async def main() -> None:
        seen = Seen()
        fast = Batcher(FakeModel(), metrics=seen)
        await fast.submit(rows(1, 2), 2)
        slow = Batcher(FakeModel(), BatchSettings(max_wait_ms=1), metrics=seen)
        await asyncio.gather(slow.submit(rows(1), 1), slow.submit(rows(1), 1))
        assert seen.rows == [2, 2] and len(seen.waits) == 3 and min(seen.waits) >= 0
        await asyncio.gather(fast.close(), slow.close())

    run(main())
