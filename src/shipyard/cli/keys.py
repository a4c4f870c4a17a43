"""API key commands: keys create / list / revoke. Tokens are printed once, at creation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shipyard.auth.keys import ApiKey, KeyStore
from shipyard.auth.scopes import ALL_SCOPE_NAMES
from shipyard.cli.errors import exits_by_kind
from shipyard.cli.output import console, print_json, to_jsonable
from shipyard.client import Registry
from shipyard.core.errors import InvalidArgument
from shipyard.storage.tables import utcnow

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
MAX_DAYS = 36_500

keys_app = typer.Typer(
    help="Issue, list and revoke API keys (scopes: read, predict, deploy, admin).",
    no_args_is_help=True,
)


def install(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


def _expiry(days: int | None) -> datetime | None:
    if days is None:
        return None
    if not 1 <= days <= MAX_DAYS:
        raise InvalidArgument(f"--expires-in-days must be between 1 and {MAX_DAYS}, got {days}")
    return utcnow() + timedelta(days=days)


def _when(at: datetime | None, empty: str = "-") -> str:
    return at.astimezone().strftime("%Y-%m-%d %H:%M") if at is not None else empty


def _status(key: ApiKey) -> str:
    if key.revoked_at is not None:
        return "revoked"
    return "expired" if key.is_expired(utcnow()) else "active"


def keys_table(keys: list[ApiKey]) -> Table:
    table = Table(title="API keys")
    for column in ("id", "name", "scopes", "created", "by", "last used", "expires", "status"):
        table.add_column(column, no_wrap=column in ("id", "status"))
    for k in keys:
        scopes = ", ".join(scope.value for scope in k.scopes)
        table.add_row(
            k.id, k.name, scopes, _when(k.created_at), k.created_by,
            _when(k.last_used_at, "never"), _when(k.expires_at, "never"), _status(k),
        )  # fmt: skip
    return table


@keys_app.command("create")
@exits_by_kind
def keys_create(
    name: Annotated[str, typer.Argument(help="A label: who or what will use the key.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(help=f"Repeatable: {', '.join(ALL_SCOPE_NAMES)}. At least one."),
    ] = None,
    expires_in_days: Annotated[
        int | None, typer.Option(help="Refuse the key after this many days.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """Issue an API key and print its token (shown this once only)."""
    expires_at = _expiry(expires_in_days)
    with Registry() as registry:
        key, token = KeyStore.for_registry(registry.store).create(
            name, scope or [], expires_at=expires_at
        )
    if json:
        print_json({"key": to_jsonable(key), "token": token})
        return
    scopes = ", ".join(s.value for s in key.scopes)
    console.print(f"created API key [bold]{key.id}[/bold] ({key.name}; {scopes})", highlight=False)
    # Plain print: no markup, highlighting or wrapping may alter the token.
    print(token)
    Console(stderr=True, soft_wrap=True).print(
        "[yellow]warning[/yellow]: store this token now; it is not kept and cannot be shown "
        "again (revoke the key and create a new one if it is lost).",
        highlight=False,
    )


@keys_app.command("list")
@exits_by_kind
def keys_list(json: JsonOption = False) -> None:
    """List API keys (never their tokens)."""
    with Registry() as registry:
        found = KeyStore.for_registry(registry.store).list()
    if json:
        print_json(found)
    elif not found:
        console.print("no API keys yet: create one with `shipyard keys create NAME --scope read`")
    else:
        console.print(keys_table(found))


@keys_app.command("revoke")
@exits_by_kind
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The 12-character id shown by `keys list`.")],
    reason: Annotated[str | None, typer.Option(help="Why; kept in the ledger.")] = None,
    json: JsonOption = False,
) -> None:
    """Revoke an API key; servers refuse it within seconds."""
    with Registry() as registry:
        key = KeyStore.for_registry(registry.store).revoke(key_id, reason=reason)
    if json:
        print_json(key)
    else:
        console.print(f"revoked API key {key.id} ({key.name})", highlight=False)
