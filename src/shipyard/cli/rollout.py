"""Rollout commands: rollout status / pause / resume / promote / abort, and ab report.

A rollout moves a deployment from its baseline to a candidate step by step; the controller in
the control plane decides at the end of each analysis window, and these commands let a person
look at it or take over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from shipyard.cli.errors import exits_by_kind
from shipyard.cli.output import console, print_json, to_jsonable
from shipyard.client.deployments import Deployments
from shipyard.core.errors import InvalidArgument
from shipyard.rollouts.progress import Decision, Rollout

if TYPE_CHECKING:  # imported when `ab report` runs: it brings in scipy.stats (~1 s)
    from shipyard.rollouts.abreport import AbReport, Comparison

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ReasonOption = Annotated[str | None, typer.Option(help="Why; kept in the ledger.")]

rollout_app = typer.Typer(
    help="Watch a deployment's progressive rollout, or take it over by hand.",
    no_args_is_help=True,
)
ab_app = typer.Typer(help="A/B results of a deployment's variants.", no_args_is_help=True)


def install(app: typer.Typer) -> None:
    app.add_typer(rollout_app, name="rollout")
    app.add_typer(ab_app, name="ab")


# -- how a rollout looks ---------------------------------------------------------------------


def rollout_json(rollout: Rollout) -> dict[str, Any]:
    """A rollout for `--json` (its Policy is a pydantic model: dumped by its own method)."""
    data: dict[str, Any] = to_jsonable(
        {
            f.name: getattr(rollout, f.name)
            for f in dataclasses.fields(rollout)
            if f.name != "policy"
        }
    )
    data["policy"] = rollout.policy.to_json()
    data["weight"] = rollout.weight
    return data


def rollout_line(rollout: Rollout) -> str:
    steps = " → ".join(f"{s}%" for s in rollout.policy.steps)
    where = "at" if rollout.active else "ended at"
    return (
        f"rollout {rollout.id} {rollout.state.value}: {rollout.candidate.ref} over "
        f"{rollout.baseline.ref}, {where} step {rollout.step + 1}/{len(rollout.policy.steps)} "
        f"({rollout.weight}%; steps {steps}), window {rollout.policy.window_s:g}s / "
        f"{rollout.policy.min_requests} requests"
    )


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def numbers_text(numbers: dict[str, Any]) -> str:
    """The gist of a decision's numbers: each gate's outcome and p-value, counts in brackets
    (`error_rate pass p=0.43, requests(baseline=106, candidate=40)`); `--json` has them all."""
    parts: list[str] = []
    for key, value in numbers.items():
        if isinstance(value, dict) and "outcome" in value:
            p = value.get("p_value")
            parts.append(
                f"{key} {value['outcome']}" + (f" p={_number(p)}" if p is not None else "")
            )
        elif isinstance(value, dict):
            inner = ", ".join(
                f"{k}={_number(v)}" for k, v in value.items() if not isinstance(v, dict | list)
            )
            parts.append(f"{key}({inner})")
        elif not isinstance(value, list):
            parts.append(f"{key}={_number(value)}")
    return ", ".join(parts)


def decision_line(d: Decision) -> str:
    """One decision per line: the numbers are long, and a table would cut them."""
    at = d.at.astimezone().strftime("%H:%M:%S")
    numbers = f" ({numbers_text(d.numbers)})" if d.numbers else ""
    return f"{at} step {d.step + 1} at {d.weight}%: {d.outcome} — {d.reason}{numbers}"


# -- commands --------------------------------------------------------------------------------


@rollout_app.command("status")
@exits_by_kind
def status(
    deployment: Annotated[str, typer.Argument(help="Deployment name.")], json: JsonOption = False
) -> None:
    """The active rollout of DEPLOYMENT (or its last one) with every decision so far."""
    with Deployments() as client:
        rollout = client.rollout(deployment) or client.latest_rollout(deployment)
    if json:
        print_json(rollout_json(rollout))
        return
    console.print(rollout_line(rollout), highlight=False, markup=False)
    for decision in rollout.decisions:
        console.print(decision_line(decision), highlight=False, markup=False, soft_wrap=True)
    if not rollout.decisions:
        why = "the first analysis window is open" if rollout.active else "it was ended by hand"
        console.print(f"no analysis decisions: {why}", highlight=False, markup=False)


Act = Callable[[Deployments, str, str | None, int | None], Rollout]


def _manual(verb: str, act: Act) -> Callable[..., None]:
    @exits_by_kind
    def command(
        deployment: Annotated[str, typer.Argument(help="Deployment name.")],
        reason: ReasonOption = None,
        expected_revision: Annotated[
            int | None,
            typer.Option(help="Refuse (exit 5) unless the deployment is at this revision now."),
        ] = None,
        json: JsonOption = False,
    ) -> None:
        with Deployments() as client:
            rollout = act(client, deployment, reason, expected_revision)
        if json:
            print_json(rollout_json(rollout))
        else:
            console.print(
                f"{verb} {deployment}: {rollout_line(rollout)}", highlight=False, markup=False
            )

    return command


rollout_app.command("pause", help="Hold the rollout where it is: no decisions until resumed.")(
    _manual("paused", lambda c, n, r, e: c.pause(n, reason=r, expected_revision=e))
)
rollout_app.command("resume", help="Resume a paused rollout with a fresh analysis window.")(
    _manual("resumed", lambda c, n, r, e: c.resume(n, reason=r, expected_revision=e))
)
rollout_app.command("promote", help="Give the candidate all traffic now and end the rollout.")(
    _manual("promoted", lambda c, n, r, e: c.promote(n, reason=r, expected_revision=e))
)
rollout_app.command("abort", help="Send all traffic back to the baseline and end the rollout.")(
    _manual("aborted", lambda c, n, r, e: c.abort(n, reason=r, expected_revision=e))
)


def _pct(value: float | None, interval: tuple[float, float] | None) -> str:
    if value is None or interval is None:
        return "-"
    return f"{value:.2%} [{interval[0]:.2%}, {interval[1]:.2%}]"


def _ms(seconds: float | None) -> str:
    return f"{seconds * 1000:.3g}" if seconds is not None else "-"


def _versus(comparison: Comparison | None) -> str:
    if comparison is None:
        return "-"
    low, high = comparison.interval
    return f"{comparison.difference:+.2%} [{low:+.2%}, {high:+.2%}] p={comparison.p_value:.3g}"


def ab_table(report: AbReport) -> Table:
    since = f" since {report.since:%Y-%m-%d %H:%M}" if report.since is not None else ""
    table = Table(
        title=f"{report.deployment} revision {report.revision} ({report.strategy}){since}, "
        f"{report.confidence:.0%} intervals",
        title_justify="left",
    )
    columns = ("variant", "role", "weight", "requests", "error rate", "p50/p95 ms", "accuracy",
               "Δ error rate", "Δ accuracy")  # fmt: skip
    for column in columns:
        table.add_column(column, no_wrap=column in ("variant", "role"))
    for v in report.variants:
        accuracy = _pct(v.accuracy, v.accuracy_ci)
        table.add_row(
            v.ref, v.role, f"{v.weight}%", f"{v.requests:,}", _pct(v.error_rate, v.error_rate_ci),
            f"{_ms(v.latency_p50_s)}/{_ms(v.latency_p95_s)}",
            f"{accuracy} of {v.feedback:,}" if v.feedback else "-",
            _versus(v.error_rate_vs_primary), _versus(v.accuracy_vs_primary),
        )  # fmt: skip
    return table


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"--since must be an ISO date-time, got {text!r}") from None
    return at if at.tzinfo is not None else at.astimezone()  # a local time, as people type it


@ab_app.command("report")
@exits_by_kind
def ab_report_command(
    deployment: Annotated[str, typer.Argument(help="Deployment name.")],
    since: Annotated[
        str | None,
        typer.Option(help="Only traffic from this time on (ISO, e.g. 2026-05-01T12:00)."),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Per-variant requests, error rate, latency and feedback accuracy of DEPLOYMENT's current
    revision, with confidence intervals and each variant's difference from the primary."""
    with Deployments() as client:
        from shipyard.rollouts.abreport import ab_report

        report = ab_report(client.store, deployment, since=_since(since))
    if json:
        print_json(report.to_json())
    else:
        console.print(ab_table(report))
