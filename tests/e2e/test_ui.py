"""The web UI in headless Chromium (Debian's, driven by Playwright) against a real
`shipyard server`: sign in, browse models and versions, see a deployment's split, rollout and
chart, act on a rollout and see the API follow; read-only keys, CSRF, revoked keys, unknown
addresses and hostile text. Every page load may only talk to the server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, Request, sync_playwright
from serve_support import open_registry
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from test_server import ControlPlane, control_plane, module_database, ok

from shipyard.core.lineage import Lineage, fingerprint
from shipyard.jobs.retrain.config import parse_config
from shipyard.jobs.retrain.pipelines import Pipelines, RunStatus
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.policy import parse_policy
from shipyard.rollouts.progress import Decision, Rollouts
from shipyard.rollouts.stats import bucket_of, empty_latency
from shipyard.storage.deployments_table import RouteStatsRow

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
HOSTILE = "Card fraud <img src=x onerror=alert(1)><script>alert(2)</script>"
POLICY = {"steps": [10, 50, 100], "window_s": 3600, "min_requests": 100}
TIMEOUT_MS = 15_000


@dataclass
class Ui:
    server: ControlPlane
    admin: str
    deploy: str  # a deploy key's token
    read: str  # a read-only key's token
    home: Path
    database: str

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, token: str | None = None) -> httpx.Client:
        return self.server.client(token or self.admin)


def _seed(home: Path, url: str) -> None:
    """fraud:1..3 (a hostile model description, lineage, metrics, aliases) and deployment
    `web` with a canary that held once and then advanced to 50 %."""
    X, y = make_classification(200, 4, random_state=0)
    X = X.astype(np.float32)
    with open_registry(home, url) as registry:
        for i, c in enumerate((1.0, 0.5, 0.1), start=1):
            lineage = Lineage(
                data=fingerprint(X), parent_version=i - 1 or None, run_id=f"run-{i}",
                code_version=f"abc{i}",
            )  # fmt: skip
            registry.register(
                LogisticRegression(C=c).fit(X, y), "fraud", sample_input=X[:5],
                metrics={"auc": 0.9 + i / 100}, lineage=lineage, description=f"<b>v{i}</b>",
            )  # fmt: skip
        registry.register(LogisticRegression().fit(X, y), "churn", sample_input=X[:5])
        store = registry.store
        store.update_model("fraud", description=HOSTILE, tags={"team": "<i>risk</i>"})
        store.set_alias("fraud", "production", 1)
        store.set_alias("fraud", "production", 2, reason="promoted after review")
        store.set_alias("fraud", "staging", 1)
        deployments = Deployments(store)
        deployments.deploy("web", "fraud:1")
        deployments.deploy("web", "fraud:2", strategy="canary", policy=parse_policy(POLICY))
        rollouts = Rollouts(deployments)
        rollout = rollouts.current("web")
        assert rollout is not None
        numbers = {"requests": 240, "error_rate": 0.004, "baseline_error_rate": 0.005}
        for outcome, reason, step in (("hold", "too few requests", 0), ("advance", "healthy", 0)):
            decision = Decision(datetime.now(UTC), step, 10, outcome, reason, numbers)
            rollouts.decide(rollout.id, decision, expected_step=step)
        # A retraining pipeline with one finished run (its log written where runs keep them).
        pipelines = Pipelines(store)
        config = parse_config({"label": "y", "sources": [{"path": "train.parquet"}]})
        pipelines.register("fraud-weekly", model="fraud", entry="train:fit", config=config)
        run = pipelines.start_run("fraud-weekly", "schedule", {"cron": "0 3 * * 1"})
        log = home / "run-1.log"
        log.write_text("epoch 1 <script>alert(3)</script>\nvalidation: candidate beats champion\n")
        pipelines.update_run(run.id, candidate_version=3, log_path=str(log))
        verdict = {"verdict": "passed", "champion_auc": 0.91, "candidate_auc": 0.93}
        pipelines.finish_run(run.id, RunStatus.SUCCEEDED, result=verdict)
        # What data planes would have recorded for the live revision (#3): the A/B card.
        latency = empty_latency()
        latency[bucket_of(0.003)] = 1000
        with store.database.write() as session:
            for version, role, requests, errors in (
                (1, "primary", 1200, 6),
                (2, "candidate", 1000, 2),
            ):
                session.add(RouteStatsRow(
                    deployment="web", revision=3, model="fraud", version=version, role=role,
                    plane="test", at=datetime.now(UTC), requests=requests, errors=errors,
                    latency=latency, predictions=[], shadow_total=0, shadow_agree=0,
                ))  # fmt: skip


@pytest.fixture(
    scope="module",
    params=["sqlite"],  # backends.py: the API's storage runs on both in other tests
)
def ui(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    root = tmp_path_factory.mktemp("ui")
    with module_database(request.param, root) as url:
        _seed(root / "home", url)
        # No controller: the tests drive rollouts and must not race it.
        with control_plane(root / "home", url, root / "logs", "--no-controller") as server:
            assert server.admin_token is not None
            with server.client(server.admin_token) as admin:
                tokens = {
                    scope: ok(admin.post("/keys", json={"name": f"ui-{scope}", "scopes": [scope]}), 201)["token"]
                    for scope in ("deploy", "read")
                }  # fmt: skip
            yield Ui(
                server, server.admin_token, tokens["deploy"], tokens["read"], root / "home", url
            )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: scripts/install installs it"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Tab:
    """One browser context (its own cookies) and page, recording what the page did."""

    ui: Ui
    context: BrowserContext
    page: Page
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, fragment: str = "") -> None:
        self.page.goto(f"{self.ui.url}/{fragment}")

    def sign_in(self, token: str, then: str = "#models-page") -> None:
        self.open("#/signin")
        self.page.fill("#key", token)
        self.page.click("#signin")
        self.page.wait_for_selector(then)

    def hold_time(self) -> None:
        """Stop the page's clock (before it loads): its timers fire only on `run_for`."""
        self.page.clock.install()
        self.page.clock.pause_at(datetime.now(UTC) + timedelta(seconds=1))

    def go(self, fragment: str, ready: str) -> None:
        # Empty the page first, so `ready` cannot match what the previous page showed.
        script = "f => { document.getElementById('main').replaceChildren(); location.hash = f; }"
        self.page.evaluate(script, fragment)
        self.page.wait_for_selector(ready)

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()

    def confirm(self, button: str, reason: str | None = None, accept: bool = True) -> None:
        # Forget the previous message, so `flash` waits for the outcome of this action.
        self.page.evaluate("() => { document.getElementById('flash').hidden = true; }")
        self.page.click(button)
        self.page.wait_for_selector("#confirm[open]")
        if reason is not None:
            self.page.fill("#confirm-reason", reason)
        self.page.click("#confirm-ok" if accept else "#confirm button[value=cancel]")
        self.page.wait_for_selector("#confirm:not([open])", state="attached")

    def flash(self, kind: str) -> str:
        self.page.wait_for_selector(f"#flash.{kind}:not([hidden])")
        return self.text("#flash")

    def fetch(self, method: str, path: str, csrf: str | None = "cookie") -> dict[str, Any]:
        """A request made by script in the page, as a forged one would be."""
        script = """async ([method, path, csrf]) => {
            const cookie = document.cookie.split('; ').find(c => c.startsWith('shipyard_csrf='));
            const headers = {'Content-Type': 'application/json'};
            if (csrf === 'cookie') headers['X-CSRF-Token'] = cookie ? cookie.split('=')[1] : '';
            else if (csrf !== null) headers['X-CSRF-Token'] = csrf;
            const body = method === 'GET' ? undefined : '{}';
            const r = await fetch('/api/v1' + path, {method, headers, body});
            return {status: r.status, body: await r.json()};
        }"""
        result: dict[str, Any] = self.page.evaluate(script, [method, path, csrf])
        return result


@pytest.fixture
def tab(ui: Ui, browser: Browser) -> Iterator[Tab]:
    context = browser.new_context(
        timezone_id="Asia/Kathmandu", locale="en-US", viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    found = Tab(ui, context, page)

    def on_dialog(dialog: Dialog) -> None:
        found.dialogs.append(dialog.message)
        dialog.dismiss()

    def on_request(request: Request) -> None:
        found.requests.append(request.url)

    page.on("dialog", on_dialog)
    page.on("request", on_request)
    page.on("pageerror", lambda error: found.errors.append(str(error)))
    page.on(
        "console", lambda m: found.errors.append(m.text) if "Content Security" in m.text else None
    )
    try:
        yield found
    finally:
        context.close()
    assert found.requests, "the page made no request at all"
    outside = [u for u in found.requests if not u.startswith(ui.url + "/")]
    assert outside == [], outside
    assert found.dialogs == [] and found.errors == [], (found.dialogs, found.errors)


def _deploy_canary(ui: Ui, name: str) -> None:
    with ui.api() as admin:
        ok(admin.post("/deployments", json={"name": name, "model": "fraud:1"}), 201)
        body = {"name": name, "model": "fraud:2", "strategy": "canary", "policy": POLICY}
        ok(admin.post("/deployments", json=body), 201)


def _live(ui: Ui, name: str) -> list[tuple[int, int]]:
    with ui.api() as admin:
        revision = ok(admin.get(f"/deployments/{name}"))["revision"]
    return [(v["version"], v["weight"]) for v in revision["spec"]["variants"]]


def _rollout(ui: Ui, name: str) -> dict[str, Any] | None:
    with ui.api() as admin:
        found: dict[str, Any] | None = ok(admin.get(f"/deployments/{name}/rollout"))["rollout"]
        return found


def test_sign_in_then_browse_models_and_a_version(tab: Tab) -> None:
    tab.open()
    tab.page.wait_for_selector("#key")  # no session: the sign-in page
    tab.page.fill("#key", "sy_000000000000_" + "x" * 43)
    tab.page.click("#signin")
    tab.page.wait_for_selector("#signin-error:not([hidden])")
    assert "invalid API key" in tab.text("#signin-error")
    tab.sign_in(tab.ui.deploy)
    assert "ui-deploy" in tab.text("#who-name")
    rows = tab.text("#models-page table")
    assert "fraud" in rows and "churn" in rows and "production → 2" in rows
    tab.page.fill("#model-search", "chu")
    tab.page.press("#model-search", "Enter")
    tab.page.wait_for_function(
        "() => !document.querySelector('#models-page').innerText.includes('fraud')"
    )
    assert "churn" in tab.text("#models-page table")
    tab.page.fill("#model-search", "nothing-like-this")
    tab.page.press("#model-search", "Enter")
    tab.page.wait_for_selector("#models-page .empty")
    assert "No model matches “nothing-like-this”" in tab.text("#models-page .empty")

    tab.go("#/models/fraud", "#model-page")
    # Hostile text is shown as text: no element made of it, no script run.
    assert tab.page.locator("#model-description").text_content() == HOSTILE
    assert tab.page.locator("img").count() == 0
    assert tab.page.locator("main script, main b, main i").count() == 0
    assert "team: <i>risk</i>" in tab.text("#model-page")
    history = tab.text("#model-page")
    assert "version 3" in history and "1 → 2" in history and "promoted after review" in history

    tab.page.click("a[href='#/models/fraud/versions/2']")
    tab.page.wait_for_selector("#version-page")
    page = tab.text("#version-page")
    assert "fraud:2" in page and "READY" in page and "<b>v2</b>" in page
    signature = tab.text("#signature")
    assert "input" in signature and "FP32" in signature and "[-1,4]" in signature
    assert "version 1" in tab.text("#version-page a[href='#/models/fraud/versions/1']")
    assert "run-2" in page and "abc2" in page and "200 rows" in page
    assert "0.9200" in tab.text("#metrics")
    assert "compiled path in use" in tab.text("#compiled") and "Labels equal" in page
    ledger = tab.text("#version-ledger")
    assert "version.registered" in ledger and "alias.set" in ledger
    assert "promoted after review" in ledger
    # Timestamps in the viewer's zone (the context's is Asia/Kathmandu, UTC+5:45).
    first = tab.page.locator("#version-page time").first
    instant = datetime.fromisoformat(str(first.get_attribute("datetime")))
    local = instant.astimezone(ZoneInfo("Asia/Kathmandu"))
    shown = first.inner_text()
    assert local.strftime("%b %d, %Y, %I:%M:%S %p") in shown and "GMT+5:45" in shown, shown


def test_a_deployment_shows_its_split_rollout_and_chart(tab: Tab) -> None:
    tab.sign_in(tab.ui.read)
    tab.go("#/deployments", "#deployments-page")
    assert "fraud:1 50% · fraud:2 50%" in tab.text("#deployments-page table")
    tab.page.click("a[href='#/deployments/web']")
    tab.page.wait_for_selector("#deployment-page")
    rows = tab.page.locator("#split tbody tr").all_inner_texts()
    assert [r.split("\t")[:3] for r in rows] == [
        ["fraud:1", "50%", "primary"],
        ["fraud:2", "50%", "canary"],
    ]
    steps = tab.page.locator("#rollout-steps li")
    assert steps.all_inner_texts() == ["10%", "50%", "100%"]
    assert steps.nth(1).get_attribute("class") == "current"
    rollout = tab.text("#rollout")
    assert "running" in rollout and "too few requests" in rollout and "healthy" in rollout
    assert "requests = 240" in rollout and "error_rate = 0.004000" in rollout
    assert "hold" in rollout and "advance" in rollout
    assert "#3 (live)" in tab.text("#revisions")
    ab = tab.page.locator("#ab tbody tr").all_inner_texts()
    assert len(ab) == 2, ab
    primary, candidate = (row.split("\t") for row in ab)
    assert primary[:4] == ["fraud:1", "primary", "50%", "1200"] and primary[4].startswith("0.50% [")
    assert candidate[:4] == ["fraud:2", "candidate", "50%", "1000"], candidate
    assert candidate[4].startswith("0.20% [") and "0.30 pt [" in candidate[5], candidate
    # The chart is drawn: a canvas of real size with painted pixels, one series per version.
    tab.page.wait_for_selector("#weights-chart canvas")
    painted = tab.page.evaluate(
        """() => {
        const c = document.querySelector('#weights-chart canvas');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
        return {width: c.width, height: c.height, painted: n};
    }"""
    )
    assert painted["width"] > 300 and painted["height"] > 100
    assert painted["painted"] > 500, painted
    legend = tab.text("#weights-chart .u-legend")
    assert "fraud:1" in legend and "fraud:2" in legend
    # A shadow: live traffic all to one version, a copy to the other.
    with tab.ui.api() as admin:
        ok(admin.post("/deployments", json={"name": "mirror", "model": "fraud:1"}), 201)
        body = {"name": "mirror", "model": "fraud:3", "strategy": "shadow"}
        ok(admin.post("/deployments", json=body), 201)
    tab.go("#/deployments/mirror", "#split")
    rows = tab.page.locator("#split tbody tr").all_inner_texts()
    assert [r.split("\t")[:3] for r in rows] == [
        ["fraud:1", "100%", "primary"],
        ["fraud:3", "0%", "shadow"],
    ]
    assert "No rollout in progress" in tab.text("#no-rollout")


def test_rollout_actions_from_the_ui_land_in_the_api_and_the_ledger(tab: Tab) -> None:
    _deploy_canary(tab.ui, "act")
    tab.sign_in(tab.ui.deploy)
    tab.go("#/deployments/act", "#rollout")
    deploy_key = f"key:{tab.ui.deploy[3:15]}"
    tab.confirm("#rollout-abort", accept=False)  # cancelled: nothing happens
    assert (_rollout(tab.ui, "act") or {}).get("state") == "running"

    tab.confirm("#rollout-pause", reason="looking at errors")
    assert "Pause: done" in tab.flash("ok")
    assert (_rollout(tab.ui, "act") or {}).get("state") == "paused"
    tab.page.wait_for_selector("#rollout-resume")
    assert tab.page.locator("#rollout-pause").count() == 0

    tab.confirm("#rollout-resume")
    tab.flash("ok")
    assert (_rollout(tab.ui, "act") or {}).get("state") == "running"

    tab.confirm("#rollout-promote", reason="looks good")
    tab.flash("ok")
    assert _rollout(tab.ui, "act") is None
    assert _live(tab.ui, "act") == [(2, 100)]
    tab.page.wait_for_selector("#no-rollout")

    tab.confirm("#rollback-1", reason="back to the old one")
    assert "rolled back to the routing of revision 1" in tab.flash("ok")
    assert _live(tab.ui, "act") == [(1, 100)]
    with tab.ui.api() as admin:
        history = ok(admin.get("/deployments/act/history"))
    mine = [(e["action"], e["reason"]) for e in history if e["actor"] == deploy_key]
    assert mine == [
        ("rollout.paused", "looking at errors"),
        ("rollout.resumed", None),
        ("rollout.promoted", "looks good"),
        ("deployment.rolled_back", "back to the old one"),
    ]
    assert "#4 (live)" in tab.text("#revisions")


def test_the_deployment_page_follows_a_rollout_as_it_moves(tab: Tab) -> None:
    _deploy_canary(tab.ui, "watched")
    tab.hold_time()
    tab.sign_in(tab.ui.read)
    tab.go("#/deployments/watched", "#rollout-steps li.current")
    assert tab.text("#rollout-steps li.current") == "10%"
    # The controller (played here by the test) ends an analysis window: the canary advances.
    with open_registry(tab.ui.home, tab.ui.database) as registry:
        rollouts = Rollouts(Deployments(registry.store))
        rollout = rollouts.current("watched")
        assert rollout is not None
        numbers = {"requests": 321}
        decision = Decision(datetime.now(UTC), 0, 10, "advance", "all gates passed", numbers)
        rollouts.decide(rollout.id, decision, expected_step=0)
    assert tab.text("#rollout-steps li.current") == "10%"  # nothing redraws on its own yet
    tab.page.clock.run_for(5_000)
    tab.page.wait_for_function(
        "() => document.querySelector('#rollout-steps li.current')?.innerText === '50%'"
    )
    assert "all gates passed" in tab.text("#rollout") and "requests = 321" in tab.text("#rollout")
    assert [r.split("\t")[1] for r in tab.page.locator("#split tbody tr").all_inner_texts()] == [
        "50%",
        "50%",
    ]


def test_retraining_runs_with_trigger_verdict_and_log(tab: Tab) -> None:
    tab.sign_in(tab.ui.read)
    tab.go("#/retraining", "#retraining-page")
    page = tab.text("#retraining-page")
    assert "fraud-weekly" in page and "train:fit" in page
    run = tab.page.locator("#runs tbody tr").first.inner_text().split("\t")
    assert run[:4] == ["run 1", "fraud-weekly", "succeeded", "schedule"] and run[6] == "fraud:3"
    tab.page.click("#runs a[href='#/retraining/runs/1']")
    tab.page.wait_for_selector("#run-page")
    assert "passed" in tab.text("#verdict")
    assert "candidate_auc = 0.9300" in tab.text("#run-page")
    log = tab.page.locator("#run-log").text_content() or ""
    assert "<script>alert(3)</script>" in log and "candidate beats champion" in log
    assert tab.page.locator("main script").count() == 0
    tab.go("#/retraining/runs/999", "#not-found")


def test_changes_made_meanwhile_are_shown_as_conflicts(tab: Tab) -> None:
    _deploy_canary(tab.ui, "busy")
    tab.hold_time()  # the page must stay stale: no redraw while a rollout runs
    tab.sign_in(tab.ui.deploy)
    # An alias moved by someone else after the page loaded.
    tab.go("#/models/fraud/versions/3", "#alias-form")
    with tab.ui.api() as admin:
        ok(admin.put("/models/fraud/aliases/staging", json={"version": 2}))
    tab.page.fill("#alias-name", "staging")
    tab.confirm("#move-alias")
    message = tab.flash("error")
    assert "Conflict" in message and "points at 2, expected 1" in message, message
    with tab.ui.api() as admin:
        assert ok(admin.get("/models/fraud"))["aliases"]["staging"] == 2
    # With the page fresh, the move goes through.
    tab.page.fill("#alias-name", "staging")
    tab.confirm("#move-alias")
    assert "now points at version 3" in tab.flash("ok")
    with tab.ui.api() as admin:
        assert ok(admin.get("/models/fraud"))["aliases"]["staging"] == 3

    # A rollout paused by someone else: pausing again is refused with the API's reason.
    tab.go("#/deployments/busy", "#rollout-pause")
    with tab.ui.api() as admin:
        ok(admin.post("/deployments/busy/rollout/pause"))
    tab.confirm("#rollout-pause")
    assert "already paused" in tab.flash("error")
    # Aborted by someone else (revision 3) while this page still shows the canary at revision
    # 2: its promote names revision 2 and is refused, so it cannot act on what came since.
    with tab.ui.api() as admin:
        ok(admin.post("/deployments/busy/rollout/abort"))
    tab.confirm("#rollout-promote")
    message = tab.flash("error")
    assert "Conflict: deployment 'busy' is at revision 3, not 2" in message, message
    assert "promoting the rollout" in message, message
    # A deployment changed after the page loaded (at revision 3): the server refuses the
    # rollback, which names the revision the page showed, and the page redraws.
    tab.page.reload()
    tab.page.wait_for_selector("#rollback-1")
    with tab.ui.api() as admin:
        ok(admin.post("/deployments", json={"name": "busy", "model": "fraud:3"}), 201)
        history = ok(admin.get("/deployments/busy/history"))
    tab.confirm("#rollback-1")
    message = tab.flash("error")
    assert "Conflict: deployment 'busy' is at revision 4, not 3" in message, message
    assert _live(tab.ui, "busy") == [(3, 100)]
    with tab.ui.api() as admin:
        assert ok(admin.get("/deployments/busy/history")) == history
    # Redrawn at revision 4, the same rollback goes through.
    tab.page.wait_for_selector("#rollback-3")
    tab.confirm("#rollback-1")
    assert "rolled back to the routing of revision 1" in tab.flash("ok")
    assert _live(tab.ui, "busy") == [(1, 100)]


def test_a_read_only_key_sees_no_actions_and_cannot_forge_one(tab: Tab) -> None:
    tab.sign_in(tab.ui.read)
    assert tab.page.locator("#read-only").count() == 1
    tab.go("#/deployments/web", "#rollout")
    assert tab.page.locator("#rollout button, #revisions button").count() == 0
    tab.go("#/models/fraud/versions/1", "#version-page")
    assert tab.page.locator("#alias-form").count() == 0
    forged = tab.fetch("POST", "/deployments/web/rollout/pause")
    assert forged == {"status": 403, "body": {"error": "this key lacks the 'deploy' scope"}}
    assert (_rollout(tab.ui, "web") or {}).get("state") == "running"


def test_cookie_requests_need_the_csrf_token(tab: Tab) -> None:
    _deploy_canary(tab.ui, "csrf")
    tab.sign_in(tab.ui.deploy)
    cookies = {c["name"]: c for c in tab.context.cookies()}
    assert cookies["shipyard_session"]["httpOnly"] is True
    assert cookies["shipyard_session"]["sameSite"] == "Strict"
    assert cookies["shipyard_csrf"]["httpOnly"] is False
    assert "shipyard_session" not in tab.page.evaluate("document.cookie")
    refused = {"status": 403, "body": {"error": "CSRF token missing or wrong"}}
    assert tab.fetch("POST", "/deployments/csrf/rollout/pause", csrf=None) == refused
    assert tab.fetch("POST", "/deployments/csrf/rollout/pause", csrf="forged") == refused
    assert tab.fetch("DELETE", "/session", csrf="forged") == refused
    # A request from elsewhere carrying the cookie but no token (what a cross-site form sends).
    session = cookies["shipyard_session"]["value"]
    r = httpx.post(
        f"{tab.ui.url}/api/v1/deployments/csrf/rollback",
        cookies={"shipyard_session": session, "shipyard_csrf": "x"},
        json={},
    )
    assert (r.status_code, r.json()) == (403, refused["body"])
    assert (_rollout(tab.ui, "csrf") or {}).get("state") == "running"
    assert _live(tab.ui, "csrf") == [(1, 90), (2, 10)]
    with tab.ui.api() as admin:
        audit = ok(
            admin.get("/audit", params={"status": 403, "actor": f"key:{tab.ui.deploy[3:15]}"})
        )
    targets = [e["target"] for e in audit]
    assert targets.count("/api/v1/deployments/csrf/rollout/pause") == 2
    assert "/api/v1/deployments/csrf/rollback" in targets
    # Reading needs no token, and with it the same action goes through.
    assert tab.fetch("GET", "/session", csrf=None)["status"] == 200
    assert tab.fetch("POST", "/deployments/csrf/rollout/pause")["status"] == 200
    assert (_rollout(tab.ui, "csrf") or {}).get("state") == "paused"


def test_a_revoked_key_goes_back_to_sign_in(tab: Tab) -> None:
    with tab.ui.api() as admin:
        created = ok(admin.post("/keys", json={"name": "soon-gone", "scopes": ["read"]}), 201)
    tab.sign_in(created["token"])
    with tab.ui.api() as admin:
        ok(admin.delete(f"/keys/{created['key']['id']}"))
    tab.page.click("nav a[href='#/deployments']")
    tab.page.wait_for_selector("#signin-error:not([hidden])")
    assert "API key revoked" in tab.text("#signin-error")
    assert tab.page.evaluate("location.hash") == "#/signin"
    names = {c["name"] for c in tab.context.cookies()}
    assert "shipyard_session" not in names  # signed out, not just sent away
    # Signing in again with a good key returns to where the person was.
    tab.sign_in(tab.ui.read, then="#deployments-page")


def test_sign_out_and_unknown_addresses(tab: Tab) -> None:
    tab.open("#/deployments")
    tab.page.wait_for_selector("#key")  # nothing without a key
    assert tab.page.locator("#nav").is_hidden()
    tab.sign_in(tab.ui.read, then="#deployments-page")
    for fragment, text in (
        ("#/models/nope", "model 'nope' not found"),
        ("#/deployments/nope", "nope"),
        ("#/models/fraud/versions/99", "99"),
        ("#/models/fraud/versions/x", "no version x"),
        ("#/nowhere/at/all", "no page at this address"),
    ):
        tab.go(fragment, "#not-found")
        assert "404" in tab.text("#not-found") and text in tab.text("#not-found"), fragment
        tab.go("#/models", "#models-page")
    tab.page.click("#signout")
    tab.page.wait_for_selector("#key")
    assert "shipyard_session" not in {c["name"] for c in tab.context.cookies()}
    response = tab.context.request.get(f"{tab.ui.url}/api/v1/session")
    assert response.status == 401
