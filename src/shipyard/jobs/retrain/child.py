"""The training process of one run: `python -m shipyard.jobs.retrain.child RUN_DIR`.

Runs the user's code in its own process, so a crash, a hang or a leak cannot touch the
control plane or serving. Reads RUN_DIR/request.json, writes RUN_DIR/holdout.parquet and
RUN_DIR/result.json; its stdout and stderr are the run's log. Exit code 0 means a candidate
was registered; otherwise result.json holds the error in one line.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from shipyard.core.errors import InvalidArgument, ShipyardError
from shipyard.core.lineage import fingerprint
from shipyard.jobs.retrain.config import parse_config
from shipyard.jobs.retrain.context import TrainContext
from shipyard.jobs.retrain.data import SourceContext, read_sources, split
from shipyard.monitoring.serialization import reference_profile
from shipyard.packaging.register import Registration, register_model
from shipyard.registry.service import Registry

PACKAGES = ("shipyard", "scikit-learn", "xgboost", "lightgbm", "torch", "numpy", "pandas")


def load_entry(entry: str) -> Callable[[TrainContext], object]:
    module_name, _, function = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError or an error raised while importing it
        raise InvalidArgument(
            f"entry point {entry!r} is not importable: {type(exc).__name__}: {exc}"
        ) from None
    train = getattr(module, function, None)
    if not callable(train):
        raise InvalidArgument(f"entry point {entry!r}: {module_name} has no function {function!r}")
    return train  # type: ignore[no-any-return]


def _packages() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _model_inputs(model: object, features: pd.DataFrame) -> pd.DataFrame:
    """The columns the model was fitted on, when it says (scikit-learn's feature_names_in_):
    a model may use a subset of the training data's columns."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return features
    wanted = [str(n) for n in names]
    missing = [n for n in wanted if n not in features.columns]
    if missing:
        raise InvalidArgument(f"the model expects column(s) absent from the data: {missing}")
    return features[wanted]


def train_candidate(request: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    config = parse_config(request["config"])
    train = load_entry(request["entry"])
    store = request["store"]
    home = store.get("home")
    read = read_sources(
        config.sources,
        SourceContext(
            model=request["model"],
            label=config.label,
            home=Path(home) if home else None,
            database_url=store["database_url"],
        ),
    )
    for report in read.reports:  # the run's log says what each source gave (and dropped)
        print("source:", json.dumps(report, default=str), flush=True)
    training, holdout = split(read.data, config.label, config.holdout)
    holdout.to_parquet(run_dir / "holdout.parquet")
    context = TrainContext(
        data=training,
        label=config.label,
        params=dict(config.params),
        seed=config.seed,
        run_id=int(request["run_id"]),
        model=request["model"],
        champion=request.get("champion"),
    )
    model = train(context)
    if model is None:
        raise InvalidArgument("train(context) returned None instead of a model")
    features = _model_inputs(model, context.features)
    with Registry.open(
        store["database_url"], store["blob_location"], actor=store["actor"]
    ) as registry:
        version = register_model(
            registry,
            model,
            Registration(
                name=request["model"],
                sample_input=features.head(100),
                reference_data=features,
                params=dict(config.params),
                lineage={
                    "data": training,
                    "parent": request.get("champion_version"),
                    "run_id": str(request["run_id"]),
                },
                tags={"shipyard.run": str(request["run_id"])},
                stage="candidate",
                profiler=reference_profile,
            ),
        )
    return {
        "candidate_version": version.version,
        "train_rows": len(training),
        "holdout_rows": len(holdout),
        "data": fingerprint(training).to_dict(),
        "sources": read.reports,
        "params": dict(config.params),
        "seed": config.seed,
        "packages": _packages(),
    }


def main(argv: list[str]) -> int:
    run_dir = Path(argv[1])
    request = json.loads((run_dir / "request.json").read_text())
    sys.path.insert(0, request.get("cwd", os.getcwd()))  # the user's package, as they run it
    try:
        result = train_candidate(request, run_dir)
        code = 0
    except ShipyardError as exc:
        result, code = {"error": exc.message}, 2
    except Exception as exc:  # the user's training code failed: say how, in one line
        traceback.print_exc()
        result, code = {"error": f"train failed: {type(exc).__name__}: {exc}"}, 3
    (run_dir / "result.json").write_text(json.dumps(result, default=str))
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
