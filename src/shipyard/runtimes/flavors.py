"""The known flavors, in the order objects and files are matched against them.

xgboost and lightgbm sklearn wrappers are sklearn estimators too, so they come first.
"""

from __future__ import annotations

from pathlib import Path

from shipyard.core.errors import InvalidArgument
from shipyard.runtimes.base import Flavor
from shipyard.runtimes.lightgbm import LightGBMFlavor
from shipyard.runtimes.onnx import OnnxFlavor
from shipyard.runtimes.pyfunc import PyfuncFlavor
from shipyard.runtimes.sklearn import SklearnFlavor
from shipyard.runtimes.torch import TorchFlavor
from shipyard.runtimes.xgboost import XGBoostFlavor

FLAVORS: tuple[Flavor, ...] = (
    PyfuncFlavor(),
    XGBoostFlavor(),
    LightGBMFlavor(),
    SklearnFlavor(),
    OnnxFlavor(),
    TorchFlavor(),
)
_BY_NAME: dict[str, Flavor] = {flavor.name: flavor for flavor in FLAVORS}


def flavor_names() -> list[str]:
    return [flavor.name for flavor in FLAVORS]


def get_flavor(name: str) -> Flavor:
    flavor = _BY_NAME.get(name)
    if flavor is None:
        raise InvalidArgument(
            f"unknown flavor {name!r}; known flavors: {', '.join(flavor_names())}",
            details={"flavors": flavor_names()},
        )
    return flavor


def flavor_for_object(model: object) -> Flavor:
    for flavor in FLAVORS:
        if flavor.handles(model):
            return flavor
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    raise InvalidArgument(
        f"no flavor can save a {kind}; supported flavors: {', '.join(flavor_names())}",
        details={"type": kind, "flavors": flavor_names()},
    )


def flavor_for_file(path: Path) -> Flavor:
    if not path.is_file():
        raise InvalidArgument(f"{path.name} is not a file")
    for flavor in FLAVORS:
        if flavor.sniff(path):
            return flavor
    raise InvalidArgument(
        f"cannot tell the format of {path.name}; expected .skops, .onnx, .ubj/.json (XGBoost), "
        ".txt (LightGBM), .pt (TorchScript) or, with trust, .pkl/.joblib",
        details={"path": path.name},
    )
