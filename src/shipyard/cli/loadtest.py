"""`shipyard loadtest URL-or-REF`: measure a model server's capacity on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shipyard.app.loadtest import (
    LoadtestOptions,
    LoadtestReport,
    Suggestion,
    run_loadtest,
    suggest,
)
from shipyard.cli.errors import exits_by_kind
from shipyard.cli.output import console, print_json

progress_console = Console(stderr=True)


def install(app: typer.Typer) -> None:
    app.command("loadtest")(loadtest)


@exits_by_kind
def loadtest(
    target: Annotated[
        str,
        typer.Argument(help="A server URL (http://127.0.0.1:8080) or a model reference to serve."),
    ],
    model: Annotated[
        str | None, typer.Option(help="Model to load (default: the server's first).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Concurrent connections.")] = 16,
    duration: Annotated[float, typer.Option(help="Seconds to run (at most 300).")] = 10.0,
    rows: Annotated[int, typer.Option(help="Rows per request.")] = 1,
    protocol: Annotated[str, typer.Option(help="rest or grpc.")] = "rest",
    binary: Annotated[bool, typer.Option("--binary", help="Binary tensors (REST).")] = False,
    max_requests: Annotated[int, typer.Option(help="Stop after this many requests.")] = 1_000_000,
    data: Annotated[
        Path | None,
        typer.Option(help="Rows to send: CSV, Parquet, JSON, .npy (default: synthetic)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes of the server started for a REF (default: CPUs)."),
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help="--max-batch-size of the server started for a REF.")
    ] = None,
    grpc_address: Annotated[
        str | None,
        typer.Option(help="gRPC HOST:PORT of a URL target (default: its host, port 8081)."),
    ] = None,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow loading a non-loopback server.")
    ] = False,
    suggest_config: Annotated[
        bool, typer.Option("--suggest", help="Sweep configurations and suggest the best.")
    ] = False,
    slo_ms: Annotated[float, typer.Option(help="p99 target of --suggest, in ms.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Load a model server with OIP v2 infer requests; report throughput and latency.

    Ctrl-C stops early and still prints the report.
    """
    options = LoadtestOptions(
        target=target,
        model=model,
        concurrency=concurrency,
        duration_s=duration,
        rows=rows,
        protocol=protocol,
        binary=binary,
        max_requests=max_requests,
        data=data,
        allow_remote=allow_remote,
        workers=workers,
        max_batch_size=max_batch_size,
        grpc_address=grpc_address,
    )
    if suggest_config:
        _suggest(options, slo_ms, as_json)
        return
    report = run_loadtest(options)
    if as_json:
        print_json(report)
    else:
        console.print(report_table(report))
        _print_server_view(report)


def _suggest(options: LoadtestOptions, slo_ms: float, as_json: bool) -> None:
    def progress(report: LoadtestReport) -> None:
        if not as_json:
            progress_console.print(
                f"measured {_config(report)}: {_short(report)}", highlight=False, style="dim"
            )

    result = suggest(options, slo_ms, progress)
    if as_json:
        print_json(result)
        return
    console.print(sweep_table(result))
    console.print(result.text, highlight=False)


def report_table(report: LoadtestReport) -> Table:
    result = report.result
    where = f"{report.ref} served at {report.url}" if report.ref else report.url
    title = f"loadtest {report.model} at {where} ({report.protocol})"
    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    rows: list[tuple[str, str]] = [
        ("configuration", _config(report)),
        ("requests", f"{result.requests:,} in {result.elapsed_s:.2f} s"),
        ("errors", _errors(result.errors)),
        ("throughput", f"{result.throughput_rps:,.0f} req/s, {result.rows_per_s:,.0f} rows/s"),
    ]
    rows += [(f"latency {key}", f"{ms:.3f} ms") for key, ms in result.latency_ms.items()]
    if result.interrupted:
        rows.append(("stopped", "by Ctrl-C"))
    for key, text in rows:
        table.add_row(key, text)
    return table


def _print_server_view(report: LoadtestReport) -> None:
    view = report.server
    if view is None:
        console.print("server metrics: /metrics not available", highlight=False)
        return
    if view.mean_batch_rows is None:
        console.print("server metrics: no batches recorded for this model", highlight=False)
        return
    wait = "-" if view.mean_queue_wait_ms is None else f"{view.mean_queue_wait_ms:.3f} ms"
    console.print(
        f"server metrics: {view.batches:,.0f} batches, mean {view.mean_batch_rows:.2f} rows "
        f"per batch, mean queue wait {wait}",
        highlight=False,
    )


def sweep_table(result: Suggestion) -> Table:
    table = Table(title=f"sweep: {result.cell_s:.2f} s per cell, p99 target {result.slo_ms:g} ms")
    for column in ("workers", "max batch", "clients", "req/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="right")
    for cell in result.cells:
        latency = cell.result.latency_ms
        table.add_row(
            _dash(cell.workers), _dash(cell.max_batch_size), str(cell.concurrency),
            f"{cell.result.throughput_rps:,.0f}", _ms(latency.get("p50")),
            _ms(latency.get("p99")), str(sum(cell.result.errors.values())),
            style="bold green" if cell is result.best else None,
        )  # fmt: skip
    return table


def _config(report: LoadtestReport) -> str:
    parts = [f"{report.concurrency} clients", f"{report.rows_per_request} rows/request"]
    if report.workers is not None:
        parts.append(f"{report.workers} workers")
    if report.max_batch_size is not None:
        parts.append(f"max batch {report.max_batch_size}")
    return ", ".join(parts)


def _short(report: LoadtestReport) -> str:
    result = report.result
    p99 = _ms(result.latency_ms.get("p99"))
    return f"{result.throughput_rps:,.0f} req/s, p99 {p99} ms, {_errors(result.errors)}"


def _errors(errors: dict[str, int]) -> str:
    if not errors:
        return "0"
    return ", ".join(f"{kind}: {count:,}" for kind, count in errors.items())


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _dash(value: int | None) -> str:
    return "-" if value is None else str(value)
