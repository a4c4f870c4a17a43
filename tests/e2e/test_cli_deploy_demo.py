"""The demo's release step for real: a `shipyard serve --deployment` process, traffic through
it, the rollout controller judging windows on accelerated time, promotion, ledger printed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from shipyard.app.settings import Settings
from shipyard.cli.demo_serve import release
from shipyard.client import Registry
from shipyard.client.deployments import Deployments
from shipyard.rollouts.progress import RolloutState


def test_release_promotes_a_healthy_canary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The data plane is a child process: it finds the registry through the environment.
    home = tmp_path / "home"
    monkeypatch.setenv("SHIPYARD_HOME", str(home))
    monkeypatch.delenv("SHIPYARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("SHIPYARD_BLOB_URL", raising=False)
    X, y = make_classification(300, 4, random_state=1)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(4)])
    with Registry(settings=Settings(home=home)) as registry:
        for model in (DecisionTreeClassifier(max_depth=2), LogisticRegression()):
            registry.register(model.fit(frame, y), "clf", sample_input=frame.head(20))
        final = release(registry, "api", "clf", 1, 2, frame.head(50))
        releases = Deployments(registry)
        assert final.state is RolloutState.PROMOTED, releases.history("api")[-1].reason
        spec = releases.get("api").revision.spec
        assert [(v.ref, v.weight) for v in spec.variants] == [("clf:2", 100)]
        decisions = [e for e in releases.history("api") if e.action.startswith("rollout.")]
        assert [e.action for e in decisions][0] == "rollout.started"
        assert decisions[-1].action == "rollout.promoted"
        for entry in decisions[1:]:
            counts = entry.details["numbers"]["requests"]
            assert min(counts["baseline"], counts["candidate"]) >= 40  # the policy's minimum
    out = capsys.readouterr().out
    assert "deployment api revision 2: canary clf:1 75% · clf:2 25%" in out
    assert "the rollout's decisions, from the ledger:" in out and "rollout.promoted" in out
    assert "clf:1 " in out.split("requests answered per version:")[1]
    assert "rollout promoted; now deployment api revision" in out and "direct clf:2 100%" in out
    assert "SIGTERM → drained and exited with 0" in out
