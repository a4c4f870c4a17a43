"""The control plane's clock: a tick that raises is logged and the next one still comes."""

from __future__ import annotations

import logging
import threading

import pytest

from shipyard.app.ticker import Ticker


def test_a_failing_tick_is_logged_and_ticking_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    third = threading.Event()

    def tick() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("disk full")
        if len(calls) == 3:
            third.set()

    ticker = Ticker("test-loop", tick, logging.getLogger("shipyard.test"))
    ticker.start(0.01)
    try:
        assert third.wait(10)
    finally:
        ticker.stop(timeout_s=5)
    after = len(calls)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "test-loop tick failed"
    ]
    assert "disk full" in caplog.text
    threading.Event().wait(0.05)
    assert len(calls) == after  # stopped means stopped
