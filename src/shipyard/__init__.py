"""shipyard: take trained models to production and keep them healthy there.

The public API is the list in `__all__` (pinned by tests/unit/test_public_api.py). Names are
imported on first use so that `import shipyard` and the CLI start quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from shipyard import batch, monitoring
    from shipyard.client import Registry, load, register
    from shipyard.client.deployments import Deployments
    from shipyard.core.errors import (
        Conflict,
        ErrorKind,
        FailedPrecondition,
        InvalidArgument,
        NotFound,
        ShipyardError,
        Unavailable,
    )
    from shipyard.core.lineage import DataFingerprint, Lineage
    from shipyard.core.refs import ModelRef
    from shipyard.core.signatures import Signature, TensorSpec
    from shipyard.packaging.load import LoadedModel
    from shipyard.registry.models import (
        AliasMove,
        LedgerEntry,
        Model,
        ModelVersion,
        VersionStatus,
    )
    from shipyard.rollouts.policy import Policy
    from shipyard.rollouts.progress import Decision, Rollout, RolloutState
    from shipyard.rollouts.spec import Deployment, Revision, Strategy, Variant
    from shipyard.runtimes.pyfunc import ModelContext, PythonModel

_HOMES: dict[str, str] = {
    "Registry": "shipyard.client",
    "load": "shipyard.client",
    "register": "shipyard.client",
    "Conflict": "shipyard.core.errors",
    "ErrorKind": "shipyard.core.errors",
    "FailedPrecondition": "shipyard.core.errors",
    "InvalidArgument": "shipyard.core.errors",
    "NotFound": "shipyard.core.errors",
    "ShipyardError": "shipyard.core.errors",
    "Unavailable": "shipyard.core.errors",
    "DataFingerprint": "shipyard.core.lineage",
    "Lineage": "shipyard.core.lineage",
    "ModelRef": "shipyard.core.refs",
    "Signature": "shipyard.core.signatures",
    "TensorSpec": "shipyard.core.signatures",
    "LoadedModel": "shipyard.packaging.load",
    "AliasMove": "shipyard.registry.models",
    "LedgerEntry": "shipyard.registry.models",
    "Model": "shipyard.registry.models",
    "ModelVersion": "shipyard.registry.models",
    "VersionStatus": "shipyard.registry.models",
    "ModelContext": "shipyard.runtimes.pyfunc",
    "PythonModel": "shipyard.runtimes.pyfunc",
    "Decision": "shipyard.rollouts.progress",
    "Deployment": "shipyard.rollouts.spec",
    "Deployments": "shipyard.client.deployments",
    "Policy": "shipyard.rollouts.policy",
    "Revision": "shipyard.rollouts.spec",
    "Rollout": "shipyard.rollouts.progress",
    "RolloutState": "shipyard.rollouts.progress",
    "Strategy": "shipyard.rollouts.spec",
    "Variant": "shipyard.rollouts.spec",
}

# Submodules that are part of the API: `shipyard.batch.score`, `shipyard.monitoring.DriftDetector`.
_SUBMODULES = frozenset({"batch", "monitoring"})

__all__ = [
    "AliasMove",
    "Conflict",
    "DataFingerprint",
    "Decision",
    "Deployment",
    "Deployments",
    "ErrorKind",
    "FailedPrecondition",
    "InvalidArgument",
    "LedgerEntry",
    "Lineage",
    "LoadedModel",
    "Model",
    "ModelContext",
    "ModelRef",
    "ModelVersion",
    "NotFound",
    "Policy",
    "PythonModel",
    "Registry",
    "Revision",
    "Rollout",
    "RolloutState",
    "ShipyardError",
    "Signature",
    "Strategy",
    "TensorSpec",
    "Unavailable",
    "Variant",
    "VersionStatus",
    "__version__",
    "batch",
    "load",
    "monitoring",
    "register",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"shipyard.{name}")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'shipyard' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
