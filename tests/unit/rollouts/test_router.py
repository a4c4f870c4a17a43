"""Router: weighted split, sticky keys, header matches, shadows and table swaps (pure)."""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from shipyard.core.errors import Unavailable
from shipyard.rollouts.router import BUCKETS, Router, bucket_of_key
from shipyard.rollouts.spec import HeaderMatch, Revision, RevisionSpec, Strategy, Variant
from shipyard.serving.routing import Lookup, Outcome, Route, Target, no_lookup

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def revision(name: str, number: int, spec: RevisionSpec) -> Revision:
    return Revision(name, number, spec, NOW, "tester")


def split(weight: int, **extra: object) -> RevisionSpec:
    variants = (Variant("fraud", 1, 100 - weight), Variant("fraud", 2, weight))
    return RevisionSpec(Strategy.CANARY, variants, **extra)  # type: ignore[arg-type]


def headers(**values: str) -> Lookup:
    return lambda name: values.get(name.replace("-", "_"))


def within_3_sigma(hits: int, total: int, p: float) -> bool:
    return abs(hits - total * p) <= 3 * math.sqrt(total * p * (1 - p))


def router_for(spec: RevisionSpec, seed: int = 7, **kwargs: object) -> Router:
    router = Router(rng=random.Random(seed).randrange, **kwargs)  # type: ignore[arg-type]
    router.apply({"fraud-api": revision("fraud-api", 3, spec)})
    return router


def test_keyless_requests_split_by_the_weights() -> None:
    router = router_for(split(10))
    versions = Counter(
        router.choose("fraud-api", no_lookup, no_lookup).target.version  # type: ignore[union-attr]
        for _ in range(5000)
    )
    assert set(versions) == {1, 2}
    assert within_3_sigma(versions[2], 5000, 0.10), versions


def test_a_key_always_gets_the_same_variant_and_keys_split_by_the_weights() -> None:
    router = router_for(split(30))
    chosen: dict[str, int] = {}
    for index in range(2000):
        key = f"user-{index}"
        answers = {
            router.choose("fraud-api", headers(x_shipyard_key=key), no_lookup).target.version  # type: ignore[union-attr]
            for _ in range(5)
        }
        assert len(answers) == 1, key
        chosen[key] = answers.pop()
    assert within_3_sigma(sum(v == 2 for v in chosen.values()), 2000, 0.30)


def test_the_key_hash_is_stable_across_processes() -> None:
    # Pinned values: Python's salted hash() would change them on every run.
    assert [bucket_of_key(k) for k in ("user-1", "user-2", "")] == [3768, 7864, 9876]
    assert 0 <= bucket_of_key("\udcff surrogate") < BUCKETS


def test_keys_on_the_canary_stay_there_when_its_weight_grows() -> None:
    keys = [f"k{i}" for i in range(1000)]

    def on_candidate(weight: int) -> set[str]:
        router = router_for(split(weight))
        return {
            k
            for k in keys
            if router.choose("fraud-api", headers(x_shipyard_key=k), no_lookup).target.version  # type: ignore[union-attr]
            == 2
        }

    small, larger = on_candidate(10), on_candidate(25)
    assert small and small < larger


def test_the_sticky_field_is_the_key_when_no_header_gives_one() -> None:
    router = router_for(split(50, sticky_field="user"))
    fields = {"user": "alice"}
    first = router.choose("fraud-api", no_lookup, fields.get)
    assert first is not None
    for _ in range(20):
        assert router.choose("fraud-api", no_lookup, fields.get) == first
    # The header wins over the field.
    by_header = {
        router.choose("fraud-api", headers(x_shipyard_key=f"h{i}"), fields.get).target.version  # type: ignore[union-attr]
        for i in range(200)
    }
    assert by_header == {1, 2}


def test_a_header_match_wins_over_weights_and_keys() -> None:
    spec = split(1, matches=(HeaderMatch("x-tester", "yes", 1),))
    router = router_for(spec)
    for index in range(100):
        route = router.choose(
            "fraud-api", headers(x_tester="yes", x_shipyard_key=f"u{index}"), no_lookup
        )
        assert route is not None and route.target.version == 2
    other = router.choose("fraud-api", headers(x_tester="no", x_shipyard_key="u0"), no_lookup)
    assert other is not None


def test_a_zero_weight_standby_never_gets_traffic() -> None:
    spec = RevisionSpec(Strategy.BLUEGREEN, (Variant("fraud", 3, 100), Variant("fraud", 1, 0)))
    router = router_for(spec)
    seen = {
        router.choose("fraud-api", headers(x_shipyard_key=f"u{i}"), no_lookup).target.version  # type: ignore[union-attr]
        for i in range(2000)
    } | {
        router.choose("fraud-api", no_lookup, no_lookup).target.version  # type: ignore[union-attr]
        for _ in range(2000)
    }
    assert seen == {3}


def test_routes_name_the_revision_roles_and_shadow() -> None:
    spec = RevisionSpec(Strategy.SHADOW, (Variant("fraud", 1),), shadow=Variant("fraud", 2))
    router = router_for(spec)
    route = router.choose("fraud-api", no_lookup, no_lookup)
    assert route == Route(
        "fraud-api", 3, Target("fraud", 1, "primary"), Target("fraud", 2, "shadow")
    )
    assert route.target.label == "fraud:1"
    canary = router_for(split(10)).choose("fraud-api", headers(x_tester="x"), no_lookup)
    assert canary is not None and canary.shadow is None
    roles = {
        r.target.role  # type: ignore[union-attr]
        for r in (
            router_for(split(50)).choose("fraud-api", headers(x_shipyard_key=f"u{i}"), no_lookup)
            for i in range(100)
        )
    }
    assert roles == {"primary", "candidate"}


def test_unknown_and_excluded_names_are_not_routed() -> None:
    router = Router(excluded=["fraud"])
    assert not router.ready()
    router.apply(
        {
            "fraud": revision("fraud", 1, split(10)),
            "fraud-api": revision("fraud-api", 2, split(10)),
        }
    )
    assert router.ready() and router.names() == ("fraud-api",)
    assert router.choose("fraud", no_lookup, no_lookup) is None
    assert router.choose("nope", no_lookup, no_lookup) is None
    assert not router.serves("fraud") and router.serves("fraud-api")
    assert router.route_of("nope") is None


def test_apply_swaps_the_whole_table() -> None:
    router = router_for(split(10))
    assert router.revisions() == {"fraud-api": 3}
    direct = RevisionSpec(Strategy.DIRECT, (Variant("fraud", 2),))
    router.apply({"fraud-api": revision("fraud-api", 4, direct), "b": revision("b", 1, direct)})
    assert router.revisions() == {"fraud-api": 4, "b": 1}
    route = router.route_of("fraud-api")
    assert route is not None and (route.revision, route.target.version) == (4, 2)
    router.apply({})
    assert router.names() == () and router.ready()


def test_wait_ready_returns_when_the_first_table_arrives() -> None:
    async def main() -> None:
        router = Router()
        waiting = asyncio.create_task(router.wait_ready(5))
        await asyncio.sleep(0)
        assert not waiting.done()
        router.apply({})
        await asyncio.wait_for(waiting, 5)
        await router.wait_ready(0)  # already ready: returns at once

    asyncio.run(main())


class Sink:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.shadows: list[tuple[Route, bool, bool]] = []

    def record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def record_shadow(self, route: Route, *, ok: bool, agree: bool, seconds: float) -> None:
        self.shadows.append((route, ok, agree))


def test_outcomes_go_to_the_sink() -> None:
    sink = Sink()
    router = router_for(split(10), sink=sink)
    route = router.choose("fraud-api", no_lookup, no_lookup)
    assert route is not None
    router.record(Outcome(route, "r1", 0.01, True, [1], 1.0))
    router.record_shadow(route, ok=True, agree=False, seconds=0.01)
    assert [o.request_id for o in sink.outcomes] == ["r1"]
    assert sink.shadows == [(route, True, False)]


@pytest.mark.parametrize("weight", [1, 50, 99])
def test_every_bucket_maps_to_a_variant_with_its_share(weight: int) -> None:
    router = router_for(split(weight))
    entry = router._table["fraud-api"]
    counts = Counter(entry.pick(b).target.version for b in range(BUCKETS))
    assert counts == {1: (100 - weight) * 100, 2: weight * 100}


def test_a_deployment_waiting_for_its_versions_is_unavailable_not_unknown() -> None:
    router = Router(excluded=["fraud"])
    router.apply(
        {"ok": revision("ok", 1, split(10))},
        waiting={"late": "fraud:3: cannot load", "ok": "revision 2 not applied", "fraud": "x"},
    )
    assert router.status() == {
        "late": (None, "fraud:3: cannot load"),
        "ok": (1, "revision 2 not applied"),
    }
    assert router.serves("late") and router.names() == ("ok",)
    with pytest.raises(Unavailable, match="'late' is not ready: fraud:3: cannot load"):
        router.choose("late", no_lookup, no_lookup)
    assert router.route_of("late") is None
    assert router.choose("ok", no_lookup, no_lookup) is not None
    assert not router.serves("fraud")
    router.apply({"ok": revision("ok", 1, split(10))})
    assert not router.serves("late") and router.status() == {"ok": (1, "")}
