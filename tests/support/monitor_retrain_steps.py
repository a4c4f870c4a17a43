"""The training entry point (`monitor_retrain_steps:train`) of the monitoring loop's tests:
the retraining run an alert starts imports it from this folder."""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression

from shipyard.jobs.retrain.context import TrainContext


def train(context: TrainContext) -> LogisticRegression:
    return LogisticRegression(max_iter=300).fit(context.features, context.target)
