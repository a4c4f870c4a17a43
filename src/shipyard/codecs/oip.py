"""Open Inference Protocol v2 (KServe v2 / Triton) JSON, with the binary tensor extension.

`decode_infer` turns a request body into a checked `InferRequest`; `encode_infer` turns an
`InferResult` into a response body (plus the JSON header length when binary outputs follow,
for `Inference-Header-Content-Length`). The small encoders at the end cover the other OIP
REST responses so that transports only route.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from shipyard.codecs import oip_binary
from shipyard.codecs.jsonarrays import dumps, flatten, to_array, to_jsonable
from shipyard.codecs.limits import (
    DEFAULT_LIMITS,
    Limits,
    check_body_size,
    check_name,
    load_json,
    parse_shape,
    show,
)
from shipyard.core.errors import InvalidArgument
from shipyard.core.signatures import DATATYPES, TensorSpec
from shipyard.core.tensors import EMPTY, InferRequest, InferResult, RequestedOutput, Tensor

_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
_INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
_OUTPUT_KEYS = frozenset({"name", "parameters"})
_KNOWN_DATATYPES = ", ".join(sorted(DATATYPES))


def decode_infer(
    body: bytes,
    model: str,
    version: str | None = None,
    *,
    header_length: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> InferRequest:
    """Decode an OIP infer request; `header_length` set means the binary extension is used."""
    check_body_size(body, limits)
    tail: oip_binary.BinaryTail | None = None
    if header_length is not None:
        body, view = oip_binary.split_body(body, header_length)
        tail = oip_binary.BinaryTail(view)
    doc = load_json(body, limits, "inference request")
    if type(doc) is not dict:
        raise InvalidArgument(f"inference request must be a JSON object; got {show(doc)}")
    _only(doc, _REQUEST_KEYS, "inference request")
    parameters = _parameters(doc.get("parameters"), "request")
    binary_output = _flag(parameters, "binary_data_output", "request")
    inputs = _decode_inputs(doc.get("inputs"), tail, limits)
    if tail is not None:
        tail.finish()
    return InferRequest(
        model=model,
        inputs=inputs,
        version=version,
        id=_request_id(doc.get("id"), limits),
        outputs=_decode_outputs(doc.get("outputs"), binary_output, limits),
        parameters=_without(parameters, "binary_data_output"),
        binary_output=binary_output,
    )


def _decode_inputs(
    raw: object, tail: oip_binary.BinaryTail | None, limits: Limits
) -> tuple[Tensor, ...]:
    if type(raw) is not list or not raw:
        raise InvalidArgument("'inputs' must be a non-empty list of tensors")
    if len(raw) > limits.max_tensors:
        raise InvalidArgument(f"{len(raw)} inputs; the limit is {limits.max_tensors}")
    tensors: dict[str, Tensor] = {}
    budget = limits.max_elements
    for index, item in enumerate(raw):
        tensor = _decode_input(index, item, tail, budget, limits)
        if tensor.name in tensors:
            raise InvalidArgument(f"input {tensor.name!r} is given more than once")
        budget -= tensor.data.size
        tensors[tensor.name] = tensor
    return tuple(tensors.values())


def _decode_input(
    index: int, item: object, tail: oip_binary.BinaryTail | None, budget: int, limits: Limits
) -> Tensor:
    where = f"inputs[{index}]"
    if type(item) is not dict:
        raise InvalidArgument(f"{where} must be an object with name, shape, datatype and data")
    _only(item, _INPUT_KEYS, where)
    name = check_name(item.get("name"), where, limits)
    datatype = item.get("datatype")
    if type(datatype) is not str or datatype not in DATATYPES:
        raise InvalidArgument(
            f"input {name!r}: unknown datatype {show(datatype)}; known: {_KNOWN_DATATYPES}"
        )
    shape, count = parse_shape(name, item.get("shape"), limits, budget)
    parameters = _parameters(item.get("parameters"), f"input {name!r}")
    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in item:
            raise InvalidArgument(f"input {name!r} has no 'data' (nor binary_data_size)")
        array = to_array(name, datatype, flatten(name, item["data"], shape, count))
        return Tensor(name, datatype, shape, array.reshape(shape), parameters or EMPTY)
    if "data" in item:
        raise InvalidArgument(f"input {name!r} has both 'data' and binary_data_size")
    if tail is None:
        raise InvalidArgument(
            f"input {name!r} has binary_data_size but the request has no {oip_binary.HEADER} header"
        )
    array = oip_binary.array_from_raw(name, datatype, shape, count, tail.take(name, size))
    return Tensor(name, datatype, shape, array, _without(parameters, "binary_data_size"))


def _decode_outputs(
    raw: object, binary_output: bool, limits: Limits
) -> tuple[RequestedOutput, ...]:
    if raw is None:
        return ()
    if type(raw) is not list or len(raw) > limits.max_tensors:
        raise InvalidArgument(
            f"'outputs' must be a list of at most {limits.max_tensors} objects with a name"
        )
    outputs: list[RequestedOutput] = []
    for index, item in enumerate(raw):
        where = f"outputs[{index}]"
        if type(item) is not dict:
            raise InvalidArgument(f"{where} must be an object with a name")
        _only(item, _OUTPUT_KEYS, where)
        name = check_name(item.get("name"), where, limits)
        parameters = _parameters(item.get("parameters"), f"output {name!r}")
        binary = _flag(parameters, "binary_data", f"output {name!r}", default=binary_output)
        outputs.append(RequestedOutput(name, binary, _without(parameters, "binary_data")))
    if len({o.name for o in outputs}) != len(outputs):
        raise InvalidArgument("'outputs' names the same output more than once")
    return tuple(outputs)


def _only(doc: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    if not allowed.issuperset(doc):
        unknown = sorted(k for k in doc if k not in allowed)[:5]
        raise InvalidArgument(
            f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _parameters(raw: object, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if type(raw) is not dict:
        raise InvalidArgument(f"{where}: 'parameters' must be an object; got {show(raw)}")
    return raw


def _flag(parameters: Mapping[str, Any], key: str, where: str, default: bool = False) -> bool:
    value = parameters.get(key, default)
    if type(value) is not bool:
        raise InvalidArgument(f"{where}: parameter {key!r} must be true or false")
    return value


def _without(parameters: dict[str, Any], key: str) -> Mapping[str, Any]:
    # Wire-only switches become typed fields; the rest passes through untouched.
    if not parameters:
        return EMPTY
    if key not in parameters:
        return parameters
    return {k: v for k, v in parameters.items() if k != key} or EMPTY


def _request_id(raw: object, limits: Limits) -> str | None:
    if raw is None:
        return None
    if type(raw) is not str or len(raw) > limits.max_id_length:
        raise InvalidArgument(f"'id' must be a string of at most {limits.max_id_length} characters")
    return raw


def binary_outputs(request: InferRequest) -> set[str] | bool:
    """Which outputs the caller wants as binary data: the `binary` argument of encode_infer."""
    if not request.outputs:
        return request.binary_output
    return {o.name for o in request.outputs if o.binary}


def encode_infer(
    result: InferResult, *, binary: set[str] | frozenset[str] | bool = False
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when binary outputs follow it.

    With a header length the transport sets `Inference-Header-Content-Length` to it and
    `Content-Type: application/octet-stream`; without, the body is plain JSON.
    """
    outputs: list[dict[str, Any]] = []
    raws: list[bytes | memoryview] = []
    for tensor in result.outputs:
        wanted = binary if type(binary) is bool else tensor.name in binary
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        parameters = dict(tensor.parameters) if tensor.parameters else None
        if wanted:
            raw = oip_binary.raw_view(tensor)
            raws.append(raw)
            parameters = {**(parameters or {}), "binary_data_size": len(raw)}
        else:
            entry["data"] = _flat_data(tensor)
        if parameters:
            entry["parameters"] = parameters
        outputs.append(entry)
    header = dumps(_response_head(result, outputs))
    if not raws:
        return header, None
    return b"".join([header, *raws]), len(header)


def _response_head(result: InferResult, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {"model_name": result.model_name, "model_version": result.model_version}
    if result.id is not None:
        doc["id"] = result.id
    if result.parameters:
        doc["parameters"] = dict(result.parameters)
    doc["outputs"] = outputs
    return doc


def _flat_data(tensor: Tensor) -> Any:
    try:
        return to_jsonable(tensor.data.reshape(-1), tensor.datatype)
    except InvalidArgument as exc:
        raise InvalidArgument(f"output {tensor.name!r}: {exc.message}") from None


def encode_error(message: str) -> bytes:
    return orjson.dumps({"error": message})


def encode_live(live: bool = True) -> bytes:
    return orjson.dumps({"live": live})


def encode_ready(ready: bool = True) -> bytes:
    return orjson.dumps({"ready": ready})


def encode_model_ready(name: str, ready: bool) -> bytes:
    return orjson.dumps({"name": name, "ready": ready})


def encode_server_metadata(name: str, version: str, extensions: Sequence[str]) -> bytes:
    return orjson.dumps({"name": name, "version": version, "extensions": list(extensions)})


def encode_model_metadata(
    name: str,
    versions: Sequence[str],
    platform: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
) -> bytes:
    return orjson.dumps(
        {
            "name": name,
            "versions": list(versions),
            "platform": platform,
            "inputs": [s.to_dict() for s in inputs],
            "outputs": [s.to_dict() for s in outputs],
        }
    )
