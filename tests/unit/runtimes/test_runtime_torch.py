"""torch flavor: TorchScript only; pickles written by torch.save are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.runtimes.base import PRIMARY_OUTPUT
from shipyard.runtimes.torch import MODEL_FILE, TorchFlavor, script_module

FLAVOR = TorchFlavor()


class TwoLayer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # type: ignore[no-any-return]


SAMPLE = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)


def expected(model: torch.nn.Module) -> np.ndarray:
    with torch.no_grad():
        return np.asarray(model(torch.from_numpy(SAMPLE)).numpy())


def test_plain_module_needs_sample(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="sample_input"):
        FLAVOR.save(TwoLayer(), tmp_path, trust=False)


def test_traced_round_trip(tmp_path: Path) -> None:
    model = TwoLayer().eval()
    scripted = script_module(model, SAMPLE)
    saved = FLAVOR.save(scripted, tmp_path, trust=False)
    runtime = FLAVOR.load({MODEL_FILE: tmp_path / MODEL_FILE}, saved.meta)
    out = runtime.predict(SAMPLE)
    assert isinstance(out[PRIMARY_OUTPUT], np.ndarray)
    np.testing.assert_allclose(out[PRIMARY_OUTPUT], expected(model), rtol=1e-6)
    assert FLAVOR.handles(scripted)
    assert FLAVOR.handles(model)


def test_read_torchscript_file(tmp_path: Path) -> None:
    model = TwoLayer().eval()
    path = tmp_path / "m.pt"
    FLAVOR.save(script_module(model, SAMPLE), tmp_path, trust=False)
    (tmp_path / MODEL_FILE).rename(path)
    assert FLAVOR.sniff(path)
    loaded = FLAVOR.read(path, trust=False)
    assert isinstance(loaded, torch.jit.ScriptModule)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(torch.from_numpy(SAMPLE)).numpy(), expected(model))


def test_torch_save_pickles_are_refused(tmp_path: Path) -> None:
    zipped = tmp_path / "state.pt"
    torch.save(TwoLayer().state_dict(), zipped)
    legacy = tmp_path / "legacy.pth"
    torch.save(TwoLayer().state_dict(), legacy, _use_new_zipfile_serialization=False)
    for path in (zipped, legacy):
        with pytest.raises(FailedPrecondition, match="torch.jit.save"):
            FLAVOR.read(path, trust=True)


def test_truncated_torchscript_is_invalid_argument(tmp_path: Path) -> None:
    FLAVOR.save(script_module(TwoLayer(), SAMPLE), tmp_path, trust=False)
    good = tmp_path / MODEL_FILE
    raw = good.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(raw[: len(raw) - 200])
    with pytest.raises(InvalidArgument, match="bad.pt"):
        FLAVOR.read(bad, trust=False)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(InvalidArgument, match="corrupt.pt"):
        FLAVOR.read(corrupt, trust=False)
