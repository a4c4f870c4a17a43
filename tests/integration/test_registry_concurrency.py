"""Real processes racing on one registry: version numbers and alias compare-and-set."""

from __future__ import annotations

import multiprocessing
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from shipyard.core.errors import Conflict
from shipyard.registry.models import VersionSpec
from shipyard.registry.service import Registry

# A clean interpreter per child (no inherited engines or locks), started cheaply.
CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["shipyard.registry.service"])


def _register_many(
    url: str, blobs: str, source: str, count: int, barrier: Barrier, results: Queue[Any]
) -> None:
    with Registry.open(url, blobs, actor="racer") as registry:
        barrier.wait()
        spec = VersionSpec(flavor="onnx")
        numbers = [
            registry.register_version("fraud", {"model.onnx": Path(source)}, spec).version
            for _ in range(count)
        ]
    results.put(numbers)


def _move_alias(url: str, blobs: str, target: int, barrier: Barrier, results: Queue[Any]) -> None:
    with Registry.open(url, blobs, actor=f"mover-{target}") as registry:
        seen = registry.resolve("fraud@production").version
        barrier.wait()  # both have read the alias before either moves it
        try:
            registry.set_alias("fraud", "production", target, expected=seen)
            results.put(("won", target))
        except Conflict as exc:
            results.put(("conflict", str(exc)))


def _run(target: Any, args_per_child: list[tuple[Any, ...]]) -> list[Any]:
    barrier = CONTEXT.Barrier(len(args_per_child))
    results: Queue[Any] = CONTEXT.Queue()
    children = [
        CONTEXT.Process(target=target, args=(*args, barrier, results)) for args in args_per_child
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    return outcomes


def test_concurrent_registrations_get_distinct_contiguous_versions(
    database_url: str, registry: Registry, blob_root: Path, tmp_path: Path
) -> None:
    source = tmp_path / "m.onnx"
    source.write_bytes(b"weights")
    args = (database_url, str(blob_root), str(source), 5)
    outcomes = _run(_register_many, [args, args])
    numbers = sorted(n for numbers in outcomes for n in numbers)
    assert numbers == list(range(1, 11))
    assert [v.version for v in registry.list_versions("fraud")] == numbers
    registered = registry.ledger(action="version.registered")
    assert sorted(e.version or 0 for e in registered) == numbers
    assert [e.details["new_model"] for e in registered].count(True) == 1


def test_alias_compare_and_set_race_has_one_winner(
    database_url: str, registry: Registry, blob_root: Path, tmp_path: Path
) -> None:
    source = tmp_path / "m.onnx"
    source.write_bytes(b"weights")
    for _ in range(3):
        registry.register_version("fraud", {"model.onnx": source}, VersionSpec(flavor="onnx"))
    registry.set_alias("fraud", "production", 1)
    outcomes = _run(
        _move_alias, [(database_url, str(blob_root), 2), (database_url, str(blob_root), 3)]
    )
    kinds = sorted(kind for kind, _ in outcomes)
    assert kinds == ["conflict", "won"]
    winner = next(target for kind, target in outcomes if kind == "won")
    loser_message = next(message for kind, message in outcomes if kind == "conflict")
    assert loser_message == f"alias 'production' of 'fraud' points at {winner}, expected 1"
    history = registry.alias_history("fraud", "production")
    assert [(m.version, m.previous) for m in history] == [(1, None), (winner, 1)]
    assert registry.resolve("fraud@production").version == winner
