"""Where a model version came from: training data fingerprint, code, parent, creator."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class DataFingerprint:
    """A content hash of a data set plus its shape and schema (the data itself is not kept)."""

    sha256: str
    rows: int
    schema: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "rows": self.rows, "schema": dict(self.schema)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataFingerprint:
        return cls(sha256=str(data["sha256"]), rows=int(data["rows"]), schema=dict(data["schema"]))


def fingerprint(data: object) -> DataFingerprint:
    """Fingerprint a DataFrame, Series or array: same content and schema, same hash."""
    if isinstance(data, pd.Series):
        data = data.to_frame()
    if isinstance(data, pd.DataFrame):
        schema = {str(c): str(t) for c, t in data.dtypes.items()}
        digest = hashlib.sha256(repr(sorted(schema.items())).encode())
        row_hashes = pd.util.hash_pandas_object(data, index=False).to_numpy()
        digest.update(np.ascontiguousarray(row_hashes).tobytes())
        return DataFingerprint(digest.hexdigest(), len(data), schema)
    if isinstance(data, np.ndarray):
        if data.dtype == object:
            return fingerprint(pd.DataFrame(data.reshape(len(data), -1)))
        schema = {"dtype": str(data.dtype), "shape": str(list(data.shape))}
        digest = hashlib.sha256(repr(sorted(schema.items())).encode())
        digest.update(np.ascontiguousarray(data).tobytes())
        return DataFingerprint(digest.hexdigest(), int(data.shape[0]) if data.ndim else 1, schema)
    raise InvalidArgument(
        f"cannot fingerprint training data of type {type(data).__name__}; "
        "give a pandas DataFrame or a numpy array"
    )


@dataclass(frozen=True, slots=True)
class Lineage:
    """Provenance recorded with a version. Every field is optional; unknown stays None."""

    data: DataFingerprint | None = None
    code_version: str | None = None
    parent_version: int | None = None
    creator: str | None = None
    run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data.to_dict() if self.data else None,
            "code_version": self.code_version,
            "parent_version": self.parent_version,
            "creator": self.creator,
            "run_id": self.run_id,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lineage:
        fp = data.get("data")
        return cls(
            data=DataFingerprint.from_dict(fp) if fp else None,
            code_version=data.get("code_version"),
            parent_version=data.get("parent_version"),
            creator=data.get("creator"),
            run_id=data.get("run_id"),
            extra=dict(data.get("extra") or {}),
        )
