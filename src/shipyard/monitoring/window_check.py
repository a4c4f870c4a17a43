"""Judging one window of a model's prediction log, without I/O of its own: drift against
the reference, and the service numbers (latency p95, realised performance from feedback).

    cache = DetectorCache(load_reference, profiles=load_profile)  # (model, version) -> table /
                                                 # the profile stored at registration, or None
    judgement = judge("fraud", events, cache, at=now, min_rows=200)
    if judgement.observation is not None:
        manager.evaluate(judgement.observation)   # else: judgement.reason says why not

The window is judged against the reference data of the version that served it; when several
versions served (a canary), the one that served most rows speaks for the model, because its
alerts have one subject (the model) and hysteresis needs one window per check. A window with
too few rows, or a version without reference data, gets no judgement: a missing number must
neither fire nor resolve an alert.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from shipyard.core.errors import NotFound
from shipyard.monitoring.alert_rules import Observation
from shipyard.monitoring.detector import DEFAULT_ALPHA, DriftDetector
from shipyard.monitoring.eventlog.columns import INPUT_PREFIX, OUTPUT_PREFIX
from shipyard.monitoring.eventlog.parquet import EVENTS_DIR
from shipyard.monitoring.eventlog.table import TableSink
from shipyard.monitoring.performance import (
    Performance,
    classification_performance,
    regression_performance,
)
from shipyard.storage.database import Database

# (model, version) -> the version's reference table, or None when it was registered without.
ReferenceLoader = Callable[[str, int], pd.DataFrame | None]
# The profile stored at registration (serialization.reference_profile), or None without one.
ProfileLoader = Callable[[str, int], bytes | None]
MAX_CACHED = 256  # fitted detectors kept (~4 KB per feature each)


class NotJudged(Exception):
    """Why a window cannot be judged (no reference data, no common columns)."""


@dataclass(frozen=True)
class Judgement:
    model: str
    version: int | None  # the version whose rows were judged (None: no rows)
    n_rows: int  # rows of that version in the window
    observation: Observation | None  # None: not judged this time
    reason: str | None = None  # why not, for the log


def logged_models(
    home: Path, database: Database | None = None, since: datetime | None = None
) -> list[str]:
    """Models with a folder in the Parquet prediction log under `home`, and (given the
    registry's database and `since`) models with events in the table sink since then."""
    root = home / EVENTS_DIR
    found = set()
    if root.is_dir():
        found = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if database is not None and since is not None:
        found |= set(TableSink(database).models(since))
    return sorted(found)


def feature_frame(events: pd.DataFrame) -> pd.DataFrame:
    """The logged inputs (`input.<name>` columns) under their own names, as in the reference."""
    names = {c: c[len(INPUT_PREFIX) :] for c in events.columns if str(c).startswith(INPUT_PREFIX)}
    return events[list(names)].rename(columns=names)


def dominant_version(events: pd.DataFrame) -> int | None:
    """The version that served most rows (the newer one on a tie)."""
    counts = events["version"].dropna().astype("int64").value_counts()
    if counts.empty:
        return None
    pairs = [(int(n), int(v)) for v, n in zip(counts.index, counts.to_numpy(), strict=True)]
    return max(pairs)[1]


@dataclass(frozen=True)
class _Fitted:
    columns: tuple[str, ...]  # the logged columns it was fitted for
    detector: DriftDetector


class DetectorCache:
    """Fitted detectors per model version. A version's reference data never changes, so a
    detector is fitted once (again only if the logged columns change); the absence of
    reference data is remembered too, so it is looked up once per version."""

    def __init__(
        self,
        load: ReferenceLoader,
        *,
        profiles: ProfileLoader | None = None,
        alpha: float = DEFAULT_ALPHA,
        max_entries: int = MAX_CACHED,
    ) -> None:
        self.load = load
        self.profiles = profiles
        self.alpha = alpha
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int], _Fitted | str] = OrderedDict()

    def detector(self, model: str, version: int, logged: Sequence[str]) -> DriftDetector:
        """The detector of `model` v`version` over the reference columns that are logged;
        NotJudged when there is none."""
        key = (model, version)
        columns = tuple(sorted(logged))
        entry = self._entries.get(key)
        if entry is None or (isinstance(entry, _Fitted) and entry.columns != columns):
            entry = self._fit(model, version, columns)
            self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        if isinstance(entry, str):
            raise NotJudged(entry)
        return entry.detector

    def _fit(self, model: str, version: int, logged: tuple[str, ...]) -> _Fitted | str:
        try:
            stored = self._stored(model, version, logged)
            if stored is not None:
                return _Fitted(logged, stored)
            reference = self.load(model, version)
        except NotFound as exc:  # logged under a name or version this registry lacks
            raise NotJudged(exc.message) from None
        if reference is None:
            return f"{model} v{version} was registered without reference data"
        present = set(logged)
        common = [str(c) for c in reference.columns if str(c) in present]
        if not common:
            # Not cached as final: the next window may log the columns.
            raise NotJudged(
                f"no logged input of {model} v{version} is a reference column "
                f"(reference: {', '.join(map(str, reference.columns[:10]))}; "
                f"logged: {', '.join(logged[:10]) or 'none'})"
            )
        return _Fitted(logged, DriftDetector.fit(reference[common], alpha=self.alpha))

    def _stored(self, model: str, version: int, logged: tuple[str, ...]) -> DriftDetector | None:
        """The profile stored at registration, when the log holds every column it covers
        (the joint test spans all of them, so it cannot be cut down to fewer)."""
        data = self.profiles(model, version) if self.profiles is not None else None
        if data is None:
            return None
        detector = DriftDetector.from_bytes(data)
        if not {*detector.profiles, *detector.skipped} <= set(logged):
            return None  # some columns are not logged: fit on the ones that are
        detector.alpha = self.alpha
        return detector


def judge(
    model: str,
    events: pd.DataFrame,
    cache: DetectorCache,
    *,
    at: datetime,
    min_rows: int,
    deployment: str | None = None,
) -> Judgement:
    """The Observation of one window of `model`'s logged predictions (those served through
    `deployment`, whose name is then the subject), or why there is none."""
    version = dominant_version(events) if len(events) else None
    if version is None:
        return Judgement(model, None, 0, None, "no logged predictions in the window")
    rows = events[events["version"] == version]
    if len(rows) < min_rows:
        reason = f"{len(rows)} rows of v{version} in the window, {min_rows} needed to judge"
        return Judgement(model, version, len(rows), None, reason)
    features = feature_frame(rows)
    try:
        detector = cache.detector(model, version, list(features.columns))
    except NotJudged as exc:
        return Judgement(model, version, len(rows), None, str(exc))
    tested = [*detector.profiles, *detector.skipped]
    result = detector.check(features[tested].reset_index(drop=True))
    observation = Observation.of(model, at, version=version, deployment=deployment, drift=result)
    return Judgement(model, version, len(rows), observation)


# Output names that hold the predicted value, tried in this order before "the only scalar one".
PREDICTION_OUTPUTS = ("predict", "label", "prediction", "predictions", "output_0")


def prediction_column(events: pd.DataFrame) -> str | None:
    """The logged output holding one predicted value per row (`output.predict`, ...), or None
    when no output, or more than one unnamed one, qualifies."""
    outputs = [str(c) for c in events.columns if str(c).startswith(OUTPUT_PREFIX)]
    scalar = [c for c in outputs if not events[c].map(_is_sequence).any()]
    for name in PREDICTION_OUTPUTS:
        if OUTPUT_PREFIX + name in scalar:
            return OUTPUT_PREFIX + name
    return scalar[0] if len(scalar) == 1 else None


def _is_sequence(value: object) -> bool:
    return isinstance(value, list | tuple | np.ndarray)


def latency_p95(rows: pd.DataFrame) -> float | None:
    """The 95th percentile of request latency (one value per logged event, not per row)."""
    if "latency_ms" not in rows.columns or rows.empty:
        return None
    per_event = rows.drop_duplicates("event_id")["latency_ms"].dropna()
    return float(np.percentile(per_event, 95)) if len(per_event) else None


def realised_performance(
    rows: pd.DataFrame, labels: Mapping[str, object], *, min_labelled: int
) -> Performance | None:
    """Realised metrics of one version's rows from their feedback (`labels` by request id),
    or None with fewer than `min_labelled` labelled rows or no prediction output. Feedback
    is one value per request, so only single-row requests count. Float predictions make it
    a regression; integers, booleans and strings a classification."""
    column = prediction_column(rows)
    if column is None or "request_id" not in rows.columns:
        return None
    sizes = rows.groupby("request_id")["request_id"].transform("size")
    kept = rows[rows["request_id"].isin(list(labels)) & (sizes == 1)]
    if len(kept) < min_labelled:
        return None
    truth = pd.Series([labels[i] for i in kept["request_id"]], dtype=object).infer_objects()
    predicted = kept[column].reset_index(drop=True)
    if pd.api.types.is_float_dtype(predicted):
        return regression_performance(truth.astype(np.float64), predicted)
    return classification_performance(truth, predicted)
