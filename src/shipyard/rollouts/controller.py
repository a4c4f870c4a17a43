"""The progressive rollout controller: ends each analysis window in advance, promote, hold or
rollback, by the statistics the data planes recorded.

A window closes when it has lasted `policy.window_s` and both variants have served
`policy.min_requests`. The rollout's first window starts `policy.warmup_s` late: what the
candidate served before that is not analysed. A window over time but short of requests keeps
collecting: waiting is free, while deciding on a handful of requests is what the analysis
exists to avoid. Only when a window reaches WAIT_FACTOR times `window_s` without the requests
is it recorded as a hold (too little traffic is then a fact worth the ledger), and like an
inconclusive analysis it counts towards `policy.max_windows`, after which the rollout is
rolled back: a candidate nobody can judge is not promoted.

A candidate that a data plane could not load is rolled back on the next tick, window or not:
the planes report it (`load_reports`) against the deployment's current revision, and waiting
for windows that cannot fill would only delay the rollback and hide its reason.

The controller keeps no state of its own: each tick reads the running rollouts from the
database and applies decisions through `Rollouts.decide(expected_step=...)`, so a restarted
controller resumes where the last one stopped, two controllers cannot both move a rollout, and
a manual pause, promote or abort that lands first wins (the decision is refused and dropped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from shipyard.core.errors import Conflict, InvalidArgument, NotFound
from shipyard.rollouts import load_reports, observations
from shipyard.rollouts.analysis import Outcome, analyse
from shipyard.rollouts.progress import Decision, Rollout, Rollouts
from shipyard.storage.tables import utcnow

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# A window short of requests is recorded as a hold after this many window lengths.
WAIT_FACTOR = 4
MAX_REPORTED_PLANES = 20  # load failures kept in a decision's numbers
MAX_REASON = 2000  # distinct load-failure reasons of many planes, cut to stay readable


class Controller:
    """Runs every running rollout's analysis windows; `run()` until cancelled."""

    def __init__(self, rollouts: Rollouts, *, clock: Clock = utcnow, tick_s: float = 1.0) -> None:
        if not tick_s > 0:
            raise InvalidArgument(f"tick_s must be positive, got {tick_s!r}")
        self.rollouts = rollouts
        self.clock = clock
        self.tick_s = tick_s
        self.failures = 0  # ticks or rollouts whose pass raised (logged), for tests and metrics

    async def run(self) -> None:
        """Tick every `tick_s` until cancelled. A failing tick is logged and the loop goes on:
        one bad rollout or a database outage must not stop every other rollout for good."""
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                logger.exception("rollout controller: tick failed; retrying in %s s", self.tick_s)
            await asyncio.sleep(self.tick_s)

    async def tick(self) -> list[Decision]:
        """One pass over the running rollouts; returns the decisions applied."""
        return await asyncio.to_thread(self.tick_now)

    def tick_now(self) -> list[Decision]:
        """`tick` without the thread (the database calls are blocking)."""
        applied: list[Decision] = []
        for rollout in self.rollouts.running():
            try:
                decision = self.evaluate(rollout)
                if decision is not None and self._apply(rollout, decision):
                    applied.append(decision)
            except Exception:
                self.failures += 1
                logger.exception("rollout controller: rollout of %r failed", rollout.deployment)
        return applied

    def evaluate(self, rollout: Rollout) -> Decision | None:
        """The decision ending `rollout`'s current window, or None while it collects."""
        policy = rollout.policy
        now = self.clock()
        unloadable = self._unloadable(rollout, now)
        if unloadable is not None:
            return unloadable
        since = rollout.window_started_at
        if not rollout.decisions:  # the first window: the candidate's first requests ever
            since += timedelta(seconds=policy.warmup_s)
        elapsed = (now - since).total_seconds()
        if elapsed < policy.window_s:
            return None
        revision = self.rollouts.deployments.get(rollout.deployment).revision
        observed = observations.observe(
            self.rollouts.database,
            rollout.deployment,
            revision.number,
            since=since,
            labels="revision",  # late ground truth still counts
        )
        baseline, candidate = observed.of(rollout.baseline), observed.of(rollout.candidate)
        shadow = revision.spec.shadow
        context: dict[str, Any] = {"revision": revision.number, "elapsed_s": round(elapsed, 3)}
        needed = policy.min_requests
        if min(baseline.requests, candidate.requests) < needed:
            if elapsed < policy.window_s * WAIT_FACTOR:
                return None  # keep collecting
            counts = {"baseline": baseline.requests, "candidate": candidate.requests}
            reason = (
                f"too few requests after {elapsed:.0f} s (baseline {baseline.requests}, "
                f"candidate {candidate.requests}; {needed} needed from each)"
            )
            return self._inconclusive(rollout, now, reason, {**context, "requests": counts})
        verdict = analyse(
            policy,
            baseline,
            candidate,
            shadow=observed.shadow_of(shadow) if shadow is not None else None,
        )
        numbers = {**context, **verdict.numbers}
        if verdict.outcome is Outcome.PASS:
            return self._decision(rollout, now, "advance", verdict.reason, numbers)
        if verdict.outcome is Outcome.FAIL:
            return self._decision(rollout, now, "rollback", verdict.reason, numbers)
        return self._inconclusive(rollout, now, verdict.reason, numbers)

    def _unloadable(self, rollout: Rollout, now: datetime) -> Decision | None:
        """A rollback when data planes report that the candidate of the current revision
        could not be loaded (a baseline that does not load is no reason to go back to it)."""
        ref = rollout.candidate.ref
        reports = [
            r
            for r in load_reports.current(self.rollouts.database, rollout.deployment)
            if ref in r.versions
        ]
        if not reports:
            return None
        planes = len(reports)
        reasons = "; ".join(dict.fromkeys(r.versions[ref] for r in reports))
        reason = (
            f"{ref} could not be loaded on {planes} data plane{'s' if planes != 1 else ''}: "
            f"{reasons}"
        )
        numbers: dict[str, Any] = {
            "revision": reports[0].revision,
            "load_failures": [
                {"plane": r.plane, "reason": r.versions[ref], "at": r.at.isoformat()}
                for r in reports[:MAX_REPORTED_PLANES]
            ],
        }
        return self._decision(rollout, now, "rollback", reason[:MAX_REASON], numbers)

    def _inconclusive(
        self, rollout: Rollout, now: datetime, reason: str, numbers: dict[str, Any]
    ) -> Decision:
        windows = rollout.windows + 1  # this one included
        if windows >= rollout.policy.max_windows:
            reason = f"no conclusion after {windows} windows: {reason}"
            return self._decision(rollout, now, "rollback", reason, numbers)
        return self._decision(rollout, now, "hold", reason, numbers)

    def _decision(
        self, rollout: Rollout, now: datetime, outcome: str, reason: str, numbers: dict[str, Any]
    ) -> Decision:
        return Decision(now, rollout.step, rollout.weight, outcome, reason, numbers)

    def _apply(self, rollout: Rollout, decision: Decision) -> bool:
        try:
            self.rollouts.decide(rollout.id, decision, expected_step=rollout.step)
        except (Conflict, NotFound) as exc:
            # A manual pause, promote, abort or rollback (or another controller) came first.
            logger.info("rollout of %r: decision dropped (%s)", rollout.deployment, exc)
            return False
        logger.info(
            "rollout of %r at %d%%: %s (%s)",
            rollout.deployment,
            rollout.weight,
            decision.outcome,
            decision.reason,
        )
        return True
