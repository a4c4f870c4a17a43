"""Pipelines and their runs in the database.

A run row is the whole record of one retraining: trigger, status, data fingerprint,
parameters, package versions, metrics, the gate's verdict, the candidate, and the log file.
At most one run per pipeline is active (a partial unique index), which is what turns a
storm of triggers into one run. A run whose owner process died is declared FAILED the next
time anyone looks, so a restarted control plane never leaves a run hanging.
"""

from __future__ import annotations

import builtins
import enum
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.core.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from shipyard.core.refs import check_name
from shipyard.jobs.retrain.config import PipelineConfig, parse_config
from shipyard.registry import checks, ledger, queries
from shipyard.registry.recovery import process_alive
from shipyard.registry.service import Registry
from shipyard.storage.retrain_table import PipelineRow, RunRow
from shipyard.storage.tables import utcnow


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # the candidate passed the gate and was released
    REJECTED = "rejected"  # the candidate failed the gate; kept, never served
    FAILED = "failed"  # training crashed, hung, or returned something unusable


@dataclass(frozen=True, slots=True)
class Pipeline:
    name: str
    model: str
    entry: str
    config: PipelineConfig
    created_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    pipeline: str
    status: RunStatus
    trigger: str
    trigger_details: dict[str, Any]
    started_at: datetime
    ended_at: datetime | None
    result: dict[str, Any]
    candidate_version: int | None
    error: str | None
    log_path: str | None


def _check_entry(entry: str) -> str:
    module, _, function = entry.partition(":")
    parts = module.split(".")
    if not function or not all(p.isidentifier() for p in parts) or not function.isidentifier():
        raise InvalidArgument(f"entry point {entry!r} must look like package.module:function")
    return entry


def _to_pipeline(row: PipelineRow) -> Pipeline:
    return Pipeline(
        row.name, row.model, row.entry, parse_config(row.config), row.created_at, row.created_by
    )


def _to_run(name: str, row: RunRow) -> Run:
    return Run(
        id=row.id,
        pipeline=name,
        status=RunStatus(row.status),
        trigger=row.trigger,
        trigger_details=dict(row.trigger_details),
        started_at=row.started_at,
        ended_at=row.ended_at,
        result=dict(row.result),
        candidate_version=row.candidate_version,
        error=row.error,
        log_path=row.log_path,
    )


def _require(session: Session, name: str, *, lock: bool = False) -> PipelineRow:
    statement = select(PipelineRow).where(PipelineRow.name == name)
    if lock:
        statement = statement.with_for_update()
    row = session.scalars(statement).one_or_none()
    if row is None:
        raise NotFound(f"pipeline {name!r} not found")
    return row


class Pipelines:
    """Register pipelines; start, finish and read their runs."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.database = registry.database
        self.host = socket.gethostname()

    def register(self, name: str, *, model: str, entry: str, config: PipelineConfig) -> Pipeline:
        """Create pipeline `name`, or replace its entry and config (recorded in the ledger)."""
        check_name(name)
        check_name(model)
        _check_entry(entry)
        now = utcnow()
        with self.database.write() as session:
            queries.require_model(session, model)
            row = session.scalars(
                select(PipelineRow).where(PipelineRow.name == name).with_for_update()
            ).one_or_none()
            if row is None:
                row = PipelineRow(name=name, created_at=now, created_by=self.registry.actor)
                session.add(row)
            row.model, row.entry, row.config, row.updated_at = (
                model,
                entry,
                config.to_json(),
                now,
            )
            session.flush()
            ledger.append(
                session,
                actor=self.registry.actor,
                action="pipeline.registered",
                model=model,
                details={"pipeline": name, "entry": entry, "config": config.to_json()},
            )
            return _to_pipeline(row)

    def get(self, name: str) -> Pipeline:
        check_name(name)
        with self.database.read() as session:
            return _to_pipeline(_require(session, name))

    def list(self) -> builtins.list[Pipeline]:
        with self.database.read() as session:
            rows = session.scalars(select(PipelineRow).order_by(PipelineRow.name))
            return [_to_pipeline(row) for row in rows]

    # -- runs --------------------------------------------------------------------------------

    def start_run(
        self,
        name: str,
        trigger: str,
        details: dict[str, Any] | None = None,
        *,
        respect_cooldown: bool = True,
    ) -> Run:
        """Record a new RUNNING run owned by this process. Conflict while another run of the
        pipeline is active; FailedPrecondition inside the cool-down after the last run."""
        checks.check_action(trigger)
        self.recover()
        now = utcnow()
        try:
            with self.database.write() as session:
                pipeline = _require(session, name, lock=True)
                last = session.scalars(
                    select(RunRow)
                    .where(RunRow.pipeline_id == pipeline.id)
                    .order_by(RunRow.id.desc())
                    .limit(1)
                ).one_or_none()
                if last is not None and last.active:
                    raise Conflict(f"run {last.id} of pipeline {name!r} is still running")
                cooldown = timedelta(seconds=parse_config(pipeline.config).cooldown_s)
                ended = last.ended_at if last is not None else None
                if respect_cooldown and ended is not None and now - ended < cooldown:
                    raise FailedPrecondition(
                        f"pipeline {name!r} is cooling down until "
                        f"{(ended + cooldown).isoformat(timespec='seconds')}"
                    )
                row = RunRow(
                    pipeline_id=pipeline.id,
                    active=True,
                    status=RunStatus.RUNNING.value,
                    trigger=trigger,
                    trigger_details=dict(details or {}),
                    started_at=now,
                    owner_host=self.host,
                    owner_pid=os.getpid(),
                    result={},
                )
                session.add(row)
                session.flush()
                ledger.append(
                    session,
                    actor=self.registry.actor,
                    action="retrain.started",
                    model=pipeline.model,
                    details={
                        "pipeline": name,
                        "run": row.id,
                        "trigger": trigger,
                        **(details or {}),
                    },
                )
                return _to_run(name, row)
        except IntegrityError:  # another process started one between our check and insert
            raise Conflict(f"a run of pipeline {name!r} is already running") from None

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Record progress of a running run (result parts, candidate, log path)."""
        with self.database.write() as session:
            row = session.get(RunRow, run_id, with_for_update=True)
            if row is None:
                raise NotFound(f"run {run_id} not found")
            if "result" in fields:
                fields["result"] = {**row.result, **fields["result"]}
            for key, value in fields.items():
                setattr(row, key, value)

    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> Run:
        with self.database.write() as session:
            row = session.get(RunRow, run_id, with_for_update=True)
            if row is None:
                raise NotFound(f"run {run_id} not found")
            pipeline = session.get(PipelineRow, row.pipeline_id)
            assert pipeline is not None  # a foreign key
            row.status, row.active, row.ended_at = status.value, False, utcnow()
            row.error = error
            row.result = {**row.result, **(result or {})}
            ledger.append(
                session,
                actor=self.registry.actor,
                action=f"retrain.{status.value}",
                model=pipeline.model,
                version=row.candidate_version,
                details={"pipeline": pipeline.name, "run": row.id},
                reason=error,
            )
            return _to_run(pipeline.name, row)

    def run(self, run_id: int) -> Run:
        with self.database.read() as session:
            row = session.get(RunRow, run_id)
            if row is None:
                raise NotFound(f"run {run_id} not found")
            pipeline = session.get(PipelineRow, row.pipeline_id)
            assert pipeline is not None
            return _to_run(pipeline.name, row)

    def runs(self, name: str | None = None, *, limit: int = 50) -> builtins.list[Run]:
        """The most recent runs, newest first."""
        statement = (
            select(PipelineRow.name, RunRow)
            .join(PipelineRow, PipelineRow.id == RunRow.pipeline_id)
            .order_by(RunRow.id.desc())
            .limit(limit)
        )
        with self.database.read() as session:
            if name is not None:
                statement = statement.where(RunRow.pipeline_id == _require(session, name).id)
            return [_to_run(n, row) for n, row in session.execute(statement)]

    def recover(self) -> builtins.list[int]:
        """Fail the active runs whose owner process on this host is gone."""
        with self.database.read() as session:
            stale = [
                row.id
                for row in session.scalars(select(RunRow).where(RunRow.active.is_(True)))
                if row.owner_host == self.host and not process_alive(row.owner_pid)
            ]
        for run_id in stale:
            self.finish_run(
                run_id, RunStatus.FAILED, error="run interrupted (its control process exited)"
            )
        return stale
