"""What an API key may do: four scopes and the hierarchy between them.

admin ⊇ deploy ⊇ read, and admin ⊇ predict. `predict` deliberately does not include `read`:
a key handed to an application that calls a model should not be able to browse the registry
(model names, lineage, metrics, the ledger). `deploy` includes `read` because moving aliases and
starting rollouts without seeing what exists is not a real use case.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from shipyard.core.errors import InvalidArgument


class Scope(enum.Enum):
    READ = "read"  # management API: list and inspect models, versions, deployments, ledger
    PREDICT = "predict"  # data plane: inference endpoints
    DEPLOY = "deploy"  # register, move aliases, deploy, roll out, roll back (+ read)
    ADMIN = "admin"  # everything, including API keys

    def grants(self, required: Scope) -> bool:
        """True if a key holding this scope may do what `required` guards."""
        return required in _IMPLIES[self]

    @classmethod
    def parse(cls, value: str | Scope) -> Scope:
        if isinstance(value, Scope):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        shown = repr(value)[:40]
        raise InvalidArgument(f"unknown scope {shown}; use one of {', '.join(ALL_SCOPE_NAMES)}")


_IMPLIES: dict[Scope, frozenset[Scope]] = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.PREDICT: frozenset({Scope.PREDICT}),
    Scope.DEPLOY: frozenset({Scope.DEPLOY, Scope.READ}),
    Scope.ADMIN: frozenset(Scope),
}
ALL_SCOPE_NAMES: tuple[str, ...] = tuple(scope.value for scope in Scope)


def parse_scopes(values: Iterable[str | Scope]) -> tuple[Scope, ...]:
    """Validated, de-duplicated scopes in canonical order; at least one."""
    if isinstance(values, str | Scope):
        values = [values]
    chosen = {Scope.parse(value) for value in values}
    if not chosen:
        raise InvalidArgument(f"an API key needs at least one scope ({', '.join(ALL_SCOPE_NAMES)})")
    return tuple(scope for scope in Scope if scope in chosen)


def stored_scopes(values: object) -> tuple[Scope, ...]:
    """Scopes read back from the database. Unknown names (a newer shipyard wrote them) are
    dropped rather than guessed at: a key never gets more than what this version understands."""
    if not isinstance(values, list):
        return ()
    names = {value for value in values if isinstance(value, str)}
    return tuple(scope for scope in Scope if scope.value in names)


def grants(held: Iterable[Scope], required: Scope) -> bool:
    return any(scope.grants(required) for scope in held)
