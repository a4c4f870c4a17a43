"""Router: picks the model version for each request to a deployment, by its current revision.

Order of rules: a header match sends the request to its variant; else a key (header
`x-shipyard-key`, or the first value of the revision's sticky input) hashed with blake2b picks
a bucket 0..9999, so one key always lands on the same variant and keys split by the weights;
a request without a key gets a random bucket. Buckets are laid out in variant order, so when a
canary's weight grows the keys already on it stay on it.

The routing table is rebuilt from revisions by `apply` (the watcher calls it) and swapped in
with one assignment: a request sees either the old table or the new one, never half of each.
Every Route is built once per revision, so choosing allocates nothing.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from shipyard.core.errors import Unavailable
from shipyard.rollouts.spec import KEY_HEADER, HeaderMatch, Revision, Role
from shipyard.serving.routing import Lookup, Outcome, Route, Target

BUCKETS = 10_000  # weights are integer percents: 100 buckets per percent


class Sink(Protocol):
    """Where outcomes go (rollouts.recorder.Recorder fits it)."""

    def record(self, outcome: Outcome) -> None: ...

    def record_shadow(self, route: Route, *, ok: bool, agree: bool, seconds: float) -> None: ...


class Discard:
    """A sink that drops outcomes: routing without statistics."""

    def record(self, outcome: Outcome) -> None:
        return None

    def record_shadow(self, route: Route, *, ok: bool, agree: bool, seconds: float) -> None:
        return None


def bucket_of_key(key: str) -> int:
    """A stable bucket for `key`: the same on every process, host and Python version
    (Python's own hash() is salted per process)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True, slots=True)
class _Entry:
    revision: int
    routes: tuple[Route, ...]  # one per variant, in the spec's order
    edges: tuple[int, ...]  # cumulative upper bucket bounds per variant
    matches: tuple[HeaderMatch, ...]
    sticky_field: str | None
    primary: Route

    def pick(self, bucket: int) -> Route:
        return self.routes[bisect.bisect_right(self.edges, bucket)]


def compile_revision(revision: Revision) -> _Entry:
    spec = revision.spec
    primary = spec.primary
    shadow = (
        Target(spec.shadow.model, spec.shadow.version, Role.SHADOW.value)
        if spec.shadow is not None
        else None
    )
    routes: list[Route] = []
    edges: list[int] = []
    upper = 0
    for variant in spec.variants:
        role = Role.PRIMARY if variant is primary else Role.CANDIDATE
        target = Target(variant.model, variant.version, role.value)
        routes.append(Route(revision.deployment, revision.number, target, shadow))
        upper += variant.weight * (BUCKETS // 100)
        edges.append(upper)
    return _Entry(
        revision=revision.number,
        routes=tuple(routes),
        edges=tuple(edges),
        matches=spec.matches,
        sticky_field=spec.sticky_field,
        primary=routes[spec.variants.index(primary)],
    )


class Router:
    """Implements shipyard.serving.routing.Routing from deployment revisions."""

    def __init__(
        self,
        sink: Sink | None = None,
        *,
        excluded: Iterable[str] = (),
        rng: Callable[[int], int] | None = None,
    ) -> None:
        self._sink: Sink = sink or Discard()
        # Names served as plain models win: a deployment cannot take over a served model.
        self._excluded = frozenset(excluded)
        self._table: Mapping[str, _Entry] = {}
        self._notes: Mapping[str, str] = {}  # why a deployment's newest revision is not live
        self._random = rng or random.randrange
        self._ready = False
        self._ready_event: asyncio.Event | None = None

    # -- publishing --------------------------------------------------------------------------

    def apply(
        self, revisions: Mapping[str, Revision], waiting: Mapping[str, str] | None = None
    ) -> None:
        """Route by exactly these revisions from now on (one assignment). `waiting` says why
        a deployment's newest revision is not live (its versions failed to load): one with no
        routable revision at all is refused as unavailable rather than unknown."""
        table = {
            name: compile_revision(revision)
            for name, revision in revisions.items()
            if name not in self._excluded
        }
        notes = {n: r for n, r in (waiting or {}).items() if n not in self._excluded}
        self._table, self._notes = table, notes
        if not self._ready:
            self._ready = True
            if self._ready_event is not None:
                self._ready_event.set()

    def revisions(self) -> dict[str, int]:
        """The revision number routed now, per deployment."""
        return {name: entry.revision for name, entry in self._table.items()}

    # -- the Routing protocol ----------------------------------------------------------------

    def serves(self, name: str) -> bool:
        return name in self._table or name in self._notes

    def status(self) -> dict[str, tuple[int | None, str]]:
        """Per deployment: the revision routed (None: none yet) and why a newer one is not."""
        names = sorted({*self._table, *self._notes})
        table, notes = self._table, self._notes
        return {n: (table[n].revision if n in table else None, notes.get(n, "")) for n in names}

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._table))

    def ready(self) -> bool:
        return self._ready

    async def wait_ready(self, timeout_s: float) -> None:
        if self._ready:
            return
        if self._ready_event is None:
            self._ready_event = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready_event.wait(), timeout_s)

    def route_of(self, name: str) -> Route | None:
        entry = self._table.get(name)
        return entry.primary if entry is not None else None

    def choose(self, name: str, header: Lookup, field: Lookup) -> Route | None:
        entry = self._table.get(name)
        if entry is None:
            reason = self._notes.get(name)
            if reason is not None:
                raise Unavailable(f"deployment {name!r} is not ready: {reason}")
            return None
        for match in entry.matches:
            if header(match.header) == match.value:
                return entry.routes[match.variant]
        if len(entry.routes) == 1:
            return entry.routes[0]
        key = header(KEY_HEADER)
        if key is None and entry.sticky_field is not None:
            key = field(entry.sticky_field)
        bucket = bucket_of_key(key) if key is not None else self._random(BUCKETS)
        return entry.pick(bucket)

    def record(self, outcome: Outcome) -> None:
        self._sink.record(outcome)

    def record_shadow(self, route: Route, *, ok: bool, agree: bool, seconds: float) -> None:
        self._sink.record_shadow(route, ok=ok, agree=agree, seconds=seconds)
