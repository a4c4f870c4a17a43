"""Training a run as a task on a Ray cluster (a pipeline's `ray:` config, extra shipyard[ray]).

The task runs the same training as the local child process (`child.main` on the run
directory), in a Ray worker that serves this one task (`max_calls=1`): its stdout and
stderr go to the run's log, and the process leaves with the user's code. The control
process waits for it with the run's time limit and cancels it (force: the worker is killed)
on a timeout or when told to stop. Ray is imported only here, when such a run trains.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shipyard.jobs.batch_ray import join_cluster, require_ray
from shipyard.jobs.retrain.config import RayExecutor

POLL_S = 0.5  # how often a waiting run checks whether it was told to stop

# One Ray connection per process, shared by the runs training at once.
_lock = threading.Lock()
_users = 0


class TaskFailed(Exception):
    """The Ray task did not finish with an exit code; the message says why."""


def train_on_ray(
    run_dir: Path,
    executor: RayExecutor,
    *,
    timeout_s: float,
    stopped: Callable[[], bool],
) -> int:
    """Run `child.main` for `run_dir` on the cluster; its exit code. TimeoutError after
    `timeout_s`, TaskFailed when the task (or its worker) failed or `stopped()` turned
    true; the task is cancelled in both cases."""
    with _connected(executor.address) as ray:
        remote = ray.remote(
            num_cpus=executor.num_cpus, num_gpus=executor.num_gpus, max_calls=1, max_retries=0
        )(_train_in_worker)
        ref = remote.remote(str(run_dir))
        waited = 0.0
        while True:
            ready, _ = ray.wait([ref], timeout=POLL_S)
            if ready:
                break
            waited += POLL_S
            if waited >= timeout_s or stopped():
                ray.cancel(ref, force=True)
                if stopped():
                    raise TaskFailed("stopped")
                raise TimeoutError
        try:
            code: int = ray.get(ref)
        except Exception as exc:  # RayTaskError, WorkerCrashedError, ...: one line of why
            why = f"{type(exc).__name__}: {_first_line(exc)}"
            raise TaskFailed(f"the Ray task failed: {why}") from None
        return code


def _train_in_worker(run_dir: str) -> int:
    """In the Ray worker: the run's log is this process's output, as for a child process."""
    log = os.open(Path(run_dir) / "run.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    from shipyard.jobs.retrain.child import main

    return main(["ray-task", run_dir])


@contextmanager
def _connected(address: str) -> Iterator[Any]:
    """Ray joined at `address` while the block runs; left when the last run using it ends. A
    Ray this process joined before (another part of the app) is used as it is."""
    global _users
    ray = require_ray()
    with _lock:
        if _users == 0 and not ray.is_initialized():
            join_cluster(address)
            _users = 1
        elif _users:
            _users += 1
    try:
        yield ray
    finally:
        with _lock:
            if _users:
                _users -= 1
                if _users == 0:
                    ray.shutdown()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
