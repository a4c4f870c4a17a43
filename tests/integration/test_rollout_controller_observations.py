"""What the controller reads, on SQLite and PostgreSQL: route statistics summed per variant of
one revision and window, feedback joined to predictions by the "correct" rule, and pruning."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from rollout_rows import Batch, stats_row
from sqlalchemy import func, insert, select

from shipyard.registry.service import Registry
from shipyard.rollouts.observations import correct, observe, prune
from shipyard.rollouts.spec import Variant
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow, RouteStatsRow
from shipyard.storage.tables import utcnow


def test_a_window_sums_its_revision_per_variant(registry: Registry) -> None:
    database = registry.database
    start = utcnow()
    batch = Batch()
    batch.stats += [
        stats_row(1),
        stats_row(1, plane="p:2", requests=5, errors=0, predictions=[0.25]),
        stats_row(2, role="candidate", requests=7, errors=7),
        stats_row(3, role="shadow", shadow_total=10, shadow_agree=9),
        stats_row(1, revision=1, requests=1000),  # an earlier revision
        stats_row(1, deployment="e", requests=1000),  # another deployment
        stats_row(1, at=start - timedelta(seconds=5), requests=1000),  # before the window
    ]
    batch.labelled("a", 1, [1], 1)
    batch.labelled("b", 1, [0], 1)
    batch.labelled("c", 2, [2.0], 2)
    batch.labelled("old", 2, [0], 0, at=start - timedelta(seconds=5))  # before the window
    batch.labelled("r1", 2, [0], 0, revision=1)  # an earlier revision
    batch.write(database)
    observed = observe(database, "d", 2, since=start)
    one = observed.of(Variant("m", 1))
    assert (one.requests, one.errors, sorted(one.predictions)) == (15, 1, [0.25, 0.5])
    assert one.latency[10] == 15 and sum(one.latency) == 15
    assert (one.feedback_total, one.feedback_correct) == (2, 1)
    two = observed.of(Variant("m", 2))
    assert (two.requests, two.errors, two.feedback_total, two.feedback_correct) == (7, 7, 1, 1)
    shadow = observed.shadow_of(Variant("m", 3))
    assert (shadow.shadow_total, shadow.shadow_agree) == (10, 9)
    assert observed.of(Variant("m", 3)).requests == 0  # a shadow is not a live variant
    late = observe(database, "d", 2, since=start, labels="revision")  # labels of the revision
    assert late.of(Variant("m", 2)).requests == 7  # traffic still from the window only
    assert (late.of(Variant("m", 2)).feedback_total, late.of(Variant("m", 2)).feedback_correct) == (
        2,
        2,
    )
    everything = observe(database, "d", 2)  # no `since`: the whole revision
    assert everything.of(Variant("m", 1)).requests == 1015
    assert everything.of(Variant("m", 2)).feedback_total == 2


@pytest.mark.parametrize(
    ("output", "value", "expected"),
    [
        ([1], 1, True),
        ([1], 1.0, True),
        ([1], True, True),
        (1, [1], True),
        ([[0]], 0, True),
        (["cat"], "cat", True),
        ([0], 1, False),
        (["cat"], "dog", False),
        ([0.2, 0.8], 1, False),  # a row of probabilities is not a label
        ([0.2, 0.8], [0.2, 0.8], True),
        (None, 0, False),
        ("1", 1, False),  # a string is not a number
    ],
)
def test_the_correct_rule(output: Any, value: Any, expected: bool) -> None:
    assert correct(output, value) is expected


def test_prune_deletes_only_old_rows(registry: Registry) -> None:
    database = registry.database
    old = utcnow() - timedelta(days=8)
    batch = Batch()
    batch.stats += [stats_row(1, at=old), stats_row(1)]
    batch.labelled("old", 1, [1], 1, at=old)
    batch.labelled("new", 1, [1], 1)
    batch.write(database)
    with database.write() as session:  # feedback that never met its prediction
        session.execute(
            insert(FeedbackRow),
            [
                {"request_id": "orphan", "value": 1, "at": old, "actor": "t"},
                {"request_id": "early", "value": 1, "at": utcnow(), "actor": "t"},
            ],
        )
    deleted = prune(database, utcnow() - timedelta(days=7))
    assert deleted == {"route_stats": 1, "predictions": 1, "feedback": 2}
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(RouteStatsRow)) == 1
        assert set(session.scalars(select(PredictionRow.request_id))) == {"new"}
        assert set(session.scalars(select(FeedbackRow.request_id))) == {"new", "early"}
    assert prune(database, utcnow() - timedelta(days=7)) == {
        "route_stats": 0, "predictions": 0, "feedback": 0,
    }  # fmt: skip
