"""`shipyard monitor status NAME` and `shipyard monitor report NAME -o report.html`.

The reference is a table (Parquet/CSV/...) of the data the model was validated on: its feature
columns give the drift profile; if it also has the label and score columns, it calibrates the
label-free performance estimate. The window is `--window FILE` or, without it, the prediction
log under $SHIPYARD_HOME since `--since`. Ground truth is a label column of the window or
`--feedback FILE` (request_id, value). Alerts come from the alert history in the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from shipyard.app.settings import Settings
from shipyard.cli.errors import exits_by_kind
from shipyard.cli.output import console, print_json
from shipyard.codecs.tables import read_table
from shipyard.core.errors import InvalidArgument
from shipyard.monitoring import DriftDetector
from shipyard.monitoring.alert_history import AlertHistory
from shipyard.monitoring.alerts import Alert
from shipyard.monitoring.eventlog import parse_age, read_events
from shipyard.monitoring.eventlog.columns import INPUT_PREFIX
from shipyard.monitoring.performance import Performance, join_feedback
from shipyard.monitoring.performance_estimate import PerformanceEstimator
from shipyard.monitoring.report import MonitorInput, Summary, render_report, summarise
from shipyard.storage.database import Database

monitor_app = typer.Typer(help="Drift, performance and alerts of a model.", no_args_is_help=True)

NOT_FEATURES = {"request_id", "event_id", "at", "version", "model", "deployment", "subject",
                "latency_ms", "label", "value", "row"}  # fmt: skip

Name = Annotated[str, typer.Argument(help="Model name (the subject of its alerts).")]
Reference = Annotated[
    Path, typer.Option("--reference", help="Reference data (Parquet, CSV, ...): the baseline.")
]
WindowFile = Annotated[
    Path | None, typer.Option("--window", help="Data to check; default: the prediction log.")
]
Since = Annotated[str, typer.Option(help="Prediction-log window: an age ('24h', '7d').")]
Label = Annotated[str | None, typer.Option(help="Ground-truth column (default: label, if any).")]
Prediction = Annotated[str | None, typer.Option(help="Predicted label/value column.")]
Score = Annotated[str | None, typer.Option(help="P(positive) column of a binary classifier.")]
Feedback = Annotated[
    Path | None, typer.Option(help="Ground truth file with request_id and value columns.")
]
Task = Annotated[str, typer.Option(help="classification or regression.")]


def install(app: typer.Typer) -> None:
    app.add_typer(monitor_app, name="monitor")


def _table(path: Path) -> pd.DataFrame:
    data = read_table(path)
    if not isinstance(data, pd.DataFrame):
        raise InvalidArgument(f"{path.name}: need a table with named columns, not an array")
    return data


def _strip_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    names = {c: c[len(INPUT_PREFIX) :] for c in frame.columns if str(c).startswith(INPUT_PREFIX)}
    return frame.rename(columns=names)


def _window(name: str, path: Path | None, since: str) -> pd.DataFrame:
    if path is not None:
        return _table(path)
    home = Settings().home
    events = read_events(home, model=name, since=datetime.now(UTC) - parse_age(since))
    if len(events) == 0:
        raise InvalidArgument(
            f"no logged predictions of {name} in the last {since} under {home}; "
            "pass --window FILE or a longer --since"
        )
    return events


def _plain(column: str) -> str:
    return column.removeprefix("output.")


def _column(frame: pd.DataFrame, column: str | None) -> str | None:
    if column is None:
        return None
    found = [c for c in (column, _plain(column)) if c in frame.columns]
    return found[0] if found else None


def _alerts(name: str) -> list[Alert]:
    with Database(Settings().resolved_database_url) as database:
        return AlertHistory(database).list(subject=name)


def _input(
    name: str, reference_path: Path, window_path: Path | None, since: str,
    label: str | None, prediction: str | None, score: str | None,
    feedback: Path | None, task: str,
) -> MonitorInput:  # fmt: skip
    reference = _strip_inputs(_table(reference_path))
    window = _window(name, window_path, since)
    if feedback is not None:
        window = join_feedback(window, _table(feedback))
        label = label or "label"
    if label is None and "label" in window.columns:
        label = "label"
    # The reference may name outputs as the log does (`output.proba`) or plainly (`proba`).
    targets = {t for c in (label, prediction, score) if c for t in (c, _plain(c))}
    columns = [
        c for c in reference.columns
        if c not in NOT_FEATURES and c not in targets and not str(c).startswith("output.")
    ]  # fmt: skip
    if not columns:
        raise InvalidArgument(f"{reference_path.name} has no feature columns to profile")
    detector = DriftDetector.fit(reference[columns])
    estimator = None
    ref_score = _column(reference, score)
    ref_label = _column(reference, label)
    if task == "classification" and ref_score and ref_label:
        estimator = PerformanceEstimator.fit(reference[ref_score], reference[ref_label])
    return MonitorInput(
        name, detector, window, label=label if prediction else None, prediction=prediction,
        score=score, task=task, estimator=estimator, alerts=_alerts(name),
    )  # fmt: skip


@monitor_app.command("status")
@exits_by_kind
def status(
    name: Name, reference: Reference, window: WindowFile = None, since: Since = "24h",
    label: Label = None, prediction: Prediction = None, score: Score = None,
    feedback: Feedback = None, task: Task = "classification",
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:  # fmt: skip
    """Latest drift per feature (with p-values), performance and firing alerts."""
    data = _input(name, reference, window, since, label, prediction, score, feedback, task)
    summary = summarise(data)
    if json:
        print_json(_jsonable(summary))
        return
    console.print(_drift_table(summary))
    for kind, perf in (("realised", summary.realised), ("estimated", summary.estimated)):
        if perf is not None:
            console.print(_performance_table(kind, perf))
    if summary.latency_p95_ms is not None:
        console.print(f"latency p95 {summary.latency_p95_ms:.1f} ms")
    if summary.firing:
        for alert in summary.firing:
            console.print(f"[bold red]FIRING[/bold red] {alert.rule}: {alert.message}")
    else:
        console.print("no alerts firing")


@monitor_app.command("report")
@exits_by_kind
def report(
    name: Name, reference: Reference,
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write.")],
    window: WindowFile = None, since: Since = "24h", label: Label = None,
    prediction: Prediction = None, score: Score = None, feedback: Feedback = None,
    task: Task = "classification",
) -> None:  # fmt: skip
    """Write a self-contained HTML report (opens offline: plots are inline SVG)."""
    data = _input(name, reference, window, since, label, prediction, score, feedback, task)
    html = render_report(data)
    try:
        output.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise InvalidArgument(f"cannot write {output}: {exc.strerror}") from exc
    console.print(f"wrote {output} ({len(html):,} bytes)")


def _drift_table(summary: Summary) -> Table:
    verdict = "DRIFT" if summary.drift.drift else "no drift"
    table = Table(
        title=f"{summary.model}: {verdict} (p={summary.drift.p_value:.2g}, {summary.n_rows:,} rows)"
    )
    for column in ("feature", "test", "p", "p (Holm)", "drift", "what moved"):
        table.add_column(column)
    tests = list(summary.drift.features.values())
    if summary.drift.multivariate is not None:
        tests.append(summary.drift.multivariate)
    for t in tests:
        mark = "[bold red]yes[/bold red]" if t.drift else "no"
        table.add_row(t.name, t.test, f"{t.p_value:.3g}", f"{t.p_adjusted:.3g}", mark, t.summary)
    return table


def _performance_table(kind: str, perf: Performance) -> Table:
    table = Table(title=f"{kind} performance ({perf.n_rows:,} rows)")
    table.add_column("metric")
    table.add_column("value")
    for metric, value in perf.metrics.items():
        shown = f"{value:.4g}" if value is not None else f"- ({perf.reasons.get(metric, '')})"
        table.add_row(metric, shown)
    return table


def _jsonable(summary: Summary) -> dict[str, Any]:
    return {
        "model": summary.model,
        "rows": summary.n_rows,
        "drift": summary.drift,
        "realised": summary.realised,
        "estimated": summary.estimated,
        "firing": summary.firing,
        "latency_p95_ms": summary.latency_p95_ms,
    }
