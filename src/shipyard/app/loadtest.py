"""`shipyard loadtest`: how much a model server takes on this machine, measured, not guessed.

`run_loadtest` loads one server (at a loopback URL, or `shipyard serve REF` started for the run)
with OIP v2 infer requests and reports counts, throughput, latency percentiles and the server's
own view from /metrics. `suggest` runs a small sweep (concurrency, and for a REF workers and
max batch size) and names the fastest measured configuration whose p99 meets the SLO.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shipyard.app import loadgen, loadtest_payload, loadtest_target
from shipyard.app.loadgen import LoadResult, Plan
from shipyard.app.loadtest_target import ServerConfig, Target
from shipyard.codecs.tables import read_table
from shipyard.core.errors import InvalidArgument
from shipyard.core.refs import ModelRef
from shipyard.core.tensors import Tensor

MAX_DURATION_S = 300.0
MAX_CONCURRENCY = 4096
MAX_ROWS = 1_000_000
SWEEP_CONCURRENCY = (1, 4, 16, 64)
SWEEP_BATCH_SIZES = (1, 16, 64)
MIN_CELL_S = 0.25
DEFAULT_GRPC_PORT = 8081


@dataclass(frozen=True, slots=True)
class LoadtestOptions:
    target: str  # a base URL or a model reference
    model: str | None = None
    concurrency: int = 16
    duration_s: float = 10.0
    rows: int = 1
    protocol: str = "rest"
    binary: bool = False
    max_requests: int = 1_000_000
    data: Path | None = None
    allow_remote: bool = False
    workers: int | None = None
    max_batch_size: int | None = None
    grpc_address: str | None = None
    timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class ServerView:
    """Deltas of the server's own metrics over the run (summed over its workers)."""

    batches: float
    mean_batch_rows: float | None
    mean_queue_wait_ms: float | None


@dataclass(frozen=True, slots=True)
class LoadtestReport:
    url: str
    model: str
    ref: str | None
    protocol: str
    concurrency: int
    rows_per_request: int
    workers: int | None
    max_batch_size: int | None
    result: LoadResult
    server: ServerView | None


def is_url(text: str) -> bool:
    return "://" in text


def check_options(options: LoadtestOptions) -> None:
    """Validate everything before any server starts or any request goes out."""
    bounds = (
        ("--concurrency", options.concurrency, 1, MAX_CONCURRENCY),
        ("--rows", options.rows, 1, MAX_ROWS),
        ("--max-requests", options.max_requests, 1, 10**12),
    )
    for flag, value, low, high in bounds:
        if not low <= value <= high:
            raise InvalidArgument(f"{flag} must be in {low}..{high}; got {value}")
    if not 0 < options.duration_s <= MAX_DURATION_S:
        raise InvalidArgument(f"--duration must be in (0, {MAX_DURATION_S:g}] s")
    if options.protocol not in ("rest", "grpc"):
        raise InvalidArgument(f"--protocol must be rest or grpc; got {options.protocol!r}")
    if options.binary and options.protocol == "grpc":
        raise InvalidArgument("--binary is for REST; gRPC tensors are always binary")
    if is_url(options.target):
        loadtest_target.parse_url(options.target, allow_remote=options.allow_remote)
        if options.workers is not None or options.max_batch_size is not None:
            raise InvalidArgument(
                "--workers and --max-batch-size configure a server loadtest starts; "
                "give a model reference (name@alias), not a URL"
            )
    else:
        ModelRef.parse(options.target)


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def _target(options: LoadtestOptions) -> Iterator[tuple[Target, str | None]]:
    """The server to load and the gRPC address to use with it."""
    if is_url(options.target):
        target = loadtest_target.parse_url(options.target, allow_remote=options.allow_remote)
        grpc = options.grpc_address or f"{target.host}:{DEFAULT_GRPC_PORT}"
        yield target, grpc if options.protocol == "grpc" else None
        return
    grpc_port = loadtest_target.free_port() if options.protocol == "grpc" else None
    config = ServerConfig(
        options.target, options.workers or default_workers(), options.max_batch_size, grpc_port
    )
    with loadtest_target.own_server(config) as target:
        yield target, None if grpc_port is None else f"127.0.0.1:{grpc_port}"


def run_loadtest(options: LoadtestOptions) -> LoadtestReport:
    check_options(options)
    with _target(options) as (target, grpc_address):
        return _measure(options, target, grpc_address)


def _measure(options: LoadtestOptions, target: Target, grpc_address: str | None) -> LoadtestReport:
    model = options.model or (
        ModelRef.parse(options.target).name
        if not is_url(options.target)
        else loadtest_target.pick_model(target, None)
    )
    batches = _batches(options, loadtest_target.metadata(target, model))
    before = loadtest_target.scrape_metrics(target)
    plan = Plan(options.concurrency, options.duration_s, options.max_requests, options.timeout_s)
    if grpc_address is not None:
        result = loadgen.run_loop(_grpc_load(plan, grpc_address, model, batches, options.rows))
    else:
        requests = _http_requests(target, model, batches, options.binary)
        result = loadgen.run_loop(_http_load(plan, target, requests, options.rows))
    after = loadtest_target.scrape_metrics(target)
    own = not is_url(options.target)
    return LoadtestReport(
        url=target.base,
        model=model,
        ref=None if not own else options.target,
        protocol=_protocol_name(options),
        concurrency=options.concurrency,
        rows_per_request=options.rows,
        workers=(options.workers or default_workers()) if own else None,
        max_batch_size=options.max_batch_size if own else None,
        result=result,
        server=server_view(before, after, model),
    )


def _protocol_name(options: LoadtestOptions) -> str:
    if options.protocol == "grpc":
        return "grpc"
    return "rest-binary" if options.binary else "rest-json"


def _batches(options: LoadtestOptions, metadata: dict[str, Any]) -> list[list[Tensor]]:
    specs = loadtest_payload.input_specs(metadata)
    if options.data is None:
        return loadtest_payload.synthetic_batches(specs, options.rows)
    return loadtest_payload.data_batches(specs, options.rows, read_table(options.data))


def _http_requests(
    target: Target, model: str, batches: list[list[Tensor]], binary: bool
) -> list[bytes]:
    path = f"/v2/models/{urllib.parse.quote(model, safe='')}/infer"
    encode = loadtest_payload.binary_body if binary else loadtest_payload.json_body
    requests = []
    for tensors in batches:
        body, headers = encode(tensors)
        requests.append(loadgen.build_request(target.host, target.port, path, body, headers))
    return requests


async def _http_load(plan: Plan, target: Target, requests: list[bytes], rows: int) -> LoadResult:
    host = target.host
    senders, close = loadgen.http_senders(host, target.port, requests, plan.concurrency)
    try:
        return await loadgen.drive(plan, senders, rows)
    finally:
        close()


async def _grpc_load(
    plan: Plan, address: str, model: str, batches: list[list[Tensor]], rows: int
) -> LoadResult:
    from shipyard.app.loadtest_grpc import grpc_senders

    senders, close = grpc_senders(address, model, batches, plan.concurrency)
    try:
        return await loadgen.drive(plan, senders, rows)
    finally:
        await close()


def server_view(before: str | None, after: str | None, model: str) -> ServerView | None:
    """Mean batch size and queue wait over the run, from two /metrics scrapes."""
    if before is None or after is None:
        return None

    def delta(name: str) -> float:
        return _total(after, name, model) - _total(before, name, model)

    batches = delta("shipyard_batch_rows_count")
    if batches <= 0:
        return ServerView(0.0, None, None)
    waits = delta("shipyard_batch_queue_wait_seconds_count")
    wait_ms = delta("shipyard_batch_queue_wait_seconds_sum") / waits * 1000 if waits else None
    return ServerView(batches, delta("shipyard_batch_rows_sum") / batches, wait_ms)


def _total(text: str, name: str, model: str) -> float:
    label = f'model="{model}"'
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and label in line:
            with contextlib.suppress(ValueError):
                total += float(line.rpartition(" ")[2])
    return total


@dataclass(frozen=True, slots=True)
class Suggestion:
    cells: list[LoadtestReport]
    best: LoadtestReport | None
    slo_ms: float
    cell_s: float
    text: str


def suggest(
    options: LoadtestOptions,
    slo_ms: float,
    progress: Callable[[LoadtestReport], None] | None = None,
) -> Suggestion:
    """Measure a small grid and name the best configuration with p99 under `slo_ms`."""
    check_options(options)
    own = not is_url(options.target)
    servers = _server_grid(options) if own else [(None, None)]
    cell_s = max(MIN_CELL_S, options.duration_s / (len(servers) * len(SWEEP_CONCURRENCY)))
    cells: list[LoadtestReport] = []
    for workers, batch_size in servers:
        base = replace(options, workers=workers, max_batch_size=batch_size, duration_s=cell_s)
        with _target(base) as (target, grpc_address):
            for concurrency in SWEEP_CONCURRENCY:
                report = _measure(replace(base, concurrency=concurrency), target, grpc_address)
                cells.append(report)
                if progress is not None:
                    progress(report)
                if report.result.interrupted:
                    return _choose(cells, slo_ms, cell_s)
    return _choose(cells, slo_ms, cell_s)


def _server_grid(options: LoadtestOptions) -> list[tuple[int | None, int | None]]:
    workers = [options.workers] if options.workers else sorted({1, default_workers()})
    sizes = [options.max_batch_size] if options.max_batch_size else list(SWEEP_BATCH_SIZES)
    return [(w, b) for w in workers for b in sizes]


def _choose(cells: list[LoadtestReport], slo_ms: float, cell_s: float) -> Suggestion:
    fits = [
        c
        for c in cells
        if c.result.ok and not c.result.errors and c.result.latency_ms["p99"] <= slo_ms
    ]
    if not fits:
        text = f"no measured configuration kept p99 under {slo_ms:g} ms without errors"
        return Suggestion(cells, None, slo_ms, cell_s, text)
    best = max(fits, key=lambda c: c.result.throughput_rps)
    return Suggestion(cells, best, slo_ms, cell_s, describe(best))


def describe(report: LoadtestReport) -> str:
    flags = []
    if report.workers is not None:
        flags.append(f"--workers {report.workers}")
    if report.max_batch_size is not None:
        flags.append(f"--max-batch-size {report.max_batch_size}")
    flags.append(f"with {report.concurrency} concurrent clients")
    result = report.result
    return (
        f"use {' '.join(flags)}: {result.throughput_rps:,.0f} req/s, "
        f"p99 {result.latency_ms['p99']:.1f} ms (measured)"
    )
