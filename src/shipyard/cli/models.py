"""Registry commands: register, models list/show, alias, history, predict, archive."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from shipyard.cli.errors import exits_by_kind
from shipyard.cli.output import (
    alias_line,
    console,
    history_table,
    models_table,
    print_json,
    version_panel,
    versions_table,
)
from shipyard.client import Registry
from shipyard.codecs.tables import as_frame, read_table, write_table
from shipyard.core.errors import InvalidArgument
from shipyard.core.refs import ModelRef
from shipyard.registry.service import UNSET

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

models_app = typer.Typer(help="List and inspect registered models.", no_args_is_help=True)
alias_app = typer.Typer(
    help="Move, delete and inspect aliases (production, staging, ...).", no_args_is_help=True
)


def install(app: typer.Typer) -> None:
    app.command("register")(register)
    app.add_typer(models_app, name="models")
    app.add_typer(alias_app, name="alias")
    app.command("history")(history)
    app.command("predict")(predict)
    app.command("archive")(archive)


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{what} {item!r} must look like key=value")
        result[key] = value
    return result


def _numbers(values: list[str] | None, what: str) -> dict[str, float]:
    result: dict[str, float] = {}
    for key, value in _pairs(values, what).items():
        try:
            result[key] = float(value)
        except ValueError:
            raise InvalidArgument(f"{what} {key!r} must be a number, got {value!r}") from None
    return result


@exits_by_kind
def register(
    name: Annotated[str, typer.Argument(help="Model name; each registration adds a version.")],
    path: Annotated[
        Path,
        typer.Argument(
            help="Model file: .skops .onnx .ubj .json .txt .pt (.pkl/.joblib with --trust)."
        ),
    ],
    flavor: Annotated[
        str, typer.Option(help="auto, sklearn, xgboost, lightgbm, onnx, torch.")
    ] = "auto",
    sample: Annotated[
        Path | None,
        typer.Option(
            help="Sample input (.csv .parquet .json .jsonl .npy): signature and compiled fast path."
        ),
    ] = None,
    reference: Annotated[
        Path | None, typer.Option(help="Reference data kept as Parquet for monitoring.")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="k=v, repeatable.")] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Training parameter k=v, repeatable.")
    ] = None,
    metric: Annotated[list[str] | None, typer.Option(help="Metric k=number, repeatable.")] = None,
    description: Annotated[str | None, typer.Option(help="What this version is.")] = None,
    parent: Annotated[int | None, typer.Option(help="Version this one was derived from.")] = None,
    training_data: Annotated[
        Path | None, typer.Option(help="Training data file to fingerprint for lineage.")
    ] = None,
    trust: Annotated[
        bool, typer.Option("--trust", help="Allow pickle/joblib files (they can run code).")
    ] = False,
    compile: Annotated[bool, typer.Option(help="Try the compiled ONNX fast path.")] = True,
    json: JsonOption = False,
) -> None:
    """Register a model file as the next version of NAME."""
    tags, params, metrics = _pairs(tag, "tag"), _pairs(param, "param"), _numbers(metric, "metric")
    lineage: dict[str, object] = {"parent": parent}
    if training_data is not None:
        lineage["training_data"] = read_table(training_data)
    with Registry() as registry:
        version = registry.register_file(
            path,
            name,
            flavor=flavor,
            trust=trust,
            sample_input=read_table(sample) if sample else None,
            reference_data=read_table(reference) if reference else None,
            tags=tags,
            params=params,
            metrics=metrics,
            description=description,
            lineage=lineage,
            compile=compile,
        )
    if json:
        print_json(version)
        return
    console.print(
        f"registered [bold]{version.ref}[/bold] ({version.flavor}, {version.status.value})"
    )
    console.print(version_panel(version))


@models_app.command("list")
@exits_by_kind
def models_list(
    query: Annotated[str | None, typer.Option(help="Substring of the name or description.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="Only models with tag k=v, repeatable.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """List registered models."""
    with Registry() as registry:
        found = registry.list_models(query=query, tags=_pairs(tag, "tag") or None)
    if json:
        print_json(found)
    elif not found:
        console.print(
            "no models yet: register one with `shipyard register NAME FILE` or run `shipyard demo`"
        )
    else:
        console.print(models_table(found))


@models_app.command("show")
@exits_by_kind
def models_show(
    ref: Annotated[str, typer.Argument(help="NAME (all versions), NAME:VERSION or NAME@ALIAS.")],
    json: JsonOption = False,
) -> None:
    """Show a model's versions, or one version in detail."""
    parsed = ModelRef.parse(ref)
    with Registry() as registry:
        if parsed.version is None and parsed.alias is None:
            model = registry.get_model(parsed.name)
            versions = registry.list_versions(parsed.name)
            if json:
                print_json({"model": model, "versions": versions})
            else:
                console.print(versions_table(parsed.name, versions))
            return
        version = registry.get(parsed)
    if json:
        print_json(version)
    else:
        console.print(version_panel(version))


@alias_app.command("set")
@exits_by_kind
def alias_set(
    name: str,
    alias: str,
    version: int,
    expect: Annotated[
        int | None, typer.Option(help="Only move if the alias still points at this version.")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why; kept in the ledger.")] = None,
    json: JsonOption = False,
) -> None:
    """Point ALIAS of NAME at VERSION (atomically, with history)."""
    with Registry() as registry:
        move = registry.set_alias(
            name, alias, version, expected=expect if expect is not None else UNSET, reason=reason
        )
    print_json(move) if json else console.print(alias_line(move))


@alias_app.command("delete")
@exits_by_kind
def alias_delete(
    name: str,
    alias: str,
    reason: Annotated[str | None, typer.Option(help="Why; kept in the ledger.")] = None,
    json: JsonOption = False,
) -> None:
    """Remove ALIAS from NAME."""
    with Registry() as registry:
        move = registry.delete_alias(name, alias, reason=reason)
    print_json(move) if json else console.print(alias_line(move))


@alias_app.command("history")
@exits_by_kind
def alias_history(
    name: str, alias: Annotated[str | None, typer.Argument()] = None, json: JsonOption = False
) -> None:
    """Every move of NAME's aliases (or of one alias), oldest first."""
    with Registry() as registry:
        moves = registry.alias_history(name, alias)
    if json:
        print_json(moves)
        return
    for move in moves:
        console.print(
            f"{move.at.astimezone():%Y-%m-%d %H:%M:%S} {move.actor}: {alias_line(move)} {move.reason or ''}"
        )


@exits_by_kind
def history(name: str, json: JsonOption = False) -> None:
    """The ledger of NAME: every registration, alias move and archive, with who and why."""
    with Registry() as registry:
        entries = registry.history(name)
    print_json(entries) if json else console.print(history_table(name, entries))


@exits_by_kind
def archive(
    name: str,
    version: Annotated[int | None, typer.Argument(help="Omit to archive the whole model.")] = None,
    reason: Annotated[str | None, typer.Option(help="Why; kept in the ledger.")] = None,
) -> None:
    """Archive a version (or a model): hidden from `latest`, kept for history."""
    with Registry() as registry:
        registry.archive(name, version, reason=reason)
    console.print(f"archived {name}" + (f":{version}" if version else ""))


@exits_by_kind
def predict(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS.")],
    input: Annotated[
        Path, typer.Option("--input", "-i", help="Rows to score (.csv .parquet .json .jsonl .npy).")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write predictions here (.csv .parquet .json .jsonl); default: print JSON.",
        ),
    ] = None,
    native: Annotated[
        bool, typer.Option("--native", help="Skip the compiled ONNX fast path.")
    ] = False,
    proba: Annotated[bool, typer.Option("--proba", help="Add class probabilities.")] = False,
) -> None:
    """Score a file with a registered model."""
    data = read_table(input)
    with Registry() as registry:
        model = registry.load(ref, compiled=not native)
        outputs = model.infer(data)
    primary = outputs["predict"]
    if primary.ndim == 1:
        frame = pd.DataFrame({"prediction": primary})
    else:
        frame = as_frame(primary)
        frame.columns = [f"prediction_{i}" for i in range(frame.shape[1])]
    if proba and "predict_proba" in outputs:
        probs = as_frame(outputs["predict_proba"])
        probs.columns = [f"proba_{i}" for i in range(probs.shape[1])]
        frame = pd.concat([frame, probs], axis=1)
    if output is None:
        print_json(frame.to_dict(orient="records"))
    else:
        write_table(frame, output)
        console.print(f"wrote {len(frame):,} predictions to {output}", highlight=False)
