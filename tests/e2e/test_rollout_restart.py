"""A control plane killed (SIGKILL) in the middle of a rollout: the data plane keeps answering
every request, nothing is decided while no controller runs, and the restarted `shipyard
server` carries the rollout on from the step it had reached to promotion, judging each step
once. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from serve_support import open_registry, running
from test_rollout_e2e import (
    DATA_PLANE,
    LIVENESS,
    POLICY,
    Load,
    SumModel,
    _eventually_only,
    fast_env,
)
from test_server import ControlPlane

from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.progress import Rollout, Rollouts, RolloutState

pytestmark = pytest.mark.slow
CONTROLLER = ("--controller-interval-s", "0.2", "--monitor-interval-s", "0")
# Windows longer than the shared policy's 1 s: the test must see the rollout between its two
# decisions and kill the server there, and a busy machine's SQLite reads can take a second.
SLOW_POLICY = POLICY.model_copy(update={"window_s": 2.5})


def _wait_for(rollouts: Rollouts, done: object, what: str) -> Rollout:
    deadline = time.monotonic() + LIVENESS
    while not done(rollout := rollouts.latest("api")):  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: rollout {rollout.state} at {rollout.step}"
        time.sleep(0.1)
    return rollout


def test_a_rollout_survives_its_control_plane_being_killed(
    tmp_path: Path, database_url: str
) -> None:
    home = tmp_path / "home"
    with open_registry(home, database_url) as registry:
        for _ in range(2):
            registry.register(SumModel(), "scorer", sample_input=np.zeros((2, 3)))
        deployments = Deployments(registry.store)
        rollouts = Rollouts(deployments)
        deployments.deploy("api", "scorer:1")
        env = fast_env(home, database_url)
        with running(env, tmp_path / "logs", *DATA_PLANE) as server, Load(server.url) as load:
            _eventually_only(load, (200, "scorer:1"))
            deployments.deploy(
                "api", "scorer:2", strategy="canary", policy=SLOW_POLICY, reason="v2"
            )

            first = ControlPlane(env, tmp_path / "logs", *CONTROLLER).wait_ready()
            try:
                halfway = _wait_for(rollouts, lambda r: len(r.decisions) >= 1, "first step")
            finally:
                first.process.kill()  # SIGKILL: no drain, no goodbye
                first.close()
            assert halfway.active and [d.weight for d in halfway.decisions] == [20]

            # No controller: the rollout stays where it was while traffic goes on.
            time.sleep(3 * SLOW_POLICY.window_s)
            assert rollouts.latest("api").decisions == halfway.decisions

            second = ControlPlane(env, tmp_path / "logs", *CONTROLLER).wait_ready()
            try:
                ended = _wait_for(rollouts, lambda r: not r.active, "after the restart")
            finally:
                second.terminate()
            reasons = [d.reason for d in ended.decisions]
            assert ended.state is RolloutState.PROMOTED, reasons
            assert [d.outcome for d in ended.decisions] == ["advance", "advance"], reasons
            assert [d.weight for d in ended.decisions] == [20, 50], reasons
            _eventually_only(load, (200, "scorer:2"))
            # The data plane never noticed: every call before, during and after was answered.
            assert {status for status, _ in load.answers} == {200}, load.answers
            assert load.answers[(200, "scorer:1")] > 0 and load.answers[(200, "scorer:2")] > 0
        history = [e.action for e in registry.store.ledger(deployment="api")]
        assert history.count("rollout.started") == 1 and history.count("rollout.promoted") == 1
        assert history.count("rollout.advanced") == 1
