"""The demo's watch step: what the data plane logged during the release, judged for drift
against the version's reference data, then a simulated shift for contrast."""

from __future__ import annotations

import pandas as pd

from shipyard.cli.output import console
from shipyard.client import Registry
from shipyard.monitoring.drift_view import DriftView, drift_view
from shipyard.monitoring.eventlog import read_events
from shipyard.monitoring.eventlog.columns import INPUT_PREFIX
from shipyard.registry.models import ModelVersion

SHIFT = 1.3  # the simulated shift: one feature scaled by 30 %


def watch(registry: Registry, version: ModelVersion, rows: pd.DataFrame, feature: str) -> None:
    events = read_events(registry.settings.home, model=version.name)
    counts = events.drop_duplicates("request_id")["version"].value_counts().sort_index()
    logged = ", ".join(f"v{v} {n:,}" for v, n in counts.items())
    console.print(f"prediction log: {logged} requests under {registry.settings.home / 'events'}")
    reference = registry.reference_data(version.ref)
    if reference is None:
        console.print(f"{version.ref} has no reference data: nothing to judge drift against")
        return
    live = events[events["version"] == version.version]
    # The release replayed the same held-out rows many times; judge each distinct row once.
    inputs = [c for c in live.columns if str(c).startswith(INPUT_PREFIX)]
    live = live.drop_duplicates(inputs)
    _show(f"{version.ref}, {len(live):,} distinct logged rows", drift_view(reference, live))
    shifted = rows.copy()
    shifted[feature] = shifted[feature] * SHIFT
    _show(f"a simulated shift ({feature} x{SHIFT})", drift_view(reference, shifted))


def _show(what: str, view: DriftView) -> None:
    drifted = [f.test for f in view.features if f.test.drift]
    if not drifted:
        console.print(
            f"{what}: no drift (smallest Holm-adjusted p {view.p_value:.3f} >= {view.alpha})",
            highlight=False,
        )
        return
    console.print(
        f"{what}: drift in {len(drifted)} of {len(view.features)} features", highlight=False
    )
    for test in sorted(drifted, key=lambda t: t.p_adjusted)[:3]:
        console.print(
            f"  {test.name}: {test.summary} ({test.test}, adjusted p {_p(test.p_adjusted)})",
            highlight=False,
            markup=False,
        )


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"
