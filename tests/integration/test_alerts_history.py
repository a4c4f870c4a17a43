"""Alert history in the alerts table (SQLite and PostgreSQL) and the webhook against a real
HTTP server: retries on 500, gives up after its attempts, does not retry a 400."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from shipyard.core.errors import InvalidArgument, Unavailable
from shipyard.monitoring.alert_history import AlertHistory
from shipyard.monitoring.alert_rules import LatencyRule, Observation
from shipyard.monitoring.alerts import FIRING, RESOLVED, Alert, AlertManager
from shipyard.monitoring.notifiers import WebhookNotifier
from shipyard.storage.database import Database

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    with Database(database_url) as db:
        yield db


def test_history_stores_every_transition_and_filters(database: Database) -> None:
    history = AlertHistory(database)
    manager = AlertManager([LatencyRule(50.0)], fire_after=1, resolve_after=1, history=history)
    for minute, (subject, p95) in enumerate([("a", 80), ("b", 90), ("a", 10), ("a", 70)]):
        obs = Observation(subject, T0 + timedelta(minutes=minute), latency_p95_ms=p95)
        manager.evaluate(obs)
    alerts = history.list(subject="a")
    assert [a.state for a in alerts] == [FIRING, RESOLVED, FIRING]  # newest first
    assert alerts[0].at == T0 + timedelta(minutes=3)
    assert alerts[0].message.startswith("a: latency p95 70.0 ms is above the SLO of 50 ms")
    assert alerts[0].details["p95_ms"] == 70.0 and alerts[0].notified
    assert [a.subject for a in history.list(since=T0 + timedelta(minutes=1))] == ["a", "a", "b"]
    assert [a.rule for a in history.firing("a")] == ["latency p95"]
    assert history.list(rule="no such rule") == []


def test_history_rejects_bad_queries_and_keeps_rows(database: Database) -> None:
    history = AlertHistory(database)
    alert = Alert("r", "m", FIRING, "warning", "msg", T0, {"p": float("nan"), "n": 3})
    history.record(alert)
    with pytest.raises(InvalidArgument, match="limit must be between 1 and 10000, got 0"):
        history.list(limit=0)
    with pytest.raises(InvalidArgument, match="since must be timezone-aware"):
        history.list(since=datetime(2026, 1, 1))
    [stored] = history.list()
    assert stored.details == {"p": None, "n": 3}  # NaN stored as null, the row intact


class _Server:
    """A local webhook receiver answering with the next status from `statuses`."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                owner.bodies.append(orjson.loads(self.rfile.read(length)))
                status = owner.statuses.pop(0) if owner.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server_factory() -> Iterator[Any]:
    servers: list[_Server] = []

    def make(statuses: list[int]) -> _Server:
        servers.append(_Server(statuses))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


ALERT = Alert("drift", "fraud", FIRING, "warning", "feature `amount` shifted", T0, {"p": 1e-9})


def test_webhook_retries_500_then_delivers(server_factory: Any) -> None:
    server = server_factory([500, 503])
    notifier = WebhookNotifier(server.url, attempts=4, backoff_s=0.01, max_backoff_s=0.05)
    notifier.notify(ALERT)
    notifier.close()
    assert len(server.bodies) == 3
    assert server.bodies[-1] == {
        "rule": "drift", "subject": "fraud", "state": "firing", "severity": "warning",
        "message": "feature `amount` shifted", "at": "2026-01-01T00:00:00+00:00",
        "details": {"p": 1e-9},
    }  # fmt: skip


def test_webhook_gives_up_after_its_attempts(server_factory: Any) -> None:
    server = server_factory([500] * 10)
    notifier = WebhookNotifier(server.url, attempts=3, backoff_s=0.01, max_backoff_s=0.05)
    with pytest.raises(Unavailable, match=r"webhook .*/hook failed after 3 attempts: HTTP 500"):
        notifier.notify(ALERT)
    notifier.close()
    assert len(server.bodies) == 3


def test_webhook_does_not_retry_a_refusal(server_factory: Any) -> None:
    server = server_factory([400])
    notifier = WebhookNotifier(server.url, attempts=5, backoff_s=0.01)
    with pytest.raises(InvalidArgument, match="refused the alert: HTTP 400"):
        notifier.notify(ALERT)
    notifier.close()
    assert len(server.bodies) == 1


def test_webhook_unreachable_is_unavailable_and_manager_carries_on(database: Database) -> None:
    # A port nobody listens on: bind one, close it, use its number.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    notifier = WebhookNotifier(f"http://127.0.0.1:{port}/", attempts=2, backoff_s=0.01)
    history = AlertHistory(database)
    manager = AlertManager([LatencyRule(1.0)], fire_after=1, notifiers=[notifier], history=history)
    manager.evaluate(Observation("m", T0, latency_p95_ms=5.0))
    notifier.close()
    assert manager.failed_notifications == 1
    assert [a.state for a in history.list(subject="m")] == [FIRING]


def test_webhook_url_is_validated() -> None:
    with pytest.raises(InvalidArgument, match=r"webhook URL must be http\(s\)://host/"):
        WebhookNotifier("file:///etc/passwd")
