"""Worker processes: N model servers on one port, started, watched and stopped by the parent.

The parent reserves the port with a bound (not listening) SO_REUSEPORT socket, so a taken
port fails at once and `--http-port 0` picks one; each worker binds its own SO_REUSEPORT
listener, and the kernel spreads connections across them. The parent restarts a worker that
dies (with a crash-loop limit), forwards SIGTERM/SIGINT, and kills what has not drained in time.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from shipyard.core.errors import Unavailable

log = logging.getLogger("shipyard.serve")

STARTUP_FAILED = 3  # a worker's exit code when its models cannot be loaded: do not restart
_POLL_S = 0.2
_MAX_RESTARTS = 5  # within _RESTART_WINDOW_S, then the server gives up
_RESTART_WINDOW_S = 60.0
_KILL_GRACE_S = 3.0


def bind(host: str, port: int, *, listen: bool) -> socket.socket:
    """A TCP socket on (host, port) with SO_REUSEPORT; listening only when asked."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot bind {host}:{port}: {exc.strerror or exc}") from None
    return sock


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    index: int
    process: BaseProcess
    started: float


class Supervisor:
    """Runs `target(index)` in `count` spawned processes until told to stop."""

    def __init__(
        self,
        target: Callable[[int], None],
        count: int,
        *,
        stop_timeout_s: float,
        metrics_dir: Path | None,
    ) -> None:
        self._target = target
        self._count = count
        self._stop_timeout_s = stop_timeout_s
        self._metrics_dir = metrics_dir
        self._context = multiprocessing.get_context("spawn")  # no fork: threads, sqlite, ORT
        self._slots: list[WorkerSlot] = []
        self._restarts: list[float] = []
        self._stopping = False

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (exit 0) or until workers cannot be kept up (exit 1)."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._slots = [self._start(i) for i in range(self._count)]
            code = self._watch()
            self._stop_all()
            return code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self._stopping and sig == signal.SIGINT:
            for slot in self._slots:  # a second Ctrl-C: stop waiting
                slot.process.kill()
        self._stopping = True

    def _start(self, index: int) -> WorkerSlot:
        process = self._context.Process(
            target=self._target, args=(index,), name=f"shipyard-worker-{index}", daemon=False
        )
        process.start()
        return WorkerSlot(index, process, time.monotonic())

    def _watch(self) -> int:
        while not self._stopping:
            time.sleep(_POLL_S)
            for position, slot in enumerate(self._slots):
                if slot.process.is_alive() or self._stopping:
                    continue
                code = slot.process.exitcode
                self._forget(slot)
                if code == STARTUP_FAILED:
                    log.error("worker %d could not load its models; stopping", slot.index)
                    return 1
                if not self._may_restart():
                    log.error(
                        "workers keep crashing (%d restarts in a minute); stopping", _MAX_RESTARTS
                    )
                    return 1
                log.warning("worker %d exited with %s; restarting it", slot.index, code)
                self._slots[position] = self._start(slot.index)
        return 0

    def _may_restart(self) -> bool:
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < _RESTART_WINDOW_S] + [now]
        return len(self._restarts) <= _MAX_RESTARTS

    def _stop_all(self) -> None:
        alive = [s for s in self._slots if s.process.is_alive()]
        for slot in alive:
            if slot.process.pid is not None:
                _signal(slot.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout_s
        for slot in alive:
            slot.process.join(max(0.0, deadline - time.monotonic()))
        for slot in alive:
            if slot.process.is_alive():
                log.error("worker %d did not drain in time; killing it", slot.index)
                slot.process.kill()
                slot.process.join(_KILL_GRACE_S)
            self._forget(slot)

    def _forget(self, slot: WorkerSlot) -> None:
        # Live gauges of a dead worker must leave the aggregated /metrics.
        if self._metrics_dir is not None and slot.process.pid is not None:
            from prometheus_client import multiprocess  # after the environment is prepared

            multiprocess.mark_process_dead(slot.process.pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
