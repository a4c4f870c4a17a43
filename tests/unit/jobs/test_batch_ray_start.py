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


class FakeContext:
    enable_progress_bars = True


class FakeRayData(FakeRay):
    """Enough of Ray for `_connected`: its state, its start and stop, and Ray Data's context."""

    def __init__(self) -> None:
        super().__init__(failures=0)
        self.running = False
        context = FakeContext()
        self.data = type(
            "data",
            (),
            {"DataContext": type("DC", (), {"get_current": staticmethod(lambda: context)})},
        )

    def is_initialized(self) -> bool:
        return self.running

    def init(self, **options: object) -> None:
        super().init(**options)
        self.running = True

    def shutdown(self) -> None:
        super().shutdown()
        self.running = False


def test_the_engine_stops_the_ray_it_started_and_leaves_the_callers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeRayData()
    monkeypatch.setattr(batch_ray, "require_ray", lambda: fake)
    with batch_ray._connected(None, 2):
        assert fake.is_initialized()
    assert fake.calls == ["init num_cpus=2 address=local", "shutdown"]
    assert not fake.is_initialized()

    fake.running, fake.calls = True, []  # a Ray the caller started
    with batch_ray._connected(None, 2):
        pass
    assert fake.calls == [] and fake.is_initialized()
