"""Deployment and rollout endpoints: deploy, roll back, read history; drive a rollout."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from shipyard.rollouts.policy import parse_policy
from shipyard.transports.api.context import Caller
from shipyard.transports.api.errors import ERROR_RESPONSES
from shipyard.transports.api.schemas import (
    DeploymentOut,
    LedgerOut,
    RevisionOut,
    RolloutOut,
    RolloutStatus,
)
from shipyard.transports.api.security import DEPLOY, READ

router = APIRouter(responses=ERROR_RESPONSES, tags=["deployments"])

Text = Annotated[str | None, Field(max_length=2000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeployBody(_Body):
    name: str = Field(max_length=200, description="The deployment (endpoint) name.")
    model: str = Field(max_length=300, description="A model reference: name, name:3, name@alias.")
    # A plain string, so an unknown strategy gets the list of known ones (400).
    strategy: str = Field(
        default="direct", max_length=40, description="direct, canary, ab, shadow or bluegreen."
    )
    weight: int | None = Field(default=None, description="Candidate share for canary/ab, in %.")
    policy: dict[str, Any] | None = Field(
        default=None, description="A rollout policy (steps, window_s, gates...) for canary."
    )
    sticky_field: str | None = Field(default=None, max_length=200)
    reason: Text = None
    expected_revision: int | None = Field(
        default=None,
        description="Refuse (409) unless this is the current revision "
        "(0: unless the deployment is new).",
    )


class RollbackBody(_Body):
    to: int | None = Field(default=None, description="Revision number; default the previous.")
    reason: Text = None
    expected_revision: int | None = Field(
        default=None,
        description="The revision the rollback was decided on: "
        "refused (409) if it is no longer current.",
    )


class RolloutActionBody(_Body):
    reason: Text = None
    expected_revision: int | None = Field(
        default=None,
        description="The revision the action was decided on: refused (409) if the deployment "
        "has moved on (a controller step, a rollback, another rollout).",
    )


@router.get("/deployments", response_model=list[DeploymentOut])
def list_deployments(caller: Caller = READ) -> list[DeploymentOut]:
    return [DeploymentOut.of(d) for d in caller.deployments.list()]


@router.get("/deployments/{name}", response_model=DeploymentOut)
def get_deployment(name: str, caller: Caller = READ) -> DeploymentOut:
    return DeploymentOut.of(caller.deployments.get(name))


@router.get("/deployments/{name}/revisions", response_model=list[RevisionOut])
def list_revisions(name: str, caller: Caller = READ) -> list[RevisionOut]:
    return [RevisionOut.of(r) for r in caller.deployments.revisions(name)]


@router.get("/deployments/{name}/history", response_model=list[LedgerOut])
def deployment_history(name: str, caller: Caller = READ) -> list[LedgerOut]:
    return [LedgerOut.of(e) for e in caller.deployments.history(name)]


@router.post("/deployments", response_model=RevisionOut, status_code=201)
def deploy(body: DeployBody, caller: Caller = DEPLOY) -> RevisionOut:
    """Route deployment `name` to `model` by `strategy` (creating it if new). A canary with a
    policy also starts a progressive rollout (409 while another one is in progress, or when
    `expected_revision` is given and no longer current)."""
    policy = parse_policy(body.policy) if body.policy is not None else None
    revision = caller.deployments.deploy(
        body.name,
        body.model,
        strategy=body.strategy,
        weight=body.weight,
        policy=policy,
        sticky_field=body.sticky_field,
        reason=body.reason,
        expected_revision=body.expected_revision,
    )
    return RevisionOut.of(revision)


@router.post("/deployments/{name}/rollback", response_model=RevisionOut)
def rollback(
    name: str,
    body: Annotated[RollbackBody | None, Body()] = None,
    caller: Caller = DEPLOY,
) -> RevisionOut:
    """A new revision routing like revision `to` (default: the one before the current);
    with `expected_revision`, 409 if the deployment has moved on from it."""
    given = body or RollbackBody()
    revision = caller.deployments.rollback(
        name, to=given.to, reason=given.reason, expected_revision=given.expected_revision
    )
    return RevisionOut.of(revision)


@router.get("/deployments/{name}/rollout", response_model=RolloutStatus)
def rollout_status(name: str, caller: Caller = READ) -> RolloutStatus:
    """The rollout in progress, or null."""
    current = caller.rollouts.current(name)
    return RolloutStatus(rollout=RolloutOut.of(current) if current is not None else None)


@router.post("/deployments/{name}/rollout/{action}", response_model=RolloutOut)
def rollout_action(
    name: str,
    action: Literal["pause", "resume", "promote", "abort"],
    body: Annotated[RolloutActionBody | None, Body()] = None,
    caller: Caller = DEPLOY,
) -> RolloutOut:
    rollouts = caller.rollouts
    verbs = {
        "pause": rollouts.pause,
        "resume": rollouts.resume,
        "promote": rollouts.promote,
        "abort": rollouts.abort,
    }
    given = body or RolloutActionBody()
    return RolloutOut.of(
        verbs[action](name, reason=given.reason, expected_revision=given.expected_revision)
    )
