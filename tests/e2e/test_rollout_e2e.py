"""Progressive rollouts end to end, on SQLite and PostgreSQL: a real `shipyard serve
--deployments` process routes live load from this test, its recorder writes the statistics,
and the rollout controller (running here, on short real windows) promotes a healthy canary
step by step and rolls back one whose every answer is an error.

Waits are liveness bounds, never timings. The load is one sequential client on 127.0.0.1,
capped in requests and paced.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Self

import httpx
import numpy as np
import pytest
from serve_support import open_registry, running, server_env

import shipyard
from shipyard.client import Registry
from shipyard.rollouts.controller import Controller
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.policy import parse_policy
from shipyard.rollouts.progress import Rollout, Rollouts, RolloutState

pytestmark = pytest.mark.slow
LIVENESS = 60.0
MAX_REQUESTS = 20_000  # per load phase
POLICY = parse_policy(
    {
        "steps": [20, 50, 100],
        "window_s": 1.0,
        "min_requests": 40,
        "max_windows": 5,
        "gates": {
            "error_rate": {"max_increase": 0.01},
            "latency": {"quantile": 0.9, "max_ratio": 1.5},
            "predictions": {"alpha": 0.001},
        },
    }
)


class SumModel(shipyard.PythonModel):
    """Answers each row's sum. (Defined in this module so the server can import it: the e2e
    directory is on its PYTHONPATH.)"""

    def predict(self, context: shipyard.ModelContext, inputs: Any) -> Any:
        return np.asarray(inputs, dtype=np.float64).sum(axis=1)


class BrokenModel(SumModel):
    """A release that fails every real request. Zeros still work: registration infers the
    signature from them and the data plane warms a version up with them (a version that
    fails its warm-up is never routed to, which is another safety net, not this test)."""

    def predict(self, context: shipyard.ModelContext, inputs: Any) -> Any:
        if np.any(np.asarray(inputs) != 0):
            raise RuntimeError("this release is broken")
        return super().predict(context, inputs)


class Load:
    """One paced client calling deployment `api` with random rows until stopped."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)
        self.input = str(self.http.get("/v2/models/api").json()["inputs"][0]["name"])
        self.answers: Counter[tuple[int, str]] = Counter()  # (status, version) of each call
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._rng = np.random.default_rng(0)

    def call(self) -> tuple[int, str]:
        row = [float(v) for v in self._rng.normal(size=3)]
        body = {"inputs": [{"name": self.input, "datatype": "FP64", "shape": [1, 3], "data": row}]}
        reply = self.http.post("/v2/models/api/infer", json=body)
        return reply.status_code, reply.headers.get("x-shipyard-model-version", "")

    def _run(self) -> None:
        for _ in range(MAX_REQUESTS):
            if self._stop.wait(0.002):
                return
            self.answers[self.call()] += 1

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(15)
        self.http.close()


async def _until_done(rollouts: Rollouts, controller: Controller) -> Rollout:
    """Run the controller until the rollout of `api` ends (within LIVENESS)."""
    task = asyncio.create_task(controller.run())
    try:
        deadline = time.monotonic() + LIVENESS
        while (rollout := await asyncio.to_thread(rollouts.latest, "api")).active:
            assert time.monotonic() < deadline, f"rollout still {rollout.state} at {rollout.step}"
            assert not task.done(), "the controller loop stopped"
            await asyncio.sleep(0.1)
        return rollout
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _eventually_only(load: Load, expected: tuple[int, str]) -> None:
    deadline = time.monotonic() + LIVENESS
    while True:
        answers = Counter(load.call() for _ in range(20))
        if set(answers) == {expected}:
            return
        assert time.monotonic() < deadline, f"still answered {answers}, not only {expected}"
        time.sleep(0.2)


def test_a_healthy_canary_is_promoted_and_a_failing_one_rolled_back(
    tmp_path: Path, database_url: str
) -> None:
    home = tmp_path / "home"
    with open_registry(home, database_url) as registry:
        sample = np.zeros((2, 3))
        for model in (SumModel(), SumModel(), BrokenModel()):
            registry.register(model, "scorer", sample_input=sample)
        _release_cycle(registry, home, tmp_path, database_url)


def fast_env(home: Path, database_url: str, **extra: str) -> dict[str, str]:
    """A data plane's environment that flushes statistics and polls revisions every 0.2 s."""
    return server_env(
        home,
        database_url,
        SHIPYARD_SERVE_STATS_INTERVAL_S="0.2",
        SHIPYARD_SERVE_POLL_INTERVAL_S="0.2",
        **extra,
    )


DATA_PLANE = ("--deployments", "--workers", "1")


def _release_cycle(registry: Registry, home: Path, tmp_path: Path, database_url: str) -> None:
    deployments = Deployments(registry.store)
    rollouts = Rollouts(deployments)
    deployments.deploy("api", "scorer:1")
    env = fast_env(home, database_url)
    with running(env, tmp_path / "logs", *DATA_PLANE) as server, Load(server.url) as load:
        _eventually_only(load, (200, "scorer:1"))
        # A healthy canary: promoted through 20 % and 50 % to all traffic.
        deployments.deploy("api", "scorer:2", strategy="canary", policy=POLICY, reason="v2")
        promoted = asyncio.run(_until_done(rollouts, Controller(rollouts, tick_s=0.2)))
        reasons = [d.reason for d in promoted.decisions]
        assert promoted.state is RolloutState.PROMOTED, reasons
        advances = [d for d in promoted.decisions if d.outcome == "advance"]
        assert [d.weight for d in advances] == [20, 50], reasons
        for decision in advances:  # the second advance, to 100 %, is the promotion
            assert decision.reason.startswith("all gates passed (error_rate p="), reasons
            assert decision.numbers["latency"]["outcome"] == "pass"
        _eventually_only(load, (200, "scorer:2"))
        # A canary whose every answer is an error: rolled back, the callers back on v2.
        deployments.deploy("api", "scorer:3", strategy="canary", policy=POLICY, reason="v3")
        failed = asyncio.run(_until_done(rollouts, Controller(rollouts, tick_s=0.2)))
        assert failed.state is RolloutState.ROLLED_BACK
        assert len(failed.decisions) <= 3
        last = failed.decisions[-1]
        assert last.outcome == "rollback" and last.reason.startswith("error_rate: candidate")
        assert last.numbers["error_rate"]["candidate"] > 0.9
        _eventually_only(load, (200, "scorer:2"))
        assert load.answers[(200, "scorer:1")] > 0 and load.answers[(200, "scorer:2")] > 0
    history = [e.action for e in registry.store.ledger(deployment="api")]
    assert history.count("rollout.advanced") == 1  # 20 -> 50; 50 -> 100 is the promotion
    assert history[-2:] == ["rollout.started", "rollout.rolled_back"]
    assert "rollout.promoted" in history
