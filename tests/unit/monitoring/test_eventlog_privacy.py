"""Privacy: what of a prediction may be stored (sampling, excluded/hashed columns, subjects)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from eventlog_support import KEY, event

from shipyard.core.errors import InvalidArgument
from shipyard.monitoring.eventlog.privacy import (
    Privacy,
    digest,
    load_or_create_key,
    parse_key,
)


def test_excluded_columns_dropped_and_hashed_columns_digested() -> None:
    privacy = Privacy(KEY, exclude=["ssn"], hash_columns=["email"])
    raw = event(inputs={"amount": [1.5, 2.0], "ssn": ["123-45-6789"], "email": ["a@x.io", None]})
    (stored,) = privacy.scrub(raw)
    assert set(stored.inputs) == {"amount", "email"}
    assert stored.inputs["email"] == [digest(KEY, "a@x.io"), None]
    assert "a@x.io" not in repr(stored)
    # Dashes cannot occur in the hex event id, so a hit means the value leaked.
    assert "123-45-6789" not in repr(stored)
    assert stored.outputs == {"label": [0]}


def test_digest_depends_on_the_key() -> None:
    assert digest(KEY, "c1") == digest(KEY, "c1")
    assert digest(KEY, "c1") != digest(bytes(32), "c1")
    assert len(digest(KEY, "c1")) == 32


def test_sampling_keeps_outputs_and_drops_inputs_of_the_rest() -> None:
    privacy = Privacy(KEY, sample_rate=0.25, seed=1)
    stored = [s for i in range(2000) for s in privacy.scrub(event(i))]
    kept = sum(1 for s in stored if s.inputs)
    assert 400 < kept < 600
    assert all(s.outputs for s in stored)
    none = Privacy(KEY, sample_rate=0.0)
    assert all(not s.inputs for i in range(50) for s in none.scrub(event(i)))


def test_subject_is_digested_and_its_column_hashed() -> None:
    privacy = Privacy(KEY, subject_column="customer")
    (stored,) = privacy.scrub(event(7))
    assert stored.subject == digest(KEY, "c7")
    assert stored.inputs["customer"] == [digest(KEY, "c7")]


def test_subject_kept_even_when_inputs_sampled_out() -> None:
    privacy = Privacy(KEY, subject_column="customer", sample_rate=0.0)
    (stored,) = privacy.scrub(event(3))
    assert stored.inputs == {}
    assert stored.subject == digest(KEY, "c3")


def test_rows_of_several_subjects_become_one_event_each() -> None:
    privacy = Privacy(KEY, subject_column="customer", exclude=["customer"])
    raw = event(inputs={"customer": ["a", "b", "a"], "amount": [1, 2, 3]})
    raw = replace(raw, outputs={"label": [0, 1, 0], "model_id": ["m"]})
    parts = list(privacy.scrub(raw))
    assert [p.subject for p in parts] == [digest(KEY, "a"), digest(KEY, "b")]
    assert parts[0].inputs == {"amount": [1, 3]}
    assert parts[0].outputs == {"label": [0, 0], "model_id": ["m"]}
    assert parts[1].inputs == {"amount": [2]}
    assert len({p.event_id for p in parts}) == 2
    assert all(p.request_id == raw.request_id for p in parts)


def test_numeric_arrays_are_kept_and_the_rest_becomes_plain_python() -> None:
    """Numeric arrays pass through uncopied (the Parquet writer concatenates them per batch);
    anything else becomes JSON-ready Python values."""
    privacy = Privacy(KEY)
    x = np.array([1.5, 2.5], dtype=np.float32)
    grid = np.array([[0.2, 0.8]])
    raw = event(inputs={"x": x, "n": [np.int64(3)], "s": np.array(["a"])})  # type: ignore[dict-item]
    raw = replace(raw, outputs={"p": grid, "label": np.array([1])})
    (stored,) = privacy.scrub(raw)
    assert stored.inputs["x"] is x
    assert stored.inputs["n"] == [3] and type(stored.inputs["n"][0]) is int
    assert stored.inputs["s"] == ["a"] and type(stored.inputs["s"][0]) is str
    assert stored.outputs["p"] is grid  # 2-D: a row of class probabilities per request row
    assert list(stored.outputs["label"]) == [1]


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_sample_rate_outside_zero_one_refused(rate: float) -> None:
    with pytest.raises(InvalidArgument, match="sample_rate must be between 0 and 1"):
        Privacy(KEY, sample_rate=rate)


def test_column_both_excluded_and_hashed_refused() -> None:
    with pytest.raises(InvalidArgument, match="both excluded and hashed: email"):
        Privacy(KEY, exclude=["email"], hash_columns=["email"])


def test_unknown_columns_refused_when_the_inputs_are_known() -> None:
    with pytest.raises(InvalidArgument, match="unknown columns emial; the model's inputs are"):
        Privacy(KEY, hash_columns=["emial"], columns=["email", "amount"])


def test_unknown_columns_warned_once_per_model(caplog: pytest.LogCaptureFixture) -> None:
    privacy = Privacy(KEY, exclude=["ssn"])
    with caplog.at_level(logging.WARNING):
        for i in range(3):
            list(privacy.scrub(event(i)))
    warnings = [r for r in caplog.records if "has no input columns ssn" in r.getMessage()]
    assert len(warnings) == 1


def test_short_or_bad_keys_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="at least 16 bytes"):
        Privacy(b"short")
    with pytest.raises(InvalidArgument, match="must be hexadecimal"):
        parse_key("not hex")
    with pytest.raises(InvalidArgument, match="must be 16 to 64 bytes, got 4"):
        parse_key("00112233")


def test_key_created_once_and_private(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path)
    assert load_or_create_key(tmp_path) == first
    assert len(first) == 32
    assert (tmp_path / "events" / ".hash-key").stat().st_mode & 0o777 == 0o600


def test_a_subject_given_by_the_caller_is_stored_only_as_its_digest() -> None:
    raw = replace(event(1), subject="customer-123")
    (stored,) = Privacy(KEY).scrub(raw)
    assert stored.subject == digest(KEY, "customer-123")
