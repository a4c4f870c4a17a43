"""ModelHost: the loaded versions of the served refs, following aliases and `latest`.

Each configured ref (`fraud`, `fraud:3`, `fraud@production`) serves under its registry name.
A background task polls `registry.revision()` (one cheap query) and, when it moved,
re-resolves the floating refs (alias or bare name). A ref that now resolves to another version
gets it loaded and warmed up in a worker thread, then published with one assignment of the
lookup table; the old version is retired only after the requests inside it are answered.
Deployments pin exact versions (`pin`/`keep_pinned`, driven by the rollouts watcher): they
are loaded and warmed before the caller publishes a routing table that needs them, and retired
the same way once no revision needs them.
A failed load keeps the previous version serving, is logged and counted, and shows in
`repository_index()` with its reason; failed work is retried with backoff. An unreachable
registry is logged once and the loaded models keep serving (security.md rule 7, P1, P2, P11).

Invariant the hot swap relies on: callers do not await between `get()` and
`ServedModel.infer()`, so a version is never closed under a request that already picked it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from shipyard.core.errors import InvalidArgument, NotFound, ShipyardError, Unavailable
from shipyard.core.refs import ModelRef, check_name
from shipyard.registry.service import Registry
from shipyard.serving.batcher import BatchSettings
from shipyard.serving.metrics import ServingMetrics
from shipyard.serving.served import Loader, ServedModel, load_served
from shipyard.serving.types import ModelState, RepositoryEntry

logger = logging.getLogger(__name__)

RETRY_MAX_S = 60.0
KEPT_FAILURES = 50  # failed loads remembered for the repository index


@dataclass(slots=True, eq=False)
class _Slot:
    """One served ref and the version it currently serves."""

    ref: ModelRef
    configured: bool
    version: int | None = None
    active: bool = True  # False after unload()
    reason: str = ""  # why it is not (or not newly) served

    @property
    def floating(self) -> bool:
        return self.ref.version is None


@dataclass(frozen=True, slots=True)
class _Table:
    """What requests see; replaced whole, so a reader never sees half an update."""

    versions: Mapping[tuple[str, int], ServedModel]
    defaults: Mapping[str, ServedModel]
    pinned: Mapping[tuple[str, int], ServedModel]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ShipyardError):
        return exc.message
    return f"{type(exc).__name__} (details in the server log)"  # may hold paths: not shown


def _version_number(text: str) -> int | None:
    if text.isascii() and text.isdigit() and len(text) < 19:
        return int(text)
    return None


class ModelHost:
    """Holds the served model versions; see the module docstring."""

    def __init__(
        self,
        registry: Registry,
        refs: Sequence[ModelRef],
        *,
        loader: Loader,
        batch: BatchSettings | None = None,
        metrics: ServingMetrics | None = None,
        poll_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        require_refs: bool = True,
    ) -> None:
        if not refs and require_refs:
            raise InvalidArgument("give at least one model to serve")
        if not poll_interval_s > 0:
            raise InvalidArgument(f"poll_interval_s must be > 0, got {poll_interval_s!r}")
        self._registry = registry
        self._loader = loader
        self._batch = batch or BatchSettings()
        self._metrics = metrics
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        self._slots = [_Slot(ref, configured=True) for ref in dict.fromkeys(refs)]
        self._pool: dict[tuple[str, int], ServedModel] = {}
        self._table = _Table({}, {}, {})
        self._pinned: set[tuple[str, int]] = set()
        self._failures: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._revision: int | None = None
        self._retry_at: float | None = None
        self._retries = 0
        self._unreachable = False
        self._started = False
        self._start_done = asyncio.Event()
        self._draining = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    async def wait_started(self, timeout_s: float) -> None:
        """Wait (bounded) for the first load. A worker that is still loading must hold a
        request rather than refuse it: the kernel hands connections to every worker sharing
        the port, ready or not, so a refusal here would be a failed request (P1)."""
        if not self._started:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._start_done.wait(), timeout_s)

    async def start(self) -> None:
        """Load every ref, then follow the registry. Raises the first load error (after
        releasing what did load): misconfiguration fails at startup."""
        try:
            await self._start()
        finally:
            self._start_done.set()

    async def _start(self) -> None:
        async with self._lock:
            self._revision = await asyncio.to_thread(self._registry.revision)
            errors = await self._sync(self._slots)
            self._publish()
        if errors:
            await self.drain(0)
            raise errors[0]
        self._started = True
        self._poller = asyncio.get_running_loop().create_task(self._poll(), name="model-host")

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Refuse new requests, let the ones inside finish (up to `timeout_s`), close."""
        self._draining = True
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        served = list(self._pool.values())
        self._pool.clear()
        self._pinned.clear()
        self._table = _Table({}, {}, {})
        idle = asyncio.gather(*(s.wait_idle() for s in served))
        try:
            await asyncio.wait_for(idle, timeout_s)
        except TimeoutError:
            busy = sum(s.in_flight for s in served)
            logger.warning("drain: %d requests still running after %.1fs", busy, timeout_s)
        await asyncio.gather(*(s.close() for s in served), *self._retiring)

    def ready(self) -> bool:
        """Every active ref has a version serving (and the host is not shutting down)."""
        if self._draining or not self._started:
            return False
        return all(s.version is not None for s in self._slots if s.active)

    # -- lookups (the request path) ----------------------------------------------------------

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The version that answers `name` (its default) or exactly `name` `version`."""
        if self._draining:
            raise Unavailable("server is shutting down")
        table = self._table
        if version is None:
            served = table.defaults.get(name)
        else:
            number = _version_number(version)
            served = table.versions.get((name, number)) if number is not None else None
        if served is not None:
            return served
        raise self._why_not(name, version)

    def _why_not(self, name: str, version: str | None) -> ShipyardError:
        slots = [s for s in self._slots if s.ref.name == name and s.active]
        if not slots:
            return NotFound(f"model {name!r} is not served")
        pending = [
            s
            for s in slots
            if s.version is None and (version is None or str(s.ref.version) == version)
        ]
        if not pending and version is not None:
            return NotFound(f"model {name!r} version {version} is not served")
        reason = next((s.reason for s in pending if s.reason), "")
        return Unavailable(f"model {name!r} is not ready" + (f": {reason}" if reason else ""))

    def is_ready(self, name: str, version: str | None = None) -> bool:
        if not any(s.ref.name == name for s in self._slots):
            raise NotFound(f"model {name!r} is not served")
        try:
            self.get(name, version)
        except ShipyardError:
            return False
        return True

    def versions(self, name: str) -> list[ServedModel]:
        found = [s for (n, _), s in self._table.versions.items() if n == name]
        return sorted(found, key=lambda s: s.version)

    def pinned(self, name: str, version: int) -> ServedModel | None:
        """Exactly `name` `version` if a deployment pinned it (the routed request path)."""
        return self._table.pinned.get((name, version))

    @property
    def default_model(self) -> str:
        return self._slots[0].ref.name if self._slots else ""

    def repository_index(self) -> list[RepositoryEntry]:
        entries: dict[tuple[str, str], RepositoryEntry] = {}
        for (name, number), _ in self._table.versions.items():
            entries[(name, str(number))] = RepositoryEntry(name, str(number), ModelState.READY)
        for slot in self._slots:
            name, wanted = slot.ref.name, str(slot.ref.version or "")
            if not slot.active:
                entry = RepositoryEntry(name, wanted, ModelState.UNAVAILABLE, "unloaded")
            elif slot.version is None:
                state = ModelState.UNAVAILABLE if slot.reason else ModelState.LOADING
                entry = RepositoryEntry(name, wanted, state, slot.reason)
            else:
                continue
            if not any(n == name for n, _ in entries):
                entries[(name, wanted)] = entry
        for (name, number), reason in self._failures.items():
            key = (name, str(number))
            entries.setdefault(key, RepositoryEntry(*key, ModelState.UNAVAILABLE, reason))
        return sorted(entries.values(), key=lambda e: (e.name, len(e.version), e.version))

    # -- repository extension ----------------------------------------------------------------

    async def load(self, name: str) -> None:
        """Serve `name` again (its configured refs) or newly (its latest version)."""
        check_name(name)
        if self._draining:
            raise Unavailable("server is shutting down")
        async with self._lock:
            slots = [s for s in self._slots if s.ref.name == name]
            added = not slots
            if added:
                slots = [_Slot(ModelRef(name), configured=False)]
                self._slots.extend(slots)
            for slot in slots:
                slot.active = True
            errors = await self._sync(slots)
            if errors and added:
                self._slots.remove(slots[0])
            self._publish()
        if errors:
            raise errors[0]

    async def unload(self, name: str) -> None:
        async with self._lock:
            slots = [s for s in self._slots if s.ref.name == name and s.active]
            if not slots:
                raise NotFound(f"model {name!r} is not loaded")
            for slot in slots:
                slot.active, slot.version, slot.reason = False, None, ""
            self._slots = [s for s in self._slots if s.configured or s.active]
            self._publish()

    # -- versions pinned by deployments ------------------------------------------------------

    async def pin(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """Load and warm every (name, version) not yet held, and keep them held. Returns
        the ones that failed to load, with the reason (also logged and in the index)."""
        failed: dict[tuple[str, int], str] = {}
        async with self._lock:
            if self._draining:
                raise Unavailable("server is shutting down")
            for key in dict.fromkeys(keys):
                if key not in self._pool:
                    try:
                        self._pool[key] = await self._load(*key)
                    except Exception as exc:
                        failed[key] = _reason(exc)
                        continue
                self._pinned.add(key)  # at once: a concurrent publish must not retire it
            self._publish()
        return failed

    async def keep_pinned(self, keys: Iterable[tuple[str, int]]) -> None:
        """Release pinned versions not in `keys`: retired once their requests are answered."""
        async with self._lock:
            self._pinned.intersection_update(keys)
            if not self._draining:
                self._publish()

    # -- following the registry --------------------------------------------------------------

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            try:
                await self._tick()
            except Exception:  # a bug here must not stop the following of aliases
                logger.exception("model host poll failed")

    async def _tick(self) -> None:
        try:
            revision = await asyncio.to_thread(self._registry.revision)
        except Exception as exc:
            if not self._unreachable:
                logger.warning(
                    "registry unreachable (%s); still serving the loaded models", _reason(exc)
                )
                self._unreachable = True
            return
        if self._unreachable:
            logger.info("registry reachable again")
            self._unreachable = False
        due = self._retry_at is not None and self._clock() >= self._retry_at
        if revision == self._revision and not due:
            return
        async with self._lock:
            if self._draining:
                return
            slots = [s for s in self._slots if s.active and (s.floating or s.version is None)]
            errors = await self._sync(slots)
            self._publish()
        self._revision = revision
        self._backoff(failed=bool(errors))

    def _backoff(self, *, failed: bool) -> None:
        if not failed:
            self._retries, self._retry_at = 0, None
            return
        delay = min(RETRY_MAX_S, self._poll_interval_s * 2**self._retries)
        self._retries += 1
        self._retry_at = self._clock() + delay

    async def _sync(self, slots: Sequence[_Slot]) -> list[Exception]:
        """Point each slot at the version its ref resolves to now, loading it if needed."""
        errors: list[Exception] = []
        for slot in slots:
            try:
                resolved = await asyncio.to_thread(self._registry.resolve, slot.ref)
                key = (slot.ref.name, resolved.version)
                if key not in self._pool:
                    self._pool[key] = await self._load(*key)
                slot.version, slot.reason = resolved.version, ""
            except Exception as exc:
                slot.reason = _reason(exc)
                if slot.version is not None:
                    slot.reason = f"still serving version {slot.version}: {slot.reason}"
                errors.append(exc)
        return errors

    async def _load(self, name: str, number: int) -> ServedModel:
        started = time.perf_counter()
        try:
            warm = await asyncio.to_thread(load_served, self._registry, self._loader, name, number)
        except Exception as exc:
            self._failed(name, number, exc)
            raise
        self._failures.pop((name, number), None)
        seconds = time.perf_counter() - started
        if self._metrics is not None:
            self._metrics.loaded(name, seconds)
        logger.info("loaded %s:%d in %.2fs", name, number, seconds)
        return ServedModel(warm, self._batch, self._metrics)

    def _failed(self, name: str, number: int, exc: Exception) -> None:
        key = (name, number)
        repeated = key in self._failures
        self._failures[key] = _reason(exc)
        self._failures.move_to_end(key)
        while len(self._failures) > KEPT_FAILURES:
            self._failures.popitem(last=False)
        if self._metrics is not None:
            self._metrics.load_failed(name)
        log = logger.debug if repeated else logger.warning
        log("loading %s:%d failed: %s", name, number, _reason(exc), exc_info=exc)

    def _publish(self) -> None:
        """Swap in the table the slots describe; retire versions no slot serves any more."""
        versions: dict[tuple[str, int], ServedModel] = {}
        defaults: dict[str, ServedModel] = {}
        # The first floating ref of a name gives its default version, else its first ref.
        ordered = sorted(self._slots, key=lambda s: not s.floating)
        for slot in ordered:
            if slot.active and slot.version is not None:
                served = self._pool[(slot.ref.name, slot.version)]
                versions[(served.name, served.version)] = served
                defaults.setdefault(served.name, served)
        pinned = {key: self._pool[key] for key in self._pinned if key in self._pool}
        self._table = _Table(versions, defaults, pinned)  # the swap: one assignment
        for key in [k for k in self._pool if k not in versions and k not in pinned]:
            retired = self._pool.pop(key)
            task = asyncio.get_running_loop().create_task(retired.close())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        if self._metrics is not None:
            for name, served in defaults.items():
                self._metrics.serving(name, served.version)
