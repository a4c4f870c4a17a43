"""Deployments, rollouts and feedback through the management API against a real
`shipyard server`: every bad request (missing or FAILED versions, bad weights, unknown
strategies, bad policies, a second rollout, duplicate feedback) is refused with a message
naming the problem, and leaves the deployments as they were."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from serve_support import open_registry
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sqlalchemy import text
from test_server import ControlPlane, control_plane, module_database, ok

from shipyard.storage.database import Database

pytestmark = pytest.mark.slow

POLICY = {"steps": [10, 50, 100], "window_s": 3600, "min_requests": 100}


@dataclass
class Api:
    server: ControlPlane
    token: str  # a deploy key (read included)
    admin: str

    def client(self) -> httpx.Client:
        return self.server.client(self.token)


@pytest.fixture(
    scope="module",
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api-deployments")
    X, y = make_classification(100, 4, random_state=0)
    X = X.astype(np.float32)
    with module_database(request.param, root) as url:
        with open_registry(root / "home", url) as registry:
            for c in (1.0, 0.5, 0.1, 0.05):  # fraud:1..4; 4 is made FAILED below
                registry.register(LogisticRegression(C=c).fit(X, y), "fraud", sample_input=X[:5])
        with Database(url) as database, database.write() as session:
            session.execute(text("UPDATE model_versions SET status = 'FAILED' WHERE version = 4"))
        # The controller is off: these tests drive rollouts by hand and must not race it.
        with control_plane(root / "home", url, root / "logs", "--no-controller") as server:
            assert server.admin_token is not None
            with server.client(server.admin_token) as admin:
                body = {"name": "ci", "scopes": ["deploy"]}
                token = ok(admin.post("/keys", json=body), 201)["token"]
            yield Api(server, token, server.admin_token)


def _refused(http: httpx.Client, body: dict[str, Any], status: int, text_: str) -> None:
    r = http.post("/deployments", json=body)
    assert r.status_code == status, (body, r.text)
    assert text_ in r.json()["error"], (body, r.json())


def test_bad_deploys_are_refused_and_change_nothing(api: Api) -> None:
    with api.client() as http:
        ok(http.post("/deployments", json={"name": "bad", "model": "fraud:1"}), 201)
        before = ok(http.get("/deployments/bad/revisions"))
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"model": "nope:1"}, 404, "model 'nope' not found"),
            ({"model": "fraud:9"}, 404, "9"),
            ({"model": "fraud:4"}, 412, "FAILED"),
            ({"model": "fraud:2", "strategy": "yolo"}, 400, "unknown strategy 'yolo'; choose one of"),
            ({"model": "fraud:2", "strategy": "canary", "weight": 150}, 400, "weight"),
            ({"model": "fraud:2", "strategy": "canary", "weight": 0}, 400, "weight"),
            ({"model": "fraud:2", "strategy": "direct", "weight": 10}, 400, "weight"),
            ({"model": "fraud:2", "strategy": "canary", "policy": {"steps": [50, 10]}}, 400,
             "policy field 'steps'"),
            ({"model": "fraud:2", "strategy": "canary", "policy": {"stepz": [10]}}, 400,
             "policy field 'stepz'"),
            ({"model": "fraud:2", "strategy": "canary", "policy": {"window_s": -1}}, 400,
             "policy field 'window_s'"),
            ({"model": "fraud:2", "strategy": "canary", "policy": {"steps": [10, 90]}}, 400,
             "the last step must be 100"),
            ({"model": "fraud:2", "strategy": "direct", "policy": POLICY}, 400, "canary"),
            ({"model": "fraud:1", "strategy": "canary"}, 412, "already the live version"),
            ({"model": "fraud:2", "expected_revision": 7}, 409,
             "deployment 'bad' is at revision 1, not 7: someone changed it"),
            ({"model": "fraud:2", "expected_revision": -1}, 400, "got -1"),
        ]  # fmt: skip
        for extra, status, message in cases:
            _refused(http, {"name": "bad", **extra}, status, message)
        r = http.post("/deployments", json={"name": "bad", "model": "fraud:2", "extra": 1})
        assert r.status_code == 422 and "extra" in r.json()["error"]
        r = http.post("/deployments", json={"name": "bad", "model": "fraud:2", "weight": "x"})
        assert r.status_code == 422 and "weight" in r.json()["error"]
        assert ok(http.get("/deployments/bad/revisions")) == before
        # A canary needs something live to split from.
        _refused(http, {"name": "fresh", "model": "fraud:2", "strategy": "canary"}, 412, "live")
        assert http.get("/deployments/fresh").status_code == 404


def test_rollout_lifecycle_and_one_rollout_at_a_time(api: Api) -> None:
    with api.client() as http:
        first = ok(http.post("/deployments", json={"name": "web", "model": "fraud:1"}), 201)
        assert first["number"] == 1 and first["actor"] == f"key:{api.token[3:15]}"
        assert ok(http.get("/deployments/web/rollout")) == {"rollout": None}
        body = {"name": "web", "model": "fraud:2", "strategy": "canary", "policy": POLICY}
        canary = ok(http.post("/deployments", json=body), 201)
        weights = [(v["version"], v["weight"]) for v in canary["spec"]["variants"]]
        assert weights == [(1, 90), (2, 10)]
        rollout = ok(http.get("/deployments/web/rollout"))["rollout"]
        assert (rollout["state"], rollout["step"], rollout["weight"]) == ("running", 0, 10)
        # A second rollout (or any deploy) while one is in progress is a conflict.
        again = {"name": "web", "model": "fraud:3", "strategy": "canary", "policy": POLICY}
        _refused(http, again, 409, "rollout in progress")
        _refused(http, {"name": "web", "model": "fraud:3"}, 409, "rollout in progress")
        assert ok(http.get("/deployments/web"))["revision"]["number"] == 2
        paused = ok(http.post("/deployments/web/rollout/pause", json={"reason": "look"}))
        assert paused["state"] == "paused"
        r = http.post("/deployments/web/rollout/pause")
        assert r.status_code == 412 and "already paused" in r.json()["error"]
        assert ok(http.post("/deployments/web/rollout/resume"))["state"] == "running"
        assert http.post("/deployments/web/rollout/explode").status_code == 422
        aborted = ok(http.post("/deployments/web/rollout/abort", json={"reason": "enough"}))
        assert (aborted["state"], aborted["active"]) == ("aborted", False)
        live = ok(http.get("/deployments/web"))["revision"]
        assert [v["version"] for v in live["spec"]["variants"]] == [1]
        r = http.post("/deployments/web/rollout/promote")
        assert r.status_code == 412 and "no rollout in progress" in r.json()["error"]
        # Promote a fresh canary by hand, then roll back to revision 1's routing.
        ok(http.post("/deployments", json=body), 201)
        assert ok(http.post("/deployments/web/rollout/promote"))["state"] == "promoted"
        live = ok(http.get("/deployments/web"))["revision"]
        assert [v["version"] for v in live["spec"]["variants"]] == [2]
        back = ok(http.post("/deployments/web/rollback", json={"to": 1, "reason": "oops"}))
        assert [v["version"] for v in back["spec"]["variants"]] == [1]
        r = http.post("/deployments/web/rollback", json={"to": 99})
        assert r.status_code == 404 and "no revision 99" in r.json()["error"]
        r = http.post("/deployments/web/rollback", json={"to": 0})
        assert r.status_code == 400
        # Decided on a revision that is no longer current: 409, and nothing changes.
        seen = back["number"] - 1
        before = (
            ok(http.get("/deployments/web/revisions")),
            ok(http.get("/deployments/web/history")),
        )
        r = http.post("/deployments/web/rollback", json={"to": 2, "expected_revision": seen})
        assert r.status_code == 409, r.text
        assert r.json()["error"] == (
            f"deployment 'web' is at revision {back['number']}, not {seen}: "
            "someone changed it; look again before rolling back"
        )
        after = ok(http.get("/deployments/web/revisions")), ok(http.get("/deployments/web/history"))
        assert after == before
        fresh = {"to": 2, "expected_revision": back["number"], "reason": "seen"}
        back = ok(http.post("/deployments/web/rollback", json=fresh))
        assert [v["version"] for v in back["spec"]["variants"]] == [1, 2]
        numbers = [r["number"] for r in ok(http.get("/deployments/web/revisions"))]
        assert numbers == sorted(numbers) and numbers[-1] == back["number"]
        actions = [e["action"] for e in ok(http.get("/deployments/web/history"))]
        assert "rollout.started" in actions and "rollout.aborted" in actions
        assert actions[-1] == "deployment.rolled_back"
        r = http.get("/ledger", params={"deployment": "web", "action": "rollout.promoted"})
        assert [e["deployment"] for e in ok(r)] == ["web"]
        assert http.get("/deployments/nope/history").status_code == 404
        assert http.post("/deployments/nope/rollback").status_code == 404
        assert http.get("/deployments/nope/rollout").status_code == 404


def test_feedback_is_stored_once_per_request_id(api: Api) -> None:
    with api.server.client(api.admin) as http:
        items = [{"request_id": "fb-1", "value": 1}, {"request_id": "fb-2", "value": "fraud"}]
        result = ok(http.post("/feedback", json=items))
        assert result == {
            "accepted": 2, "unmatched": ["fb-1", "fb-2"], "unchanged": 0, "unmatched_keys": []
        }  # fmt: skip
        # The same values again are a safe retry; a different value for fb-2 is a conflict.
        assert ok(http.post("/feedback", json=items))["unchanged"] == 2
        r = http.post("/feedback", json=[{"request_id": "fb-3", "value": 0},
                                         {"request_id": "fb-2", "value": "legit"}])  # fmt: skip
        assert r.status_code == 409 and "'fb-2'" in r.json()["error"]
        r = http.post("/feedback", json=[{"request_id": "fb-4", "value": 1}] * 2)
        assert r.status_code == 409 and "'fb-4'" in r.json()["error"]
        # Nothing of a refused batch was stored: fb-3 and fb-4 are still free.
        ok(http.post("/feedback", json=[{"request_id": "fb-3", "value": 0}]))
        ok(http.post("/feedback", json=[{"request_id": "fb-4", "value": 0}]))
        too_many = [{"request_id": f"n{i}", "value": 1} for i in range(1001)]
        r = http.post("/feedback", json=too_many)
        assert r.status_code == 422 and "1000" in r.json()["error"]
        for bad in ([], [{"request_id": "", "value": 1}], [{"request_id": "a b", "value": 1}],
                    [{"request_id": "x", "value": {"deep": 1}}], {"request_id": "x"}):  # fmt: skip
            assert http.post("/feedback", json=bad).status_code == 422, bad
        r = http.post("/feedback", content=b"[{\"request_id\": \"x\", \"value\": NaN}]",
                      headers={"content-type": "application/json"})  # fmt: skip
        assert r.status_code == 422
        r = http.post("/feedback", json=[{"request_id": "n0", "value": 1}])
        expected = {"accepted": 1, "unmatched": ["n0"], "unchanged": 0, "unmatched_keys": []}
        assert ok(r) == expected  # none of the 1001


def test_ab_report_of_the_current_revision(api: Api) -> None:
    with api.client() as http:
        ok(http.post("/deployments", json={"name": "split", "model": "fraud:1"}), 201)
        body = {"name": "split", "model": "fraud:2", "strategy": "ab", "weight": 30}
        ok(http.post("/deployments", json=body), 201)
        report = ok(http.get("/deployments/split/ab"))
        assert (report["deployment"], report["strategy"]) == ("split", "ab")
        rows = [(v["ref"], v["role"], v["weight"], v["requests"]) for v in report["variants"]]
        assert rows == [("fraud:1", "primary", 70, 0), ("fraud:2", "candidate", 30, 0)]
        later = ok(http.get("/deployments/split/ab", params={"since": "2026-01-01T00:00:00Z"}))
        assert later["since"] is not None
        r = http.get("/deployments/split/ab", params={"since": "2026-01-01T00:00:00"})
        assert r.status_code == 400 and "timezone" in r.json()["error"]
        assert http.get("/deployments/nope/ab").status_code == 404
    with api.server.client() as anonymous:
        assert anonymous.get("/deployments/split/ab").status_code == 401
