"""The gates that need real traffic, end to end through a `shipyard serve --deployments`
process: a canary that answers correctly but slowly is rolled back by the latency gate, and
one that is fast, error-free and distributed like the primary but wrong is rolled back by the
feedback gate once ground truth for its answers arrives. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_support import open_registry, running
from test_rollout_e2e import DATA_PLANE, LIVENESS, Load, _until_done, fast_env

import shipyard
from shipyard.monitoring.feedback import Feedback, FeedbackStore
from shipyard.rollouts.controller import Controller
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.policy import parse_policy
from shipyard.rollouts.progress import Rollouts, RolloutState

pytestmark = pytest.mark.slow
BASE = {"steps": [50, 100], "window_s": 1.0, "min_requests": 40, "max_windows": 6}
SLOW_POLICY = parse_policy(
    {**BASE, "gates": {"error_rate": {}, "latency": {"quantile": 0.9, "max_ratio": 1.5}}}
)
FEEDBACK_POLICY = parse_policy(
    {
        **BASE,
        "gates": {
            "error_rate": {},
            "latency": None,  # the wrong model is as fast: only the labels tell
            "predictions": {"alpha": 0.001},
            "feedback": {"max_drop": 0.05, "min_samples": 30},
        },
    }
)


class Sign(shipyard.PythonModel):
    """Label 1 when a row's sum is positive: the truth this test's feedback holds."""

    def predict(self, context: shipyard.ModelContext, inputs: Any) -> Any:
        return (np.asarray(inputs, dtype=np.float64).sum(axis=1) > 0).astype(np.int64)


class SlowSign(Sign):
    """Right, but 25 ms per call."""

    def predict(self, context: shipyard.ModelContext, inputs: Any) -> Any:
        time.sleep(0.025)
        return super().predict(context, inputs)


class WrongSign(Sign):
    """Always the other label: the same share of ones (the rows are symmetric), no errors,
    no delay; only ground truth shows it is wrong."""

    def predict(self, context: shipyard.ModelContext, inputs: Any) -> Any:
        return 1 - super().predict(context, inputs)


class LabelledLoad(Load):
    """`Load` with its own request ids, giving the true label of every answered request as
    feedback (in batches of 25)."""

    def __init__(self, url: str, feedback: FeedbackStore) -> None:
        super().__init__(url)
        self.feedback = feedback
        self._pending: list[Feedback] = []
        self._sent = 0

    def call(self) -> tuple[int, str]:
        self._sent += 1
        request_id, row = f"req-{self._sent}", self._rng.normal(size=3)
        tensor = {"name": self.input, "datatype": "FP64", "shape": [1, 3], "data": row.tolist()}
        reply = self.http.post("/v2/models/api/infer", json={"id": request_id, "inputs": [tensor]})
        if reply.status_code == 200:
            self._pending.append(Feedback(request_id, int(row.sum() > 0)))
        if len(self._pending) >= 25:
            self.feedback.add(self._pending, actor="labeller")
            self._pending = []
        return reply.status_code, reply.headers.get("x-shipyard-model-version", "")


def _wait_for_version(load: Load, version: str) -> None:
    deadline = time.monotonic() + LIVENESS
    while load.answers[(200, version)] < 20:
        assert time.monotonic() < deadline, f"no answers from {version}: {load.answers}"
        time.sleep(0.1)


def test_slow_and_wrong_canaries_are_rolled_back(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "home"
    with open_registry(home, database_url) as registry:
        for model in (Sign(), SlowSign(), WrongSign()):
            registry.register(model, "signs", sample_input=np.zeros((2, 3)))
        deployments = Deployments(registry.store)
        rollouts = Rollouts(deployments)
        deployments.deploy("api", "signs:1")
        feedback = FeedbackStore(registry.store.database)
        with (
            running(fast_env(home, database_url), tmp_path / "logs", *DATA_PLANE) as server,
            LabelledLoad(server.url, feedback) as load,
        ):
            _wait_for_version(load, "signs:1")

            deployments.deploy("api", "signs:2", strategy="canary", policy=SLOW_POLICY)
            slow = asyncio.run(_until_done(rollouts, Controller(rollouts, tick_s=0.2)))
            assert slow.state is RolloutState.ROLLED_BACK, [d.reason for d in slow.decisions]
            assert len(slow.decisions) <= 3  # P10: within 3 analysis windows
            last = slow.decisions[-1]
            assert last.reason.startswith("latency: "), last.reason
            assert last.numbers["latency"]["outcome"] == "fail"
            assert last.numbers["error_rate"]["outcome"] == "pass"  # it answered, just late

            deployments.deploy("api", "signs:3", strategy="canary", policy=FEEDBACK_POLICY)
            wrong = asyncio.run(_until_done(rollouts, Controller(rollouts, tick_s=0.2)))
            assert wrong.state is RolloutState.ROLLED_BACK, [d.reason for d in wrong.decisions]
            assert len(wrong.decisions) <= 3
            last = wrong.decisions[-1]
            assert last.reason.startswith("feedback: "), last.reason
            numbers = last.numbers["feedback"]
            assert numbers["outcome"] == "fail" and min(numbers["labelled"]) >= 30
            assert numbers["baseline"] == 1.0 and numbers["candidate"] == 0.0
            assert last.numbers["predictions"]["outcome"] != "fail"  # indistinguishable unlabelled
            assert load.answers[(200, "signs:2")] > 0 and load.answers[(200, "signs:3")] > 0
        assert {status for status, _ in load.answers} == {200}, load.answers
