"""Retraining commands: pipelines register/list/show, retrain, runs list/show/logs, validate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from shipyard.app.retrain import open_runner
from shipyard.cli.errors import exits_by_kind
from shipyard.cli.output import console, print_json
from shipyard.client import Registry
from shipyard.codecs.tables import read_table
from shipyard.core.errors import InvalidArgument
from shipyard.jobs.retrain.config import PipelineConfig, load_config
from shipyard.jobs.retrain.gate import GateResult, GateSettings, validate
from shipyard.jobs.retrain.pipelines import Pipelines, Run, RunStatus
from shipyard.jobs.retrain.runner import log_tail
from shipyard.packaging.load import load_version

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

pipelines_app = typer.Typer(help="Register and inspect retraining pipelines.", no_args_is_help=True)
runs_app = typer.Typer(help="Inspect retraining runs.", no_args_is_help=True)


def install(app: typer.Typer) -> None:
    app.add_typer(pipelines_app, name="pipelines")
    app.add_typer(runs_app, name="runs")
    app.command("retrain")(retrain)
    app.command("validate")(validate_command)


def _absolute_sources(config_path: Path, data: PipelineConfig) -> PipelineConfig:
    """Source paths in a config file are relative to the file, as people write them."""
    return data.resolved(config_path.resolve().parent)


@pipelines_app.command("register")
@exits_by_kind
def pipelines_register(
    name: Annotated[str, typer.Argument(help="Pipeline name.")],
    model: Annotated[str, typer.Option(help="The registered model it retrains.")],
    entry: Annotated[str, typer.Option(help="package.module:train, importable from here.")],
    config: Annotated[Path, typer.Option(help="YAML config: label, sources, gate, release.")],
    json: JsonOption = False,
) -> None:
    """Register a pipeline (or replace its entry point and config)."""
    parsed = _absolute_sources(config, load_config(config))
    with Registry() as registry:
        pipeline = Pipelines(registry.store).register(name, model=model, entry=entry, config=parsed)
    if json:
        print_json(pipeline)
    else:
        console.print(f"pipeline [bold]{name}[/bold] retrains {model} with {entry}")


@pipelines_app.command("list")
@exits_by_kind
def pipelines_list(json: JsonOption = False) -> None:
    """List pipelines."""
    with Registry() as registry:
        found = Pipelines(registry.store).list()
    if json:
        print_json(found)
        return
    table = Table(title="Pipelines")
    for column in ("name", "model", "entry", "release", "schedule"):
        table.add_column(column)
    for p in found:
        release = p.config.release
        target = "-" if release is None else (release.deployment or f"@{release.alias}")
        table.add_row(p.name, p.model, p.entry, target, p.config.schedule or "-")
    console.print(table)


@pipelines_app.command("show")
@exits_by_kind
def pipelines_show(name: str, json: JsonOption = False) -> None:
    """Show a pipeline's config and its recent runs."""
    with Registry() as registry:
        pipelines = Pipelines(registry.store)
        pipeline, runs = pipelines.get(name), pipelines.runs(name, limit=10)
    if json:
        print_json({"pipeline": pipeline, "runs": runs})
        return
    console.print(f"[bold]{pipeline.name}[/bold]: {pipeline.model} ← {pipeline.entry}")
    console.print_json(data=pipeline.config.to_json())
    console.print(_runs_table(runs))


@exits_by_kind
def retrain(
    name: Annotated[str, typer.Argument(help="Pipeline to run now.")],
    force: Annotated[bool, typer.Option(help="Ignore the cool-down.")] = False,
    json: JsonOption = False,
) -> None:
    """Run a pipeline now: train, validate against the champion, release or reject.
    Exits 0 when the candidate was released, 1 when it was rejected or the run failed."""
    with Registry() as registry:
        run = open_runner(registry.store, registry.settings).run(
            name, trigger="manual", respect_cooldown=not force
        )
    if json:
        print_json(run)
    else:
        print_run(run)
    if run.status is not RunStatus.SUCCEEDED:
        sys.exit(1)


@runs_app.command("list")
@exits_by_kind
def runs_list(
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline's runs.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    json: JsonOption = False,
) -> None:
    """Recent runs, newest first."""
    with Registry() as registry:
        found = Pipelines(registry.store).runs(pipeline, limit=limit)
    if json:
        print_json(found)
    else:
        console.print(_runs_table(found))


@runs_app.command("show")
@exits_by_kind
def runs_show(run_id: int, json: JsonOption = False) -> None:
    """One run: trigger, data, parameters, packages, the gate's checks, the release."""
    with Registry() as registry:
        run = Pipelines(registry.store).run(run_id)
    if json:
        print_json(run)
    else:
        print_run(run)
        console.print_json(data=run.result)


@runs_app.command("logs")
@exits_by_kind
def runs_logs(
    run_id: int,
    tail: Annotated[int, typer.Option(help="Bytes from the end.", min=1)] = 20_000,
) -> None:
    """The training process's output."""
    with Registry() as registry:
        run = Pipelines(registry.store).run(run_id)
    if run.log_path is None:
        raise InvalidArgument(f"run {run_id} has no log (it did not start training)")
    print(log_tail(Path(run.log_path), tail))


@exits_by_kind
def validate_command(
    candidate: Annotated[str, typer.Argument(help="Candidate version, e.g. fraud:4.")],
    against: Annotated[str, typer.Option(help="Champion, e.g. fraud@production.")],
    data: Annotated[Path, typer.Option(help="Labelled holdout (.parquet .csv .jsonl).")],
    label: Annotated[str, typer.Option(help="The label column.")],
    tolerance: Annotated[float, typer.Option(help="Allowed regression per metric.")] = 0.01,
    segment: Annotated[
        list[str] | None, typer.Option(help="Column whose slices must not regress, repeatable.")
    ] = None,
    max_latency_ratio: Annotated[
        float, typer.Option(help="Candidate single-row latency bound vs the champion; 0 = off.")
    ] = 1.5,
    json: JsonOption = False,
) -> None:
    """The validation gate for CI: exit 0 when the candidate passes, 1 when it does not."""
    frame = read_table(data)
    if not isinstance(frame, pd.DataFrame):
        raise InvalidArgument(f"{data.name}: the holdout must be a table with a label column")
    settings = GateSettings(
        label=label,
        tolerance=tolerance,
        segments=tuple(segment or ()),
        max_latency_ratio=max_latency_ratio or None,
    )
    with Registry() as registry:
        result = validate(
            load_version(registry.store, candidate),
            load_version(registry.store, against),
            frame,
            settings,
        )
    if json:
        print_json(result.to_json())
    else:
        _print_gate(result)
    if not result.passed:
        sys.exit(1)


def _runs_table(runs: list[Run]) -> Table:
    table = Table(title="Runs")
    for column in ("id", "pipeline", "status", "trigger", "candidate", "started", "error"):
        table.add_column(column)
    for r in runs:
        candidate = str(r.candidate_version) if r.candidate_version else "-"
        started = r.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            str(r.id), r.pipeline, r.status.value, r.trigger, candidate, started, r.error or ""
        )
    return table


def print_run(run: Run) -> None:
    colour = {"succeeded": "green", "rejected": "yellow"}.get(run.status.value, "red")
    candidate = f" candidate v{run.candidate_version}" if run.candidate_version else ""
    console.print(f"run {run.id} of {run.pipeline}: [{colour}]{run.status.value}[/]{candidate}")
    if run.error:
        console.print(f"  {run.error}", highlight=False)
    gate = run.result.get("gate")
    if gate:
        for check in gate.get("checks", []):
            mark = "✓" if check["passed"] else "✗"
            console.print(f"  {mark} {check['detail']}", highlight=False)
            compared = _compared(check.get("numbers", {}))
            if compared:
                console.print(f"    {compared}", highlight=False)
    if run.result.get("release"):
        shown = ", ".join(f"{k} {v}" for k, v in run.result["release"].items())
        console.print(f"  released: {shown}", highlight=False)


def _compared(numbers: dict[str, Any]) -> str:
    """`metric champion → candidate` for a metrics check's numbers, else ""."""
    champion, candidate = numbers.get("champion"), numbers.get("candidate")
    if not isinstance(champion, dict) or not isinstance(candidate, dict):
        return ""
    return ", ".join(
        f"{name} {champion[name]:.3f} → {value:.3f}"
        for name, value in candidate.items()
        if isinstance(value, int | float) and isinstance(champion.get(name), int | float)
    )


def _print_gate(result: GateResult) -> None:
    verdict = "[green]passes[/]" if result.passed else "[red]fails[/]"
    console.print(f"{result.candidate} {verdict} against {result.champion} ({result.rows} rows)")
    for check in result.checks:
        mark = "✓" if check.passed else "✗"
        console.print(f"  {mark} {check.detail}", highlight=False)
        compared = _compared(dict(check.numbers))
        if compared:
            console.print(f"    {compared}", highlight=False)
