"""PyTorch flavor: TorchScript archives only (torch.load of pickles would run code).

A plain `nn.Module` becomes TorchScript by tracing it on a sample: `script_module(model,
sample)` before registering.
"""

from __future__ import annotations

import contextlib
import io
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.runtimes.base import (
    PRIMARY_OUTPUT,
    ModelInput,
    Outputs,
    Saved,
    defined_in,
    require,
    unreadable,
)

if TYPE_CHECKING:
    import torch

MODEL_FILE = "model.pt"
SUFFIXES = frozenset({".pt", ".pth"})
_PICKLE_PROTO = b"\x80"  # legacy torch.save files are bare pickles
NEEDS_SCRIPT = (
    "give sample_input to trace a torch.nn.Module, or pass a TorchScript module "
    "(shipyard.runtimes.torch.script_module(model, sample))"
)


def _torch() -> Any:
    return require("torch", "torch")


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript zips hold code/ and constants.pkl; torch.save pickles do not."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any("/code/" in name for name in names) and any(
        name.endswith("constants.pkl") for name in names
    )


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """torch 2.13 deprecates torch.jit.*; TorchScript stays our pickle-free format until
    torch.export archives are supported, so only that deprecation is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        yield


def script_module(model: Any, sample: Any) -> torch.jit.ScriptModule:
    """Trace `model` on `sample` (ndarray, DataFrame or tensor) into TorchScript."""
    th = _torch()
    if isinstance(model, th.jit.ScriptModule):
        return cast("torch.jit.ScriptModule", model)
    model.eval()
    with th.no_grad(), quiet_jit():
        traced = th.jit.trace(model, _as_tensor(th, sample))
    return cast("torch.jit.ScriptModule", traced)


def _as_tensor(torch: Any, value: Any) -> Any:
    if isinstance(value, pd.DataFrame):
        value = value.to_numpy()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    return value


def _to_numpy(value: Any) -> np.ndarray:
    return np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)


class TorchRuntime:
    flavor = "torch"

    def __init__(self, module: Any) -> None:
        self._torch = _torch()
        self._module = module

    @property
    def module(self) -> Any:
        """The loaded TorchScript module."""
        return self._module

    def predict(self, inputs: ModelInput) -> Outputs:
        torch = self._torch
        if isinstance(inputs, Mapping):
            args = [_as_tensor(torch, np.asarray(value)) for value in inputs.values()]
        else:
            args = [_as_tensor(torch, inputs)]
        with torch.inference_mode():
            result = self._module(*args)
        if isinstance(result, Mapping):
            outputs = {str(name): _to_numpy(value) for name, value in result.items()}
            first = next(iter(outputs.values()))
            return {PRIMARY_OUTPUT: first, **outputs}
        if isinstance(result, tuple | list):
            named = {f"output_{i}": _to_numpy(value) for i, value in enumerate(result)}
            return {PRIMARY_OUTPUT: named.pop("output_0"), **named}
        return {PRIMARY_OUTPUT: _to_numpy(result)}


class TorchFlavor:
    name = "torch"

    def handles(self, model: object) -> bool:
        return defined_in(model, "torch") and callable(model)

    def sniff(self, path: Path) -> bool:
        return path.suffix.lower() in SUFFIXES

    def read(self, path: Path, *, trust: bool) -> object:
        if not zipfile.is_zipfile(path):
            with path.open("rb") as handle:
                head = handle.read(2)
            if head[:1] != _PICKLE_PROTO:  # a damaged archive, not a legacy pickle
                raise InvalidArgument(
                    f"{path.name} is not a valid TorchScript file (corrupt or truncated?)"
                )
            raise FailedPrecondition(
                f"{path.name} is not a TorchScript archive; legacy torch pickles can run "
                "arbitrary code when loaded and are refused (export with torch.jit.save)"
            )
        if not is_torchscript_archive(path):
            raise FailedPrecondition(
                f"{path.name} was written by torch.save (a pickle that can run code when "
                "loaded); save a TorchScript module with torch.jit.save instead"
            )
        return _load_script(path.read_bytes(), path.name)

    def save(self, model: object, directory: Path, *, trust: bool) -> Saved:
        torch = _torch()
        if not isinstance(model, torch.jit.ScriptModule):
            raise FailedPrecondition(NEEDS_SCRIPT)
        with quiet_jit():
            torch.jit.save(model, str(directory / MODEL_FILE))
        return Saved((MODEL_FILE,), {"format": "torchscript"})

    def load(self, files: Mapping[str, Path], meta: Mapping[str, Any]) -> TorchRuntime:
        _torch().set_num_threads(1)  # one intra-op thread per worker (DESIGN: performance)
        return TorchRuntime(_load_script(files[MODEL_FILE].read_bytes(), MODEL_FILE))


def _load_script(raw: bytes, name: str) -> Any:
    torch = _torch()
    try:
        with quiet_jit():
            module = torch.jit.load(io.BytesIO(raw), map_location="cpu")
    except Exception as exc:  # RuntimeError on damaged archives
        raise unreadable(Path(name), "TorchScript", exc) from None
    module.eval()
    return module


ONNX_OPSET = 17
ONNX_CONVERTER = "torch.onnx.export (TorchScript-based)"


def to_onnx(module: Any, sample: ModelInput) -> tuple[bytes, dict[str, Any]]:
    """The module as ONNX bytes with any batch size, and the onnx-flavor meta that names its
    outputs as `TorchRuntime` does (predict, output_1, ...). `sample` gives the input names
    (a mapping's keys, else "input"), dtypes and shapes; parity is the caller's to check."""
    torch = _torch()
    if isinstance(sample, Mapping):
        names = [str(name) for name in sample]
        args = tuple(_as_tensor(torch, np.asarray(value)) for value in sample.values())
    else:
        names, args = ["input"], (_as_tensor(torch, sample),)
    with torch.inference_mode():
        result = module(*args)
    if isinstance(result, Mapping):
        raise FailedPrecondition("a torch model returning a dict cannot be exported to ONNX")
    count = len(result) if isinstance(result, tuple | list) else 1
    outputs = [PRIMARY_OUTPUT] + [f"output_{i}" for i in range(1, count)]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The exporter's deprecation and tracer notes are not the user's to act on: the
        # caller measures the result against the module instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            buffer,
            dynamo=False,  # the torch.export-based exporter needs onnxscript, not a dependency
            input_names=names,
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in names + outputs},
            opset_version=ONNX_OPSET,
        )
    return buffer.getvalue(), {"outputs": {name: name for name in outputs}}
