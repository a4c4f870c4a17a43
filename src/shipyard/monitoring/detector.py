"""DriftDetector: reference profiles in, drift decisions out.

    det = DriftDetector.fit(reference_df)
    result = det.check(window_df)            # or: w = det.window(); w.update(chunk); w.result()

Every feature gets one test (numeric: Anderson-Darling on sketch cells; categorical: chi-square);
one more test looks at the numeric features jointly (PCA reconstruction error). The family is
Holm-corrected, so with the defaults the chance of any false alarm on a window with no shift is
at most `alpha` whatever the window size.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from shipyard.core.errors import InvalidArgument
from shipyard.monitoring.categorical import CategoricalWindow, categorical_drift, category_counts
from shipyard.monitoring.multivariate import MultivariateProfile, MultivariateWindow
from shipyard.monitoring.numeric import NumericWindow, numeric_drift
from shipyard.monitoring.profiles import CategoricalProfile, Floats, NumericProfile
from shipyard.monitoring.pvalues import holm
from shipyard.monitoring.result import DriftResult, FeatureDrift

Profile = NumericProfile | CategoricalProfile
DEFAULT_ALPHA = 0.05
SLICE_ROWS = 16_384


def column_kind(column: pd.Series) -> str | None:
    """ "numeric", "categorical" or None (unsupported: datetimes, complex, intervals, ...)."""
    dtype = column.dtype
    if ptypes.is_bool_dtype(dtype):
        return "categorical"
    if ptypes.is_numeric_dtype(dtype) and not ptypes.is_complex_dtype(dtype):
        return "numeric"
    if (
        ptypes.is_object_dtype(dtype)
        or ptypes.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    ):
        return "categorical"
    return None


def numeric_values(column: pd.Series) -> Floats:
    if column.dtype == np.float64:  # the common case: numpy's own array, no copy
        return np.asarray(column.to_numpy(), dtype=np.float64)
    # A window column of the wrong type is coerced: unparseable values count as missing.
    if not ptypes.is_numeric_dtype(column.dtype) or ptypes.is_bool_dtype(column.dtype):
        column = pd.to_numeric(column, errors="coerce")
    return np.asarray(column.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


class DriftDetector:
    def __init__(
        self,
        profiles: dict[str, Profile],
        multivariate: MultivariateProfile | None,
        skipped: dict[str, str],
        alpha: float = DEFAULT_ALPHA,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise InvalidArgument(f"alpha must be in (0, 1), got {alpha}")
        self.profiles = profiles
        self.multivariate = multivariate
        self.skipped = skipped  # reference columns not tested, with the reason
        self.alpha = alpha

    @classmethod
    def fit(cls, reference: pd.DataFrame, *, alpha: float = DEFAULT_ALPHA) -> DriftDetector:
        if not isinstance(reference, pd.DataFrame):
            raise InvalidArgument("reference must be a pandas DataFrame")
        if len(reference) == 0:
            raise InvalidArgument("reference has no rows")
        _reject_duplicate_columns(reference, "reference")
        profiles: dict[str, Profile] = {}
        skipped: dict[str, str] = {}
        joint: dict[str, Floats] = {}
        for name in reference.columns:
            column = reference[name]
            kind = column_kind(column)
            if kind is None:
                skipped[str(name)] = f"unsupported column type {column.dtype}"
            elif kind == "numeric":
                values = numeric_values(column)
                profile = NumericProfile.fit(values)
                profiles[str(name)] = profile
                if profile.cuts.size > 2:  # not all-missing, not constant
                    joint[str(name)] = values
            else:
                profiles[str(name)] = CategoricalProfile.fit(*category_counts(column))
        multivariate = None
        if joint:
            matrix = np.column_stack(list(joint.values()))
            multivariate = MultivariateProfile.fit(list(joint), matrix)
        return cls(profiles, multivariate, skipped, alpha)

    def window(self) -> Window:
        return Window(self)

    def check(self, window: pd.DataFrame) -> DriftResult:
        return self.window().update(window).result()

    def merge(self, other: DriftDetector) -> DriftDetector:
        """Profile of both inputs (e.g. two replicas, two days); columns must match."""
        if list(self.profiles) != list(other.profiles):
            raise InvalidArgument(
                "cannot merge detectors with different columns",
                details={"left": list(self.profiles), "right": list(other.profiles)},
            )
        merged = {name: _merge(name, p, other.profiles[name]) for name, p in self.profiles.items()}
        # If one side could not fit a joint model (or used other columns), the other side's
        # model is kept as is: a sub-sample's null profile is still calibrated.
        mine_mv, theirs_mv = self.multivariate, other.multivariate
        multivariate = mine_mv or theirs_mv
        if mine_mv is not None and theirs_mv is not None and mine_mv.columns == theirs_mv.columns:
            multivariate = mine_mv.merge(theirs_mv)
        return DriftDetector(merged, multivariate, {**other.skipped, **self.skipped}, self.alpha)

    def to_bytes(self) -> bytes:
        from shipyard.monitoring.serialization import dump  # it imports this module

        return dump(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> DriftDetector:
        from shipyard.monitoring.serialization import load  # it imports this module

        return load(data)


def _merge(name: str, mine: Profile, theirs: Profile) -> Profile:
    if isinstance(mine, NumericProfile) and isinstance(theirs, NumericProfile):
        return mine.merge(theirs)
    if isinstance(mine, CategoricalProfile) and isinstance(theirs, CategoricalProfile):
        return mine.merge(theirs)
    raise InvalidArgument(
        f"cannot merge profiles: feature {name!r} is {type(mine).__name__} in one and "
        f"{type(theirs).__name__} in the other",
        details={"feature": name},
    )


def _reject_duplicate_columns(frame: pd.DataFrame, what: str) -> None:
    names = [str(c) for c in frame.columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InvalidArgument(
            f"{what} has duplicate columns: {', '.join(duplicated)}",
            details={"duplicated": duplicated},
        )


class Window:
    """Accumulates a window chunk by chunk in bounded memory (windows by count or by time)."""

    def __init__(self, detector: DriftDetector) -> None:
        self.detector = detector
        self.n_rows = 0
        self.ignored_columns: list[str] = []
        self._numeric: dict[str, NumericWindow] = {}
        self._categorical: dict[str, CategoricalWindow] = {}
        for name, profile in detector.profiles.items():
            if isinstance(profile, NumericProfile):
                self._numeric[name] = NumericWindow(profile)
            else:
                self._categorical[name] = CategoricalWindow(profile)
        mv = detector.multivariate
        self._joint = MultivariateWindow(mv) if mv is not None else None

    def update(self, chunk: pd.DataFrame) -> Window:
        if not isinstance(chunk, pd.DataFrame):
            raise InvalidArgument("window must be a pandas DataFrame")
        _reject_duplicate_columns(chunk, "window")
        present = {str(c) for c in chunk.columns}
        missing = [name for name in self.detector.profiles if name not in present]
        if missing:
            raise InvalidArgument(
                f"window is missing columns: {', '.join(missing)}", details={"missing": missing}
            )
        expected = set(self.detector.profiles) | set(self.detector.skipped)
        for name in chunk.columns:
            if str(name) not in expected and str(name) not in self.ignored_columns:
                self.ignored_columns.append(str(name))
        chunk = chunk.rename(columns=str)
        # Slices bound the extra memory (~16 MB for 50 columns) whatever the chunk size.
        for start in range(0, len(chunk), SLICE_ROWS):
            self._add(chunk.iloc[start : start + SLICE_ROWS])
        return self

    def _add(self, chunk: pd.DataFrame) -> None:
        values = {name: numeric_values(chunk[name]) for name in self._numeric}
        for name, acc in self._numeric.items():
            acc.update(values[name])
        for name, cat in self._categorical.items():
            cat.update(chunk[name])
        if self._joint is not None:
            self._joint.update(np.column_stack([values[c] for c in self._joint.profile.columns]))
        self.n_rows += len(chunk)

    def quantile(self, name: str, q: float) -> float:
        """The window's `q` quantile of numeric feature `name`, from its sketch."""
        return self._numeric[name].quantile(q)

    def result(self) -> DriftResult:
        if self.n_rows == 0:
            raise InvalidArgument("window has no rows")
        tests: list[FeatureDrift] = [
            numeric_drift(n, w.profile, w) for n, w in self._numeric.items()
        ]
        tests += [categorical_drift(n, w.profile, w) for n, w in self._categorical.items()]
        if self._joint is not None:
            tests.append(self._joint.test())
        adjusted = holm([t.p_value for t in tests])
        alpha = self.detector.alpha
        decided = [
            dataclasses.replace(t, p_adjusted=p, drift=p < alpha)
            for t, p in zip(tests, adjusted, strict=True)
        ]
        multivariate = decided.pop() if self._joint is not None else None
        features = {t.name: t for t in decided}
        order = list(self.detector.profiles)
        overall = min(adjusted, default=1.0)
        return DriftResult(
            drift=overall < alpha,
            p_value=overall,
            alpha=alpha,
            n_rows=self.n_rows,
            features={name: features[name] for name in order},
            multivariate=multivariate,
            ignored_columns=list(self.ignored_columns),
            skipped=dict(self.detector.skipped),
        )
