"""Reading a pipeline's training data and splitting off the holdout the gate judges on."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shipyard.core.errors import InvalidArgument
from shipyard.jobs.retrain.config import Holdout, LoggedSource, PathSource, Source
from shipyard.jobs.retrain.logged_source import read_logged
from shipyard.jobs.retrain.sql_source import read_sql
from shipyard.storage.database import Database


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What sources beyond files need: whose predictions, where they are logged, and the
    registry database that holds their feedback."""

    model: str
    label: str
    home: Path | None = None
    database_url: str | None = None


@dataclass(frozen=True, slots=True)
class TrainingData:
    data: pd.DataFrame
    reports: list[dict[str, Any]] = field(default_factory=list)  # one per source, in order


def read_sources(sources: Sequence[Source], context: SourceContext) -> TrainingData:
    """Every source, concatenated in config order (files sorted within each glob)."""
    frames: list[pd.DataFrame] = []
    reports: list[dict[str, Any]] = []
    for source in sources:
        if isinstance(source, PathSource):
            frame, report = _read_files(source)
        elif isinstance(source, LoggedSource):
            if context.database_url is None:
                raise InvalidArgument("a logged source needs the registry database")
            database = Database(context.database_url)
            try:
                logged = read_logged(
                    source,
                    model=context.model,
                    label=context.label,
                    home=context.home,
                    database=database,
                )
            finally:
                database.close()
            frame, report = logged.data, logged.report
        else:
            queried = read_sql(source)
            frame, report = queried.data, queried.report
        frames.append(frame)
        reports.append(report)
    data = pd.concat(frames, ignore_index=True)
    if data.empty:
        raise InvalidArgument(f"the training data is empty; sources read: {reports}")
    return TrainingData(data, reports)


def _read_files(source: PathSource) -> tuple[pd.DataFrame, dict[str, Any]]:
    paths = sorted(glob.glob(source.path)) if glob.has_magic(source.path) else [source.path]
    if not paths:
        raise InvalidArgument(f"no training data file matches {source.path!r}")
    frames = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise InvalidArgument(f"training data file {path} does not exist")
        if path.suffix == ".csv":
            frames.append(pd.read_csv(path))
        else:
            frames.append(pd.read_parquet(path))
    frame = pd.concat(frames, ignore_index=True)
    return frame, {"kind": "path", "path": source.path, "files": len(paths), "rows": len(frame)}


def split(data: pd.DataFrame, label: str, holdout: Holdout) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): the latest `fraction` of rows by `time_column`, else the last rows
    in source order, so the gate judges on the most recent data, never on rows trained on."""
    if label not in data.columns:
        raise InvalidArgument(f"the training data has no label column {label!r}")
    if data[label].isna().all():
        raise InvalidArgument(f"the label column {label!r} has no values")
    ordered = data
    if holdout.time_column is not None:
        if holdout.time_column not in data.columns:
            raise InvalidArgument(f"the training data has no time column {holdout.time_column!r}")
        ordered = data.sort_values(holdout.time_column, kind="stable")
        ordered = ordered.drop(columns=[holdout.time_column])
    labelled = ordered[ordered[label].notna()].reset_index(drop=True)
    cut = int(round(len(labelled) * (1 - holdout.fraction)))
    if cut < 2 or len(labelled) - cut < 2:
        raise InvalidArgument(
            f"{len(labelled)} labelled rows are too few to split a holdout of {holdout.fraction}"
        )
    return labelled.iloc[:cut].reset_index(drop=True), labelled.iloc[cut:].reset_index(drop=True)
