"""What a pipeline's `train(context)` function receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True, slots=True)
class TrainContext:
    """Training data (features and the label column), parameters and a seed.

    `train(context)` returns a fitted model of any supported flavor; shipyard registers it
    as a candidate with lineage to the run and the champion it should replace.
    """

    data: pd.DataFrame
    label: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    run_id: int = 0
    model: str = ""
    champion: str | None = None  # e.g. "fraud:3"

    @property
    def features(self) -> pd.DataFrame:
        return self.data.drop(columns=[self.label])

    @property
    def target(self) -> pd.Series:
        return self.data[self.label]
