"""The Python client for releases: deployments, their revisions, rollouts and rollbacks.

A thin layer over `rollouts.Deployments` / `rollouts.Rollouts` on the local registry, the way
`client.Registry` is over the registry service: the same calls the CLI makes, so a notebook or
a CI job can deploy, canary and roll back without a server.
"""

from __future__ import annotations

import builtins
from pathlib import Path
from types import TracebackType

from shipyard.app.settings import Settings
from shipyard.client.registry import Registry
from shipyard.core.errors import InvalidArgument
from shipyard.registry.models import LedgerEntry
from shipyard.rollouts import deployments, progress
from shipyard.rollouts.policy import Policy, load_policy, parse_policy
from shipyard.rollouts.spec import Deployment, Revision, Strategy


def as_policy(policy: Policy | dict[str, object] | str | Path | None) -> Policy | None:
    """A Policy from a Policy, a mapping of its fields, or a YAML/JSON file path."""
    if policy is None or isinstance(policy, Policy):
        return policy
    if isinstance(policy, dict):
        return parse_policy(policy)
    if isinstance(policy, str | Path):
        return load_policy(Path(policy))
    raise InvalidArgument(f"a policy is a Policy, a mapping or a file path, not {policy!r}")


class Deployments:
    """Named endpoints and their releases, on the registry the environment points at.

    Pass an open `Registry` to share its connection (it stays open after `close`), or a
    database `url` / `settings` to open one that this object owns.
    """

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        url: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        self._owns = registry is None
        self.registry = registry if registry is not None else Registry(url, settings=settings)
        self._deployments = deployments.Deployments(self.registry.store)
        self._rollouts = progress.Rollouts(self._deployments)

    @property
    def store(self) -> deployments.Deployments:
        """The deployments service underneath, for integrations (controllers, data planes)."""
        return self._deployments

    @property
    def rollouts(self) -> progress.Rollouts:
        return self._rollouts

    def close(self) -> None:
        if self._owns:
            self.registry.close()

    def __enter__(self) -> Deployments:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- releasing ---------------------------------------------------------------------------

    def deploy(
        self,
        name: str,
        model: str,
        *,
        strategy: Strategy | str = Strategy.DIRECT,
        weight: int | None = None,
        policy: Policy | dict[str, object] | str | Path | None = None,
        sticky_field: str | None = None,
        reason: str | None = None,
        expected_revision: int | None = None,
    ) -> Revision:
        """Route deployment `name` to `model` (`fraud:2`, `fraud@staging`) by `strategy`.

        A canary with a `policy` (a Policy, its fields, or a YAML file) starts a progressive
        rollout that the control plane's controller analyses, promotes or rolls back.
        With `expected_revision` the deploy is refused (Conflict) unless that is still the
        current revision (0: unless the deployment is new).
        """
        return self._deployments.deploy(
            name,
            model,
            strategy=strategy,
            weight=weight,
            policy=as_policy(policy),
            sticky_field=sticky_field,
            reason=reason,
            expected_revision=expected_revision,
        )

    def rollback(
        self,
        name: str,
        *,
        to: int | None = None,
        reason: str | None = None,
        expected_revision: int | None = None,
    ) -> Revision:
        """Route like revision `to` again (default: the one before the current) as a new
        revision; an active rollout ends as rolled back. With `expected_revision`, refused
        (Conflict) if the deployment is no longer at that revision."""
        return self._deployments.rollback(
            name, to=to, reason=reason, expected_revision=expected_revision
        )

    # -- reading -----------------------------------------------------------------------------

    def get(self, name: str) -> Deployment:
        return self._deployments.get(name)

    def list(self) -> builtins.list[Deployment]:
        return self._deployments.list()

    def revisions(self, name: str) -> builtins.list[Revision]:
        return self._deployments.revisions(name)

    def history(self, name: str) -> builtins.list[LedgerEntry]:
        """Every deploy, rollout decision and rollback of `name`, oldest first."""
        return self._deployments.history(name)

    # -- rollouts ----------------------------------------------------------------------------

    def rollout(self, name: str) -> progress.Rollout | None:
        """The running or paused rollout of `name`, if any."""
        return self._rollouts.current(name)

    def latest_rollout(self, name: str) -> progress.Rollout:
        """The most recent rollout of `name`, finished or not (NotFound if it never had one)."""
        return self._rollouts.latest(name)

    # With `expected_revision`, refused (Conflict) unless `name` is still at that revision.

    def pause(
        self, name: str, *, reason: str | None = None, expected_revision: int | None = None
    ) -> progress.Rollout:
        return self._rollouts.pause(name, reason=reason, expected_revision=expected_revision)

    def resume(
        self, name: str, *, reason: str | None = None, expected_revision: int | None = None
    ) -> progress.Rollout:
        return self._rollouts.resume(name, reason=reason, expected_revision=expected_revision)

    def promote(
        self, name: str, *, reason: str | None = None, expected_revision: int | None = None
    ) -> progress.Rollout:
        """Give the candidate all traffic now, ending the rollout as promoted."""
        return self._rollouts.promote(name, reason=reason, expected_revision=expected_revision)

    def abort(
        self, name: str, *, reason: str | None = None, expected_revision: int | None = None
    ) -> progress.Rollout:
        """Send all traffic back to the baseline, ending the rollout as aborted."""
        return self._rollouts.abort(name, reason=reason, expected_revision=expected_revision)
