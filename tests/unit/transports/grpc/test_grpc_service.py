"""The OIP gRPC service driven by tritonclient (the judge) and by hand-built typed requests."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_harness import FakePlane, LoopThread, Served, array, free_port, serve
from tritonclient.utils import InferenceServerException

from shipyard.core.errors import Unavailable
from shipyard.transports.grpc import create_grpc_server
from shipyard.transports.grpc._generated import open_inference_grpc_pb2 as pb


def test_health_and_metadata(client: triton.InferenceServerClient, served: Served) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("echo")
    assert client.is_model_ready("echo", "2")
    assert not client.is_model_ready("busy")
    meta = client.get_server_metadata(as_json=True)
    assert meta == {"name": "shipyard", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
    model = client.get_model_metadata("double", as_json=True)
    assert model["name"] == "double" and model["versions"] == ["1", "2"]
    assert model["platform"] == "fake"
    assert model["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "3"]}]
    served.plane.is_ready = False
    try:
        assert not client.is_server_ready()
    finally:
        served.plane.is_ready = True


def test_unknown_model_is_not_found(client: triton.InferenceServerClient) -> None:
    calls: list[Callable[[], object]] = [
        lambda: client.is_model_ready("nope"),
        lambda: client.get_model_metadata("nope"),
        lambda: client.infer("nope", [_input("x", array("FP32", [1.0], (1,)))]),
    ]
    for call in calls:
        with pytest.raises(InferenceServerException) as err:
            call()
        assert err.value.status() == "StatusCode.NOT_FOUND"
        assert "not found" in str(err.value.message())
    assert client.is_server_live()


CASES = [
    ("FP32", [[1.5, -2.0, 3.25]], (1, 3)),
    ("FP64", [0.1, 1e300], (2,)),
    ("FP16", [[0.5, 1.0], [-2.0, 65504.0]], (2, 2)),
    ("INT64", [[2**62, -(2**62)], [0, 7]], (2, 2)),
    ("INT32", [1, -1, 2**31 - 1], (3,)),
    ("INT8", [-128, 127], (2, 1)),
    ("UINT8", [0, 255], (2,)),
    ("UINT64", [2**64 - 1], (1,)),
    ("BOOL", [[True, False, True]], (1, 3)),
    ("BYTES", [b"a", b"", "ünïcode".encode(), b"\x00\xff"], (2, 2)),
    ("FP32", [], (0, 3)),
]


@pytest.mark.parametrize(("datatype", "values", "shape"), CASES)
def test_raw_round_trip(
    client: triton.InferenceServerClient, datatype: str, values: list[Any], shape: tuple[int, ...]
) -> None:
    data = array(datatype, values, shape)
    result = client.infer("echo", [_input("x", data)], request_id="r-1")
    out = result.as_numpy("x")
    assert out is not None and out.shape == data.shape
    if datatype == "BYTES":
        assert out.tolist() == data.tolist()
    else:
        assert out.dtype == data.dtype
        np.testing.assert_array_equal(out, data)
    response = result.get_response()
    assert response.model_name == "echo" and response.model_version == "1"
    assert response.id == "r-1"
    assert response.parameters["fake"].bool_param is True


def test_two_inputs_and_requested_outputs(client: triton.InferenceServerClient) -> None:
    a, b = array("FP32", [1.0, 2.0], (1, 2)), array("INT64", [3, 4, 5], (3,))
    inputs = [_input("a", a), _input("b", b)]
    result = client.infer("double", inputs, outputs=[triton.InferRequestedOutput("b")])
    np.testing.assert_array_equal(result.as_numpy("b"), b * 2)
    assert result.as_numpy("a") is None
    both = client.infer("double", inputs, model_version="2")
    np.testing.assert_array_equal(both.as_numpy("a"), a * 2)
    assert both.get_response().model_version == "2"


def test_typed_contents_request_gets_typed_answer(stub: Any) -> None:
    request = pb.ModelInferRequest(model_name="double", id="t")
    x = request.inputs.add(name="x", datatype="FP32", shape=[2, 2])
    x.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.0])
    s = request.inputs.add(name="s", datatype="BYTES", shape=[1])
    s.contents.bytes_contents.append(b"ab")
    i = request.inputs.add(name="i", datatype="INT16", shape=[2])
    i.contents.int_contents.extend([-300, 300])
    request.outputs.add(name="x")
    request.outputs.add(name="s")
    request.outputs.add(name="i")
    response = stub.ModelInfer(request, timeout=10)
    assert not response.raw_output_contents
    assert [o.name for o in response.outputs] == ["x", "s", "i"]
    assert list(response.outputs[0].shape) == [2, 2]
    assert list(response.outputs[0].contents.fp32_contents) == [2.0, 4.0, 6.0, 8.0]
    assert list(response.outputs[1].contents.bytes_contents) == [b"abab"]
    assert list(response.outputs[2].contents.int_contents) == [-600, 600]
    assert response.id == "t"


def test_stream_infer_reports_errors_per_message(served: Served) -> None:
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    with triton.InferenceServerClient(served.url) as c:
        c.start_stream(callback=lambda result, error: results.put((result, error)))
        data = array("INT32", [1, 2], (2,))
        c.async_stream_infer("double", [_input("x", data)], request_id="s1")
        c.async_stream_infer("nope", [_input("x", data)], request_id="s2")
        c.async_stream_infer("echo", [_input("x", data)], request_id="s3")
        got = [results.get(timeout=10) for _ in range(3)]
        c.stop_stream()
    np.testing.assert_array_equal(got[0][0].as_numpy("x"), data * 2)
    assert got[1][0] is None and "not found" in str(got[1][1])
    np.testing.assert_array_equal(got[2][0].as_numpy("x"), data)


def test_metrics_observe_inference_calls(
    client: triton.InferenceServerClient, served: Served
) -> None:
    served.metrics.calls.clear()
    x = [_input("x", array("FP32", [1.0], (1,)))]
    client.infer("echo", x, model_version="2")
    for model in ("busy", "made-up-name"):
        with pytest.raises(InferenceServerException):
            client.infer(model, x, model_version="7")
    client.is_server_live()  # not an inference call: not observed
    ok, busy, unknown = served.metrics.calls
    assert ok[:4] == ("echo", "2", "grpc-v2", "OK") and ok[4] >= 0
    assert busy[:4] == ("busy", "7", "grpc-v2", "UNAVAILABLE")
    # a name the data plane does not know never becomes a label value
    assert unknown[:4] == ("-", "", "grpc-v2", "NOT_FOUND")


def test_stop_with_grace_finishes_calls_in_flight(loop: LoopThread) -> None:
    served = serve(loop)
    outcome: list[Any] = []
    with triton.InferenceServerClient(served.url) as c:
        assert c.is_server_live()

        def call() -> None:
            data = array("FP32", [1.0], (1,))
            outcome.append(c.infer("slow", [_input("x", data)]).as_numpy("x"))

        worker = threading.Thread(target=call)
        worker.start()
        time.sleep(0.2)  # the slow model takes 0.5 s: the call is in flight now
        served.stop(grace=5)
        worker.join(10)
        with pytest.raises(InferenceServerException):
            c.is_server_live()
    assert len(outcome) == 1 and outcome[0].tolist() == [1.0]


def test_reuse_port_lets_two_servers_share_a_port(loop: LoopThread) -> None:
    port = free_port()

    async def two() -> None:
        first = create_grpc_server(FakePlane(), host="127.0.0.1", port=port)
        second = create_grpc_server(FakePlane(), host="127.0.0.1", port=port)
        await first.start()
        await second.start()
        await first.stop(None)
        await second.stop(None)

    loop.run(two())


def test_unbindable_address_is_a_clear_error(loop: LoopThread) -> None:
    async def bad() -> None:
        create_grpc_server(FakePlane(), host="203.0.113.1", port=free_port())

    with pytest.raises(Unavailable, match="cannot listen"):
        loop.run(bad())


def _input(name: str, data: np.ndarray) -> triton.InferInput:
    datatype = "BYTES" if data.dtype == object else triton.np_to_triton_dtype(data.dtype)
    item = triton.InferInput(name, list(data.shape), datatype)
    item.set_data_from_numpy(data)
    return item


class BrokenMetrics:
    def observe_request(self, *args: object) -> None:
        raise RuntimeError("metrics backend down")


def test_failing_metrics_never_change_the_answer(loop: LoopThread) -> None:
    async def start() -> Any:
        server = create_grpc_server(
            FakePlane(), host="127.0.0.1", port=port, metrics=BrokenMetrics()
        )
        await server.start()
        return server

    port = free_port()
    server = loop.run(start())
    try:
        with triton.InferenceServerClient(f"127.0.0.1:{port}") as c:
            data = array("FP32", [1.0], (1,))
            assert c.infer("echo", [_input("x", data)]).as_numpy("x").tolist() == [1.0]
    finally:
        loop.run(server.stop(None))
