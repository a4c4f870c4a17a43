"""Promise P1: the served version changes 20 times under load at concurrency 16 with zero failed
requests, and every answer comes from a version that was live at the time (within the stated
propagation bound of a poll interval plus load and warm-up)."""

from __future__ import annotations

import asyncio
import bisect
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_support import open_registry, running, server_env
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

pytestmark = pytest.mark.slow

SWAPS = 20
SWAP_EVERY_S = 2.5
PROPAGATION_S = 2.0  # the bound: a moved alias is served within 2 s
CONCURRENCY = 16


def _models() -> list[tuple[RandomForestClassifier, np.ndarray]]:
    models = []
    for seed in (0, 1):
        X, y = make_classification(300, 20, random_state=seed)
        X = X.astype(np.float32)
        models.append((RandomForestClassifier(5, max_depth=4, random_state=seed).fit(X, y), X))
    return models


def test_twenty_swaps_under_load_fail_no_request(tmp_path: Path) -> None:
    url, home = f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "home"
    with open_registry(home, url) as registry:
        for model, X in _models():
            registry.register(model, "forest", sample_input=X[:50])
        registry.set_alias("forest", "production", 1)
    env = server_env(home, url, SHIPYARD_SERVE_POLL_INTERVAL_S="0.25")
    with running(env, tmp_path / "logs", "forest@production", "--workers", "2") as server:
        moves, answers, failures = asyncio.run(_swap_under_load(server.url, home, url))
    assert failures == [], failures[:5]
    assert len(moves) == SWAPS + 1 and len(answers) > 1000
    late = [a for a in answers if not _was_live(moves, *a)]
    assert late == [], f"{len(late)} answers from a version not live at the time, e.g. {late[:3]}"
    served = {version for _, _, version in answers}
    assert served == {1, 2}


def _was_live(moves: list[tuple[float, int]], start: float, end: float, version: int) -> bool:
    """True if `version` was the alias target at some moment in [start - bound, end]."""
    times = [t for t, _ in moves]
    first = max(bisect.bisect_right(times, start - PROPAGATION_S) - 1, 0)
    last = bisect.bisect_right(times, end) - 1
    return any(moves[i][1] == version for i in range(first, last + 1))


async def _swap_under_load(
    url: str, home: Path, database_url: str
) -> tuple[list[tuple[float, int]], list[tuple[float, float, int]], list[str]]:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 20], "data": [0.5] * 20}]}
    moves: list[tuple[float, int]] = [(time.monotonic(), 1)]
    answers: list[tuple[float, float, int]] = []
    failures: list[str] = []
    done = asyncio.Event()

    async def client(http: httpx.AsyncClient) -> None:
        while not done.is_set() and len(answers) < 200_000:
            start = time.monotonic()
            try:
                reply = await http.post("/v2/models/forest/infer", json=body)
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if reply.status_code != 200:
                failures.append(f"{reply.status_code}: {reply.text[:200]}")
                continue
            version = int(reply.headers["x-shipyard-model-version"])
            answers.append((start, time.monotonic(), version))

    async def mover() -> None:
        with open_registry(home, database_url) as registry:
            for swap in range(SWAPS):
                await asyncio.sleep(SWAP_EVERY_S)
                target = 2 if swap % 2 == 0 else 1
                await asyncio.to_thread(registry.set_alias, "forest", "production", target)
                moves.append((time.monotonic(), target))
        await asyncio.sleep(SWAP_EVERY_S)
        done.set()

    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as http:
        await asyncio.wait_for(
            asyncio.gather(mover(), *(client(http) for _ in range(CONCURRENCY))), 180
        )
    return moves, answers, failures
