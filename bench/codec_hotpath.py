"""Hot-path cost of the wire codecs: µs per decode and encode of an OIP infer request.

Cases: a 1x20 FP32 request (the single-row case the server is tuned for) and a 256x20 one,
each as JSON (flat and nested data) and with the binary tensor extension. The response
echoes the input tensor as the output, so encode is measured on the same data.

    .venv/bin/python bench/codec_hotpath.py [--seconds 0.5]

Prints best-of-5 medians; nothing is asserted (tests never assert timings).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import orjson

from shipyard.codecs import kserve_v1, oip
from shipyard.codecs.oip_binary import tensor_to_raw
from shipyard.core.tensors import InferResult, Tensor


def json_request(rows: int, nested: bool) -> bytes:
    data = np.random.default_rng(0).random((rows, 20), dtype=np.float32)
    values = data.tolist() if nested else data.ravel().tolist()
    doc = {
        "id": "1",
        "inputs": [{"name": "x", "shape": [rows, 20], "datatype": "FP32", "data": values}],
    }
    return orjson.dumps(doc)


def binary_request(rows: int) -> tuple[bytes, int]:
    data = np.random.default_rng(0).random((rows, 20), dtype=np.float32)
    raw = tensor_to_raw(Tensor("x", "FP32", (rows, 20), data))
    doc = {
        "id": "1",
        "inputs": [
            {
                "name": "x",
                "shape": [rows, 20],
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "x", "parameters": {"binary_data": True}}],
    }
    header = orjson.dumps(doc)
    return header + raw, len(header)


def per_call_us(fn: Callable[[], object], seconds: float) -> float:
    """Median over 5 rounds of the mean time per call, each round about seconds/5 long."""
    n = 1
    while True:  # calibrate a batch that takes ~1 ms
        start = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - start > 1e-3:
            break
        n *= 2
    rounds: list[float] = []
    for _ in range(5):
        calls = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            for _ in range(n):
                fn()
            calls += n
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    print(f"{'case':34} {'decode µs':>10} {'encode µs':>10} {'total µs':>10}")
    for rows in (1, 256):
        cases: list[tuple[str, bytes, int | None]] = [
            (f"OIP JSON flat {rows}x20 FP32", json_request(rows, nested=False), None),
            (f"OIP JSON nested {rows}x20 FP32", json_request(rows, nested=True), None),
            (f"OIP binary {rows}x20 FP32", *binary_request(rows)),
        ]
        for label, body, header_length in cases:
            request = oip.decode_infer(body, "m", header_length=header_length)
            result = InferResult("m", "1", request.inputs, id=request.id)
            binary = oip.binary_outputs(request)

            def decode(body: bytes = body, header_length: int | None = header_length) -> object:
                return oip.decode_infer(body, "m", header_length=header_length)

            def encode(result: InferResult = result, binary: set[str] | bool = binary) -> object:
                return oip.encode_infer(result, binary=binary)

            d, e = per_call_us(decode, args.seconds), per_call_us(encode, args.seconds)
            print(f"{label:34} {d:10.1f} {e:10.1f} {d + e:10.1f}")
        body = orjson.dumps({"instances": np.ones((rows, 20)).tolist()})
        predictions = np.ones(rows)

        def decode_v1(body: bytes = body) -> object:
            return kserve_v1.decode_predict(body)

        def encode_v1(values: np.ndarray = predictions) -> object:
            return kserve_v1.encode_predict(values)

        d, e = per_call_us(decode_v1, args.seconds), per_call_us(encode_v1, args.seconds)
        print(f"{f'KServe v1 {rows}x20':34} {d:10.1f} {e:10.1f} {d + e:10.1f}")


if __name__ == "__main__":
    main()
