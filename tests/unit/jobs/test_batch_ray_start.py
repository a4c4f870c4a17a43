"""Starting a local Ray: a start that times out (as Ray's fixed 30 s raylet wait can on a busy
machine) is cleaned up and tried once more; a second failure is one clear Unavailable."""

from __future__ import annotations

import pytest

from shipyard.core.errors import Unavailable
from shipyard.jobs import batch_ray


class FakeRay:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[str] = []

    def init(self, **options: object) -> None:
        self.calls.append(f"init num_cpus={options['num_cpus']} address={options['address']}")
        if self.failures:
            self.failures -= 1
            raise Exception("The current node timed out during startup.")

    def shutdown(self) -> None:
        self.calls.append("shutdown")


def test_a_timed_out_start_is_cleaned_up_and_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRay(failures=1)
    monkeypatch.setattr(batch_ray, "require_ray", lambda: fake)
    batch_ray.start_local(2)
    started = "init num_cpus=2 address=local"
    assert fake.calls == [started, "shutdown", started]


def test_two_failed_starts_are_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRay(failures=2)
    monkeypatch.setattr(batch_ray, "require_ray", lambda: fake)
    with pytest.raises(Unavailable, match=r"a local Ray did not start \(tried twice\): The cur"):
        batch_ray.start_local(3)
    assert fake.calls[-1] == "shutdown" and fake.calls.count("shutdown") == 2
