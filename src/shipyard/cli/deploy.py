"""Release commands: deploy, deployments list / show / history / revisions, rollback.

They work on the local registry directly (like `shipyard models`), so a release needs no
running server; data planes serving the deployment pick each new revision up by themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.errors import exits_by_kind
from shipyard.cli.output import console, print_json, to_jsonable
from shipyard.cli.rollout import numbers_text, rollout_json, rollout_line
from shipyard.client.deployments import Deployments
from shipyard.registry.models import LedgerEntry
from shipyard.rollouts.policy import load_policy
from shipyard.rollouts.progress import Rollout
from shipyard.rollouts.spec import Deployment, Revision, RevisionSpec, Strategy

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ReasonOption = Annotated[str | None, typer.Option(help="Why; kept in the ledger.")]
STRATEGIES = ", ".join(s.value for s in Strategy)

deployments_app = typer.Typer(
    help="List deployments and show their revisions and history.", no_args_is_help=True
)


def install(app: typer.Typer) -> None:
    app.command("deploy")(deploy)
    app.add_typer(deployments_app, name="deployments")
    app.command("rollback")(rollback)


# -- how deployments look --------------------------------------------------------------------


def split_text(spec: RevisionSpec) -> str:
    """`canary fraud:1 90% · fraud:2 10%, shadow fraud:3`."""
    parts = " · ".join(f"{v.ref} {v.weight}%" for v in spec.variants)
    extra = f", shadow {spec.shadow.ref}" if spec.shadow is not None else ""
    sticky = f", sticky by {spec.sticky_field}" if spec.sticky_field else ""
    return f"{spec.strategy.value} {parts}{extra}{sticky}"


def revision_line(revision: Revision) -> str:
    return (
        f"deployment {revision.deployment} revision {revision.number}: {split_text(revision.spec)}"
    )


def _when(revision: Revision) -> str:
    return revision.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def deployments_table(found: list[Deployment]) -> Table:
    table = Table(title="Deployments")
    for column in ("name", "revision", "routes", "since", "by"):
        table.add_column(column, no_wrap=column in ("name", "revision"))
    for d in found:
        r = d.revision
        table.add_row(d.name, str(r.number), split_text(r.spec), _when(r), r.actor)
    return table


def deployment_panel(found: Deployment, rollout: Rollout | None) -> Table:
    r = found.revision
    table = Table(title=f"Deployment {found.name}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("revision", f"{r.number} ({_when(r)} by {r.actor}){' — ' + r.reason if r.reason else ''}"),
        ("strategy", r.spec.strategy.value),
        *((f"variant {i}", f"{v.ref} {v.weight}%") for i, v in enumerate(r.spec.variants)),
        ("shadow", r.spec.shadow.ref if r.spec.shadow is not None else "-"),
        ("sticky field", r.spec.sticky_field or "-"),
        *(("header match", f"{m.header}={m.value} → variant {m.variant}") for m in r.spec.matches),
        ("rollout", rollout_line(rollout) if rollout is not None else "none in progress"),
        ("created", f"{found.created_at.astimezone():%Y-%m-%d %H:%M:%S} by {found.created_by}"),
    ]
    for key, value in rows:
        table.add_row(key, escape(value))  # reasons are free text: no rich markup in them
    return table


def revisions_table(name: str, revisions: list[Revision]) -> Table:
    table = Table(title=f"Revisions of {name}")
    for column in ("revision", "routes", "when", "by", "reason"):
        table.add_column(column, no_wrap=column in ("revision", "when"))
    for r in revisions:
        reason = escape(r.reason or "")
        table.add_row(str(r.number), split_text(r.spec), _when(r), escape(r.actor), reason)
    return table


def _entry_text(entry: LedgerEntry) -> str:
    """What one ledger entry changed: the revision it made and the numbers behind a decision."""
    details = entry.details
    parts: list[str] = []
    if "revision" in details:
        parts.append(f"revision {details['revision']}")
    if "spec" in details:
        parts.append(split_text(RevisionSpec.from_json(details["spec"])))
    if "step" in details:  # stored 0-based, shown as people count
        parts.append(f"step {int(details['step']) + 1} at {details.get('weight', '?')}%")
    parts.extend(f"{key} {details[key]}" for key in ("to", "rollout", "baseline") if key in details)
    if details.get("numbers"):
        parts.append(numbers_text(details["numbers"]))
    return ", ".join(parts)


def history_lines(entries: list[LedgerEntry]) -> list[str]:
    """Two lines an entry (what happened and why, then what changed): decisions carry long
    numbers that a table would cut."""
    lines: list[str] = []
    for e in entries:
        why = f" — {e.reason}" if e.reason else ""
        lines.append(f"{e.at.astimezone():%Y-%m-%d %H:%M:%S} {e.actor} {e.action}{why}")
        text = _entry_text(e)
        if text:
            lines.append(f"    {text}")
    return lines


# -- commands --------------------------------------------------------------------------------


@exits_by_kind
def deploy(
    name: Annotated[str, typer.Argument(help="Deployment name (the endpoint clients call).")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="NAME:VERSION, NAME@ALIAS or NAME (latest).")
    ],
    strategy: Annotated[str, typer.Option(help=f"One of {STRATEGIES}.")] = "direct",
    weight: Annotated[
        int | None, typer.Option(help="Candidate share in percent (canary: 10, ab: 50).")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="Rollout policy (YAML): steps, window, gates. Canary only."),
    ] = None,
    sticky_field: Annotated[
        str | None, typer.Option(help="A/B: input field whose value keeps a caller on a variant.")
    ] = None,
    reason: ReasonOption = None,
    expected_revision: Annotated[
        int | None,
        typer.Option(
            help="Refuse (exit 5) unless NAME is at this revision now (0: unless NAME is new)."
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Route deployment NAME to a model version: all at once, as a canary, A/B, shadow or
    blue-green. A canary with --policy is rolled out and analysed by the control plane."""
    loaded = load_policy(policy) if policy is not None else None
    with Deployments() as client:
        revision = client.deploy(
            name,
            model,
            strategy=strategy,
            weight=weight,
            policy=loaded,
            sticky_field=sticky_field,
            reason=reason,
            expected_revision=expected_revision,
        )
        rollout = client.rollout(name) if loaded is not None else None
    if json:
        print_json(
            {
                "revision": to_jsonable(revision),
                "rollout": rollout_json(rollout) if rollout is not None else None,
            }
        )
        return
    console.print(revision_line(revision), highlight=False, markup=False)
    if rollout is not None:
        console.print(rollout_line(rollout), highlight=False, markup=False)
        console.print(
            f"the control plane analyses each window; watch it with "
            f"`shipyard rollout status {name}`",
            highlight=False,
        )


@deployments_app.command("list")
@exits_by_kind
def deployments_list(json: JsonOption = False) -> None:
    """Every deployment with the split of its current revision."""
    with Deployments() as client:
        found = client.list()
    if json:
        print_json(found)
    elif not found:
        console.print("no deployments yet: create one with `shipyard deploy NAME --model REF`")
    else:
        console.print(deployments_table(found))


@deployments_app.command("show")
@exits_by_kind
def deployments_show(
    name: Annotated[str, typer.Argument(help="Deployment name.")], json: JsonOption = False
) -> None:
    """The current revision of NAME (variants, weights, shadow) and its active rollout."""
    with Deployments() as client:
        found = client.get(name)
        rollout = client.rollout(name)
    if json:
        data: dict[str, Any] = to_jsonable(found)
        data["rollout"] = rollout_json(rollout) if rollout is not None else None
        print_json(data)
    else:
        console.print(deployment_panel(found, rollout))


@deployments_app.command("history")
@exits_by_kind
def deployments_history(
    name: Annotated[str, typer.Argument(help="Deployment name.")], json: JsonOption = False
) -> None:
    """Every deploy, rollout decision (with its reason and numbers) and rollback of NAME."""
    with Deployments() as client:
        entries = client.history(name)
    if json:
        print_json(entries)
        return
    for line in history_lines(entries):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


@deployments_app.command("revisions")
@exits_by_kind
def deployments_revisions(
    name: Annotated[str, typer.Argument(help="Deployment name.")], json: JsonOption = False
) -> None:
    """Every revision of NAME, oldest first: what `shipyard rollback --to` can return to."""
    with Deployments() as client:
        revisions = client.revisions(name)
    print_json(revisions) if json else console.print(revisions_table(name, revisions))


@exits_by_kind
def rollback(
    deployment: Annotated[str, typer.Argument(help="Deployment name.")],
    to: Annotated[
        int | None, typer.Option(help="Revision to route like again (default: the previous one).")
    ] = None,
    reason: ReasonOption = None,
    expected_revision: Annotated[
        int | None,
        typer.Option(
            help="The revision you decided on: refuse (exit 5) if DEPLOYMENT has moved on."
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Route DEPLOYMENT like an earlier revision again, as a new revision; an active rollout
    ends as rolled back."""
    with Deployments() as client:
        revision = client.rollback(
            deployment, to=to, reason=reason, expected_revision=expected_revision
        )
    if json:
        print_json(revision)
    else:
        console.print(f"rolled back: {revision_line(revision)}", highlight=False, markup=False)
