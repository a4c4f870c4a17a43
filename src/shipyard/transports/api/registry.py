"""Registry endpoints: models, versions, uploads, aliases, archiving and the ledger."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, File, Form, Query, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from shipyard.auth.scopes import Scope
from shipyard.core.errors import PermissionDenied
from shipyard.core.refs import check_name
from shipyard.packaging.register import Registration, register_model
from shipyard.registry import service
from shipyard.runtimes.flavors import flavor_for_file, get_flavor
from shipyard.transports.api.context import Caller, services
from shipyard.transports.api.errors import ERROR_RESPONSES
from shipyard.transports.api.schemas import AliasMoveOut, LedgerOut, ModelOut, VersionOut
from shipyard.transports.api.security import DEPLOY, READ

router = APIRouter(responses=ERROR_RESPONSES, tags=["registry"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Text = Annotated[str | None, Field(max_length=2000)]
# The one part of a client's file name that is used: a short alphanumeric suffix, which is
# how flavors recognise formats. The name itself never reaches the file system.
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AliasBody(_Body):
    version: int = Field(ge=1)
    # Compare-and-set: the version the alias must point at now (null: it must not exist).
    expected: int | None = Field(default=None, ge=1)
    reason: Text = None


class ReasonBody(_Body):
    reason: Text = None


@router.get("/models", response_model=list[ModelOut])
def list_models(
    caller: Caller = READ,
    query: Annotated[str | None, Query(max_length=200)] = None,
) -> list[ModelOut]:
    return [ModelOut.of(m) for m in caller.registry.list_models(query=query)]


@router.get("/models/{name}", response_model=ModelOut)
def get_model(name: str, caller: Caller = READ) -> ModelOut:
    return ModelOut.of(caller.registry.get_model(name))


@router.get("/models/{name}/versions", response_model=list[VersionOut])
def list_versions(name: str, caller: Caller = READ) -> list[VersionOut]:
    return [VersionOut.of(v) for v in caller.registry.list_versions(name)]


@router.get("/models/{name}/versions/{version}", response_model=VersionOut)
def get_version(name: str, version: int, caller: Caller = READ) -> VersionOut:
    return VersionOut.of(caller.registry.get_version(name, version))


@router.post("/models/{name}/versions", response_model=VersionOut, status_code=201)
def upload_version(
    request: Request,
    name: str,
    file: Annotated[UploadFile, File(description="The model file (.skops .onnx .ubj ...).")],
    flavor: Annotated[str, Form(max_length=40)] = "auto",
    trust: Annotated[bool, Form(description="Allow pickle/joblib (admin keys only).")] = False,
    description: Annotated[str | None, Form(max_length=2000)] = None,
    caller: Caller = DEPLOY,
) -> VersionOut:
    """Register an uploaded model file as the next version of `name`. Pickle formats run
    code when loaded: they are refused unless the key is admin and `trust` is set."""
    check_name(name)
    if trust and not caller.key.allows(Scope.ADMIN):
        raise PermissionDenied("trust=true (pickle/joblib files run code) needs an admin key")
    chosen = None if flavor == "auto" else get_flavor(flavor)
    match = _SUFFIX.fullmatch(Path(file.filename or "").suffix)
    suffix = match.group(0).lower() if match else ""
    staging = services(request).options.staging_dir
    with tempfile.TemporaryDirectory(prefix="shipyard-upload-", dir=staging) as tmp:
        path = Path(tmp) / f"model{suffix}"
        with path.open("wb") as out:
            shutil.copyfileobj(file.file, out)
        reader = chosen if chosen is not None else flavor_for_file(path)
        model = reader.read(path, trust=trust)
        spec = Registration(
            name=name,
            flavor=chosen.name if chosen is not None else None,
            trust=trust,
            description=description,
        )
        return VersionOut.of(register_model(caller.registry, model, spec))


@router.post("/models/{name}/versions/{version}/archive", response_model=VersionOut)
def archive_version(
    name: str,
    version: int,
    body: Annotated[ReasonBody | None, Body()] = None,
    caller: Caller = DEPLOY,
) -> VersionOut:
    reason = body.reason if body is not None else None
    return VersionOut.of(caller.registry.archive_version(name, version, reason=reason))


@router.put("/models/{name}/aliases/{alias}", response_model=AliasMoveOut)
def set_alias(name: str, alias: str, body: AliasBody, caller: Caller = DEPLOY) -> AliasMoveOut:
    """Point `alias` at `version`; with `expected` (null included), only if the alias is
    still where the caller last saw it (409 otherwise)."""
    expected = body.expected if "expected" in body.model_fields_set else service.UNSET
    move = caller.registry.set_alias(
        name, alias, body.version, expected=expected, reason=body.reason
    )
    return AliasMoveOut.of(move)


@router.delete("/models/{name}/aliases/{alias}", response_model=AliasMoveOut)
def delete_alias(
    name: str,
    alias: str,
    caller: Caller = DEPLOY,
    expected: Annotated[int | None, Query(ge=1)] = None,
    reason: Annotated[str | None, Query(max_length=2000)] = None,
) -> AliasMoveOut:
    move = caller.registry.delete_alias(name, alias, expected=expected, reason=reason)
    return AliasMoveOut.of(move)


@router.get("/ledger", response_model=list[LedgerOut])
def read_ledger(
    caller: Caller = READ,
    model: Annotated[str | None, Query(max_length=200)] = None,
    deployment: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 100,
) -> list[LedgerOut]:
    """The most recent `limit` ledger entries matching the filters, oldest first."""
    entries = caller.registry.ledger(model=model, deployment=deployment, action=action, limit=limit)
    return [LedgerOut.of(e) for e in entries]
