"""Load-failure reports on SQLite and PostgreSQL: what one data plane writes to
`load_failures`, what the controller reads back, and the controller rolling back at once a
rollout whose candidate a plane could not load, with the plane's reason in the history."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.registry.models import VersionSpec
from shipyard.registry.service import Registry
from shipyard.rollouts import load_reports
from shipyard.rollouts.controller import MAX_REASON as CONTROLLER_MAX_REASON
from shipyard.rollouts.controller import MAX_REPORTED_PLANES, Controller
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.load_reports import MAX_REASON, LoadReports
from shipyard.rollouts.policy import parse_policy
from shipyard.rollouts.progress import Rollouts, RolloutState

POLICY = parse_policy({"steps": [10, 50, 100], "window_s": 60, "min_requests": 100})
WHY = "FileNotFoundError (details in the server log)"


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


def start(deployments: Deployments, name: str) -> int:
    """A running rollout of fraud:2 over fraud:1; returns its revision number."""
    deployments.deploy(name, "fraud:1")
    deployments.deploy(name, "fraud:2", strategy="canary", policy=POLICY, reason="v2")
    return deployments.get(name).revision.number


def weights(deployments: Deployments, name: str) -> list[tuple[str, int]]:
    return [(v.ref, v.weight) for v in deployments.get(name).revision.spec.variants]


def test_reports_are_upserted_superseded_cleared_and_read_for_the_current_revision(
    deployments: Deployments, registry: Registry
) -> None:
    number = start(deployments, "api")
    a, b = LoadReports(registry.database, "host-a:1"), LoadReports(registry.database, "host-b:2")
    a.failed("api", number - 1, {"fraud:2": "old"})
    a.failed("api", number, {"fraud:2": "first"})  # supersedes every plane's older revisions
    a.failed("api", number, {"fraud:2": "x" * 2000})  # the same key: rewritten, not added
    b.failed("api", number, {"fraud:2": WHY, "fraud:1": WHY})
    reports = load_reports.current(registry.database, "api")
    assert [(r.plane, r.revision) for r in reports] == [("host-a:1", number), ("host-b:2", number)]
    assert reports[0].versions == {"fraud:2": "x" * MAX_REASON}
    assert reports[1].reason == f"fraud:2: {WHY}; fraud:1: {WHY}"
    assert load_reports.current(registry.database, "other") == []
    b.applied("api", number)  # clears only b's rows
    assert [r.plane for r in load_reports.current(registry.database, "api")] == ["host-a:1"]
    # Reports of a revision that is no longer current are not read.
    Rollouts(deployments).abort("api", reason="manual")
    assert load_reports.current(registry.database, "api") == []


def test_a_rollout_whose_candidate_did_not_load_is_rolled_back_on_the_first_tick(
    rollouts: Rollouts, deployments: Deployments, registry: Registry
) -> None:
    number = start(deployments, "api")
    LoadReports(registry.database, "host-a:1").failed("api", number, {"fraud:2": WHY})
    controller = Controller(rollouts)  # the real clock: the 60 s window has not passed
    (decision,) = controller.tick_now()
    reason = f"fraud:2 could not be loaded on 1 data plane: {WHY}"
    assert decision.outcome == "rollback" and decision.reason == reason
    rollout = rollouts.latest("api")
    assert rollout.state is RolloutState.ROLLED_BACK
    assert [d.reason for d in rollout.decisions] == [reason]
    assert weights(deployments, "api") == [("fraud:1", 100)]
    last = registry.ledger(deployment="api")[-1]
    assert last.action == "rollout.rolled_back" and last.reason == reason
    (failure,) = last.details["numbers"]["load_failures"]
    assert failure["plane"] == "host-a:1" and failure["reason"] == WHY
    assert last.details["numbers"]["revision"] == number
    assert controller.tick_now() == []  # nothing left running


def test_reports_of_several_planes_are_counted_and_their_reasons_named_once(
    rollouts: Rollouts, deployments: Deployments, registry: Registry
) -> None:
    number = start(deployments, "api")
    for plane, why in (("a:1", WHY), ("b:2", WHY), ("c:3", "Unavailable: runtime missing")):
        LoadReports(registry.database, plane).failed("api", number, {"fraud:2": why})
    (decision,) = Controller(rollouts).tick_now()
    assert decision.reason == (
        f"fraud:2 could not be loaded on 3 data planes: {WHY}; Unavailable: runtime missing"
    )


def test_reports_of_many_planes_are_bounded_in_the_reason_and_the_numbers(
    rollouts: Rollouts, deployments: Deployments, registry: Registry
) -> None:
    number = start(deployments, "api")
    for index in range(25):
        reports = LoadReports(registry.database, f"host-{index}:1")
        reports.failed("api", number, {"fraud:2": f"{index:03d} " + "y" * 200})
    (decision,) = Controller(rollouts).tick_now()
    assert decision.reason.startswith("fraud:2 could not be loaded on 25 data planes: 000 yy")
    assert len(decision.reason) == CONTROLLER_MAX_REASON
    assert len(decision.numbers["load_failures"]) == MAX_REPORTED_PLANES
    assert rollouts.latest("api").state is RolloutState.ROLLED_BACK


def test_rollouts_without_reports_against_their_candidate_are_untouched(
    rollouts: Rollouts, deployments: Deployments, registry: Registry
) -> None:
    start(deployments, "quiet")
    stale = start(deployments, "stale")
    baseline = start(deployments, "baseline")
    reports = LoadReports(registry.database, "host-a:1")
    reports.failed("stale", stale - 1, {"fraud:2": WHY})  # an older revision: void
    reports.failed("baseline", baseline, {"fraud:1": WHY})  # going back would not help
    assert Controller(rollouts).tick_now() == []
    for name in ("quiet", "stale", "baseline"):
        rollout = rollouts.latest(name)
        assert rollout.state is RolloutState.RUNNING and rollout.decisions == ()
        assert weights(deployments, name) == [("fraud:1", 90), ("fraud:2", 10)]


def test_a_paused_rollout_with_reports_is_left_to_the_person_who_paused_it(
    rollouts: Rollouts, deployments: Deployments, registry: Registry
) -> None:
    number = start(deployments, "api")
    LoadReports(registry.database, "host-a:1").failed("api", number, {"fraud:2": WHY})
    rollouts.pause("api", reason="looking into it")
    assert Controller(rollouts).tick_now() == []
    assert rollouts.latest("api").state is RolloutState.PAUSED
    assert weights(deployments, "api") == [("fraud:1", 90), ("fraud:2", 10)]
