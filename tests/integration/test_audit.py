"""AuditLog over the audit_log table, on SQLite and PostgreSQL: what is stored, how it is
filtered, and that secrets and control characters never reach the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shipyard.auth.audit import AuditLog, mask_secrets
from shipyard.core.errors import InvalidArgument
from shipyard.registry.service import Registry

TOKEN = "sy_0123456789ab_" + "S" * 43


def test_record_and_query_newest_first(registry: Registry) -> None:
    audit = AuditLog(registry.database)
    first = audit.record(
        actor="key:0123456789ab (ci)", action="POST /api/v1/deployments", status=201,
        target="/api/v1/deployments", remote="127.0.0.1",
    )  # fmt: skip
    audit.record(actor="anonymous", action="GET /api/v1/models", status=401)
    audit.record(actor="key:ba9876543210 (ops)", action="DELETE /api/v1/keys/{key_id}", status=403)
    entries = audit.query()
    assert [e.status for e in entries] == [403, 401, 201]
    assert entries[-1] == first
    assert (first.target, first.remote, first.details) == ("/api/v1/deployments", "127.0.0.1", {})
    assert [e.status for e in audit.query(actor="key:0123456789ab")] == [201]
    assert [e.status for e in audit.query(action="GET /api/v1/models")] == [401]
    assert [e.status for e in audit.query(status=403)] == [403]
    assert [e.status for e in audit.query(limit=2)] == [403, 401]
    assert audit.query(since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert len(audit.query(since=first.at)) == 3


def test_prefix_filter_is_not_a_pattern(registry: Registry) -> None:
    audit = AuditLog(registry.database)
    audit.record(actor="key:aaaaaaaaaaaa (x)", action="POST /x", status=200)
    # LIKE wildcards in the filter match themselves only.
    assert audit.query(actor="key:%") == []
    assert audit.query(actor="key:_aaaaaaaaaaa") == []
    assert len(audit.query(actor="key:aaaa")) == 1


def test_tokens_and_control_characters_are_masked(registry: Registry) -> None:
    audit = AuditLog(registry.database)
    entry = audit.record(
        actor=f"anonymous {TOKEN}", action="DELETE /api/v1/keys/{key_id}", status=400,
        target=f"/api/v1/keys/{TOKEN}\x1b[31m", details={"note": TOKEN, "n": 3, "nested": [TOKEN]},
    )  # fmt: skip
    stored = audit.query()[0]
    assert stored == entry
    text = repr(stored)
    assert "S" * 43 not in text and "\x1b" not in text
    assert stored.target == "/api/v1/keys/sy_0123456789ab_***?[31m"
    assert stored.details["n"] == 3
    assert mask_secrets(f"a {TOKEN} b") == "a sy_0123456789ab_*** b"


def test_long_fields_are_cut_to_their_columns(registry: Registry) -> None:
    audit = AuditLog(registry.database)
    entry = audit.record(actor="a" * 500, action="POST " + "b" * 500, status=200, target="c" * 900)
    assert len(entry.actor) == 200 and entry.actor.endswith("...")
    assert len(entry.action) == 200 and len(entry.target or "") == 500


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit": 0}, "limit must be an integer from 1 to 1000"),
        ({"limit": 1001}, "limit must be an integer from 1 to 1000"),
        ({"limit": True}, "limit must be an integer"),
        ({"status": 99}, "status must be an HTTP status code"),
        ({"since": datetime(2026, 1, 1)}, "since must include a timezone"),
    ],
)
def test_bad_queries_are_refused(
    registry: Registry, options: dict[str, object], message: str
) -> None:
    audit = AuditLog(registry.database)
    audit.record(actor="anonymous", action="GET /x", status=401)
    with pytest.raises(InvalidArgument, match=message):
        audit.query(**options)  # type: ignore[arg-type]
    assert len(audit.query()) == 1  # the stored entry is intact
