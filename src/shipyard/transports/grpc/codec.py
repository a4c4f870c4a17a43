"""OIP gRPC messages <-> shipyard core types.

`decode_infer` checks a `ModelInferRequest` completely (names, datatypes, shapes against the
element budget before anything is allocated, raw sizes, BYTES length prefixes, typed value
counts) and returns an `InferRequest`; every failure is an `InvalidArgument` (or
`PayloadTooLarge` for tensors over the element limit, as in the REST codec). Raw tensors are
decoded by `shipyard.codecs.oip_binary`, the same code the REST binary extension uses.

`encode_infer` answers in the form the request came in: tritonclient sends
`raw_input_contents` and reads only `raw_output_contents`, so a raw request gets raw outputs;
a typed request gets typed `contents`, unless an output has no typed field (FP16), in which
case every output is raw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.codecs import oip_binary
from shipyard.codecs.limits import DEFAULT_LIMITS, Limits, check_name, parse_shape
from shipyard.core.errors import Internal, InvalidArgument
from shipyard.core.signatures import DATATYPES, TensorSpec
from shipyard.core.tensors import EMPTY, InferRequest, InferResult, RequestedOutput, Tensor
from shipyard.serving.types import ModelMetadata, ServerMetadata

from . import contents
from ._generated import open_inference_grpc_pb2 as pb

_KNOWN_DATATYPES = ", ".join(sorted(DATATYPES))
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1

# --- requests -------------------------------------------------------------------------------


def decode_infer(request: pb.ModelInferRequest, limits: Limits = DEFAULT_LIMITS) -> InferRequest:
    """A checked core request from a gRPC one; raw and typed inputs are both accepted."""
    raw = is_raw(request)
    return InferRequest(
        model=check_name(request.model_name, "model_name", limits),
        inputs=_decode_inputs(request, limits),
        version=_optional(request.model_version, "model_version", limits.max_name_length),
        id=_optional(request.id, "id", limits.max_id_length),
        outputs=_decode_outputs(request.outputs, raw, limits),
        parameters=decode_parameters(request.parameters, "request"),
        binary_output=raw,
    )


def is_raw(request: pb.ModelInferRequest) -> bool:
    """Whether the request carries its tensors in `raw_input_contents` (tritonclient does)."""
    return len(request.raw_input_contents) > 0


def _decode_inputs(request: pb.ModelInferRequest, limits: Limits) -> tuple[Tensor, ...]:
    inputs, raws = request.inputs, request.raw_input_contents
    if not inputs:
        raise InvalidArgument("the request has no inputs")
    if len(inputs) > limits.max_tensors:
        raise InvalidArgument(f"{len(inputs)} inputs; the limit is {limits.max_tensors}")
    if raws and len(raws) != len(inputs):
        raise InvalidArgument(
            f"{len(raws)} raw_input_contents for {len(inputs)} inputs; give one per input, "
            "in the order of the inputs"
        )
    tensors: dict[str, Tensor] = {}
    budget = limits.max_elements
    for index, item in enumerate(inputs):
        tensor = _decode_input(index, item, raws[index] if raws else None, budget, limits)
        if tensor.name in tensors:
            raise InvalidArgument(f"input {tensor.name!r} is given more than once")
        budget -= tensor.data.size
        tensors[tensor.name] = tensor
    return tuple(tensors.values())


def _decode_input(
    index: int,
    item: pb.ModelInferRequest.InferInputTensor,
    raw: bytes | None,
    budget: int,
    limits: Limits,
) -> Tensor:
    name = check_name(item.name, f"inputs[{index}]", limits)
    if item.datatype not in DATATYPES:
        raise InvalidArgument(
            f"input {name!r}: unknown datatype {item.datatype[:40]!r}; known: {_KNOWN_DATATYPES}"
        )
    shape, count = parse_shape(name, list(item.shape), limits, budget)
    parameters = decode_parameters(item.parameters, f"input {name!r}")
    if raw is None:
        if not item.HasField("contents"):
            raise InvalidArgument(f"input {name!r} has no contents (nor raw_input_contents)")
        array = contents.array_from_contents(name, item.datatype, shape, count, item.contents)
    elif item.HasField("contents"):
        raise InvalidArgument(
            f"input {name!r} has contents, but the request uses raw_input_contents"
        )
    else:
        array = oip_binary.array_from_raw(name, item.datatype, shape, count, raw)
    return Tensor(name, item.datatype, shape, array, parameters)


def _decode_outputs(
    outputs: Sequence[pb.ModelInferRequest.InferRequestedOutputTensor], raw: bool, limits: Limits
) -> tuple[RequestedOutput, ...]:
    if len(outputs) > limits.max_tensors:
        raise InvalidArgument(
            f"{len(outputs)} outputs requested; the limit is {limits.max_tensors}"
        )
    wanted = tuple(
        RequestedOutput(
            check_name(o.name, f"outputs[{i}]", limits),
            raw,
            decode_parameters(o.parameters, f"output {o.name!r}"),
        )
        for i, o in enumerate(outputs)
    )
    if len({o.name for o in wanted}) != len(wanted):
        raise InvalidArgument("'outputs' names the same output more than once")
    return wanted


def _optional(value: str, what: str, max_length: int) -> str | None:
    if len(value) > max_length:
        raise InvalidArgument(f"{what} is {len(value)} characters long; the limit is {max_length}")
    return value or None


def decode_parameters(parameters: Mapping[str, pb.InferParameter], where: str) -> Mapping[str, Any]:
    if not parameters:
        return EMPTY
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidArgument(f"{where}: parameter {key[:40]!r} has no value")
        out[key] = getattr(value, choice)
    return out


# --- responses ------------------------------------------------------------------------------


def encode_infer(result: InferResult, *, raw: bool) -> pb.ModelInferResponse:
    """The gRPC response; `raw` answers in `raw_output_contents` (see the module docstring)."""
    raw = raw or not all(contents.typed(t.datatype) for t in result.outputs)
    response = pb.ModelInferResponse(
        model_name=result.model_name, model_version=result.model_version, id=result.id or ""
    )
    encode_parameters(result.parameters, response.parameters)
    for tensor in result.outputs:
        entry = response.outputs.add(name=tensor.name, datatype=tensor.datatype)
        entry.shape.extend(tensor.shape)
        encode_parameters(tensor.parameters, entry.parameters)
        if raw:
            response.raw_output_contents.append(oip_binary.tensor_to_raw(tensor))
        else:
            contents.fill_contents(tensor, entry.contents)
    return response


def encode_parameters(
    parameters: Mapping[str, Any],
    into: Any,  # a protobuf map<string, InferParameter>
) -> None:
    for key, value in parameters.items():
        into[key].CopyFrom(_parameter(key, value))


def _parameter(key: str, value: object) -> pb.InferParameter:
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int) and -_INT64_MAX - 1 <= value <= _INT64_MAX:
        return pb.InferParameter(int64_param=value)
    if isinstance(value, int) and 0 <= value <= _UINT64_MAX:
        return pb.InferParameter(uint64_param=value)
    if isinstance(value, float):
        return pb.InferParameter(double_param=value)
    if isinstance(value, str):
        return pb.InferParameter(string_param=value)
    raise Internal(f"parameter {key!r} of type {type(value).__name__} has no gRPC form")


def encode_server_metadata(metadata: ServerMetadata) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(
        name=metadata.name, version=metadata.version, extensions=list(metadata.extensions)
    )


def encode_model_metadata(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    return pb.ModelMetadataResponse(
        name=metadata.name,
        versions=list(metadata.versions),
        platform=metadata.platform,
        inputs=[_tensor_metadata(s) for s in metadata.inputs],
        outputs=[_tensor_metadata(s) for s in metadata.outputs],
    )


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype, shape=list(spec.shape)
    )
