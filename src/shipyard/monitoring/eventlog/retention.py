"""Retention and erasure across every store of the prediction log.

`prune` is what the control plane calls on a schedule (and `shipyard logs prune` by hand);
`erase` serves a subject's erasure request. Both report how many records each store removed;
one store failing does not stop the others (it is listed with its reason instead).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from shipyard.core.errors import InvalidArgument, ShipyardError
from shipyard.monitoring.eventlog.privacy import digest, key_spellings

log = logging.getLogger(__name__)

_AGE = re.compile(r"(?P<amount>\d{1,9})\s*(?P<unit>s|sec|m|min|h|d|w)")
_UNITS = {
    "s": "seconds",
    "sec": "seconds",
    "m": "minutes",
    "min": "minutes",
    "h": "hours",
    "d": "days",
    "w": "weeks",
}
# Failures of one store that must not stop the others (network, disk, server errors).
# SQLAlchemyError: what the table store's database refuses beyond Unavailable (PostgreSQL's
# missing relation, a permission) is that store's failure, not the whole sweep's.
_STORE_ERRORS = (
    ShipyardError, OSError, ConnectionError, TimeoutError, RuntimeError, SQLAlchemyError,
)  # fmt: skip


class Store(Protocol):
    """A place events are kept that can forget them."""

    name: str

    def prune(self, before: datetime) -> int: ...

    def erase(self, subjects: Collection[str]) -> int:
        """Remove the records whose subject digest is any of `subjects` (one pass)."""
        ...


class _Action(Protocol):
    def __call__(self, store: Store, /) -> int: ...


@dataclass
class Removal:
    removed: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def parse_age(text: str) -> timedelta:
    """'30d', '12h', '90min', '45s', '2w': one whole number and one unit, positive."""
    match = _AGE.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if match is None:
        raise InvalidArgument(f"cannot read {text!r} as a period; use e.g. 30d, 12h or 90min")
    amount, unit = int(match["amount"]), _UNITS[match["unit"]]
    if amount == 0:
        raise InvalidArgument(f"the period must be positive, got {text!r}")
    try:
        return timedelta(**{unit: amount})
    except OverflowError:
        raise InvalidArgument(f"the period {text!r} is too long") from None


def prune(
    stores: Sequence[Store], older_than: timedelta, *, now: datetime | None = None
) -> Removal:
    """Delete every record older than `older_than` from each store."""
    if older_than <= timedelta(0):
        raise InvalidArgument("older_than must be positive")
    before = (now or datetime.now(UTC)) - older_than
    return _each(stores, lambda store: store.prune(before))


def erase(stores: Sequence[Store], key: str, hash_key: bytes) -> Removal:
    """Delete every record of the subject whose business key is `key`."""
    if not key:
        raise InvalidArgument("the key to erase must not be empty")
    # Every spelling at once: a store reads its whole log once per erase call.
    subjects = frozenset(digest(hash_key, spelling) for spelling in key_spellings(key))
    return _each(stores, lambda store: store.erase(subjects))


def _each(stores: Sequence[Store], action: _Action) -> Removal:
    result = Removal()
    for store in stores:
        try:
            result.removed[store.name] = action(store)
        except _STORE_ERRORS as exc:
            log.warning("prediction log: %s failed: %s", store.name, exc)
            result.failed[store.name] = f"{type(exc).__name__}: {exc}"
    return result
