"""The rollout controller on SQLite and PostgreSQL, on accelerated time: synthetic traffic is
written to route_stats/predictions/feedback as data planes would, and an injected clock ends
each window, so no test sleeps through a window. Healthy canaries are promoted step by step,
broken ones rolled back within 3 windows, every decision is in the ledger with its reason and
numbers, and a restarted controller resumes the same rollout."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert

from shipyard.core.errors import InvalidArgument
from shipyard.registry.models import VersionSpec
from shipyard.registry.service import Registry
from shipyard.rollouts import observations
from shipyard.rollouts.controller import WAIT_FACTOR, Controller
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.policy import Policy, parse_policy
from shipyard.rollouts.progress import Rollout, Rollouts, RolloutState
from shipyard.rollouts.spec import Role, Variant
from shipyard.rollouts.stats import BUCKETS, LATENCY_EDGES_S
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow, RouteStatsRow
from shipyard.storage.tables import utcnow

POLICY = parse_policy(
    {
        "steps": [10, 25, 50, 100],
        "window_s": 60,
        "min_requests": 100,
        "max_windows": 3,
        "gates": {
            "error_rate": {"max_increase": 0.01},
            "latency": {"quantile": 0.95, "max_ratio": 1.25},
            "feedback": {"max_drop": 0.05, "min_samples": 50},
        },
    }
)
BASELINE, CANDIDATE = Variant("fraud", 1), Variant("fraud", 2)


@dataclass(frozen=True)
class Behaviour:
    error_rate: float = 0.01
    median_s: float = 0.010
    accuracy: float = 0.9


HEALTHY = Behaviour()


class Clock:
    """The controller's clock, moved by the test: real time plus an offset (so rows written
    now fall inside the window) that `end_window` sets to close the current window."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def end_window(self, rollout: Rollout, lengths: float = 1.0) -> None:
        end = rollout.window_started_at + timedelta(seconds=rollout.policy.window_s * lengths)
        self.offset = end - utcnow() + timedelta(seconds=1)


class Traffic:
    """Writes what data planes would record for a deployment's current revision."""

    def __init__(self, database: Database, deployments: Deployments, seed: int) -> None:
        self.database, self.deployments = database, deployments
        self.rng = np.random.default_rng(seed)

    def window(
        self, name: str, candidate: Behaviour, *, total: int = 2000, labelled: int = 150
    ) -> None:
        """`total` requests split by the current weights; `labelled` predictions per variant
        get feedback."""
        revision = self.deployments.get(name).revision
        stats, predictions, feedback = [], [], []
        for variant in revision.spec.variants:
            behaviour = candidate if variant.ref == CANDIDATE.ref else HEALTHY
            n = total * variant.weight // 100
            if n == 0:
                continue
            role = Role.PRIMARY if variant is revision.spec.primary else Role.CANDIDATE
            stats.append(self._stats(name, revision.number, variant, role, n, behaviour))
            for prediction, given in self._labelled(
                name, revision.number, variant, labelled, behaviour
            ):
                predictions.append(prediction)
                feedback.append(given)
        with self.database.write() as session:  # bulk inserts: many rows per window
            session.execute(insert(RouteStatsRow), stats)
            session.execute(insert(PredictionRow), predictions)
            session.execute(insert(FeedbackRow), feedback)

    def _stats(
        self, name: str, revision: int, variant: Variant, role: Role, n: int, b: Behaviour
    ) -> dict[str, Any]:
        seconds = self.rng.lognormal(np.log(b.median_s), 0.4, n)
        buckets = np.searchsorted(np.asarray(LATENCY_EDGES_S), seconds, side="left")
        return {
            "deployment": name,
            "revision": revision,
            "model": variant.model,
            "version": variant.version,
            "role": role.value,
            "plane": "test:1",
            "at": utcnow(),
            "requests": n,
            "errors": int(self.rng.binomial(n, b.error_rate)),
            "latency": [int(c) for c in np.bincount(buckets, minlength=BUCKETS)],
            "predictions": [],
            "shadow_total": 0,
            "shadow_agree": 0,
        }

    def _labelled(
        self, name: str, revision: int, variant: Variant, count: int, b: Behaviour
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """Predictions with feedback: the label is right with probability `b.accuracy`."""
        now = utcnow()
        truths = self.rng.integers(0, 2, count)
        rights = self.rng.random(count) < b.accuracy
        for truth, right in zip(truths, rights, strict=True):
            request_id = uuid.uuid4().hex
            label = int(truth) if right else 1 - int(truth)
            prediction = {
                "request_id": request_id,
                "deployment": name,
                "revision": revision,
                "model": variant.model,
                "version": variant.version,
                "at": now,
                "output": [label],
            }
            given = {"request_id": request_id, "value": int(truth), "at": now, "actor": "tester"}
            yield prediction, given


@pytest.fixture
def deployments(registry: Registry, tmp_path: Path) -> Deployments:
    path = tmp_path / "m.onnx"
    for index in range(2):
        path.write_bytes(b"model %d" % index)
        registry.register_version("fraud", {"model.onnx": path}, VersionSpec(flavor="onnx"))
    return Deployments(registry)


@pytest.fixture
def rollouts(deployments: Deployments) -> Rollouts:
    return Rollouts(deployments)


def start(deployments: Deployments, name: str, policy: Policy = POLICY) -> None:
    deployments.deploy(name, BASELINE.ref)
    deployments.deploy(name, CANDIDATE.ref, strategy="canary", policy=policy, reason="v2")


def run_windows(
    rollouts: Rollouts,
    controller: Controller,
    clock: Clock,
    traffic: Traffic,
    behaviour: Behaviour,
    names: list[str],
    windows: int,
) -> None:
    """Up to `windows` windows: traffic for every running rollout, then the window's end."""
    for _ in range(windows):
        running = [r for r in rollouts.running() if r.deployment in names]
        if not running:
            return
        for rollout in running:
            traffic.window(rollout.deployment, behaviour)
        clock.end_window(max(running, key=lambda r: r.window_started_at))
        decided = controller.tick_now()
        assert len(decided) == len(running)


def weights(deployments: Deployments, name: str) -> list[tuple[str, int]]:
    return [(v.ref, v.weight) for v in deployments.get(name).revision.spec.variants]


@pytest.mark.slow
def test_healthy_canaries_are_promoted_through_every_step_20_of_20(
    rollouts: Rollouts, deployments: Deployments, registry: Registry
) -> None:
    names = [f"fraud-{i}" for i in range(20)]
    for name in names:
        start(deployments, name)
    clock = Clock()
    controller = Controller(rollouts, clock=clock)
    traffic = Traffic(registry.database, deployments, seed=1)
    run_windows(rollouts, controller, clock, traffic, HEALTHY, names, windows=3)
    for name in names:
        rollout = rollouts.latest(name)
        assert rollout.state is RolloutState.PROMOTED, (name, rollout.decisions[-1].reason)
        assert [d.outcome for d in rollout.decisions] == ["advance", "advance", "advance"]
        assert [d.weight for d in rollout.decisions] == [10, 25, 50]
        assert weights(deployments, name) == [("fraud:2", 100)]
    # Every decision is in the ledger with its reason and the numbers behind it.
    history = registry.ledger(deployment="fraud-0")
    steps = [e for e in history if e.action.startswith("rollout.")]
    assert [e.action for e in steps] == [
        "rollout.started",
        "rollout.advanced",
        "rollout.advanced",
        "rollout.promoted",
    ]
    for entry in steps[1:]:
        assert entry.reason is not None and entry.reason.startswith("all gates passed")
        numbers = entry.details["numbers"]
        assert numbers["error_rate"]["outcome"] == "pass"
        assert numbers["latency"]["test"] == "agresti-caffo z"
        assert numbers["feedback"]["labelled"] == [150, 150]
        assert numbers["requests"]["candidate"] == 2000 * entry.details["weight"] // 100
    assert [e.details["spec"]["variants"][-1]["weight"] for e in steps[1:]] == [25, 50, 100]


@pytest.mark.parametrize(
    ("behaviour", "gate", "words"),
    [
        (Behaviour(error_rate=0.06), "error_rate", "errors (allowed +1.00 pp"),
        (
            Behaviour(median_s=0.020),
            "latency",
            "of baseline requests slower than the baseline's p95",
        ),
        (Behaviour(accuracy=0.6), "feedback", "candidate accuracy"),
    ],
    ids=["erroring", "slow", "wrong-by-feedback"],
)
def test_a_broken_canary_is_rolled_back_within_3_windows(
    rollouts: Rollouts,
    deployments: Deployments,
    registry: Registry,
    behaviour: Behaviour,
    gate: str,
    words: str,
) -> None:
    names = [f"bad-{i}" for i in range(5)]
    for name in names:
        start(deployments, name)
    clock = Clock()
    controller = Controller(rollouts, clock=clock)
    traffic = Traffic(registry.database, deployments, seed=2)
    run_windows(rollouts, controller, clock, traffic, behaviour, names, windows=3)
    for name in names:
        rollout = rollouts.latest(name)
        assert rollout.state is RolloutState.ROLLED_BACK
        assert len(rollout.decisions) <= 3 and rollout.decisions[-1].outcome == "rollback"
        assert weights(deployments, name) == [("fraud:1", 100)]
        last = registry.ledger(deployment=name)[-1]
        assert last.action == "rollout.rolled_back"
        assert last.reason is not None and f"{gate}: " in last.reason and words in last.reason
        assert last.details["numbers"][gate]["outcome"] == "fail"
        assert last.details["numbers"][gate]["p_value"] < 0.05


def test_a_restarted_controller_resumes_the_same_rollout(
    rollouts: Rollouts, deployments: Deployments, open_registry: Callable[..., Registry]
) -> None:
    start(deployments, "fraud-api")
    clock = Clock()
    first = Controller(rollouts, clock=clock)
    traffic = Traffic(deployments.database, deployments, seed=3)
    run_windows(rollouts, first, clock, traffic, HEALTHY, ["fraud-api"], windows=1)
    before = rollouts.latest("fraud-api")
    assert before.step == 1 and before.weight == 25
    del first  # the control plane goes away mid-rollout
    # A new process: its own registry (connections) and controller, nothing carried over.
    reopened = Rollouts(Deployments(open_registry()))
    second = Controller(reopened, clock=clock)
    assert second.tick_now() == []  # the new window has only just begun
    run_windows(reopened, second, clock, traffic, HEALTHY, ["fraud-api"], windows=2)
    after = reopened.latest("fraud-api")
    assert after.id == before.id and after.state is RolloutState.PROMOTED
    assert [d.step for d in after.decisions] == [0, 1, 2]


def test_a_window_short_of_requests_keeps_collecting_then_holds_then_rolls_back(
    rollouts: Rollouts, deployments: Deployments, registry: Registry
) -> None:
    start(deployments, "quiet")
    clock = Clock()
    controller = Controller(rollouts, clock=clock)
    traffic = Traffic(registry.database, deployments, seed=4)
    for window in range(1, 4):
        rollout = rollouts.latest("quiet")
        traffic.window("quiet", HEALTHY, total=500)  # 50 canary requests < 100 needed
        clock.end_window(rollout)
        assert controller.tick_now() == []  # over time, short of requests: keep collecting
        assert rollouts.latest("quiet").windows == window - 1
        clock.end_window(rollout, WAIT_FACTOR)
        (decision,) = controller.tick_now()
        assert (
            "too few requests" in decision.reason and "candidate 50; 100 needed" in decision.reason
        )
        if window < 3:
            assert decision.outcome == "hold" and rollouts.latest("quiet").windows == window
    final = rollouts.latest("quiet")
    assert final.state is RolloutState.ROLLED_BACK
    assert final.decisions[-1].reason.startswith("no conclusion after 3 windows: too few")
    actions = [e.action for e in registry.ledger(deployment="quiet")]
    assert actions[-3:] == ["rollout.held", "rollout.held", "rollout.rolled_back"]
    assert weights(deployments, "quiet") == [("fraud:1", 100)]


def test_a_window_is_not_judged_before_its_time(
    rollouts: Rollouts, deployments: Deployments, registry: Registry
) -> None:
    start(deployments, "early")
    Traffic(registry.database, deployments, seed=5).window("early", Behaviour(error_rate=0.5))
    controller = Controller(rollouts)  # the real clock: the 60 s window has not passed
    assert controller.tick_now() == []
    rollout = rollouts.latest("early")
    assert rollout.state is RolloutState.RUNNING and rollout.decisions == ()


def test_the_first_window_leaves_the_warm_up_out(
    rollouts: Rollouts, deployments: Deployments, registry: Registry
) -> None:
    """What a candidate served in the rollout's first `warmup_s` is not analysed: a burst of
    errors there decides nothing, where without the warm-up the same rows roll it back."""
    for name, warmup in (("warm", 30.0), ("cold", 0.0)):
        start(deployments, name, POLICY.model_copy(update={"warmup_s": warmup}))
        Traffic(registry.database, deployments, seed=6).window(name, Behaviour(error_rate=0.5))
    clock = Clock()
    controller = Controller(rollouts, clock=clock)
    clock.end_window(rollouts.latest("cold"))  # 61 s in: past the cold window, not the warm one
    (decision,) = controller.tick_now()
    assert decision.outcome == "rollback" and decision.reason.startswith("error_rate: ")
    assert rollouts.latest("warm").decisions == ()
    warm = rollouts.latest("warm")
    clock.end_window(warm, (30 + 60 * WAIT_FACTOR + 1) / 60)  # its window started 30 s late
    (held,) = controller.tick_now()
    assert held.outcome == "hold" and "too few requests" in held.reason, held.reason
    assert held.numbers["requests"] == {"baseline": 0, "candidate": 0}


def test_a_manual_pause_racing_the_controller_wins(
    rollouts: Rollouts, deployments: Deployments, registry: Registry
) -> None:
    start(deployments, "raced")
    Traffic(registry.database, deployments, seed=6).window("raced", HEALTHY)
    window_end = Clock()
    window_end.end_window(rollouts.latest("raced"))

    def clock() -> datetime:
        # The operator pauses just after the controller read the running rollouts.
        if rollouts.latest("raced").state is RolloutState.RUNNING:
            rollouts.pause("raced", reason="operator")
        return window_end()

    controller = Controller(rollouts, clock=clock)
    assert controller.tick_now() == []  # the decision was refused: the pause came first
    rollout = rollouts.latest("raced")
    assert rollout.state is RolloutState.PAUSED and rollout.step == 0 and rollout.decisions == ()
    assert weights(deployments, "raced") == [("fraud:1", 90), ("fraud:2", 10)]
    assert controller.failures == 0


def test_one_failing_rollout_does_not_stop_the_others(
    rollouts: Rollouts,
    deployments: Deployments,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("broken", "fine"):
        start(deployments, name)
    real = observations.observe

    def observe(
        database: Database, deployment: str, revision: int, **kw: Any
    ) -> observations.Observed:
        if deployment == "broken":
            raise RuntimeError("corrupt statistics")
        return real(database, deployment, revision, **kw)

    monkeypatch.setattr(observations, "observe", observe)
    clock = Clock()
    controller = Controller(rollouts, clock=clock)
    traffic = Traffic(registry.database, deployments, seed=7)
    for name in ("broken", "fine"):
        traffic.window(name, HEALTHY)
    clock.end_window(rollouts.latest("fine"))
    (decision,) = asyncio.run(controller.tick())
    assert decision.outcome == "advance" and controller.failures == 1
    assert rollouts.latest("fine").step == 1
    broken = rollouts.latest("broken")
    assert broken.state is RolloutState.RUNNING and broken.step == 0 and broken.decisions == ()


def test_run_survives_failing_ticks_until_cancelled(rollouts: Rollouts) -> None:
    controller = Controller(rollouts, tick_s=0.01)
    calls, third = 0, threading.Event()

    def tick_now() -> list[object]:
        nonlocal calls
        calls += 1
        if calls >= 3:
            third.set()
        if calls <= 2:
            raise RuntimeError("database unavailable")
        return []

    controller.tick_now = tick_now  # type: ignore[method-assign,assignment]

    async def main() -> None:
        task = asyncio.create_task(controller.run())
        for _ in range(1000):  # at most 10 s
            if third.is_set():
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert third.is_set() and controller.failures == 2


@pytest.mark.parametrize("tick_s", [0, -1.0])
def test_a_controller_needs_a_positive_tick(rollouts: Rollouts, tick_s: float) -> None:
    with pytest.raises(InvalidArgument, match="tick_s must be positive"):
        Controller(rollouts, tick_s=tick_s)
