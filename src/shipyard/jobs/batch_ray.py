"""The Ray engine of `shipyard batch score` (`engine="ray"`, extra `shipyard[ray]`).

The job is planned as the local engine plans it (`plan.remote_tasks`: the same chunks, the
same part numbers) and the tasks become a Ray Data dataset, mapped by a pool of `workers`
actors that each load the model once (`scorer.load_model`, the worker-process path) and
write their parts (and errors) atomically into `output`, as a worker process does. This
process alone commits parts to the manifest as they come back, so the guarantees are the
local engine's: a part counts only once the manifest lists it, a re-run of a finished job is
a no-op (Ray is not even started), and a re-run after a crash scores every row exactly once,
redoing only tasks with a chunk not yet listed. The output is the local engine's, byte for
byte: the same part files, so the same checksum.

A Ray already initialized in this process is used as it is; otherwise the job joins the
cluster at `ray_address` (the CLI takes RAY_ADDRESS) or starts a local Ray with `workers`
CPUs, and leaves or shuts it down at the end. On a cluster, every node must see `input` and
`output` at the same paths (a shared filesystem) and have shipyard installed. `ray` is
imported only here, and only when the engine runs, so `import shipyard` never imports it.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import socket
import warnings
from collections.abc import Generator, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson
import tenacity

from shipyard.core.errors import FailedPrecondition, ShipyardError, Unavailable
from shipyard.jobs.layout import Layout
from shipyard.jobs.manifest import Manifest, PartRecord
from shipyard.jobs.run import Progress, commit_results, drop_uncommitted
from shipyard.jobs.scorer import FileTask, GroupTask, ModelSource, Scorer, load_model

if TYPE_CHECKING:
    from types import ModuleType

INSTALL_HINT = "pip install 'shipyard[ray]'"

PROBE_TIMEOUT_S = 5.0  # connecting to a head node that is up takes milliseconds


def require_ray() -> ModuleType:
    """`ray` with Ray Data, or an error that says how to get it."""
    try:
        import ray
        import ray.data  # the extra is ray[data]: its dependencies must be there
    except ImportError as exc:
        raise FailedPrecondition(
            f"the ray engine needs Ray Data, which is not installed ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from None
    return ray


def run_on_ray(
    tasks: Sequence[GroupTask | FileTask],
    manifest: Manifest,
    output: Path,
    source: ModelSource,
    layout: Layout,
    workers: int,
    max_error_rate: float,
    total: int | None,
    progress: Progress | None,
    address: str | None,
) -> None:
    """Score `tasks` on Ray and commit their parts to `manifest`, as `run.run_tasks` does."""
    if not tasks:  # every part is listed (the last run died before marking the job done)
        commit_results(_nothing(), manifest, output, max_error_rate, total, progress)
        return
    try:
        with _connected(address, workers):
            results = _scored(tasks, source, layout, output, workers)
            commit_results(results, manifest, output, max_error_rate, total, progress)
    except BaseException:
        # Again, now that the actors are gone: one may have finished a part after the first.
        drop_uncommitted(output, manifest)
        raise


def _nothing() -> Generator[list[PartRecord], None, None]:
    yield from ()


def probe_address(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Refuse an address nothing listens on before ray.init, which retries such an address
    for ever. `auto` and addresses without a port are left to Ray."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise Unavailable(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} "
            "(is it running? RAY_ADDRESS / --ray-address name its head node)",
            details={"address": address},
        ) from None


def start_local(workers: int) -> None:
    """Start a Ray on this machine with `workers` CPUs. Ray gives its raylet and GCS a fixed
    30 s to come up, which a busy machine can miss: a failed start is cleaned up (its
    processes stopped) and tried once more before it is reported."""
    ray = require_ray()
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(2),
        wait=tenacity.wait_fixed(1.0),
        before_sleep=lambda _: ray.shutdown(),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                # address="local": never join another cluster found on this machine by surprise.
                ray.init(
                    address="local",
                    num_cpus=workers,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                )
    except Exception as exc:  # Ray raises bare Exception/RuntimeError on a timed-out start
        ray.shutdown()
        raise Unavailable(f"a local Ray did not start (tried twice): {exc}") from None


def join_cluster(address: str) -> None:
    """Join the Ray cluster at `address` from this process, or Unavailable saying why."""
    ray = require_ray()
    probe_address(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, ValueError) as exc:
        raise Unavailable(
            f"cannot connect to the Ray cluster at {address}: {exc} (a cluster with token "
            "authentication also needs RAY_AUTH_MODE=token and its token)",
            details={"address": address},
        ) from None


@contextlib.contextmanager
def _connected(address: str | None, workers: int) -> Iterator[None]:
    """Ray at `address`, the Ray this process already joined, or a local one started here."""
    ray = require_ray()
    started = False
    if ray.is_initialized():
        pass  # the caller's Ray (and its cluster): used as it is, left as it is
    elif address:
        join_cluster(address)
        started = True  # this process joined: it leaves (the cluster goes on)
    else:
        start_local(workers)
        started = True
    with warnings.catch_warnings():
        # Ray's default DataContext sets a field Ray itself deprecates (ray 2.60).
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ray.data.DataContext.get_current()
    bars, context.enable_progress_bars = context.enable_progress_bars, False
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    # Not Ray Data's notes (execution plan, "progress bars disabled") on the job's console.
    data_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        data_logger.setLevel(level)
        context.enable_progress_bars = bars
        if started:
            ray.shutdown()


def _scored(
    tasks: Sequence[GroupTask | FileTask],
    source: ModelSource,
    layout: Layout,
    output: Path,
    workers: int,
) -> Generator[list[PartRecord], None, None]:
    """The parts of each task as it finishes (in completion order)."""
    import ray.data

    # One task per block: a block goes to one actor, so this spreads the tasks evenly. Tasks
    # travel pickled (Arrow has no type for them; Ray would pickle them too, and log it).
    items = [{"task": pickle.dumps(t)} for t in tasks]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    scored = dataset.map_batches(
        ScoreActor,
        fn_constructor_args=(source, layout, output),
        batch_size=1,
        batch_format="numpy",
        # No more actors than tasks (Ray Data warns of actors it cannot keep busy).
        compute=ray.data.ActorPoolStrategy(size=min(workers, len(items))),
        num_cpus=1,
    )
    for row in scored.iter_rows():
        if row["error"]:
            raise pickle.loads(row["error"])  # noqa: S301  # pickled by our own ScoreActor
        yield [PartRecord(**record) for record in orjson.loads(row["parts"])]


class ScoreActor:
    """One Ray actor: the model loaded once, then one task per call.

    A ShipyardError (a file that cannot be read, say) comes back as data: Ray would hand the
    driver a wrapper holding only its text, and the caller needs its kind and details.
    """

    def __init__(self, source: ModelSource, layout: Layout, output: Path) -> None:
        self.scorer = Scorer(load_model(source), layout, output)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[bytes]]:
        parts: list[bytes] = []
        errors: list[bytes] = []
        for raw in batch["task"]:
            try:
                # S301: pickled by this job's own driver (`_scored`), not read from outside.
                done = self.scorer.run(pickle.loads(raw))  # noqa: S301
            except ShipyardError as exc:
                parts.append(b"[]")
                errors.append(pickle.dumps(exc))
            else:
                parts.append(orjson.dumps([asdict(p) for p in done]))
                errors.append(b"")
        return {"parts": parts, "error": errors}
