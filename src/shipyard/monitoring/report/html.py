"""The self-contained HTML report: inline SVG plots and CSS, no scripts, nothing fetched.

A Content-Security-Policy of `default-src 'none'` makes "opens offline" a property the browser
enforces, not a promise: the page cannot load anything even if a later change tried to.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from types import ModuleType

from shipyard.core.errors import FailedPrecondition
from shipyard.monitoring.alerts import Alert
from shipyard.monitoring.performance import Performance
from shipyard.monitoring.profiles import NumericProfile
from shipyard.monitoring.report.series import Bucket, MonitorInput, Summary, features, over_time
from shipyard.monitoring.report.series import summarise as _summarise

MAX_FEATURES = 24  # distributions drawn; the table lists every feature
MAX_ALERTS = 200
PLOTTED = {"classification": ["accuracy", "f1", "roc_auc"], "regression": ["mae", "rmse", "r2"]}

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1200px}
h1{margin-bottom:.2rem} .muted{color:#666}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f4} .bad{color:#b00020;font-weight:600} .ok{color:#1b7a35}
.grid{display:flex;flex-wrap:wrap;gap:.5rem} .plot svg{max-width:100%;height:auto}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _plots() -> ModuleType:
    """The plotting module, or a message naming the extra that brings matplotlib."""
    try:
        from shipyard.monitoring.report import plots
    except ImportError as exc:
        raise FailedPrecondition(
            "the HTML report needs matplotlib: pip install 'shipyard[monitoring]'"
        ) from exc
    return plots


def render_report(data: MonitorInput, *, generated_at: datetime | None = None) -> str:
    plots = _plots()
    summary = _summarise(data)
    buckets = over_time(data)
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    verdict = (
        f'<span class="bad">drift detected</span> (p={summary.drift.p_value:.2g})'
        if summary.drift.drift
        else f'<span class="ok">no drift</span> (p={summary.drift.p_value:.2g})'
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>shipyard monitoring: {escape(data.model)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Monitoring report: {escape(data.model)}</h1>",
        f'<p class="muted">{summary.n_rows:,} rows, {_span(buckets)}{_latency(summary)}; '
        f"generated {when}</p>",
        f"<p>Overall: {verdict} at alpha {summary.drift.alpha:g}, Holm-corrected over "
        f"{len(summary.drift.features) + (summary.drift.multivariate is not None)} tests.</p>",
        _reasons(summary),
        "<h2>Features</h2>",
        _feature_table(summary),
        _distributions(data),
        "<h2>Drift over time</h2>",
        f'<div class="plot" id="drift-over-time">{plots.drift_over_time(buckets, summary.drift.alpha)}</div>',
        "<h2>Performance</h2>",
        _performance_section(data, summary, buckets),
        "<h2>Alerts</h2>",
        _alerts_table(data.alerts),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _latency(summary: Summary) -> str:
    p95 = summary.latency_p95_ms
    return "" if p95 is None else f"; latency p95 {p95:.1f} ms"


def _span(buckets: list[Bucket]) -> str:
    if not buckets or buckets[0].start is None or buckets[-1].end is None:
        return "no timestamps"
    fmt = "%Y-%m-%d %H:%M"
    return f"{buckets[0].start.strftime(fmt)} to {buckets[-1].end.strftime(fmt)} UTC"


def _reasons(summary: Summary) -> str:
    reasons = summary.drift.reasons()
    if not reasons:
        return ""
    items = "".join(f"<li>{escape(r)}</li>" for r in reasons)
    return f"<ul id='reasons'>{items}</ul>"


def _feature_table(summary: Summary) -> str:
    rows = []
    tests = list(summary.drift.features.values())
    if summary.drift.multivariate is not None:
        tests.append(summary.drift.multivariate)
    for t in tests:
        mark = '<span class="bad">drift</span>' if t.drift else '<span class="ok">ok</span>'
        rows.append(
            f"<tr><td>{escape(t.name)}</td><td>{escape(t.kind)}</td><td>{escape(t.test)}</td>"
            f"<td>{t.p_value:.3g}</td><td>{t.p_adjusted:.3g}</td><td>{mark}</td>"
            f"<td>{escape(t.summary)}</td></tr>"
        )
    for name, why in summary.drift.skipped.items():
        rows.append(
            f"<tr><td>{escape(name)}</td><td colspan='6'>not tested: {escape(why)}</td></tr>"
        )
    head = "<tr><th>feature</th><th>kind</th><th>test</th><th>p</th><th>p (Holm)</th><th></th><th>what moved</th></tr>"
    return f"<table id='features'>{head}{''.join(rows)}</table>"


def _distributions(data: MonitorInput) -> str:
    plots = _plots()
    table = features(data)
    shown = list(data.detector.profiles)[:MAX_FEATURES]
    cells = []
    for name in shown:
        profile = data.detector.profiles[name]
        if isinstance(profile, NumericProfile):
            svg = plots.numeric_distribution(name, profile, table[name])
        else:
            svg = plots.categorical_distribution(name, profile, table[name])
        cells.append(f'<div class="plot distribution">{svg}</div>')
    more = len(data.detector.profiles) - len(shown)
    note = f"<p class='muted'>{more} more features not drawn.</p>" if more > 0 else ""
    return f"<h2>Distributions against the reference</h2><div class='grid'>{''.join(cells)}</div>{note}"


def _performance_section(data: MonitorInput, summary: Summary, buckets: list[Bucket]) -> str:
    plots = _plots()
    if summary.realised is None and summary.estimated is None:
        return "<p class='muted'>No labels or scores given: performance not computed.</p>"
    kinds = (("realised", summary.realised), ("estimated", summary.estimated))
    shown = [(kind, perf) for kind, perf in kinds if perf is not None]
    names = list(dict.fromkeys(n for _, perf in shown for n in perf.metrics))
    rows = [_performance_row(kind, perf, names) for kind, perf in shown]
    head = "<tr><th></th><th>rows</th>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"
    svg = plots.performance_over_time(buckets, PLOTTED[data.task])
    return f"<table id='performance'>{head}{''.join(rows)}</table><div class='plot' id='performance-over-time'>{svg}</div>"


def _performance_row(kind: str, perf: Performance, names: list[str]) -> str:
    cells = []
    for name in names:
        value = perf.metrics.get(name)
        shown = "–" if value is None else f"{value:.4g}"
        why = perf.reasons.get(name, "" if name in perf.metrics else "not estimated")
        title = escape(why, quote=True)
        cells.append(f"<td title='{title}'>{shown}</td>")
    return f"<tr><th>{kind}</th><td>{perf.n_rows:,}</td>{''.join(cells)}</tr>"


def _alerts_table(alerts: list[Alert]) -> str:
    if not alerts:
        return "<p class='muted'>No alerts.</p>"
    ordered = sorted(alerts, key=lambda a: a.at, reverse=True)[:MAX_ALERTS]
    rows = "".join(
        f"<tr><td>{a.at.strftime('%Y-%m-%d %H:%M')}</td><td>{escape(a.rule)}</td>"
        f"<td class='{'bad' if a.state == 'firing' else 'ok'}'>{escape(a.state)}</td>"
        f"<td>{escape(a.severity)}</td><td>{escape(a.message)}</td></tr>"
        for a in ordered
    )
    head = "<tr><th>at</th><th>rule</th><th>state</th><th>severity</th><th>message</th></tr>"
    return f"<table id='alerts'>{head}{rows}</table>"
