from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard.core.errors import InvalidArgument
from shipyard.core.lineage import Lineage, fingerprint


def test_same_content_same_fingerprint_and_changes_are_seen() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    first = fingerprint(frame)
    assert first == fingerprint(frame.copy())
    assert first.rows == 3 and first.schema == {"a": "int64", "b": str(frame.dtypes["b"])}
    changed = frame.copy()
    changed.loc[1, "a"] = 5
    assert fingerprint(changed).sha256 != first.sha256
    assert fingerprint(frame.astype({"a": "float64"})).sha256 != first.sha256


def test_arrays() -> None:
    array = np.arange(12, dtype=np.float32).reshape(4, 3)
    fp = fingerprint(array)
    assert fp.rows == 4
    assert fp.sha256 != fingerprint(array.astype(np.float64)).sha256


def test_round_trip() -> None:
    lineage = Lineage(fingerprint(np.zeros((2, 2))), "abc", 1, "me", None, {"k": 1})
    assert Lineage.from_dict(lineage.to_dict()) == lineage


def test_unsupported() -> None:
    with pytest.raises(InvalidArgument, match="cannot fingerprint"):
        fingerprint("data.csv")
