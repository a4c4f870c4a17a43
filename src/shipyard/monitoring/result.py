"""What a drift check returns: one FeatureDrift per tested feature plus the overall decision."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FeatureDrift:
    """One test's outcome. `p_value` is the raw p; `drift` uses the Holm-adjusted `p_adjusted`."""

    name: str
    kind: str  # "numeric" | "categorical" | "multivariate"
    test: str  # e.g. "anderson-darling", "chi-square", "pca-error mann-whitney"
    statistic: float
    p_value: float
    summary: str  # what changed, in words a person can act on: "median 42 → 97"
    n_reference: int
    n_window: int
    p_adjusted: float = 1.0
    drift: bool = False


@dataclass(frozen=True)
class DriftResult:
    """Overall decision over all features and the multivariate test, multiple-testing corrected.

    `p_value` is the smallest Holm-adjusted p-value (Bonferroni on the minimum), so `drift` is
    True exactly when at least one feature (or the multivariate test) drifted at level `alpha`.
    """

    drift: bool
    p_value: float
    alpha: float
    n_rows: int
    features: dict[str, FeatureDrift]
    multivariate: FeatureDrift | None
    ignored_columns: list[str] = field(default_factory=list)  # extra window columns
    skipped: dict[str, str] = field(default_factory=dict)  # feature -> why it was not tested

    def reasons(self) -> list[str]:
        """One line per drifted test, most significant first: "feature `amount` shifted: ..."."""
        tests = list(self.features.values())
        if self.multivariate is not None:
            tests.append(self.multivariate)
        drifted = sorted((t for t in tests if t.drift), key=lambda t: t.p_value)
        return [f"feature `{t.name}` shifted: {t.summary}; p={t.p_value:.2g}" for t in drifted]
