"""The data plane's deployment path with fake versions: routing, outcomes, shadow copies."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipyard.core.errors import InvalidArgument, NotFound
from shipyard.core.events import PredictionEvent
from shipyard.core.signatures import Prepared, Signature, TensorSpec
from shipyard.core.tensors import InferRequest, InferResult, Tensor
from shipyard.rollouts.router import Router
from shipyard.rollouts.spec import Revision, RevisionSpec, Strategy, Variant
from shipyard.runtimes.base import Outputs
from shipyard.serving.convert import ConversionPlan
from shipyard.serving.dataplane import DataPlane
from shipyard.serving.routed import _table_field, _tensor_field, agrees, first_row
from shipyard.serving.routing import Outcome, Route
from shipyard.serving.types import ModelMetadata, Served

SIGNATURE = Signature(
    (TensorSpec("x", "FP32", (-1, 2)),),
    (TensorSpec("predict", "FP64", (-1,)),),
)
X = np.array([[1, 2], [3, 4]], dtype=np.float32)


class FakeServed:
    """What the data plane uses of a ServedModel; answers sum(x) * version."""

    def __init__(self, name: str, version: int) -> None:
        self.name, self.version = name, version
        self.served = Served(name, version)
        self.plan = ConversionPlan(SIGNATURE, SIGNATURE.prepare)
        self.signature = SIGNATURE
        self.metadata = ModelMetadata(name, (str(version),), "fake", SIGNATURE.inputs, ())
        self.fail = False
        self.gate: asyncio.Event | None = None  # set: answer; unset: hang (a slow version)
        self.calls = 0

    async def infer(self, prepared: Prepared, rows: int) -> Outputs:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("model bug")
        assert isinstance(prepared, np.ndarray)
        return {"predict": prepared.sum(axis=1, dtype=np.float64) * self.version}


class FakeHost:
    started = True
    default_model = "plain"

    def __init__(self) -> None:
        self.versions = {("m", v): FakeServed("m", v) for v in (1, 2, 3)}
        self.plain = FakeServed("plain", 1)

    def ready(self) -> bool:
        return True

    def get(self, name: str, version: str | None = None) -> FakeServed:
        if name != "plain":
            raise NotFound(f"model {name!r} is not served")
        return self.plain

    def is_ready(self, name: str, version: str | None = None) -> bool:
        self.get(name)
        return True

    def pinned(self, name: str, version: int) -> FakeServed | None:
        return self.versions.get((name, version))


class Sink:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.shadows: list[tuple[Route, bool, bool]] = []

    def record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def record_shadow(self, route: Route, *, ok: bool, agree: bool, seconds: float) -> None:
        self.shadows.append((route, ok, agree))


class Events:
    """An EventEmitter that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[PredictionEvent] = []

    def emit(self, event: PredictionEvent) -> None:
        self.events.append(event)


def setup(spec: RevisionSpec, events: Events | None = None) -> tuple[DataPlane, FakeHost, Sink]:
    host, sink = FakeHost(), Sink()
    router = Router(sink)
    router.apply({"api": Revision("api", 4, spec, datetime.now(UTC), "t")})
    plane = DataPlane(host, server_version="t", routing=router, events=events)  # type: ignore[arg-type]
    return plane, host, sink


def request(name: str = "api", x: np.ndarray = X, **kwargs: Any) -> InferRequest:
    return InferRequest(name, (Tensor("x", "FP32", x.shape, x),), **kwargs)


DIRECT = RevisionSpec(Strategy.DIRECT, (Variant("m", 2),))
SHADOW = RevisionSpec(Strategy.SHADOW, (Variant("m", 1),), shadow=Variant("m", 3))


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_a_deployment_answers_with_the_routed_version_and_records_it() -> None:
    plane, host, sink = setup(DIRECT)
    result = run(plane.infer(request()))
    assert (result.model_name, result.model_version) == ("api", "m:2")
    np.testing.assert_array_equal(result.outputs[0].data, [6.0, 14.0])
    uuid.UUID(result.id)  # a generated uuid4 when the caller gave no id
    (outcome,) = sink.outcomes
    assert outcome.ok and outcome.request_id == result.id
    assert (outcome.route.deployment, outcome.route.revision) == ("api", 4)
    assert (outcome.output, outcome.prediction) == (6.0, 6.0)
    given = run(plane.infer(request(id="req-7")))
    assert given.id == "req-7" and sink.outcomes[-1].request_id == "req-7"


def test_plain_models_are_served_as_before_next_to_deployments() -> None:
    plane, host, sink = setup(DIRECT)
    result = run(plane.infer(request("plain")))
    assert (result.model_name, result.model_version, result.id) == ("plain", "1", None)
    assert sink.outcomes == []
    with pytest.raises(NotFound, match="'nope' is not served"):
        run(plane.infer(request("nope")))


def test_a_version_on_a_deployment_and_bad_input_are_refused_and_not_counted() -> None:
    plane, host, sink = setup(DIRECT)
    with pytest.raises(InvalidArgument, match="picks the version"):
        run(plane.infer(request(version="2")))
    with pytest.raises(InvalidArgument, match="picks the version"):
        run(plane.predict("api", "2", X))
    with pytest.raises(InvalidArgument):
        run(plane.infer(request(x=np.ones((2, 5), dtype=np.float32))))
    assert sink.outcomes == [] and host.versions[("m", 2)].calls == 0


def test_a_failing_version_counts_as_an_error_of_that_version() -> None:
    plane, host, sink = setup(DIRECT)
    host.versions[("m", 2)].fail = True
    with pytest.raises(RuntimeError, match="model bug"):
        run(plane.infer(request()))
    (outcome,) = sink.outcomes
    assert not outcome.ok and outcome.route.target.label == "m:2" and outcome.output is None


def test_predict_routes_tables_too() -> None:
    plane, host, sink = setup(DIRECT)
    served, outputs = run(plane.predict("api", None, X, request_id="abc"))
    assert served == Served("m", 2)
    np.testing.assert_array_equal(outputs["predict"], [6.0, 14.0])
    assert sink.outcomes[0].request_id == "abc"


def test_metadata_asked_before_the_first_routing_table_waits_for_it() -> None:
    """A worker still loading its deployments answers metadata once they are in, not 404."""
    host, sink = FakeHost(), Sink()
    router = Router(sink)
    plane = DataPlane(host, server_version="t", routing=router)  # type: ignore[arg-type]

    async def main() -> ModelMetadata:
        asking = asyncio.create_task(plane.model_metadata("api"))
        await asyncio.sleep(0.05)
        assert not asking.done()  # waiting, not refused
        router.apply({"api": Revision("api", 1, DIRECT, datetime.now(UTC), "t")})
        return await asking

    assert run(main()).versions == ("m:2",)


def test_metadata_and_readiness_of_a_deployment() -> None:
    plane, host, sink = setup(DIRECT)
    meta = run(plane.model_metadata("api"))
    assert (meta.name, meta.versions, meta.platform) == ("api", ("m:2",), "fake")
    assert plane.model_ready("api") and not plane.model_ready("api", "2")
    with pytest.raises(InvalidArgument, match="picks the version"):
        run(plane.model_metadata("api", "2"))
    assert plane.ready()
    host.versions.clear()
    assert not plane.model_ready("api")


def same(a: InferResult, b: InferResult) -> bool:
    """Equal results: every field, and every output's name, type, shape and values."""
    if (a.model_name, a.model_version, a.id, a.parameters) != (
        b.model_name,
        b.model_version,
        b.id,
        b.parameters,
    ):
        return False
    return len(a.outputs) == len(b.outputs) and all(
        (x.name, x.datatype, x.shape) == (y.name, y.datatype, y.shape)
        and np.array_equal(x.data, y.data)
        for x, y in zip(a.outputs, b.outputs, strict=True)
    )


async def _settle(sink: Sink, count: int) -> None:
    for _ in range(1000):
        if len(sink.shadows) >= count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{count} shadow outcomes expected, got {len(sink.shadows)}")


@pytest.mark.parametrize("shadow", ["agrees", "differs", "raises"])
def test_the_shadow_never_changes_the_answer(shadow: str) -> None:
    async def main() -> None:
        bare, _, _ = setup(RevisionSpec(Strategy.DIRECT, (Variant("m", 1),)))
        plane, host, sink = setup(SHADOW)
        copy = host.versions[("m", 3)]
        if shadow == "agrees":
            copy.version = 1  # answers like the primary
        copy.fail = shadow == "raises"
        for index in range(5):
            x = X + index
            expected = await bare.infer(request(x=x, id=f"r{index}"))
            got = await plane.infer(request(x=x, id=f"r{index}"))
            assert same(got, expected)
        await _settle(sink, 5)
        assert {(ok, agree) for _, ok, agree in sink.shadows} == {
            "agrees": {(True, True)},
            "differs": {(True, False)},
            "raises": {(False, False)},
        }[shadow]
        assert all(o.route.target.label == "m:1" for o in sink.outcomes)
        await plane.close()

    run(main())


def test_a_slow_shadow_fills_its_queue_and_copies_are_dropped_not_waited_for() -> None:
    async def main() -> None:
        plane, host, sink = setup(SHADOW)
        host.versions[("m", 3)].gate = asyncio.Event()  # the shadow hangs
        answers = [await plane.infer(request()) for _ in range(300)]
        assert {a.model_version for a in answers} == {"m:1"}
        routed = plane._routed
        assert routed is not None and routed.shadow_dropped > 0
        assert len(sink.outcomes) == 300 and sink.shadows == []
        await plane.close()

    run(main())


def test_the_shadow_of_predict_uses_the_same_table() -> None:
    async def main() -> None:
        plane, host, sink = setup(SHADOW)
        served, _ = await plane.predict("api", None, X)
        assert served == Served("m", 1)
        await _settle(sink, 1)
        assert sink.shadows[0][1:] == (True, False)
        await plane.close()

    run(main())


def test_agreement_compares_the_first_output() -> None:
    a = {"label": np.array([1, 0]), "proba": np.array([0.9, 0.1])}
    assert agrees(a, {"label": np.array([1, 0]), "proba": np.array([0.5, 0.5])})
    assert not agrees(a, {"label": np.array([1, 1])})
    assert agrees({"v": np.array([1.0])}, {"v": np.array([1.0 + 1e-9])})
    assert not agrees({"v": np.array([1.0])}, {"v": np.array([1.0 + 1e-3])})
    assert agrees({"v": np.array(["cat"], dtype=object)}, {"other": np.array(["cat"], object)})
    assert not agrees({"v": np.array([1, 2])}, {"v": np.array([1])})
    assert not agrees({}, a) and not agrees(a, {})


def test_first_row_is_json_ready() -> None:
    assert first_row({"p": np.array([[0.25, 0.75]])}) == ([0.25, 0.75], 0.25)
    assert first_row({"p": np.array([b"yes"], dtype=object)}) == ("yes", None)
    assert first_row({"p": np.array([np.nan])})[0] is None  # NaN is not JSON
    assert first_row({"p": np.array([True])}) == (True, 1.0)
    assert first_row({"p": np.zeros((0,))}) == (None, None)
    assert first_row({}) == (None, None)


def test_the_sticky_field_reads_the_first_value_of_an_input() -> None:
    names = np.array([b"alice", b"bob"], dtype=object)
    tensors = (Tensor("user", "BYTES", (2,), names), Tensor("x", "FP32", X.shape, X))
    assert _tensor_field(tensors)("user") == "alice"
    assert _tensor_field(tensors)("x") == "1.0"
    assert _tensor_field(tensors)("nope") is None
    frame = pd.DataFrame({"user": ["u1", "u2"], "n": [7, 8]})
    assert _table_field(frame)("user") == "u1" and _table_field(frame)("n") == "7"
    assert _table_field(frame.head(0))("user") is None
    assert _table_field({"user": np.array(["m1"])})("user") == "m1"
    assert _table_field(X)("user") is None


def test_every_answered_request_becomes_one_prediction_event() -> None:
    events = Events()
    plane, host, sink = setup(DIRECT, events)
    routed = run(plane.infer(request()))
    plain = run(plane.infer(request("plain")))
    run(plane.predict("api", None, X, request_id="given"))
    with pytest.raises(InvalidArgument):  # refused input: nothing answered, nothing logged
        run(plane.infer(request(x=np.zeros((2, 5), dtype=np.float32))))
    host.versions["m", 2].fail = True
    with pytest.raises(RuntimeError):  # the model failed: no prediction to log
        run(plane.infer(request()))
    first, second, third = events.events
    assert (first.deployment, first.model, first.version) == ("api", "m", 2)
    assert first.request_id == routed.id
    # A plain model's request gets an id too, returned to the caller for feedback.
    assert plain.id is not None and second.request_id == plain.id
    assert (second.deployment, second.model) == (None, "plain")
    assert third.request_id == "given"
    # Input columns named as registered reference data names them; outputs as answered.
    assert sorted(first.inputs) == ["x_0", "x_1"]
    np.testing.assert_array_equal(first.inputs["x_1"], [2, 4])
    np.testing.assert_array_equal(first.outputs["predict"], [6.0, 14.0])
    assert first.latency_ms >= 0 and first.at.tzinfo is not None


def test_without_an_emitter_a_plain_request_keeps_its_own_id() -> None:
    plane, host, sink = setup(DIRECT)
    assert run(plane.infer(request("plain"))).id is None


def test_input_columns_of_every_prepared_shape() -> None:
    from shipyard.serving.tap import input_columns

    frame = pd.DataFrame({"age": [30, 40], "city": ["a", "b"]})
    assert list(input_columns(frame, SIGNATURE)) == ["age", "city"]
    assert list(input_columns(X, None)) == ["f0", "f1"]
    assert list(input_columns(np.array([1.0, 2.0]), SIGNATURE)) == ["x_0"]
    mixed = {"a": np.array([1, 2]), "b": np.ones((2, 2)), "img": np.ones((2, 3, 3))}
    assert list(input_columns(mixed, None)) == ["a", "b_0", "b_1"]  # 3-D tensors left out
