"""The Python release client on SQLite and PostgreSQL: deploy, canary with a policy given three
ways, take the rollout over by hand, roll back; bad input refused with nothing changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import shipyard
from shipyard.app.settings import Settings
from shipyard.client import Registry
from shipyard.client.deployments import Deployments, as_policy
from shipyard.core.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from shipyard.registry.models import VersionSpec
from shipyard.rollouts.policy import Policy
from shipyard.rollouts.progress import RolloutState
from shipyard.rollouts.spec import RevisionSpec, Strategy, Variant


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[Registry]:
    """A client Registry with fraud:1..3 READY (stand-in bytes: deploying never reads them)."""
    registry = Registry(database_url, settings=Settings(home=tmp_path / "home", actor="ci"))
    path = tmp_path / "m.onnx"
    for index in range(3):
        path.write_bytes(b"model %d" % index)
        registry.store.register_version("fraud", {"model.onnx": path}, VersionSpec(flavor="onnx"))
    yield registry
    registry.close()


def _weights(spec: RevisionSpec) -> list[tuple[str, int]]:
    return [(v.ref, v.weight) for v in spec.variants]


def test_release_cycle(client: Registry, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("steps: [20, 100]\nwindow_s: 2\nmin_requests: 20\n")
    with Deployments(client) as deployments:
        first = deployments.deploy("api", "fraud:1", reason="launch")
        assert first.number == 1 and first.actor == "ci"
        canary = deployments.deploy("api", "fraud:2", strategy="canary", policy=str(policy))
        assert _weights(canary.spec) == [("fraud:1", 80), ("fraud:2", 20)]
        rollout = deployments.rollout("api")
        assert rollout is not None and rollout.policy.window_s == 2 and rollout.weight == 20
        assert deployments.pause("api", reason="look").state is RolloutState.PAUSED
        assert deployments.resume("api").state is RolloutState.RUNNING
        assert deployments.promote("api", reason="fine").state is RolloutState.PROMOTED
        assert deployments.rollout("api") is None
        assert deployments.latest_rollout("api").id == rollout.id
        assert _weights(deployments.get("api").revision.spec) == [("fraud:2", 100)]

        # The same policy as a mapping, and as a Policy object.
        again = deployments.deploy(
            "api", "fraud:3", strategy=Strategy.CANARY, policy={"steps": [5, 100]}
        )
        assert _weights(again.spec) == [("fraud:2", 95), ("fraud:3", 5)]
        assert deployments.abort("api", reason="no").state is RolloutState.ABORTED
        deployments.deploy("api", "fraud:3", strategy="canary", policy=Policy(steps=(50, 100)))
        seen = deployments.get("api").revision.number
        back = deployments.rollback("api", to=1, reason="pager", expected_revision=seen)
        assert _weights(back.spec) == [("fraud:1", 100)]
        assert deployments.latest_rollout("api").state is RolloutState.ROLLED_BACK
        assert [d.name for d in deployments.list()] == ["api"]
        assert [r.number for r in deployments.revisions("api")] == list(range(1, back.number + 1))
        actions = [e.action for e in deployments.history("api")]
        assert actions.count("rollout.started") == 3 and actions[-1] == "deployment.rolled_back"
    # A shared registry stays open for its owner.
    assert client.get("fraud:1").version == 1


def test_owns_its_registry_when_given_a_url(database_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    with Deployments(url=database_url, settings=settings) as deployments:
        assert deployments.list() == []
        with pytest.raises(NotFound, match="deployment 'api' not found"):
            deployments.get("api")


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"steps": [10, 90]}, "policy field 'steps': the last step must be 100"),
        ({"window_s": -1}, "policy field 'window_s'"),
        ({"warmup_s": -1}, "policy field 'warmup_s'"),
        (
            {"gates": {"latency": {"tolerance_ms": -0.5}}},
            "policy field 'gates.latency.tolerance_ms'",
        ),
        ({"gates": {"error_rate": {"alpha": 2}}}, "policy field 'gates.error_rate.alpha'"),
        ("missing.yaml", "cannot read policy file"),
        (42, "a policy is a Policy, a mapping or a file path"),
    ],
)
def test_bad_policies_change_nothing(
    client: Registry, tmp_path: Path, policy: object, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    deployments = Deployments(client)
    deployments.deploy("api", "fraud:1")
    before = deployments.revisions("api"), deployments.history("api")
    with pytest.raises(InvalidArgument, match=message):
        deployments.deploy("api", "fraud:2", strategy="canary", policy=policy)  # type: ignore[arg-type]
    assert (deployments.revisions("api"), deployments.history("api")) == before
    assert deployments.rollout("api") is None


def test_refusals_change_nothing(client: Registry) -> None:
    deployments = Deployments(client)
    deployments.deploy("api", "fraud:1")
    deployments.deploy("api", "fraud:2", strategy="canary", policy={"steps": [10, 100]})
    before = deployments.revisions("api"), deployments.history("api")
    with pytest.raises(Conflict, match="rollout in progress"):
        deployments.deploy("api", "fraud:3", strategy="canary", policy={"steps": [10, 100]})
    with pytest.raises(NotFound, match="no revision 9"):
        deployments.rollback("api", to=9)
    with pytest.raises(Conflict, match="deployment 'api' is at revision 2, not 1: someone"):
        deployments.rollback("api", to=1, expected_revision=1)
    with pytest.raises(Conflict, match="deployment 'api' is at revision 2, not 1: someone"):
        deployments.deploy("api", "fraud:3", expected_revision=1)
    with pytest.raises(FailedPrecondition, match="served by deployment api"):
        client.archive("fraud", 2)
    with pytest.raises(InvalidArgument, match=r"weights must sum to 100, got 70 \+ 20 = 90"):
        RevisionSpec(Strategy.CANARY, (Variant("fraud", 1, 70), Variant("fraud", 2, 20)))
    with pytest.raises(InvalidArgument, match="weight must be between 0 and 100, got 120"):
        Variant("fraud", 2, 120)
    assert (deployments.revisions("api"), deployments.history("api")) == before
    assert not client.get_version("fraud", 2).archived


def test_as_policy_passes_policies_through() -> None:
    policy = Policy()
    assert as_policy(policy) is policy and as_policy(None) is None


def test_public_names() -> None:
    assert shipyard.Deployments is Deployments
    assert shipyard.Policy is Policy and shipyard.Strategy is Strategy
    assert shipyard.RolloutState is RolloutState
