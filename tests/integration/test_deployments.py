"""Deployments and rollouts on SQLite and PostgreSQL: revisions, strategies, rollback, the
one-active-rollout rule, manual control and the ledger trail."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shipyard.core.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from shipyard.registry.models import VersionSpec
from shipyard.registry.service import Registry
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.policy import parse_policy
from shipyard.rollouts.progress import Decision, Rollouts, RolloutState
from shipyard.rollouts.spec import RevisionSpec, Strategy, Variant

POLICY = parse_policy({"steps": [10, 50, 100], "window_s": 1, "min_requests": 20})


@pytest.fixture
def deployments(registry: Registry, tmp_path: Path) -> Deployments:
    path = tmp_path / "m.onnx"
    for index in range(3):
        path.write_bytes(b"model %d" % index)
        registry.register_version("fraud", {"model.onnx": path}, VersionSpec(flavor="onnx"))
    return Deployments(registry)


def _weights(spec: RevisionSpec) -> list[tuple[str, int]]:
    return [(v.ref, v.weight) for v in spec.variants]


def test_direct_then_canary_then_rollback(deployments: Deployments) -> None:
    first = deployments.deploy("fraud-api", "fraud:1", reason="launch")
    assert first.number == 1 and _weights(first.spec) == [("fraud:1", 100)]
    canary = deployments.deploy("fraud-api", "fraud:2", strategy="canary", weight=20)
    assert canary.number == 2 and _weights(canary.spec) == [("fraud:1", 80), ("fraud:2", 20)]
    back = deployments.rollback("fraud-api", reason="bad canary")
    assert back.number == 3 and _weights(back.spec) == [("fraud:1", 100)]
    again = deployments.rollback("fraud-api", to=2)
    assert _weights(again.spec) == _weights(canary.spec)
    assert [r.number for r in deployments.revisions("fraud-api")] == [1, 2, 3, 4]
    history = deployments.history("fraud-api")
    assert [e.action for e in history] == [
        "deployment.deployed",
        "deployment.deployed",
        "deployment.rolled_back",
        "deployment.rolled_back",
    ]
    assert history[0].reason == "launch" and history[2].details["to"] == 1
    assert deployments.snapshot()["fraud-api"].number == 4


def test_strategies_shape_the_revision(deployments: Deployments) -> None:
    deployments.deploy("d", "fraud:1")
    shadow = deployments.deploy("d", "fraud:2", strategy=Strategy.SHADOW).spec
    assert _weights(shadow) == [("fraud:1", 100)] and shadow.shadow == Variant("fraud", 2)
    ab = deployments.deploy("d", "fraud:2", strategy="ab", sticky_field="user").spec
    assert _weights(ab) == [("fraud:1", 50), ("fraud:2", 50)] and ab.sticky_field == "user"
    blue = deployments.deploy("d", "fraud:3", strategy="bluegreen").spec
    assert _weights(blue) == [("fraud:3", 100), ("fraud:1", 0)]  # the old one kept warm


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"model": "fraud:9"}, NotFound, "no version 9"),
        ({"model": "nope"}, NotFound, "'nope' not found"),
        ({"model": "fraud:2", "strategy": "rainbow"}, InvalidArgument, "unknown strategy"),
        ({"model": "fraud:2", "strategy": "canary", "weight": 100}, InvalidArgument, "weight"),
        ({"model": "fraud:2", "strategy": "canary", "weight": 0}, InvalidArgument, "weight"),
        ({"model": "fraud:2", "weight": 10}, InvalidArgument, "--weight applies"),
        ({"model": "fraud:1", "strategy": "canary"}, FailedPrecondition, "already the live"),
        ({"model": "fraud:2", "sticky_field": "u"}, InvalidArgument, "--sticky-field"),
        ({"model": "fraud:2", "policy": POLICY}, InvalidArgument, "needs --strategy canary"),
    ],
)
def test_bad_deploys_are_refused_and_change_nothing(
    deployments: Deployments, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    deployments.deploy("d", "fraud:1")
    before = deployments.revisions("d")
    with pytest.raises(error, match=message):
        deployments.deploy("d", **kwargs)  # type: ignore[arg-type]
    assert deployments.revisions("d") == before


def test_canary_on_a_new_deployment_needs_a_live_version(deployments: Deployments) -> None:
    with pytest.raises(FailedPrecondition, match="direct first"):
        deployments.deploy("new", "fraud:2", strategy="canary")
    with pytest.raises(NotFound):
        deployments.get("new")


def test_failed_and_archived_versions_cannot_be_deployed(
    deployments: Deployments, registry: Registry
) -> None:
    registry.archive_version("fraud", 3)
    with pytest.raises(FailedPrecondition, match="archived"):
        deployments.deploy("d", "fraud:3")
    with pytest.raises(NotFound):
        deployments.get("d")


def test_a_routed_version_cannot_be_archived(deployments: Deployments, registry: Registry) -> None:
    deployments.deploy("d", "fraud:1")
    deployments.deploy("d", "fraud:2", strategy="shadow")
    for version in (1, 2):
        with pytest.raises(FailedPrecondition, match="served by deployment d"):
            registry.archive_version("fraud", version)
        assert not registry.get_version("fraud", version).archived
    registry.archive_version("fraud", 3)  # not routed to: fine


def test_rollback_bounds(deployments: Deployments) -> None:
    deployments.deploy("d", "fraud:1")
    with pytest.raises(FailedPrecondition, match="no earlier revision"):
        deployments.rollback("d")
    with pytest.raises(NotFound, match="no revision 7"):
        deployments.rollback("d", to=7)
    with pytest.raises(FailedPrecondition, match="already current"):
        deployments.rollback("d", to=1)
    with pytest.raises(InvalidArgument):
        deployments.rollback("d", to=0)
    assert [r.number for r in deployments.revisions("d")] == [1]


def test_rollback_with_the_revision_it_was_decided_on(deployments: Deployments) -> None:
    deployments.deploy("d", "fraud:1")
    deployments.deploy("d", "fraud:2")
    back = deployments.rollback("d", to=1, expected_revision=2, reason="saw 2")
    assert back.number == 3 and _weights(back.spec) == [("fraud:1", 100)]
    assert deployments.history("d")[-1].details == {
        "revision": 3,
        "spec": back.spec.to_json(),
        "to": 1,
        "from": 2,
    }


def test_a_rollback_decided_on_a_stale_revision_is_refused(deployments: Deployments) -> None:
    rollouts = Rollouts(deployments)
    deployments.deploy("d", "fraud:1")
    deployments.deploy("d", "fraud:2", strategy="canary", policy=POLICY)
    before = deployments.revisions("d"), deployments.history("d"), rollouts.running()
    stale = "deployment 'd' is at revision 2, not 1: someone changed it; look again before"
    for to in (None, 1, 2):  # a stale view is refused before `to` is even looked at
        with pytest.raises(Conflict, match=f"^{stale} rolling back$"):
            deployments.rollback("d", to=to, expected_revision=1, reason="pager")
    with pytest.raises(Conflict, match="is at revision 2, not 3"):
        deployments.rollback("d", expected_revision=3)
    with pytest.raises(Conflict, match="is at revision 2, not 0"):
        deployments.rollback("d", expected_revision=0)
    for bad in (-1, True, "2"):
        with pytest.raises(InvalidArgument, match="expected revision must be a non-negative"):
            deployments.rollback("d", expected_revision=bad)  # type: ignore[arg-type]
    assert (deployments.revisions("d"), deployments.history("d"), rollouts.running()) == before
    assert [r.deployment for r in rollouts.running()] == ["d"]  # the canary runs on


def test_deploy_with_an_expected_revision(deployments: Deployments) -> None:
    with pytest.raises(Conflict, match="deployment 'd' does not exist yet, not 1: .* deploying"):
        deployments.deploy("d", "fraud:1", expected_revision=1)
    with pytest.raises(NotFound):
        deployments.get("d")
    assert deployments.deploy("d", "fraud:1", expected_revision=0).number == 1  # only if new
    before = deployments.revisions("d"), deployments.history("d")
    with pytest.raises(Conflict, match="deployment 'd' is at revision 1, not 0: someone"):
        deployments.deploy("d", "fraud:2", expected_revision=0)
    with pytest.raises(Conflict, match="deployment 'd' is at revision 1, not 2: someone"):
        deployments.deploy("d", "fraud:2", expected_revision=2)
    with pytest.raises(InvalidArgument, match="got -1"):
        deployments.deploy("d", "fraud:2", expected_revision=-1)
    assert (deployments.revisions("d"), deployments.history("d")) == before
    assert deployments.deploy("d", "fraud:2", expected_revision=1).number == 2


def test_a_rollout_action_decided_on_a_stale_revision_is_refused(
    deployments: Deployments,
) -> None:
    """Someone looked at the canary of fraud:2 (revision 2) and clicked promote; meanwhile it
    was aborted and a canary of fraud:3 started. The stale click must not ship fraud:3."""
    rollouts = Rollouts(deployments)
    deployments.deploy("d", "fraud:1")
    seen = deployments.deploy("d", "fraud:2", strategy="canary", policy=POLICY).number
    rollouts.abort("d", reason="bad latency")
    deployments.deploy("d", "fraud:3", strategy="canary", policy=POLICY)
    before = deployments.revisions("d"), deployments.history("d"), rollouts.current("d")
    for act, doing in (
        (rollouts.promote, "promoting"),
        (rollouts.abort, "aborting"),
        (rollouts.pause, "pausing"),
        (rollouts.resume, "resuming"),
    ):
        with pytest.raises(
            Conflict, match=f"is at revision 4, not {seen}: .* {doing} the rollout$"
        ):
            act("d", expected_revision=seen)
    with pytest.raises(InvalidArgument, match="expected revision must be a non-negative"):
        rollouts.promote("d", expected_revision=-2)
    assert (deployments.revisions("d"), deployments.history("d"), rollouts.current("d")) == before
    # On the revision it shows, the action goes through.
    assert rollouts.pause("d", expected_revision=4).state is RolloutState.PAUSED
    promoted = rollouts.promote("d", expected_revision=4, reason="looks good")
    assert promoted.state is RolloutState.PROMOTED and promoted.candidate.version == 3


def test_deploys_of_a_new_name_at_once_all_succeed(deployments: Deployments) -> None:
    """Both requests create `web-<i>` at the same moment: one creates it, the other becomes
    its next revision (PostgreSQL used to fail the loser on the unique name)."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def deploy(name: str, model: str) -> None:
        barrier.wait()
        try:
            deployments.deploy(name, model)
        except BaseException as exc:  # reported below with the others
            errors.append(exc)

    for i in range(8):
        threads = [
            threading.Thread(target=deploy, args=(f"web-{i}", m)) for m in ("fraud:1", "fraud:2")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    for i in range(8):
        revisions = deployments.revisions(f"web-{i}")
        assert [r.number for r in revisions] == [1, 2]
        assert {_weights(r.spec)[0][0] for r in revisions} == {"fraud:1", "fraud:2"}


def test_a_refused_first_deploy_leaves_no_deployment(deployments: Deployments) -> None:
    with pytest.raises(NotFound):
        deployments.deploy("ghost-web", "fraud:9")
    with pytest.raises(NotFound, match="deployment 'ghost-web' not found"):
        deployments.get("ghost-web")
    assert "ghost-web" not in [d.name for d in deployments.list()]


def _decision(outcome: str, step: int = 0) -> Decision:
    return Decision(datetime.now(UTC), step, 10, outcome, f"{outcome} because", {"p": 0.5})


def test_a_policy_canary_rolls_out_step_by_step(deployments: Deployments) -> None:
    rollouts = Rollouts(deployments)
    deployments.deploy("d", "fraud:1")
    revision = deployments.deploy("d", "fraud:2", strategy="canary", policy=POLICY)
    assert _weights(revision.spec) == [("fraud:1", 90), ("fraud:2", 10)]
    rollout = rollouts.current("d")
    assert rollout is not None and rollout.state is RolloutState.RUNNING and rollout.weight == 10
    with pytest.raises(Conflict, match="rollout in progress"):
        deployments.deploy("d", "fraud:3", strategy="canary", policy=POLICY)
    held = rollouts.decide(rollout.id, _decision("hold"), expected_step=0)
    assert held.windows == 1 and held.step == 0
    advanced = rollouts.decide(rollout.id, _decision("advance"), expected_step=0)
    assert advanced.step == 1 and advanced.weight == 50
    assert _weights(deployments.get("d").revision.spec) == [("fraud:1", 50), ("fraud:2", 50)]
    with pytest.raises(Conflict, match="moved on"):  # a stale controller loses
        rollouts.decide(rollout.id, _decision("advance"), expected_step=0)
    done = rollouts.decide(rollout.id, _decision("advance", 1), expected_step=1)
    assert done.state is RolloutState.PROMOTED and not done.active
    assert _weights(deployments.get("d").revision.spec) == [("fraud:2", 100)]
    assert rollouts.current("d") is None and rollouts.latest("d").id == rollout.id
    actions = [e.action for e in deployments.history("d")]
    assert actions[-4:] == [
        "rollout.started",
        "rollout.held",
        "rollout.advanced",
        "rollout.promoted",
    ]
    promoted = deployments.history("d")[-1]
    assert promoted.reason == "advance because" and promoted.details["numbers"] == {"p": 0.5}


def test_rollback_decision_and_manual_control(deployments: Deployments) -> None:
    rollouts = Rollouts(deployments)
    deployments.deploy("d", "fraud:1")
    deployments.deploy("d", "fraud:2", strategy="canary", policy=POLICY)
    rollout = rollouts.current("d")
    assert rollout is not None
    paused = rollouts.pause("d", reason="look first")
    assert paused.state is RolloutState.PAUSED and rollouts.running() == []
    with pytest.raises(Conflict):  # the controller cannot act on a paused rollout
        rollouts.decide(rollout.id, _decision("advance"), expected_step=0)
    with pytest.raises(FailedPrecondition, match="already paused"):
        rollouts.pause("d")
    rollouts.resume("d")
    assert [r.id for r in rollouts.running()] == [rollout.id]
    back = rollouts.decide(rollout.id, _decision("rollback"), expected_step=0)
    assert back.state is RolloutState.ROLLED_BACK
    assert _weights(deployments.get("d").revision.spec) == [("fraud:1", 100)]
    with pytest.raises(FailedPrecondition, match="no rollout in progress"):
        rollouts.abort("d")
    # A new rollout may start once the old one ended; abort and promote end it by hand.
    deployments.deploy("d", "fraud:2", strategy="canary", policy=POLICY)
    assert rollouts.abort("d").state is RolloutState.ABORTED
    assert _weights(deployments.get("d").revision.spec) == [("fraud:1", 100)]
    deployments.deploy("d", "fraud:2", strategy="canary", policy=POLICY)
    assert rollouts.promote("d", reason="looks fine").state is RolloutState.PROMOTED
    assert _weights(deployments.get("d").revision.spec) == [("fraud:2", 100)]


def test_manual_rollback_ends_an_active_rollout(deployments: Deployments) -> None:
    rollouts = Rollouts(deployments)
    deployments.deploy("d", "fraud:1")
    deployments.deploy("d", "fraud:2", strategy="canary", policy=POLICY)
    deployments.rollback("d", reason="pager")
    assert rollouts.current("d") is None
    assert rollouts.latest("d").state is RolloutState.ROLLED_BACK
