"""Rollouts: the progress of a deployment from its baseline to a candidate, step by step.

A rollout's whole state is its database row (step, window start, decisions), so a restarted
control plane resumes where it was. Every transition writes a revision (when traffic moves)
and a ledger entry with the reason and the numbers behind it. At most one rollout per
deployment is active: a partial unique index enforces it in the database itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.core.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from shipyard.core.refs import check_name
from shipyard.registry import checks, ledger, queries
from shipyard.rollouts import deployments as store
from shipyard.rollouts.policy import Policy, parse_policy
from shipyard.rollouts.spec import RevisionSpec, Strategy, Variant
from shipyard.storage.deployments_table import DeploymentRow, RolloutRow
from shipyard.storage.tables import utcnow


class RolloutState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"


ACTIVE = (RolloutState.RUNNING, RolloutState.PAUSED)
OUTCOMES = ("advance", "promote", "hold", "rollback")


@dataclass(frozen=True, slots=True)
class Decision:
    """The end of one analysis window (or a manual step) and why."""

    at: datetime
    step: int
    weight: int
    outcome: str  # one of OUTCOMES
    reason: str
    numbers: dict[str, Any]

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise InvalidArgument(f"outcome must be one of {', '.join(OUTCOMES)}")

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "step": self.step,
            "weight": self.weight,
            "outcome": self.outcome,
            "reason": self.reason,
            "numbers": self.numbers,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        return cls(
            at=datetime.fromisoformat(data["at"]),
            step=int(data["step"]),
            weight=int(data["weight"]),
            outcome=str(data["outcome"]),
            reason=str(data["reason"]),
            numbers=dict(data.get("numbers", {})),
        )


@dataclass(frozen=True, slots=True)
class Rollout:
    id: int
    deployment: str
    state: RolloutState
    policy: Policy
    baseline: Variant
    candidate: Variant
    step: int  # index into policy.steps
    windows: int  # analysis windows spent on this step so far
    window_started_at: datetime
    started_at: datetime
    updated_at: datetime
    actor: str
    decisions: tuple[Decision, ...]

    @property
    def weight(self) -> int:
        """The candidate's share of traffic at this step, in percent."""
        return self.policy.steps[self.step]

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def to_rollout(name: str, row: RolloutRow) -> Rollout:
    return Rollout(
        id=row.id,
        deployment=name,
        state=RolloutState(row.state),
        policy=parse_policy(row.policy),
        baseline=Variant.from_json(row.baseline),
        candidate=Variant.from_json(row.candidate),
        step=row.step,
        windows=row.windows,
        window_started_at=row.window_started_at,
        started_at=row.started_at,
        updated_at=row.updated_at,
        actor=row.actor,
        decisions=tuple(Decision.from_json(d) for d in row.decisions),
    )


def active_row(session: Session, deployment: DeploymentRow) -> RolloutRow | None:
    statement = select(RolloutRow).where(
        RolloutRow.deployment_id == deployment.id, RolloutRow.active.is_(True)
    )
    return session.scalars(statement).one_or_none()


def start(
    session: Session,
    deployment: DeploymentRow,
    policy: Policy,
    baseline: Variant,
    candidate: Variant,
    *,
    actor: str,
) -> RolloutRow:
    """Insert a running rollout at step 0 (the caller has written step 0's revision)."""
    now = utcnow()
    row = RolloutRow(
        deployment_id=deployment.id,
        active=True,
        state=RolloutState.RUNNING.value,
        policy=policy.to_json(),
        baseline=Variant(baseline.model, baseline.version).to_json(),
        candidate=Variant(candidate.model, candidate.version).to_json(),
        step=0,
        windows=0,
        window_started_at=now,
        started_at=now,
        updated_at=now,
        actor=actor,
        decisions=[],
    )
    session.add(row)
    session.flush()
    ledger.append(
        session,
        actor=actor,
        action="rollout.started",
        model=candidate.model,
        version=candidate.version,
        deployment=deployment.name,
        details={"rollout": row.id, "policy": policy.to_json(), "baseline": baseline.ref},
    )
    return row


def finish(session: Session, row: RolloutRow, state: RolloutState) -> None:
    row.state, row.active, row.updated_at = state.value, False, utcnow()
    if state is RolloutState.PROMOTED:
        _release(session, Variant.from_json(row.candidate), actor=row.actor)


def _release(session: Session, variant: Variant, *, actor: str) -> None:
    """A promoted retraining candidate becomes an ordinary released version."""
    model = queries.require_model(session, variant.model)
    version = queries.require_version(session, model, variant.version)
    if version.stage == "candidate":
        version.stage = None
        ledger.append(
            session,
            actor=actor,
            action="version.released",
            model=variant.model,
            version=variant.version,
            details={"stage": None, "previous": "candidate"},
            reason="promoted by its rollout",
        )


def split(baseline: Variant, candidate: Variant, weight: int) -> RevisionSpec:
    """The revision giving `candidate` `weight` percent (all of it at 100)."""
    if weight >= 100:
        return RevisionSpec(Strategy.DIRECT, (Variant(candidate.model, candidate.version, 100),))
    if weight <= 0:
        return RevisionSpec(Strategy.DIRECT, (Variant(baseline.model, baseline.version, 100),))
    return RevisionSpec(
        Strategy.CANARY,
        (
            Variant(baseline.model, baseline.version, 100 - weight),
            Variant(candidate.model, candidate.version, weight),
        ),
    )


class Rollouts:
    """Read rollouts; pause, resume, promote or abort them; apply the controller's decisions."""

    def __init__(self, deployments: store.Deployments) -> None:
        self.deployments = deployments
        self.database = deployments.database

    @property
    def actor(self) -> str:
        return self.deployments.actor

    def current(self, name: str) -> Rollout | None:
        """The active (running or paused) rollout of deployment `name`, if any."""
        check_name(name)
        with self.database.read() as session:
            deployment = store.require(session, name)
            row = active_row(session, deployment)
            return to_rollout(name, row) if row is not None else None

    def latest(self, name: str) -> Rollout:
        check_name(name)
        with self.database.read() as session:
            deployment = store.require(session, name)
            statement = (
                select(RolloutRow)
                .where(RolloutRow.deployment_id == deployment.id)
                .order_by(RolloutRow.id.desc())
                .limit(1)
            )
            row = session.scalars(statement).one_or_none()
            if row is None:
                raise NotFound(f"deployment {name!r} has had no rollout")
            return to_rollout(name, row)

    def running(self) -> list[Rollout]:
        statement = (
            select(DeploymentRow.name, RolloutRow)
            .join(DeploymentRow, DeploymentRow.id == RolloutRow.deployment_id)
            .where(RolloutRow.state == RolloutState.RUNNING.value)
            .order_by(RolloutRow.id)
        )
        with self.database.read() as session:
            return [to_rollout(name, row) for name, row in session.execute(statement)]

    # -- manual control ----------------------------------------------------------------------

    # With `expected_revision`, each is refused (Conflict) unless the deployment is still at
    # the revision the decision was made on: a step of the controller, a rollback, or a new
    # rollout (whose candidate a stale "promote" would otherwise ship) came in between.

    def pause(
        self, name: str, *, reason: str | None = None, expected_revision: int | None = None
    ) -> Rollout:
        return self._manual(name, "pause", reason, expected_revision)

    def resume(
        self, name: str, *, reason: str | None = None, expected_revision: int | None = None
    ) -> Rollout:
        return self._manual(name, "resume", reason, expected_revision)

    def promote(
        self, name: str, *, reason: str | None = None, expected_revision: int | None = None
    ) -> Rollout:
        return self._manual(name, "promote", reason, expected_revision)

    def abort(
        self, name: str, *, reason: str | None = None, expected_revision: int | None = None
    ) -> Rollout:
        return self._manual(name, "abort", reason, expected_revision)

    def _manual(
        self, name: str, verb: str, reason: str | None, expected_revision: int | None
    ) -> Rollout:
        check_name(name)
        checks.check_text(reason, "reason")
        store.check_expected_revision(expected_revision)
        with self.database.write() as session:
            deployment = store.require(session, name, lock=True)
            doing = f"{verb.removesuffix('e')}ing the rollout"
            store.require_revision(name, deployment.revision, expected_revision, doing)
            row = active_row(session, deployment)
            if row is None:
                raise FailedPrecondition(f"deployment {name!r} has no rollout in progress")
            rollout = to_rollout(name, row)
            now = utcnow()
            if verb == "pause":
                if rollout.state is RolloutState.PAUSED:
                    raise FailedPrecondition(f"the rollout of {name!r} is already paused")
                row.state = RolloutState.PAUSED.value
            elif verb == "resume":
                if rollout.state is RolloutState.RUNNING:
                    raise FailedPrecondition(f"the rollout of {name!r} is not paused")
                row.state, row.windows, row.window_started_at = RolloutState.RUNNING.value, 0, now
            elif verb == "promote":
                spec = split(rollout.baseline, rollout.candidate, 100)
                self._move(session, deployment, row, spec, "rollout.promoted", reason, {})
                finish(session, row, RolloutState.PROMOTED)
            else:
                spec = split(rollout.baseline, rollout.candidate, 0)
                self._move(session, deployment, row, spec, "rollout.aborted", reason, {})
                finish(session, row, RolloutState.ABORTED)
            row.updated_at = now
            if verb in ("pause", "resume"):
                self._log(session, deployment, row, f"rollout.{verb}d", reason, {})
            return to_rollout(name, row)

    # -- the controller's decisions ----------------------------------------------------------

    def decide(self, rollout_id: int, decision: Decision, *, expected_step: int) -> Rollout:
        """Apply the end of an analysis window. Refused (Conflict) when the rollout is no
        longer running at `expected_step`: a manual pause, abort or promote came first."""
        checks.check_text(decision.reason, "reason")
        with self.database.write() as session:
            row = session.get(RolloutRow, rollout_id, with_for_update=True)
            if row is None:
                raise NotFound(f"rollout {rollout_id} not found")
            deployment = session.get(DeploymentRow, row.deployment_id, with_for_update=True)
            assert deployment is not None  # a foreign key
            if row.state != RolloutState.RUNNING.value or row.step != expected_step:
                raise Conflict(
                    f"rollout {rollout_id} moved on (state {row.state}, step {row.step})"
                )
            rollout = to_rollout(deployment.name, row)
            now = utcnow()
            row.decisions = [*row.decisions, decision.to_json()]
            details = {"step": row.step, "weight": rollout.weight, "numbers": decision.numbers}
            outcome = decision.outcome
            if outcome == "advance" and row.step + 1 >= len(rollout.policy.steps) - 1:
                outcome = "promote"  # the next step is 100 %: that is the promotion
            if outcome == "hold":
                row.windows += 1
                row.window_started_at = now
                self._log(session, deployment, row, "rollout.held", decision.reason, details)
            elif outcome == "advance":
                row.step += 1
                row.windows, row.window_started_at = 0, now
                spec = split(rollout.baseline, rollout.candidate, rollout.policy.steps[row.step])
                self._move(
                    session, deployment, row, spec, "rollout.advanced", decision.reason, details
                )
            elif outcome == "promote":
                spec = split(rollout.baseline, rollout.candidate, 100)
                self._move(
                    session, deployment, row, spec, "rollout.promoted", decision.reason, details
                )
                finish(session, row, RolloutState.PROMOTED)
            else:
                spec = split(rollout.baseline, rollout.candidate, 0)
                self._move(
                    session, deployment, row, spec, "rollout.rolled_back", decision.reason, details
                )
                finish(session, row, RolloutState.ROLLED_BACK)
            row.updated_at = now
            return to_rollout(deployment.name, row)

    def _move(
        self,
        session: Session,
        deployment: DeploymentRow,
        row: RolloutRow,
        spec: RevisionSpec,
        action: str,
        reason: str | None,
        details: dict[str, Any],
    ) -> None:
        store.write_revision(
            session,
            deployment,
            spec,
            actor=self.actor,
            action=action,
            reason=reason,
            details={"rollout": row.id, **details},
        )

    def _log(
        self,
        session: Session,
        deployment: DeploymentRow,
        row: RolloutRow,
        action: str,
        reason: str | None,
        details: dict[str, Any],
    ) -> None:
        candidate = Variant.from_json(row.candidate)
        ledger.append(
            session,
            actor=self.actor,
            action=action,
            model=candidate.model,
            version=candidate.version,
            deployment=deployment.name,
            details={"rollout": row.id, **details},
            reason=reason,
        )
