"""`shipyard server` as a real process: the first start prints an admin key once, later starts
do not, every API endpoint needs it, and SIGTERM stops the server cleanly.

`ControlPlane` (a running `shipyard server` on a free port) is shared with the test_api_*
modules."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from backends import SQLITE_ONLY
from serve_support import open_registry, server_env
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from shipyard.storage.database import Database

pytestmark = pytest.mark.slow

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"  # as in tests/conftest.py
_ANNOUNCED = re.compile(rb"management API on http://127\.0\.0\.1:(\d+) ")
_ADMIN_TOKEN = re.compile(rb"\n  (sy_[0-9a-f]{12}_[A-Za-z0-9_-]{43})\n")


class ControlPlane:
    """`shipyard server --port 0` in a subprocess; `url` and (first start) `admin_token`."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, *args: str, command: str = "server"
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = log_dir / f"server-{time.monotonic_ns()}.stderr"
        self._stderr = self.stderr_path.open("wb")
        argv = [sys.executable, "-m", "shipyard", command, "--port", "0", *args]
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=self._stderr
        )
        self.url = ""
        self.admin_token: str | None = None

    def logs(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 60.0) -> ControlPlane:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}:\n{self.logs()}")
            found = _ANNOUNCED.search(self.stderr_path.read_bytes())
            if found and _status(f"http://127.0.0.1:{int(found.group(1))}/openapi.json") == 200:
                self.url = f"http://127.0.0.1:{int(found.group(1))}"
                token = _ADMIN_TOKEN.search(self.stderr_path.read_bytes())
                self.admin_token = token.group(1).decode() if token else None
                return self
            time.sleep(0.1)
        raise AssertionError(f"server not ready in {timeout_s} s:\n{self.logs()[-4000:]}")

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=30)

    def terminate(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._stderr.close()


@contextmanager
def control_plane(
    home: Path, database_url: str, log_dir: Path, *args: str
) -> Iterator[ControlPlane]:
    server = ControlPlane(server_env(home, database_url), log_dir, *args)
    try:
        yield server.wait_ready()
    finally:
        server.terminate()


@contextmanager
def module_database(kind: str, root: Path) -> Iterator[str]:
    """A fresh database for one module's server: SQLite in `root`, or a new PostgreSQL
    database (dropped afterwards) on the server tests/conftest.py uses."""
    if kind == "sqlite":
        yield f"sqlite:///{root / 'db.sqlite'}"
        return
    base = make_url(os.environ.get("SHIPYARD_TEST_POSTGRES_URL", POSTGRES_URL))
    name = f"shipyard_t_{secrets.token_hex(6)}"
    engine = create_engine(
        base.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=1.0).status_code
    except httpx.HTTPError:
        return None


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def table_text(database_url: str, table: str) -> str:
    """Every row of `table` as text, to search for things that must never be stored."""
    with Database(database_url) as database, database.read() as session:
        rows = session.execute(text(f"SELECT * FROM {table}")).all()
    return "\n".join(repr(tuple(row)) for row in rows)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


@SQLITE_ONLY
def test_first_start_prints_an_admin_key_once(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with control_plane(home, database_url, tmp_path / "logs") as server:
        token = server.admin_token
        assert token is not None, server.logs()
        with server.client() as anonymous:
            r = anonymous.get("/models")
            assert r.status_code == 401 and r.json() == {"error": "missing API key"}
        with server.client(token) as admin:
            assert ok(admin.get("/models")) == []
            keys = ok(admin.get("/keys"))
            assert [(k["name"], k["scopes"]) for k in keys] == [("admin", ["admin"])]
            assert "token" not in keys[0] and token not in repr(keys)
        document = httpx.get(server.url + "/openapi.json").json()
        assert "/api/v1/deployments" in document["paths"]
        assert "HTTPBearer" in document["components"]["securitySchemes"]
        assert httpx.get(server.url + "/api/v1/openapi.json").json() == document
        code = server.terminate()
    assert code == 0, server.logs()
    # The key is stored as a digest only: no table holds the token.
    for table in ("api_keys", "ledger", "audit_log"):
        assert token not in table_text(database_url, table)
    with control_plane(home, database_url, tmp_path / "logs2") as again:
        assert again.admin_token is None
        assert "admin API key" not in again.logs()
        with again.client(token) as admin:
            assert len(ok(admin.get("/keys"))) == 1


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--port", "70000"], b"port"),
        (["--retention", "12h"], b"retention: '12h' is shorter than a day"),
    ],
    ids=["port", "retention"],
)
def test_bad_settings_exit_with_invalid_argument(
    tmp_path: Path, args: list[str], said: bytes
) -> None:
    env = server_env(tmp_path / "home", f"sqlite:///{tmp_path / 'db.sqlite'}")
    run = subprocess.run(
        [sys.executable, "-m", "shipyard", "server", *args],
        env=env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 3, run.stderr
    assert said in b" ".join(run.stderr.split())
    assert not (tmp_path / "db.sqlite").exists()  # refused before the registry was opened


def test_the_controller_runs_in_the_server(database_url: str, tmp_path: Path) -> None:
    """A canary nobody sends traffic to cannot be judged: the controller in the server holds
    it and then rolls it back, writing each decision to the ledger as the controller."""
    home = tmp_path / "home"
    X, y = make_classification(80, 4, random_state=0)
    X = X.astype(np.float32)
    with open_registry(home, database_url) as registry:
        for c in (1.0, 0.5):
            registry.register(LogisticRegression(C=c).fit(X, y), "fraud", sample_input=X[:5])
    args = ("--controller-interval-s", "0.2")
    policy = {"steps": [10, 100], "window_s": 0.2, "min_requests": 20, "max_windows": 1}
    with control_plane(home, database_url, tmp_path / "logs", *args) as server:
        assert server.admin_token is not None
        with server.client(server.admin_token) as api:
            ok(api.post("/deployments", json={"name": "web", "model": "fraud:1"}), 201)
            body = {"name": "web", "model": "fraud:2", "strategy": "canary", "policy": policy}
            ok(api.post("/deployments", json=body), 201)
            deadline = time.monotonic() + 60
            while ok(api.get("/deployments/web/rollout"))["rollout"] is not None:
                assert time.monotonic() < deadline, server.logs()[-3000:]
                time.sleep(0.2)
            history = ok(api.get("/deployments/web/history"))
            decided = [e for e in history if e["action"] == "rollout.rolled_back"]
            assert len(decided) == 1 and decided[0]["actor"] == "controller"
            live = ok(api.get("/deployments/web"))["revision"]["spec"]["variants"]
            assert [v["version"] for v in live] == [1]
