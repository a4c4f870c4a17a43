"""pyfunc flavor: importable classes only, artifacts bundled, outputs normalised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.runtimes.base import PRIMARY_OUTPUT, ModelInput
from shipyard.runtimes.pyfunc import ModelContext, PyfuncFlavor, PythonModel, as_outputs

FLAVOR = PyfuncFlavor()


class Scaler(PythonModel):
    """Multiplies the input by a factor read from an artifact at load time."""

    def __init__(self) -> None:
        self.factor = 0.0

    def load(self, context: ModelContext) -> None:
        self.factor = float(context.artifacts["factor"].read_text())

    def predict(self, context: ModelContext, inputs: ModelInput) -> Any:
        return {"scaled": np.asarray(inputs) * self.factor, "ones": np.ones(len(inputs))}


def test_round_trip_with_artifact(tmp_path: Path) -> None:
    source = tmp_path / "factor.txt"
    source.write_text("3")
    model = Scaler()
    model.artifacts = {"factor": source}
    directory = tmp_path / "saved"
    directory.mkdir()
    saved = FLAVOR.save(model, directory, trust=False)
    assert saved.meta == {
        "entry": "test_runtime_pyfunc:Scaler",
        "artifacts": {"factor": "artifacts/factor"},
    }
    assert saved.files == ("python_model.json", "artifacts/factor")
    source.unlink()  # the saved copy is what load reads
    runtime = FLAVOR.load({name: directory / name for name in saved.files}, saved.meta)
    out = runtime.predict(np.array([[1.0], [2.0]]))
    np.testing.assert_array_equal(out[PRIMARY_OUTPUT], np.array([[3.0], [6.0]]))
    np.testing.assert_array_equal(out["ones"], np.ones(2))
    np.testing.assert_array_equal(out["scaled"], out[PRIMARY_OUTPUT])  # first is also predict


def test_class_from_main_is_refused(tmp_path: Path) -> None:
    cls = type("Inline", (Scaler,), {"__module__": "__main__"})
    with pytest.raises(FailedPrecondition, match="importable"):
        FLAVOR.save(cls(), tmp_path, trust=False)


def test_local_class_is_refused(tmp_path: Path) -> None:
    class Local(Scaler):
        pass

    with pytest.raises(FailedPrecondition, match="importable"):
        FLAVOR.save(Local(), tmp_path, trust=False)


def test_bad_artifact_names_and_paths(tmp_path: Path) -> None:
    model = Scaler()
    model.artifacts = {"../escape": tmp_path / "x"}
    with pytest.raises(InvalidArgument, match="artifact name"):
        FLAVOR.save(model, tmp_path, trust=False)
    model.artifacts = {"missing": tmp_path / "nope.txt"}
    with pytest.raises(InvalidArgument, match="not a file"):
        FLAVOR.save(model, tmp_path, trust=False)


def test_unimportable_entry_fails_on_load() -> None:
    with pytest.raises(FailedPrecondition, match="cannot import"):
        FLAVOR.load({}, {"entry": "no_such_module_xyz:Model"})
    with pytest.raises(FailedPrecondition, match="not a shipyard.PythonModel"):
        FLAVOR.load({}, {"entry": "pathlib:Path"})


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (np.array([1, 2]), {PRIMARY_OUTPUT: [1, 2]}),
        ([1, 2], {PRIMARY_OUTPUT: [1, 2]}),
        (pd.Series([1, 2]), {PRIMARY_OUTPUT: [1, 2]}),
        (pd.DataFrame({"a": [1, 2]}), {PRIMARY_OUTPUT: [1, 2], "a": [1, 2]}),
        ({"predict": [1, 2], "score": [0.5, 0.25]}, {PRIMARY_OUTPUT: [1, 2], "score": [0.5, 0.25]}),
    ],
)
def test_as_outputs(result: Any, expected: dict[str, list[float]]) -> None:
    out = as_outputs(result)
    assert list(out) == list(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(out[name], np.asarray(values))


def test_handles_and_read() -> None:
    assert FLAVOR.handles(Scaler())
    assert not FLAVOR.handles(object())
    with pytest.raises(InvalidArgument):
        FLAVOR.read(Path("x.py"), trust=True)
