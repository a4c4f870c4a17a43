"""What of a prediction may be stored: sampling, excluded and hashed columns, subject digests.

Runs on the logger's background thread, so the request path pays nothing for it; every event
passes through `Privacy.scrub` before any sink sees it. Digests are keyed BLAKE2b: without the
key nobody can test guesses of a customer id against the stored digests, and with it an
erasure request (`shipyard logs erase --key K`) finds every record of that subject.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import secrets
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from shipyard.core.errors import InvalidArgument
from shipyard.core.events import Column, MatrixColumns, PredictionEvent
from shipyard.monitoring.eventlog.columns import plain, storable

log = logging.getLogger(__name__)

DIGEST_BYTES = 16  # 128 bits: collision-free for any realistic number of subjects
KEY_FILE = "events/.hash-key"
_MIN_KEY_BYTES = 16
_INTEGRAL = re.compile(r"(-?\d+)\.0")
_WHOLE = re.compile(r"-?\d+")


def digest(key: bytes, value: object) -> str:
    """The stored stand-in for a raw value: keyed BLAKE2b of its text, hex."""
    return hashlib.blake2b(str(value).encode(), key=key, digest_size=DIGEST_BYTES).hexdigest()


def canonical_key(key: str) -> str:
    """A business key as digested for feedback: an integral float ("1234.0", an id read from a
    float column) counts as the integer ("1234")."""
    integral = _INTEGRAL.fullmatch(key)
    return integral.group(1) if integral else key


def key_spellings(key: str) -> tuple[str, ...]:
    """Every text one subject's key may have been stored under: "1234" and "1234.0" (the log
    digests a subject column's value as it came, an int or a float)."""
    plain = canonical_key(key)
    return (plain, f"{plain}.0") if _WHOLE.fullmatch(plain) else (plain,)


def load_or_create_key(home: Path) -> bytes:
    """The hashing key kept in HOME (created once, mode 0600), shared by the server and the
    CLI. Replicas on several hosts must be given the same key explicitly instead."""
    path = home / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
    return parse_key(path.read_text().strip())


def parse_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise InvalidArgument("the event hashing key must be hexadecimal") from None
    if not _MIN_KEY_BYTES <= len(key) <= hashlib.blake2b.MAX_KEY_SIZE:
        raise InvalidArgument(
            f"the event hashing key must be {_MIN_KEY_BYTES} to "
            f"{hashlib.blake2b.MAX_KEY_SIZE} bytes, got {len(key)}"
        )
    return key


class Privacy:
    """The scrubbing policy of one logger. Column names are checked against `columns` when
    the model's inputs are known up front (unknown names refused: a typo would otherwise leak
    the column it meant); otherwise an unknown name is warned about once per model."""

    def __init__(
        self,
        key: bytes,
        *,
        sample_rate: float = 1.0,
        exclude: Collection[str] = (),
        hash_columns: Collection[str] = (),
        subject_column: str | None = None,
        columns: Collection[str] | None = None,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise InvalidArgument(f"sample_rate must be between 0 and 1, got {sample_rate}")
        if len(key) < _MIN_KEY_BYTES:
            raise InvalidArgument(f"the hashing key must be at least {_MIN_KEY_BYTES} bytes")
        both = sorted(set(exclude) & set(hash_columns))
        if both:
            raise InvalidArgument(f"columns both excluded and hashed: {', '.join(both)}")
        named = [*exclude, *hash_columns, *([subject_column] if subject_column else [])]
        if any(not isinstance(name, str) or not name for name in named):
            raise InvalidArgument("column names must be non-empty strings")
        if columns is not None:
            unknown = sorted(set(named) - set(columns))
            if unknown:
                raise InvalidArgument(
                    f"unknown columns {', '.join(unknown)}; the model's inputs are "
                    f"{', '.join(sorted(columns))}"
                )
        self.key = key
        self.sample_rate = sample_rate
        self.exclude = frozenset(exclude)
        # The business key is never stored raw: hashed unless excluded outright.
        subject = {subject_column} - self.exclude if subject_column else set()
        self.hash_columns = frozenset(hash_columns) | subject
        self.subject_column = subject_column
        self._random = random.Random(seed)
        self._warned: set[str] = set()

    def scrub(self, event: PredictionEvent) -> Iterator[PredictionEvent]:
        """The storable form of `event`: one event per subject when its rows belong to
        several (so erasing one subject never leaves another's rows behind)."""
        self._warn_unknown(event)
        keep_inputs = self.sample_rate >= 1.0 or self._random.random() < self.sample_rate
        for part, raw_subject in self._split_by_subject(event):
            subject = None if raw_subject is None else digest(self.key, raw_subject)
            # Built directly: dataclasses.replace costs several times more per event.
            yield PredictionEvent(
                request_id=part.request_id,
                model=part.model,
                version=part.version,
                at=part.at,
                inputs=self._clean(part.inputs) if keep_inputs else {},
                outputs={name: storable(values) for name, values in part.outputs.items()},
                latency_ms=part.latency_ms,
                deployment=part.deployment,
                subject=subject,
                event_id=part.event_id,
            )

    def _clean(self, inputs: Any) -> Mapping[str, Column]:
        if isinstance(inputs, MatrixColumns) and not (self.exclude or self.hash_columns):
            return inputs  # numeric and nothing to drop or hash: the writer takes it whole
        cleaned: dict[str, Column] = {}
        for name, values in inputs.items():
            if name in self.exclude:
                continue
            if name in self.hash_columns:
                cleaned[name] = [None if v is None else digest(self.key, v) for v in plain(values)]
            else:
                cleaned[name] = storable(values)
        return cleaned

    def _split_by_subject(self, event: PredictionEvent) -> list[tuple[PredictionEvent, str | None]]:
        """The event's parts, each with its raw subject (the caller digests it)."""
        name = self.subject_column
        if name is None or name not in event.inputs:
            return [(event, event.subject)]
        keys = plain(event.inputs[name])
        distinct = list(dict.fromkeys(str(k) for k in keys))
        if len(distinct) <= 1:
            return [(event, distinct[0] if distinct else event.subject)]
        parts: list[tuple[PredictionEvent, str | None]] = []
        for n, subject in enumerate(distinct):
            rows = [i for i, k in enumerate(keys) if str(k) == subject]
            part = replace(
                event,
                event_id=f"{event.event_id}-{n}",
                inputs=_rows(event.inputs, rows, len(keys)),
                outputs=_rows(event.outputs, rows, len(keys)),
            )
            parts.append((part, subject))
        return parts

    def _warn_unknown(self, event: PredictionEvent) -> None:
        if event.model in self._warned:
            return
        self._warned.add(event.model)
        named = self.exclude | self.hash_columns
        missing = sorted(named - set(event.inputs))
        if missing and event.inputs:
            log.warning(
                "prediction log: model %s has no input columns %s (configured to be excluded "
                "or hashed); check the names",
                event.model,
                ", ".join(missing),
            )


def _rows(columns: Any, rows: Sequence[int], n: int) -> dict[str, list[Any]]:
    """`rows` of each column that has one value per row; other columns kept whole."""
    out: dict[str, list[Any]] = {}
    for name, values in columns.items():
        seq = plain(values)
        out[name] = [seq[i] for i in rows] if len(seq) == n else seq
    return out
