"""Deployments: named endpoints whose traffic split changes by numbered revisions.

Every change is a new Revision (never an edit), written with a ledger entry in the same
transaction; the ledger bumps the registry's revision counter, which data planes poll, so a
change reaches them within one poll interval. The deployment row is locked (PostgreSQL) or the
database is (SQLite BEGIN IMMEDIATE) while a revision is written, so two writers serialise.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from shipyard.core.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from shipyard.core.refs import ModelRef, check_name
from shipyard.registry import checks, ledger, queries
from shipyard.registry.models import LedgerEntry
from shipyard.registry.service import Registry
from shipyard.rollouts import progress
from shipyard.rollouts.policy import Policy
from shipyard.rollouts.spec import (
    Deployment,
    Revision,
    RevisionSpec,
    Strategy,
    Variant,
    parse_strategy,
)
from shipyard.storage.deployments_table import DeploymentRow, RevisionRow
from shipyard.storage.tables import utcnow

DEFAULT_WEIGHT = {Strategy.CANARY: 10, Strategy.AB: 50}


def find(session: Session, name: str, *, lock: bool = False) -> DeploymentRow | None:
    statement = select(DeploymentRow).where(DeploymentRow.name == name)
    if lock:
        statement = statement.with_for_update()
    return session.scalars(statement).one_or_none()


def require(session: Session, name: str, *, lock: bool = False) -> DeploymentRow:
    row = find(session, name, lock=lock)
    if row is None:
        raise NotFound(f"deployment {name!r} not found")
    return row


def revision_row(session: Session, deployment: DeploymentRow, number: int) -> RevisionRow:
    statement = select(RevisionRow).where(
        RevisionRow.deployment_id == deployment.id, RevisionRow.number == number
    )
    row = session.scalars(statement).one_or_none()
    if row is None:
        raise NotFound(f"deployment {deployment.name!r} has no revision {number}")
    return row


def to_revision(name: str, row: RevisionRow) -> Revision:
    return Revision(
        deployment=name,
        number=row.number,
        spec=RevisionSpec.from_json(row.spec),
        created_at=row.created_at,
        actor=row.actor,
        reason=row.reason,
    )


def current(session: Session, deployment: DeploymentRow) -> Revision:
    return to_revision(deployment.name, revision_row(session, deployment, deployment.revision))


def servable(session: Session, ref: ModelRef) -> Variant:
    """The exact version `ref` names now, refused unless READY and not archived."""
    model = queries.require_model(session, ref.name)
    row = queries.resolve_row(session, model, ref)
    if row.archived:
        raise FailedPrecondition(f"{ref.name}:{row.version} is archived")
    return Variant(ref.name, row.version)


def write_revision(
    session: Session,
    deployment: DeploymentRow,
    spec: RevisionSpec,
    *,
    actor: str,
    action: str,
    reason: str | None,
    details: Mapping[str, Any] | None = None,
) -> Revision:
    """Append revision N+1, make it current, and record it in the ledger."""
    deployment.last_revision += 1
    deployment.revision = deployment.last_revision
    row = RevisionRow(
        deployment_id=deployment.id,
        number=deployment.revision,
        spec=spec.to_json(),
        created_at=utcnow(),
        actor=actor,
        reason=reason,
    )
    session.add(row)
    session.flush()
    primary = spec.primary
    ledger.append(
        session,
        actor=actor,
        action=action,
        model=primary.model,
        version=primary.version,
        deployment=deployment.name,
        details={"revision": row.number, "spec": spec.to_json(), **(details or {})},
        reason=reason,
    )
    return to_revision(deployment.name, row)


def check_expected_revision(expected: int | None) -> None:
    """`expected_revision` is a revision number, or 0 for "the deployment is new"."""
    if expected is not None and (
        isinstance(expected, bool) or not isinstance(expected, int) or expected < 0
    ):
        raise InvalidArgument(f"expected revision must be a non-negative integer, got {expected!r}")


def require_revision(name: str, current: int, expected: int | None, doing: str) -> None:
    """Compare-and-swap for a change decided on what revision `expected` showed. Call it
    with the deployment row locked, so nobody can move it between this check and the write
    (`current` 0: the deployment does not exist yet)."""
    if expected is None or current == expected:
        return
    where = f"is at revision {current}" if current else "does not exist yet"
    raise Conflict(
        f"deployment {name!r} {where}, not {expected}: "
        f"someone changed it; look again before {doing}"
    )


def _check_weight(strategy: Strategy, weight: int | None) -> int:
    if strategy not in DEFAULT_WEIGHT:
        if weight is not None:
            raise InvalidArgument(f"--weight applies to canary and ab, not {strategy.value}")
        return 100
    if weight is None:
        return DEFAULT_WEIGHT[strategy]
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 < weight < 100:
        raise InvalidArgument(f"weight must be an integer between 1 and 99, got {weight!r}")
    return weight


def plan(
    strategy: Strategy,
    new: Variant,
    live: RevisionSpec | None,
    *,
    weight: int,
    sticky_field: str | None,
) -> RevisionSpec:
    """The revision a deploy of `new` with `strategy` makes from the live one."""
    if strategy is Strategy.DIRECT or (strategy is Strategy.BLUEGREEN and live is None):
        return RevisionSpec(strategy, (Variant(new.model, new.version, 100),))
    if live is None:
        raise FailedPrecondition(
            f"a {strategy.value} deployment needs a live version to start from; "
            "deploy one with --strategy direct first"
        )
    old = live.primary
    if old.ref == new.ref:
        raise FailedPrecondition(f"{new.ref} is already the live version")
    if strategy is Strategy.BLUEGREEN:  # the old version stays warm for an instant way back
        variants = (Variant(new.model, new.version, 100), Variant(old.model, old.version, 0))
        return RevisionSpec(strategy, variants)
    if strategy is Strategy.SHADOW:
        return RevisionSpec(
            strategy,
            (Variant(old.model, old.version, 100),),
            shadow=Variant(new.model, new.version),
        )
    variants = (
        Variant(old.model, old.version, 100 - weight),
        Variant(new.model, new.version, weight),
    )
    return RevisionSpec(strategy, variants, sticky_field=sticky_field)


class Deployments:
    """Create deployments, revise them, roll them back, and read their history."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.database = registry.database

    @property
    def actor(self) -> str:
        return self.registry.actor

    def deploy(
        self,
        name: str,
        model: str,
        *,
        strategy: Strategy | str = Strategy.DIRECT,
        weight: int | None = None,
        policy: Policy | None = None,
        sticky_field: str | None = None,
        reason: str | None = None,
        expected_revision: int | None = None,
    ) -> Revision:
        """Route deployment `name` to `model` (a ModelRef) by `strategy`, creating it if
        new. A canary with a policy also starts a progressive rollout at its first step.
        With `expected_revision`, refused (Conflict) unless that is the current revision
        (0: unless the deployment is new)."""
        check_name(name)
        ref = ModelRef.parse(model) if isinstance(model, str) else model
        chosen = parse_strategy(strategy) if isinstance(strategy, str) else strategy
        if policy is not None:
            if chosen is not Strategy.CANARY:
                raise InvalidArgument("a rollout policy needs --strategy canary")
            if weight is not None:
                raise InvalidArgument("give either --weight or --policy: the policy sets steps")
            weight = policy.steps[0] if policy.steps[0] < 100 else None
        share = _check_weight(chosen, weight)
        if sticky_field is not None and chosen is not Strategy.AB:
            raise InvalidArgument("--sticky-field applies to --strategy ab")
        checks.check_text(reason, "reason")
        check_expected_revision(expected_revision)
        with self.database.write() as session:
            row = self._ensure(session, name)  # locked; undone with the rest if refused below
            require_revision(name, row.revision, expected_revision, "deploying")
            new = servable(session, ref)
            live = current(session, row).spec if row.revision else None
            if progress.active_row(session, row) is not None:
                raise Conflict(
                    f"deployment {name!r} has a rollout in progress; "
                    "promote, abort or wait for it first"
                )
            if policy is not None and policy.steps == (100,):
                chosen = Strategy.DIRECT  # a one-step policy is a direct deploy
            spec = plan(chosen, new, live, weight=share, sticky_field=sticky_field)
            revision = write_revision(
                session,
                row,
                spec,
                actor=self.actor,
                action="deployment.deployed",
                reason=reason,
                details={"strategy": chosen.value, "model": new.ref},
            )
            if policy is not None and chosen is Strategy.CANARY and live is not None:
                progress.start(session, row, policy, live.primary, new, actor=self.actor)
            return revision

    def _ensure(self, session: Session, name: str) -> DeploymentRow:
        """The deployment's row, locked, inserted (at revision 0) if absent. Two deploys of a
        new name at once both succeed, one after the other: the loser's insert waits for the
        winner's commit and does nothing, and it then finds the row (on PostgreSQL a plain
        insert failed on the unique name instead: a 500)."""
        statement = self.database.insert_ignoring(DeploymentRow.__table__).values(
            name=name,
            description=None,
            created_at=utcnow(),
            created_by=self.actor,
            revision=0,
            last_revision=0,
        )
        session.execute(statement)
        return require(session, name, lock=True)

    def revise(
        self,
        name: str,
        spec: RevisionSpec,
        *,
        action: str,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Revision:
        """Make `spec` the current revision (each variant must be servable)."""
        check_name(name)
        checks.check_action(action)
        checks.check_text(reason, "reason")
        with self.database.write() as session:
            for variant in spec.loaded():
                servable(session, ModelRef(variant.model, version=variant.version))
            row = require(session, name, lock=True)
            return write_revision(
                session, row, spec, actor=self.actor, action=action, reason=reason, details=details
            )

    def rollback(
        self,
        name: str,
        *,
        to: int | None = None,
        reason: str | None = None,
        expected_revision: int | None = None,
    ) -> Revision:
        """A new revision routing like revision `to` (default: the one before the current).
        An active rollout ends as rolled back. With `expected_revision`, refused (Conflict)
        unless that is still the current revision: the rollback was decided looking at it."""
        check_name(name)
        checks.check_text(reason, "reason")
        if to is not None and (isinstance(to, bool) or not isinstance(to, int) or to < 1):
            raise InvalidArgument(f"revision must be a positive integer, got {to!r}")
        check_expected_revision(expected_revision)
        with self.database.write() as session:
            row = require(session, name, lock=True)
            # First: a default `to` and every check below assume the revision the caller saw.
            require_revision(name, row.revision, expected_revision, "rolling back")
            target = to if to is not None else row.revision - 1
            if target < 1:
                raise FailedPrecondition(f"deployment {name!r} has no earlier revision")
            if target == row.revision:
                raise FailedPrecondition(f"revision {target} is already current")
            spec = to_revision(name, revision_row(session, row, target)).spec
            for variant in spec.loaded():
                servable(session, ModelRef(variant.model, version=variant.version))
            rollout = progress.active_row(session, row)
            if rollout is not None:
                progress.finish(session, rollout, progress.RolloutState.ROLLED_BACK)
            return write_revision(
                session,
                row,
                spec,
                actor=self.actor,
                action="deployment.rolled_back",
                reason=reason,
                details={"to": target, "from": row.revision},
            )

    # -- reading -----------------------------------------------------------------------------

    def get(self, name: str) -> Deployment:
        check_name(name)
        with self.database.read() as session:
            return self._to_deployment(session, require(session, name))

    def list(self) -> list[Deployment]:
        with self.database.read() as session:
            rows = session.scalars(select(DeploymentRow).order_by(DeploymentRow.name))
            return [self._to_deployment(session, row) for row in rows]

    def revisions(self, name: str) -> builtins.list[Revision]:
        check_name(name)
        with self.database.read() as session:
            row = require(session, name)
            statement = (
                select(RevisionRow)
                .where(RevisionRow.deployment_id == row.id)
                .order_by(RevisionRow.number)
            )
            return [to_revision(name, r) for r in session.scalars(statement)]

    def history(self, name: str) -> builtins.list[LedgerEntry]:
        """Every ledger entry about deployment `name`, oldest first."""
        self.get(name)  # NotFound for an unknown name
        return self.registry.ledger(deployment=name)

    def snapshot(self) -> dict[str, Revision]:
        """The current revision of every deployment (what data planes route by)."""
        statement = select(DeploymentRow.name, RevisionRow).join(
            RevisionRow,
            and_(
                RevisionRow.deployment_id == DeploymentRow.id,
                RevisionRow.number == DeploymentRow.revision,
            ),
        )
        with self.database.read() as session:
            return {name: to_revision(name, row) for name, row in session.execute(statement)}

    def _to_deployment(self, session: Session, row: DeploymentRow) -> Deployment:
        return Deployment(
            name=row.name,
            description=row.description,
            created_at=row.created_at,
            created_by=row.created_by,
            revision=current(session, row),
        )
