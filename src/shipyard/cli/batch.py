"""`shipyard batch score`: score files with a registered model into Parquet parts."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from shipyard.cli.errors import exits_by_kind
from shipyard.cli.output import console, print_json
from shipyard.client import Registry
from shipyard.jobs.batch import DEFAULT_CHUNK_ROWS, BatchSummary, score
from shipyard.jobs.run import Progress as ProgressCallback

batch_app = typer.Typer(help="Score files with a registered model (local or Ray engine).")


class Engine(enum.StrEnum):
    local = "local"
    ray = "ray"


def install(app: typer.Typer) -> None:
    app.add_typer(batch_app, name="batch", no_args_is_help=True)


class _RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s")


@contextmanager
def progress_bar(enabled: bool) -> Iterator[ProgressCallback | None]:
    if not enabled:
        yield None
        return
    bar = Progress(
        TextColumn("scoring"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} rows"),
        _RowsPerSecond(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task: TaskID | None = None

    def update(done: int, total: int | None) -> None:
        nonlocal task
        if task is None:
            task = bar.add_task("score", total=total, completed=done)
        else:
            bar.update(task, completed=done, total=total)

    with bar:
        yield update


def summary_table(summary: BatchSummary) -> Table:
    table = Table(show_header=False, box=None)
    rows = [
        ("model", f"{summary.model}:{summary.version}"),
        ("output", summary.output),
        ("rows in", f"{summary.rows_in:,}"),
        ("scored", f"{summary.scored:,}"),
        ("errors", f"{summary.errors:,}"),
        ("parts", f"{summary.parts:,} ({summary.resumed_parts:,} from an earlier run)"),
        ("seconds", f"{summary.seconds:,.2f}"),
        ("rows/s", f"{summary.rows_per_s:,.0f}"),
        ("checksum", summary.checksum),
    ]
    for key, value in rows:
        table.add_row(f"[bold]{key}[/bold]", value)
    return table


@batch_app.command("score")
@exits_by_kind
def score_command(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS.")],
    input: Annotated[
        str, typer.Argument(help="A .parquet/.csv/.jsonl file, a directory of them, or a glob.")
    ],
    output: Annotated[Path, typer.Argument(help="Directory for part-NNNNN.parquet files.")],
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", help="Rows per chunk (and per part file).")
    ] = DEFAULT_CHUNK_ROWS,
    workers: Annotated[
        int,
        typer.Option(
            help="Processes (local engine) or Ray actors (ray engine) scoring chunks; "
            "each loads the model once."
        ),
    ] = 1,
    id_column: Annotated[
        str | None,
        typer.Option("--id-column", help="Carry this column to the output and errors."),
    ] = None,
    passthrough: Annotated[
        list[str] | None,
        typer.Option("--passthrough", help="Carry this column to the output, repeatable."),
    ] = None,
    max_error_rate: Annotated[
        float,
        typer.Option("--max-error-rate", help="Share of rows allowed to fail validation (0..1)."),
    ] = 0.0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace another job's output in OUTPUT.")
    ] = False,
    engine: Annotated[
        Engine,
        typer.Option(
            help="local: this machine. ray: Ray Data (pip install 'shipyard\\[ray]'); the same "
            "parts, manifest and resume."
        ),
    ] = Engine.local,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            envvar="RAY_ADDRESS",
            help="Ray cluster for --engine ray; unset: a local Ray with --workers CPUs.",
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Score INPUT with REF into OUTPUT; re-running the same command resumes it."""
    with Registry() as registry, progress_bar(not json and console.is_terminal) as progress:
        summary = score(
            registry,
            ref,
            input,
            output,
            chunk_rows=chunk_rows,
            workers=workers,
            id_column=id_column,
            passthrough=tuple(passthrough or ()),
            max_error_rate=max_error_rate,
            overwrite=overwrite,
            progress=progress,
            engine=engine.value,
            ray_address=ray_address,
        )
    if json:
        print_json(summary.to_dict())
    else:
        console.print(summary_table(summary))
