"""gRPC senders for `shipyard loadtest --protocol grpc`, through tritonclient's asyncio client.

tritonclient is a development dependency, imported only when gRPC load is asked for. Each
worker has its own client, so its own channel and connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shipyard.app.loadgen import Send
from shipyard.core.errors import FailedPrecondition
from shipyard.core.tensors import Tensor


def _triton() -> tuple[Any, Any]:
    try:
        import tritonclient.grpc as grpc_client
        import tritonclient.grpc.aio as aio
    except ImportError:
        raise FailedPrecondition(
            "--protocol grpc needs tritonclient: pip install 'tritonclient[grpc]'"
        ) from None
    return grpc_client, aio


def grpc_senders(
    address: str, model: str, batches: Sequence[list[Tensor]], concurrency: int
) -> tuple[list[Send], Callable[[], Any]]:
    """One sender per worker, and an async function closing their clients."""
    grpc_client, aio = _triton()
    requests = [_inputs(grpc_client, tensors) for tensors in batches]
    clients = [aio.InferenceServerClient(url=address) for _ in range(concurrency)]
    error_type = grpc_client.InferenceServerException

    def sender(client: Any) -> Send:
        async def send(ticket: int) -> str | None:
            try:
                await client.infer(model, requests[ticket % len(requests)])
            except error_type as exc:
                return f"gRPC {_status(exc)}"
            return None

        return send

    async def close() -> None:
        for client in clients:
            await client.close()

    return [sender(c) for c in clients], close


def _inputs(grpc_client: Any, tensors: list[Tensor]) -> list[Any]:
    inputs = []
    for t in tensors:
        tensor = grpc_client.InferInput(t.name, list(t.shape), t.datatype)
        tensor.set_data_from_numpy(t.data)
        inputs.append(tensor)
    return inputs


def _status(exc: Any) -> str:
    status = str(exc.status() or "UNKNOWN")
    return status.removeprefix("StatusCode.")
