"""The drift view of the management API (in-process, SQLite and PostgreSQL) is kept for
`drift_cache_s`: a poll within it is answered from memory, other windows and versions are
computed afresh, and with 0 every call reads the log again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from sklearn.linear_model import LogisticRegression

from shipyard.auth.keys import KeyStore
from shipyard.core.events import PredictionEvent
from shipyard.monitoring.eventlog import ParquetSink, iter_events
from shipyard.packaging.register import Registration, register_model
from shipyard.registry.service import Registry
from shipyard.transports.api import monitoring
from shipyard.transports.api.app import create_app
from shipyard.transports.api.context import ApiOptions


def _log(home: Path, count: int, start: int, shift: float, now: datetime | None = None) -> None:
    rng = np.random.default_rng(start)
    sink = ParquetSink(home)
    now = now or datetime.now(UTC)
    sink.write(
        [
            PredictionEvent(
                request_id=f"r{start + i}",
                model="fraud",
                version=1,
                at=now - timedelta(seconds=i),
                inputs={"a": [float(rng.normal() + shift)], "b": [float(rng.normal())]},
                outputs={"label": [0]},
                latency_ms=1.0,
            )
            for i in range(count)
        ]
    )
    sink.close()


def _app(registry: Registry, home: Path, cache_s: float) -> tuple[FastAPI, str]:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(rng.normal(size=(500, 2)), columns=["a", "b"])
    model = LogisticRegression().fit(reference, (reference["a"] > 0).astype(int))
    register_model(
        registry, model, Registration("fraud", sample_input=reference, reference_data=reference)
    )
    keys = KeyStore.for_registry(registry)
    _, token = keys.create("ui", ["read"])
    options = ApiOptions(home=home, drift_cache_s=cache_s)
    return create_app(registry, options, key_store=keys), token


def _drift(app: FastAPI, token: str, **params: Any) -> dict[str, Any]:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"authorization": f"Bearer {token}"}
            return await client.get("/api/v1/models/fraud/drift", params=params, headers=headers)

    response = anyio.run(go)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_poll_within_the_ttl_is_answered_from_memory(registry: Registry, tmp_path: Path) -> None:
    home = tmp_path / "home"
    app, token = _app(registry, home, cache_s=60)
    _log(home, 300, start=0, shift=3.0)
    first = _drift(app, token, since="1h")
    _log(home, 200, start=1000, shift=3.0)  # logged after the first view
    again = _drift(app, token, since="1h")
    assert again == first and first["n_live"] == 300 and first["drift"] is True
    wider = _drift(app, token, since="2h")  # another window: computed afresh
    assert wider["n_live"] == 500 and wider["until"] > first["until"]


def test_without_a_ttl_every_call_reads_the_log(registry: Registry, tmp_path: Path) -> None:
    home = tmp_path / "home"
    app, token = _app(registry, home, cache_s=0)
    _log(home, 300, start=0, shift=0.0)
    assert _drift(app, token, since="1h")["n_live"] == 300
    _log(home, 200, start=1000, shift=0.0)
    assert _drift(app, token, since="1h")["n_live"] == 500


def test_a_window_larger_than_a_page_is_read_whole(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every logged request of the window counts, read in pages (here of 100 events), not
    only the newest ones: the older half, shifted, is what drifted."""
    home = tmp_path / "home"
    app, token = _app(registry, home, cache_s=0)
    _log(home, 250, start=0, shift=0.0)
    older = datetime.now(UTC) - timedelta(minutes=10)
    _log(home, 250, start=1000, shift=3.0, now=older)
    pages: list[int] = []

    def small_pages(home: Path, **filters: Any) -> Iterator[pd.DataFrame]:
        for page in iter_events(home, **filters, chunk=100):
            pages.append(len(page))
            yield page

    monkeypatch.setattr(monitoring, "iter_events", small_pages)
    view = _drift(app, token, since="1h")
    assert view["n_live"] == 500 and sum(pages) == 2 * 500  # two passes of 5 pages
    assert len(pages) == 10 and view["drift"], view
    live = next(f for f in view["features"] if f["name"] == "a")["histogram"]["live"]
    assert sum(live) == 500
