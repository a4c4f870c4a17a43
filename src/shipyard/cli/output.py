"""How the CLI shows things: rich tables for people, `--json` for scripts."""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from shipyard.registry.models import AliasMove, LedgerEntry, Model, ModelVersion

# Soft wrap: paths, ids and keys in messages stay on one line (scripts copy them; a pipe's
# 80 columns would otherwise split them mid-word).
console = Console(soft_wrap=True)


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):  # configs and policies
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def print_json(value: Any) -> None:
    data = orjson.dumps(to_jsonable(value), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    print(data.decode())


def _when(at: datetime) -> str:
    return at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def models_table(models: list[Model]) -> Table:
    table = Table(title="Models")
    for column in ("name", "latest", "aliases", "tags", "created", "description"):
        table.add_column(column)
    for m in models:
        aliases = ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items()))
        tags = ", ".join(f"{k}={v}" for k, v in sorted(m.tags.items()))
        latest = str(m.latest_version) if m.latest_version else "-"
        name = f"{m.name} (archived)" if m.archived else m.name
        table.add_row(name, latest, aliases, tags, _when(m.created_at), m.description or "")
    return table


def versions_table(name: str, versions: list[ModelVersion]) -> Table:
    table = Table(title=f"Versions of {name}")
    for column in (
        "version",
        "status",
        "flavor",
        "compiled",
        "aliases",
        "metrics",
        "created",
        "by",
    ):
        table.add_column(column)
    for v in versions:
        compiled = (v.compiled or {}).get("status", "-")
        metrics = ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items()))
        status = v.status.value + (" (archived)" if v.archived else "")
        table.add_row(
            str(v.version), status, v.flavor, compiled, ", ".join(v.aliases), metrics,
            _when(v.created_at), v.creator,
        )  # fmt: skip
    return table


def version_panel(v: ModelVersion) -> Table:
    table = Table(title=f"{v.ref}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    compiled = v.compiled or {}
    lineage = v.lineage
    rows: list[tuple[str, str]] = [
        ("status", v.status.value + (f" — {v.status_reason}" if v.status_reason else "")),
        ("flavor", v.flavor),
        ("compiled", _compiled_text(compiled)),
        ("aliases", ", ".join(v.aliases) or "-"),
        ("created", f"{_when(v.created_at)} by {v.creator}"),
        ("description", v.description or "-"),
        ("tags", ", ".join(f"{k}={val}" for k, val in v.tags.items()) or "-"),
        ("params", ", ".join(f"{k}={val}" for k, val in v.params.items()) or "-"),
        ("metrics", ", ".join(f"{k}={val:.4g}" for k, val in v.metrics.items()) or "-"),
        ("parent", str(lineage.parent_version) if lineage.parent_version else "-"),
        ("code", lineage.code_version or "-"),
        ("training data", _data_text(v)),
        ("inputs", _specs_text(v.signature, "inputs")),
        ("outputs", _specs_text(v.signature, "outputs")),
        ("artifacts", ", ".join(f"{k} ({a.size:,} B)" for k, a in v.artifacts.items()) or "-"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def _compiled_text(compiled: dict[str, Any]) -> str:
    if not compiled:
        return "-"
    status = str(compiled.get("status"))
    diff = compiled.get("max_abs_diff")
    detail = f", max |Δ| {diff:.2g} on {compiled.get('rows')} rows" if diff is not None else ""
    reason = f" — {compiled['reason']}" if compiled.get("reason") else ""
    return f"{status}{detail}{reason}"


def _data_text(v: ModelVersion) -> str:
    data = v.lineage.data
    if data is None:
        return "-"
    return f"sha256 {data.sha256[:12]}…, {data.rows:,} rows, {len(data.schema)} columns"


def _specs_text(signature: dict[str, Any] | None, side: str) -> str:
    if not signature:
        return "-"
    specs = signature.get(side, [])
    shown = ", ".join(f"{s['name']} {s['datatype']}{s['shape']}" for s in specs[:6])
    return shown + (f" … ({len(specs)} in all)" if len(specs) > 6 else "")


def history_table(name: str, entries: list[LedgerEntry]) -> Table:
    table = Table(title=f"History of {name}")
    for column in ("when", "who", "action", "ver", "details", "reason"):
        table.add_column(column, no_wrap=column in ("when", "action"))
    for e in entries:
        details = _details_text(e.action, e.details)
        table.add_row(
            _when(e.at)[:16], e.actor, e.action, str(e.version or "-"), details[:120],
            e.reason or "",
        )  # fmt: skip
    return table


def _details_text(action: str, details: dict[str, Any]) -> str:
    """A short summary; artifact hashes and nested records belong in `--json` output."""
    if action == "alias.set":
        return (
            f"{details.get('alias')}: {details.get('previous') or '-'} → {details.get('version')}"
        )
    shown = (
        f"{k}={val}"
        for k, val in details.items()
        if val is not None and not isinstance(val, dict | list) and k != "new_model"
    )
    return ", ".join(shown)


def alias_line(move: AliasMove) -> str:
    before = f"{move.previous}" if move.previous is not None else "nothing"
    after = f"{move.version}" if move.version is not None else "nothing (deleted)"
    return f"{move.name}@{move.alias}: {before} → {after}"
