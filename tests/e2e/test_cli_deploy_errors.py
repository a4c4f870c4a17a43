"""Every bad release input the CLI reaches: one readable line, the exit code of its kind, and
nothing stored changes (revisions, ledger, rollouts, versions)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from backends import SQLITE_ONLY
from typer.testing import CliRunner

from shipyard.core.errors import Unavailable
from shipyard.registry.models import VersionSpec
from shipyard.registry.service import Registry
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.progress import Rollouts
from shipyard.storage.blobs import LocalBlobStore

pytestmark = SQLITE_ONLY  # backends.py: the CLI's storage runs on both elsewhere

CHOICES = "choose one of direct, canary, ab, shadow, bluegreen"
POLICIES = {
    "good.yaml": "steps: [10, 50, 100]\nwindow_s: 5\nmin_requests: 20\n",
    "steps.yaml": "steps: [50, 10, 100]\n",
    "last.yaml": "steps: [10, 50]\n",
    "typo.yaml": "steps: [10, 100]\nwindows_s: 5\n",
    "gate.yaml": "gates:\n  latency: {quantile: 2}\n",
    "few.yaml": "min_requests: 3\n",
    "list.yaml": "- 10\n- 100\n",
    "broken.yaml": "steps: [10, 50\nwindow_s: {\n",
}


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    for name, text in POLICIES.items():
        (tmp_path / name).write_text(text)
    return {
        "SHIPYARD_HOME": str(tmp_path / "home"),
        "SHIPYARD_DATABASE_URL": database_url,
        "SHIPYARD_ACTOR": "ops",
    }


@pytest.fixture
def store(
    open_registry: Callable[..., Registry], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Registry:
    """fraud:1..3 READY, fraud:4 FAILED, and deployment `d` routing to fraud:1."""
    registry = open_registry()
    path = tmp_path / "m.onnx"
    for index in range(3):
        path.write_bytes(b"model %d" % index)
        registry.register_version("fraud", {"model.onnx": path}, VersionSpec(flavor="onnx"))

    def broken(self: LocalBlobStore, source: Path) -> None:
        raise Unavailable("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(LocalBlobStore, "put_file", broken)
        with pytest.raises(Unavailable):
            registry.register_version("fraud", {"model.onnx": path}, VersionSpec(flavor="onnx"))
    Deployments(registry).deploy("d", "fraud:1", reason="launch")
    return registry


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    from shipyard.cli import app

    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def state(store: Registry, env: dict[str, str]) -> dict[str, Any]:
    """Everything a refused command must leave as it was."""
    deployments = Deployments(store)
    code, shown, err = run(env, "deployments", "show", "d", "--json")
    assert code == 0, err
    return {
        "show": json.loads(shown),
        "names": [d.name for d in deployments.list()],
        "revisions": deployments.revisions("d"),
        "ledger": [(e.id, e.action) for e in store.ledger()],
        "rollouts": Rollouts(deployments).running(),
        "versions": [(v.version, v.status, v.archived) for v in store.list_versions("fraud")],
    }


def expect_refused(
    env: dict[str, str], args: list[str], exit_code: int, fragment: str, *, tmp: Path
) -> None:
    argv = [a.replace("{tmp}", str(tmp)) for a in args]
    code, out, err = run(env, *argv)
    assert code == exit_code, (out, err)
    # Rich wraps at the runner's 80 columns; the message itself is one line.
    assert err.startswith("error (") and fragment in " ".join(err.split()), err
    assert out == ""


@pytest.mark.parametrize(
    ("args", "exit_code", "fragment"),
    [
        (["deploy", "d", "--model", "fraud:9"], 4, "model 'fraud' has no version 9"),
        (["deploy", "d", "--model", "ghost"], 4, "model 'ghost' not found"),
        (["deploy", "d", "--model", "fraud@production"], 4, "has no alias 'production'"),
        (["deploy", "d", "--model", "fraud:4"], 6, "fraud:4 is FAILED"),
        (["deploy", "d", "--model", "fraud:x"], 3, "fraud:x"),
        (["deploy", "../etc", "--model", "fraud:2"], 3, "'../etc'"),
        (["deploy", "d", "-m", "fraud:2", "--strategy", "rainbow"], 3, f"'rainbow'; {CHOICES}"),
        (["deploy", "d", "-m", "fraud:2", "--strategy", "canary", "--weight", "100"], 3,
         "weight must be an integer between 1 and 99, got 100"),
        (["deploy", "d", "-m", "fraud:2", "--strategy", "ab", "--weight", "0"], 3,
         "between 1 and 99, got 0"),
        (["deploy", "d", "-m", "fraud:2", "--strategy", "canary", "--weight", "-5"], 3,
         "between 1 and 99, got -5"),
        (["deploy", "d", "-m", "fraud:2", "--weight", "10"], 3, "--weight applies to canary"),
        (["deploy", "d", "-m", "fraud:1", "--strategy", "canary"], 6, "already the live version"),
        (["deploy", "d", "-m", "fraud:2", "--sticky-field", "user"], 3, "--sticky-field applies"),
        (["deploy", "d", "-m", "fraud:2", "--strategy", "canary", "--policy", "{tmp}/nope.yaml"],
         3, "cannot read policy file"),
        (["deploy", "d", "-m", "fraud:2", "--strategy", "canary", "--policy", "{tmp}/broken.yaml"],
         3, "is not valid YAML"),
        (["deploy", "d", "-m", "fraud:2", "--strategy", "canary", "--policy", "{tmp}/steps.yaml"],
         3, "policy field 'steps': steps must increase"),
        (["deploy", "d", "-m", "fraud:2", "--strategy", "canary", "--policy", "{tmp}/last.yaml"],
         3, "policy field 'steps': the last step must be 100"),
        (["deploy", "d", "-m", "fraud:2", "--strategy", "canary", "--policy", "{tmp}/typo.yaml"],
         3, "policy field 'windows_s'"),
        (["deploy", "d", "-m", "fraud:2", "--strategy", "canary", "--policy", "{tmp}/gate.yaml"],
         3, "policy field 'gates.latency.quantile'"),
        (["deploy", "d", "-m", "fraud:2", "--strategy", "canary", "--policy", "{tmp}/few.yaml"],
         3, "policy field 'min_requests'"),
        (["deploy", "d", "-m", "fraud:2", "--strategy", "canary", "--policy", "{tmp}/list.yaml"],
         3, "a rollout policy is a mapping"),
        (["deploy", "d", "-m", "fraud:2", "--strategy", "ab", "--policy", "{tmp}/good.yaml"], 3,
         "a rollout policy needs --strategy canary"),
        (["deploy", "d", "-m", "fraud:2", "--strategy", "canary", "--weight", "20", "--policy",
          "{tmp}/good.yaml"], 3, "either --weight or --policy"),
        (["deploy", "d", "-m", "fraud:2", "--reason", "x" * 10_001], 3,
         "reason is 10001 characters long; the limit is 10000"),
        (["rollback", "d"], 6, "deployment 'd' has no earlier revision"),
        (["rollback", "d", "--to", "7"], 4, "deployment 'd' has no revision 7"),
        (["rollback", "d", "--to", "1"], 6, "revision 1 is already current"),
        (["rollback", "d", "--to", "0"], 3, "revision must be a positive integer, got 0"),
        (["rollback", "ghost"], 4, "deployment 'ghost' not found"),
        (["rollback", "d", "--to", "1", "--expected-revision", "2"], 5,
         "deployment 'd' is at revision 1, not 2: someone changed it; look again before rolling back"),
        (["rollback", "d", "--expected-revision", "-1"], 3,
         "expected revision must be a non-negative integer, got -1"),
        (["deploy", "d", "-m", "fraud:2", "--expected-revision", "0"], 5,
         "deployment 'd' is at revision 1, not 0: someone changed it; look again before deploying"),
        (["rollout", "pause", "d"], 6, "deployment 'd' has no rollout in progress"),
        (["rollout", "promote", "d"], 6, "deployment 'd' has no rollout in progress"),
        (["rollout", "abort", "d", "--reason", "x"], 6, "has no rollout in progress"),
        (["rollout", "resume", "d"], 6, "has no rollout in progress"),
        (["rollout", "promote", "d", "--expected-revision", "3"], 5,
         "deployment 'd' is at revision 1, not 3: someone changed it; look again before promoting the rollout"),
        (["rollout", "pause", "d", "--expected-revision", "-3"], 3, "expected revision must be"),
        (["rollout", "status", "d"], 4, "deployment 'd' has had no rollout"),
        (["deployments", "show", "ghost"], 4, "deployment 'ghost' not found"),
        (["deployments", "history", "ghost"], 4, "deployment 'ghost' not found"),
        (["deployments", "revisions", "../d"], 3, "'../d'"),
        (["archive", "fraud", "1"], 6, "fraud:1 is served by deployment d"),
        (["ab", "report", "ghost"], 4, "deployment 'ghost' not found"),
        (["ab", "report", "d", "--since", "yesterday"], 3, "--since must be an ISO date-time"),
    ],
)  # fmt: skip
def test_refused_and_nothing_changes(
    env: dict[str, str],
    store: Registry,
    tmp_path: Path,
    args: list[str],
    exit_code: int,
    fragment: str,
) -> None:
    before = state(store, env)
    expect_refused(env, args, exit_code, fragment, tmp=tmp_path)
    assert state(store, env) == before


def test_a_canary_needs_a_live_deployment(env: dict[str, str], store: Registry) -> None:
    before = state(store, env)
    code, out, err = run(env, "deploy", "new", "-m", "fraud:2", "--strategy", "canary")
    assert code == 6 and "--strategy direct first" in " ".join(err.split()), (out, err)
    assert state(store, env) == before  # `new` was not created
    code, _, err = run(env, "deployments", "show", "new")
    assert code == 4 and "deployment 'new' not found" in err


def test_one_rollout_at_a_time(env: dict[str, str], store: Registry, tmp_path: Path) -> None:
    policy = str(tmp_path / "good.yaml")
    code, _, err = run(
        env, "deploy", "d", "-m", "fraud:2", "--strategy", "canary", "--policy", policy
    )
    assert code == 0, err
    before = state(store, env)
    assert [r.candidate.ref for r in before["rollouts"]] == ["fraud:2"]
    for args in (
        ["deploy", "d", "-m", "fraud:3", "--strategy", "canary", "--policy", policy],
        ["deploy", "d", "-m", "fraud:3"],  # any deploy: the rollout owns the split until it ends
    ):
        expect_refused(env, args, 5, "deployment 'd' has a rollout in progress", tmp=tmp_path)
        assert state(store, env) == before
    # Routed to by the rollout: neither side can be archived while it runs.
    expect_refused(env, ["archive", "fraud", "2"], 6, "served by deployment d", tmp=tmp_path)
    code, _, err = run(env, "rollout", "pause", "d")
    assert code == 0, err
    expect_refused(env, ["rollout", "pause", "d"], 6, "is already paused", tmp=tmp_path)
    code, _, err = run(env, "rollout", "abort", "d", "--reason", "changed my mind")
    assert code == 0, err
    code, out, err = run(env, "rollout", "status", "d")
    assert code == 0 and "rollout 1 aborted" in out and "ended by hand" in out, err
    code, _, err = run(
        env, "deploy", "d", "-m", "fraud:3", "--strategy", "canary", "--policy", policy
    )
    assert code == 0, err  # the next rollout may start once the first ended
