"""Retraining endpoints: pipelines, their runs (with logs and the gate's verdict), and a
manual trigger that starts a run in the control plane's background."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel

from shipyard.core.errors import Unavailable
from shipyard.jobs.retrain.pipelines import Pipeline, Pipelines, Run
from shipyard.jobs.retrain.runner import log_tail
from shipyard.transports.api.context import Caller
from shipyard.transports.api.errors import ERROR_RESPONSES
from shipyard.transports.api.security import DEPLOY, READ

router = APIRouter(responses=ERROR_RESPONSES, tags=["retraining"])

RETRAINER_STATE = "retrainer"  # app.state attribute holding the control plane's loop
RunId = PathParam(ge=1, le=2**62)  # bounded: the database's integers are 64-bit


class Retrainer(Protocol):
    """The control plane's retraining loop (app.retrain.RetrainLoop)."""

    def submit(self, name: str, *, force: bool = False) -> Run: ...


class PipelineOut(BaseModel):
    name: str
    model: str
    entry: str
    config: dict[str, Any]
    created_at: datetime
    created_by: str

    @classmethod
    def of(cls, p: Pipeline) -> PipelineOut:
        return cls(
            name=p.name, model=p.model, entry=p.entry, config=p.config.to_json(),
            created_at=p.created_at, created_by=p.created_by,
        )  # fmt: skip


class RunOut(BaseModel):
    id: int
    pipeline: str
    status: str
    trigger: str
    trigger_details: dict[str, Any]
    started_at: datetime
    ended_at: datetime | None
    candidate_version: int | None
    error: str | None
    result: dict[str, Any]

    @classmethod
    def of(cls, r: Run) -> RunOut:
        return cls(
            id=r.id, pipeline=r.pipeline, status=r.status.value, trigger=r.trigger,
            trigger_details=r.trigger_details, started_at=r.started_at, ended_at=r.ended_at,
            candidate_version=r.candidate_version, error=r.error, result=r.result,
        )  # fmt: skip


class RunLog(BaseModel):
    run: int
    log: str


@router.get("/pipelines", response_model=list[PipelineOut])
def list_pipelines(caller: Caller = READ) -> list[PipelineOut]:
    return [PipelineOut.of(p) for p in Pipelines(caller.registry).list()]


@router.get("/pipelines/{name}", response_model=PipelineOut)
def get_pipeline(name: str, caller: Caller = READ) -> PipelineOut:
    return PipelineOut.of(Pipelines(caller.registry).get(name))


@router.post("/pipelines/{name}/runs", response_model=RunOut, status_code=202)
def start_run(
    name: str, request: Request, force: bool = Query(False), caller: Caller = DEPLOY
) -> RunOut:
    """Start a run now; it trains in the background (poll GET /runs/{id})."""
    Pipelines(caller.registry).get(name)  # 404 before anything starts
    retrainer: Retrainer | None = getattr(request.app.state, RETRAINER_STATE, None)
    if retrainer is None:
        raise Unavailable("retraining does not run in this server")
    return RunOut.of(retrainer.submit(name, force=force))


@router.get("/runs", response_model=list[RunOut])
def list_runs(
    pipeline: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=1000),
    caller: Caller = READ,
) -> list[RunOut]:
    return [RunOut.of(r) for r in Pipelines(caller.registry).runs(pipeline, limit=limit)]


@router.get("/runs/{run_id}", response_model=RunOut)
def get_run(run_id: int = RunId, caller: Caller = READ) -> RunOut:
    return RunOut.of(Pipelines(caller.registry).run(run_id))


@router.get("/runs/{run_id}/logs", response_model=RunLog)
def get_run_logs(
    run_id: int = RunId,
    tail: int = Query(20_000, ge=1, le=1_000_000),
    caller: Caller = READ,
) -> RunLog:
    run = Pipelines(caller.registry).run(run_id)
    return RunLog(run=run.id, log=log_tail(Path(run.log_path), tail) if run.log_path else "")
