"""What the data plane asks of deployment routing (implemented by shipyard.rollouts.router).

Serving sits below rollouts, so the data plane only knows this small interface: `choose` picks
the version that answers one request to a deployment name (None: the name is not a deployment),
`record` and `record_shadow` report what happened. Both run on the request path and must be
cheap and never block: they only update memory; writing to the database is someone else's
background job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

# Looks up a request header (lowercase name) or the first value of an input, lazily: most
# requests need neither, so transports never build a mapping up front.
Lookup = Callable[[str], str | None]


def no_lookup(name: str) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Target:
    """One model version a route sends a request (or its shadow copy) to."""

    model: str
    version: int
    role: str  # shipyard.rollouts.spec.Role value: primary, candidate or shadow

    @property
    def label(self) -> str:
        """What responses say answered: `model:version`."""
        return f"{self.model}:{self.version}"


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request to a deployment goes, by the revision current when it arrived."""

    deployment: str
    revision: int
    target: Target
    shadow: Target | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one routed request went. `output` is the first output's first row (JSON-ready)
    and `prediction` its first value when numeric; both None for a failed request."""

    route: Route
    request_id: str
    seconds: float
    ok: bool
    output: Any = None
    prediction: float | None = None
    key: str | None = None  # the request's business key (first row), for feedback by key


class Routing(Protocol):
    def serves(self, name: str) -> bool:
        """Whether `name` is a deployment this data plane routes (a dict lookup)."""
        ...

    def names(self) -> tuple[str, ...]: ...

    def ready(self) -> bool:
        """The first routing table has been published."""
        ...

    async def wait_ready(self, timeout_s: float) -> None: ...

    def status(self) -> dict[str, tuple[int | None, str]]:
        """Per deployment: the revision routed (None: none yet) and why a newer one is not
        (for the repository index)."""
        ...

    def route_of(self, name: str) -> Route | None:
        """The primary route of deployment `name` (for metadata), without choosing."""
        ...

    def choose(self, name: str, header: Lookup, field: Lookup) -> Route | None: ...

    def record(self, outcome: Outcome) -> None: ...

    def record_shadow(self, route: Route, *, ok: bool, agree: bool, seconds: float) -> None: ...
