"""The demo's batch step: score a CSV file with the production version, as `shipyard batch
score` does (progress bar, Parquet parts, manifest, a job record in the ledger)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shipyard.cli.batch import progress_bar, summary_table
from shipyard.cli.output import console
from shipyard.client import Registry
from shipyard.jobs.batch import score

ROWS = 200_000
CHUNK_ROWS = 20_000


def batch_step(registry: Registry, ref: str, rows: pd.DataFrame) -> None:
    """Write ROWS rows resampled from `rows` (with a little noise) to a CSV under the home
    directory and score them with `ref`; a re-run replaces the earlier demo's output."""
    folder = registry.settings.home / "demo-batch"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    picked = rows.iloc[rng.integers(0, len(rows), ROWS)].reset_index(drop=True)
    noisy = picked * rng.normal(1.0, 0.01, size=picked.shape)
    noisy.insert(0, "customer_id", np.arange(ROWS))
    source = folder / "customers.csv"
    noisy.to_csv(source, index=False)
    console.print(f"wrote {ROWS:,} rows to {source}")
    with progress_bar(console.is_terminal) as progress:
        summary = score(
            registry,
            ref,
            source,
            folder / "scored",
            chunk_rows=CHUNK_ROWS,
            id_column="customer_id",
            overwrite=True,
            progress=progress,
        )
    console.print(summary_table(summary))
