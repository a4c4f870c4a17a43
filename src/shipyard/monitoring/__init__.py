"""shipyard.monitoring layer: drift detection on mergeable reference profiles."""

from shipyard.monitoring.detector import DriftDetector, Window
from shipyard.monitoring.result import DriftResult, FeatureDrift

__all__ = ["DriftDetector", "DriftResult", "FeatureDrift", "Window"]
