"""Fixtures: one in-process gRPC server (fake data plane) per module, and clients for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import tritonclient.grpc as triton
from grpc_harness import LoopThread, Served, serve

from shipyard.transports.grpc._generated import open_inference_grpc_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def served(loop: LoopThread) -> Iterator[Served]:
    s = serve(loop)
    yield s
    s.stop(None)


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(served.url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub(served: Served) -> Iterator[Any]:
    with grpc.insecure_channel(served.url) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def channel(served: Served) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(served.url) as c:
        yield c
