"""P10's healthy half through a real data plane: 20 deployments canary the same healthy
release at once, one controller judges them on short windows, and all 20 are promoted (none
rolled back). On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_support import open_registry, running
from test_rollout_e2e import DATA_PLANE, SumModel, fast_env

from shipyard.rollouts.controller import Controller
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.policy import parse_policy
from shipyard.rollouts.progress import Rollouts, RolloutState

pytestmark = pytest.mark.slow
RUNS = 20
LIVENESS = 120.0
MAX_REQUESTS = 60_000
POLICY = parse_policy(
    {
        "steps": [50, 100],
        "window_s": 1.0,
        "min_requests": 30,
        "max_windows": 20,
        "gates": {
            "error_rate": {"max_increase": 0.01},
            "latency": {"quantile": 0.9, "max_ratio": 1.5},
            "predictions": {"alpha": 0.001},
        },
    }
)


class RoundRobin:
    """One client calling deployments d0..d19 in turn with random rows, until stopped."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)
        self.answers: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = np.random.default_rng(0)
        for n in range(MAX_REQUESTS):
            if self._stop.is_set():
                return
            row = rng.normal(size=3).tolist()
            tensor = {"name": "input", "datatype": "FP64", "shape": [1, 3], "data": row}
            reply = self.http.post(f"/v2/models/d{n % RUNS}/infer", json={"inputs": [tensor]})
            self.answers[reply.status_code] += 1

    def __enter__(self) -> RoundRobin:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(15)
        self.http.close()


async def _until_all_done(rollouts: Rollouts, controller: Controller) -> None:
    task = asyncio.create_task(controller.run())
    try:
        deadline = time.monotonic() + LIVENESS
        while any(rollouts.latest(f"d{i}").active for i in range(RUNS)):
            assert time.monotonic() < deadline, "rollouts still running"
            assert not task.done(), "the controller loop stopped"
            await asyncio.sleep(0.2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_healthy_canary_is_promoted_20_of_20(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "home"
    with open_registry(home, database_url) as registry:
        for _ in range(2):
            registry.register(SumModel(), "scorer", sample_input=np.zeros((2, 3)))
        deployments = Deployments(registry.store)
        rollouts = Rollouts(deployments)
        for i in range(RUNS):
            deployments.deploy(f"d{i}", "scorer:1")
        with (
            running(fast_env(home, database_url), tmp_path / "logs", *DATA_PLANE) as server,
            RoundRobin(server.url) as load,
        ):
            for i in range(RUNS):
                deployments.deploy(f"d{i}", "scorer:2", strategy="canary", policy=POLICY)
            asyncio.run(_until_all_done(rollouts, Controller(rollouts, tick_s=0.2)))
        outcomes = {f"d{i}": rollouts.latest(f"d{i}") for i in range(RUNS)}
        failed = {
            name: [d.reason for d in r.decisions]
            for name, r in outcomes.items()
            if r.state is not RolloutState.PROMOTED
        }
        assert failed == {}
        for rollout in outcomes.values():
            assert [d.outcome for d in rollout.decisions if d.outcome != "hold"] == ["advance"]
        assert set(load.answers) == {200} and load.answers[200] > RUNS * 2 * 30
