"""Watcher: keeps one data plane's routing table on the current deployment revisions.

Every `poll_interval_s` it reads `registry.revision()` (one cheap query; the ledger bumps it on
every deployment change). When it moved, it reads `Deployments.snapshot()`, has the host load
and warm every version a changed revision needs, and only then publishes the new routing
table, so a blue-green switch happens at once and only when warm. Versions no revision needs
any more are released after the switch (retired when their requests are answered). A revision
whose versions cannot be loaded is not applied: the deployment keeps routing by its previous
revision, the failure is logged and shown in the repository index, and loading is retried with
backoff. The failure is also reported to the control plane (`load_reports`: one row per
deployment, revision and plane, written from a thread, again only when the reason changes, and
cleared once the plane applies that revision or a later one), so the rollout controller can roll
a candidate that does not load back at once. An unreachable database is logged once; routing
goes on as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from shipyard.registry.service import Registry
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.load_reports import LoadReports, describe
from shipyard.rollouts.recorder import plane_id
from shipyard.rollouts.router import Router
from shipyard.rollouts.spec import Revision
from shipyard.serving.host import ModelHost

logger = logging.getLogger(__name__)

RETRY_MAX_S = 30.0
Key = tuple[str, int]


def _keys(revisions: Iterable[Revision]) -> set[Key]:
    return {(v.model, v.version) for r in revisions for v in r.spec.loaded()}


class Watcher:
    """Follows deployment revisions for `names` (None: every deployment)."""

    def __init__(
        self,
        registry: Registry,
        host: ModelHost,
        router: Router,
        *,
        names: Iterable[str] | None = None,
        poll_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        plane: str | None = None,
    ) -> None:
        self._registry = registry
        self._deployments = Deployments(registry)
        self._host = host
        self._router = router
        self._names = frozenset(names) if names is not None else None
        self._interval = poll_interval_s
        self._clock = clock
        self._applied: dict[str, Revision] = {}
        self._seen: int | None = None  # registry revision last applied in full
        self._retries = 0
        self._retry_at: float | None = None
        self._unreachable = False
        self._task: asyncio.Task[None] | None = None
        self.failures: dict[str, str] = {}  # deployment -> why its newest revision is not live
        self.reports = LoadReports(registry.database, plane or plane_id())
        # deployment -> (revision, reason) last reported failed: a retry writes only a change
        self._reported: dict[str, tuple[int, str]] = {}
        self._report_failing = False

    @property
    def applied(self) -> Mapping[str, Revision]:
        return self._applied

    async def start(self) -> None:
        """Apply the current revisions (loading their versions), then follow changes."""
        await self.sync()
        self._task = asyncio.get_running_loop().create_task(self._poll(), name="deployments")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.tick()
            except Exception:  # a bug here must not stop following revisions
                logger.exception("deployment watcher failed")

    async def tick(self) -> None:
        try:
            revision = await asyncio.to_thread(self._registry.revision)
        except Exception as exc:
            self._down(exc)
            return
        due = self._retry_at is not None and self._clock() >= self._retry_at
        if revision != self._seen or due:
            await self.sync(revision)

    async def sync(self, revision: int | None = None) -> None:
        """Read the snapshot and apply it (`revision`: the registry revision it reflects)."""
        try:
            if revision is None:
                revision = await asyncio.to_thread(self._registry.revision)
            snapshot = await asyncio.to_thread(self._deployments.snapshot)
        except Exception as exc:
            self._down(exc)
            if not self._router.ready():
                self._router.apply({})  # serve what we have; revisions follow when reachable
            return
        if self._unreachable:
            logger.info("deployments readable again")
            self._unreachable = False
        failed = await self.apply(snapshot)
        self._seen = revision
        self._backoff(failed=failed)

    async def apply(self, snapshot: Mapping[str, Revision]) -> bool:
        """Load what the wanted revisions need, publish them, release the rest. Returns
        whether some revision could not be applied."""
        wanted = {n: r for n, r in snapshot.items() if self._names is None or n in self._names}
        changed = {
            name: revision
            for name, revision in wanted.items()
            if name not in self._applied or self._applied[name] != revision
        }
        failed = await self._host.pin(_keys(changed.values()))
        table = {name: self._applied[name] for name in wanted if name in self._applied}
        reports: list[tuple[str, int, dict[str, str] | None]] = []
        for name, revision in changed.items():
            missing = {
                v.ref: failed[(v.model, v.version)]
                for v in revision.spec.loaded()
                if (v.model, v.version) in failed
            }
            if missing:
                self._not_applied(name, revision, describe(missing))
                reports.append((name, revision.number, missing))
                continue
            table[name] = revision
            self.failures.pop(name, None)
            reports.append((name, revision.number, None))
            if name in self._applied:
                logger.info("deployment %s: now routing by revision %d", name, revision.number)
        waiting = {name: self.failures[name] for name in wanted if name in self.failures}
        self._router.apply(table, waiting)
        self._applied = table
        await self._host.keep_pinned(_keys(table.values()))
        for name, number, versions in reports:
            await self._report(name, number, versions)
        return bool(failed)

    def _not_applied(self, name: str, revision: Revision, reason: str) -> None:
        previous = self._applied.get(name)
        still = f"still routing revision {previous.number}" if previous else "not routed"
        first = self.failures.get(name) != reason
        self.failures[name] = f"revision {revision.number} not applied ({still}): {reason}"
        (logger.warning if first else logger.debug)("deployment %s: %s", name, self.failures[name])

    async def _report(self, name: str, revision: int, missing: dict[str, str] | None) -> None:
        """Tell the control plane that `revision` failed (`missing`) or is applied (None).
        Written only when it changes what this plane last reported, from a thread; a failing
        database is logged and the report retried with the next attempt, never raised."""
        reported = self._reported.get(name)
        if missing is None:
            if reported is None or reported[0] > revision:
                return  # nothing of ours to clear
            write = functools.partial(self.reports.applied, name, revision)
        else:
            if reported == (revision, describe(missing)):
                return  # a retry that failed the same way: nothing new to say
            write = functools.partial(self.reports.failed, name, revision, missing)
        try:
            await asyncio.to_thread(write)
        except Exception as exc:
            if not self._report_failing:
                logger.warning("deployment %s: load report not written (%s)", name, exc)
                self._report_failing = True
            return
        self._report_failing = False
        if missing is None:
            self._reported.pop(name, None)
        else:
            self._reported[name] = (revision, describe(missing))

    def _down(self, exc: Exception) -> None:
        if not self._unreachable:
            logger.warning("deployments unreadable (%s); routing stays as it is", exc)
            self._unreachable = True

    def _backoff(self, *, failed: bool) -> None:
        if not failed:
            self._retries, self._retry_at = 0, None
            return
        delay = min(RETRY_MAX_S, self._interval * 2**self._retries)
        self._retries += 1
        self._retry_at = self._clock() + delay
