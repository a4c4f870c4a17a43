"""The release CLI as a user drives it: deploy, canary with a policy, watch, take over, roll
back — and every bad input refused with one line and its exit code, changing nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from backends import SQLITE_ONLY
from sqlalchemy import insert
from typer.testing import CliRunner

from shipyard.core.errors import Unavailable
from shipyard.registry.models import VersionSpec
from shipyard.registry.service import Registry
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.progress import Decision, Rollouts
from shipyard.rollouts.stats import BUCKETS, bucket_of
from shipyard.storage.blobs import LocalBlobStore
from shipyard.storage.deployments_table import RouteStatsRow
from shipyard.storage.tables import utcnow

pytestmark = SQLITE_ONLY  # backends.py: the CLI's storage runs on both elsewhere

POLICY = "steps: [10, 50, 100]\nwindow_s: 5\nmin_requests: 20\n"


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "SHIPYARD_HOME": str(tmp_path / "home"),
        "SHIPYARD_DATABASE_URL": database_url,
        "SHIPYARD_ACTOR": "ops",
    }


@pytest.fixture
def store(
    open_registry: Callable[..., Registry], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Registry:
    """fraud:1..3 READY (stand-in ONNX bytes: deploying never reads them), fraud:4 FAILED."""
    registry = open_registry()
    path = tmp_path / "m.onnx"
    for index in range(3):
        path.write_bytes(b"model %d" % index)
        registry.register_version("fraud", {"model.onnx": path}, VersionSpec(flavor="onnx"))

    def broken(self: LocalBlobStore, source: Path) -> None:
        raise Unavailable("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(LocalBlobStore, "put_file", broken)
        path.write_bytes(b"model 3")
        with pytest.raises(Unavailable):
            registry.register_version("fraud", {"model.onnx": path}, VersionSpec(flavor="onnx"))
    return registry


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    from shipyard.cli import app

    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def ok_json(env: dict[str, str], *args: str) -> Any:
    code, out, err = run(env, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def weights(spec: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(v["model"], v["version"], v["weight"]) for v in spec["variants"]]


def test_release_cycle(env: dict[str, str], store: Registry, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    first = ok_json(env, "deploy", "fraud-api", "--model", "fraud:1", "--reason", "launch")
    assert first["revision"]["number"] == 1 and first["rollout"] is None
    assert weights(first["revision"]["spec"]) == [("fraud", 1, 100)]

    code, out, err = run(
        env, "deploy", "fraud-api", "-m", "fraud:2", "--strategy", "canary", "--policy", str(policy)
    )
    assert code == 0, err
    text = " ".join(out.split())
    assert "revision 2: canary fraud:1 90% · fraud:2 10%" in text
    assert "running: fraud:2 over fraud:1, at step 1/3 (10%; steps 10% → 50% → 100%)" in text

    shown = ok_json(env, "deployments", "show", "fraud-api")
    assert shown["revision"]["number"] == 2 and shown["rollout"]["state"] == "running"
    assert shown["rollout"]["policy"]["window_s"] == 5 and shown["rollout"]["weight"] == 10
    code, out, _ = run(env, "deployments", "show", "fraud-api")
    assert code == 0 and "fraud:2 10%" in out and "rollout 1 running" in " ".join(out.split())

    paused = ok_json(env, "rollout", "pause", "fraud-api", "--reason", "look first")
    assert paused["state"] == "paused"
    assert ok_json(env, "rollout", "resume", "fraud-api")["state"] == "running"

    # The controller's decision, as the control plane applies it: reason and numbers kept.
    rollouts = Rollouts(Deployments(store))
    rollout = rollouts.current("fraud-api")
    assert rollout is not None
    numbers = {
        "error_rate": {"outcome": "pass", "p_value": 0.71, "candidate": 0.0},
        "requests": {"baseline": 60, "candidate": 40},
        "window_s": 5.25,
    }
    decision = Decision(datetime.now(UTC), 0, 10, "advance", "all gates passed", numbers)
    rollouts.decide(rollout.id, decision, expected_step=0)

    code, out, err = run(env, "rollout", "status", "fraud-api")
    assert code == 0, err
    text = " ".join(out.split())
    assert "at step 2/3 (50%" in text and "advance" in text and "all gates passed" in text
    for part in ("error_rate pass p=0.71", "requests(baseline=60, candidate=40)", "window_s=5.25"):
        assert part in text  # the database may keep the keys in another order

    promoted = ok_json(env, "rollout", "promote", "fraud-api", "--reason", "looks good")
    assert promoted["state"] == "promoted" and len(promoted["decisions"]) == 1
    assert weights(ok_json(env, "deployments", "show", "fraud-api")["revision"]["spec"]) == [
        ("fraud", 2, 100)
    ]

    code, out, err = run(
        env, "rollback", "fraud-api", "--to", "1", "--reason", "pager", "--expected-revision", "4"
    )
    assert code == 0, err
    assert "rolled back: deployment fraud-api revision 5: direct fraud:1 100%" in out

    revisions = ok_json(env, "deployments", "revisions", "fraud-api")
    assert [r["number"] for r in revisions] == [1, 2, 3, 4, 5]
    assert [weights(r["spec"]) for r in revisions][2] == [("fraud", 1, 50), ("fraud", 2, 50)]
    history = ok_json(env, "deployments", "history", "fraud-api")
    assert [e["action"] for e in history] == [
        "deployment.deployed",
        "deployment.deployed",
        "rollout.started",
        "rollout.paused",
        "rollout.resumed",
        "rollout.advanced",
        "rollout.promoted",
        "deployment.rolled_back",
    ]
    advanced = history[5]
    assert advanced["reason"] == "all gates passed" and advanced["details"]["numbers"] == numbers
    assert history[0]["reason"] == "launch" and history[-1]["details"]["to"] == 1
    assert [e["actor"] for e in history].count("ops") == 7  # the decision was the "controller's"
    code, out, _ = run(env, "deployments", "history", "fraud-api")
    text = " ".join(out.split())
    assert code == 0 and "rollout.advanced — all gates passed" in text
    assert "revision 3, canary fraud:1 50% · fraud:2 50%, step 1 at 10%" in text
    assert "error_rate pass p=0.71" in text

    listed = ok_json(env, "deployments", "list")
    assert [(d["name"], d["revision"]["number"]) for d in listed] == [("fraud-api", 5)]


def test_strategies(env: dict[str, str], store: Registry) -> None:
    ok_json(env, "deploy", "d", "--model", "fraud:1")
    shadow = ok_json(env, "deploy", "d", "--model", "fraud:2", "--strategy", "shadow")
    assert shadow["revision"]["spec"]["shadow"]["version"] == 2
    ab = ok_json(env, "deploy", "d", "-m", "fraud:2", "--strategy", "ab", "--sticky-field", "user")[
        "revision"
    ]["spec"]
    assert weights(ab) == [("fraud", 1, 50), ("fraud", 2, 50)] and ab["sticky_field"] == "user"
    blue = ok_json(env, "deploy", "d", "-m", "fraud:3", "--strategy", "bluegreen")
    assert weights(blue["revision"]["spec"]) == [("fraud", 3, 100), ("fraud", 1, 0)]
    canary = ok_json(env, "deploy", "e", "-m", "fraud:1")
    assert canary["revision"]["number"] == 1
    weighted = ok_json(
        env, "deploy", "e", "-m", "fraud:3", "--strategy", "canary", "--weight", "30"
    )
    assert weights(weighted["revision"]["spec"]) == [("fraud", 1, 70), ("fraud", 3, 30)]
    code, out, _ = run(env, "deployments", "list")
    rows = [line for line in out.splitlines() if line.startswith("│ d ")]
    assert code == 0 and "bluegreen fraud:3" in rows[0] and "fraud:1 0%" in out, out


def test_empty_list(env: dict[str, str], store: Registry) -> None:
    code, out, _ = run(env, "deployments", "list")
    assert code == 0 and "no deployments yet" in out
    assert ok_json(env, "deployments", "list") == []


def test_ab_report(env: dict[str, str], store: Registry) -> None:
    ok_json(env, "deploy", "d", "--model", "fraud:1")
    ok_json(env, "deploy", "d", "--model", "fraud:2", "--strategy", "ab")
    # Statistics as a data plane flushes them, for revision 2 (50/50).
    rows = [
        {"deployment": "d", "revision": 2, "model": "fraud", "version": version,
         "role": role, "plane": "test:1", "at": utcnow(), "requests": 200, "errors": errors,
         "latency": [200 if i == bucket_of(0.01) else 0 for i in range(BUCKETS)],
         "predictions": [], "shadow_total": 0, "shadow_agree": 0}
        for version, role, errors in ((1, "primary", 2), (2, "candidate", 10))
    ]  # fmt: skip
    with store.database.write() as session:
        session.execute(insert(RouteStatsRow), rows)
    report = ok_json(env, "ab", "report", "d")
    assert report["revision"] == 2 and report["strategy"] == "ab"
    primary, candidate = report["variants"]
    assert (primary["ref"], primary["requests"], primary["errors"]) == ("fraud:1", 200, 2)
    assert (candidate["ref"], candidate["errors"], candidate["weight"]) == ("fraud:2", 10, 50)
    assert candidate["error_rate_vs_primary"]["difference"] == pytest.approx(0.04)
    code, out, err = run(env, "ab", "report", "d", "--since", "2000-01-01T00:00")
    assert code == 0, err
    assert "d revision 2 (ab)" in out and "fraud:2" in out and "candidate" in out
    assert "+4.00%" in " ".join(out.split())


def test_free_text_is_printed_as_given(env: dict[str, str], store: Registry) -> None:
    """A reason is free text: rich markup in it is shown, not interpreted (nor a crash)."""
    reason = "[/x] [bold]why"
    ok_json(env, "deploy", "d", "--model", "fraud:1", "--reason", reason)
    for args in (["deployments", "history", "d"], ["deployments", "show", "d"]):
        code, out, err = run(env, *args)
        assert code == 0 and reason in out, (out, err)
    code, out, err = run(env, "deployments", "revisions", "d")
    assert code == 0 and "[/x]" in out, (out, err)
