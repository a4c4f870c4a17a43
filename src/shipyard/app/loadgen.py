"""The load generator of `shipyard loadtest`: N asyncio workers, one keep-alive connection each.

HTTP goes through a minimal HTTP/1.1 client over asyncio streams: each request is prebuilt
bytes written in one call, each response is read by Content-Length (or chunks). Measured on a
2-CPU machine against one server worker: httpx.AsyncClient ~270 req/s (headers and body go out
in separate writes, which meets delayed ACKs), this client ~8,000 req/s, ~13,000 with uvloop,
wrk ~14,000. So this client with uvloop when it is installed (uvicorn[standard] brings it).

Latencies go into an HdrHistogram (microseconds, 3 significant digits, fixed memory however
long the run); errors are counted by kind ("HTTP 503", "connection refused", "timeout", ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hdrh.histogram import HdrHistogram

MAX_LATENCY_US = 300_000_000  # 300 s: longer than any request a run waits for
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
_MAX_HEAD = 64 * 1024
CONNECTION_BACKOFF_S = 0.01
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Plan:
    """How much load: concurrent workers, and when to stop (whichever comes first)."""

    concurrency: int
    duration_s: float
    max_requests: int
    timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one run measured; latencies in milliseconds."""

    requests: int
    ok: int
    errors: dict[str, int]
    elapsed_s: float
    rows: int
    throughput_rps: float
    rows_per_s: float
    latency_ms: dict[str, float]
    interrupted: bool = False


class Recorder:
    """Counts and latencies of one run, in bounded memory."""

    def __init__(self) -> None:
        self.histogram = HdrHistogram(1, MAX_LATENCY_US, 3)
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.issued = 0

    def record_ok(self, seconds: float) -> None:
        self.ok += 1
        self.histogram.record_value(min(max(1, int(seconds * 1e6)), MAX_LATENCY_US))

    def record_error(self, kind: str) -> None:
        self.errors[kind] += 1

    def result(self, elapsed_s: float, rows_per_request: int, interrupted: bool) -> LoadResult:
        requests = self.ok + sum(self.errors.values())
        elapsed = max(elapsed_s, 1e-9)
        latency: dict[str, float] = {}
        if self.ok:
            h = self.histogram
            latency = {f"p{p:g}": h.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
            latency["max"] = h.get_max_value() / 1000
            latency["mean"] = h.get_mean_value() / 1000
        return LoadResult(
            requests=requests,
            ok=self.ok,
            errors=dict(self.errors.most_common()),
            elapsed_s=elapsed_s,
            rows=self.ok * rows_per_request,
            throughput_rps=requests / elapsed,
            rows_per_s=self.ok * rows_per_request / elapsed,
            latency_ms=latency,
            interrupted=interrupted,
        )


class HttpError(Exception):
    """A broken exchange; its message is the error kind counted in the report."""


class HttpConnection:
    """One keep-alive HTTP/1.1 connection that sends prebuilt requests."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            await self._connect()
        assert self._reader is not None and self._writer is not None
        self._writer.write(request)
        try:
            head = await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.close()
            raise HttpError("connection closed") from None
        except asyncio.LimitOverrunError:
            self.close()
            raise HttpError("response head too large") from None
        status, length, chunked, close = _parse_head(head)
        body = await (self._read_chunked() if chunked else self._reader.readexactly(length))
        if close:
            self.close()
        return status, body

    async def _connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.open_connection(
                self._host, self._port, limit=_MAX_HEAD
            )
        except ConnectionRefusedError:
            raise HttpError("connection refused") from None

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await self._reader.readexactly(size + 2)
            if size == 0:
                return b"".join(parts)
            parts.append(data[:-2])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _parse_head(head: bytes) -> tuple[int, int, bool, bool]:
    """Status, Content-Length, chunked?, close? of a response head."""
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise HttpError("malformed response") from None
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif key == b"connection":
            close = b"close" in value.lower()
    return status, length, chunked, close


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """A complete HTTP/1.1 POST, ready to write."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


Send = Callable[[int], Awaitable[str | None]]
"""Sends request number i; returns None on success or the error kind."""


@dataclass(slots=True)
class _Run:
    plan: Plan
    recorder: Recorder
    deadline: float
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def next_ticket(self) -> int | None:
        if self.stop.is_set() or time.perf_counter() >= self.deadline:
            return None
        if self.recorder.issued >= self.plan.max_requests:
            return None
        self.recorder.issued += 1
        return self.recorder.issued - 1

    async def worker(self, send: Send) -> None:
        perf = time.perf_counter
        while (ticket := self.next_ticket()) is not None:
            started = perf()
            try:
                async with asyncio.timeout(self.plan.timeout_s):
                    error = await send(ticket)
            except TimeoutError:
                error = "timeout"
            if error is None:
                self.recorder.record_ok(perf() - started)
                continue
            self.recorder.record_error(error)
            if error.startswith("connection"):  # a server gone away: no busy loop
                await asyncio.sleep(CONNECTION_BACKOFF_S)


async def drive(plan: Plan, senders: Sequence[Send], rows_per_request: int) -> LoadResult:
    """Run one sender per worker until the duration, the request budget or Ctrl-C ends it."""
    recorder = Recorder()
    started = time.perf_counter()
    run = _Run(plan, recorder, started + plan.duration_s)
    loop = asyncio.get_running_loop()
    with _stop_on_sigint(loop, run.stop):
        tasks = [asyncio.create_task(run.worker(send)) for send in senders]
        _, pending = await asyncio.wait(tasks, timeout=plan.duration_s + plan.timeout_s)
        for task in pending:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                raise outcome
    elapsed = time.perf_counter() - started
    return recorder.result(elapsed, rows_per_request, interrupted=run.stop.is_set())


@contextlib.contextmanager
def _stop_on_sigint(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> Iterator[None]:
    try:
        loop.add_signal_handler(signal.SIGINT, stop.set)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, Windows
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def http_senders(
    host: str, port: int, requests: Sequence[bytes], concurrency: int
) -> tuple[list[Send], Callable[[], None]]:
    """One sender per worker, each on its own connection; and a function closing them all."""
    connections = [HttpConnection(host, port) for _ in range(concurrency)]

    def sender(connection: HttpConnection) -> Send:
        async def send(ticket: int) -> str | None:
            try:
                status, _ = await connection.exchange(requests[ticket % len(requests)])
            except HttpError as exc:
                return str(exc)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                connection.close()
                return _connection_error(exc)
            except asyncio.CancelledError:  # timed out mid-exchange: the stream is unusable
                connection.close()
                raise
            return None if status == 200 else f"HTTP {status}"

        return send

    def close() -> None:
        for connection in connections:
            connection.close()

    return [sender(c) for c in connections], close


def _connection_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return "connection closed"


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when it is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
