"""The public API is deliberate: any change to it shows up here in review."""

from __future__ import annotations

import shipyard

EXPECTED = [
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


def test_all_is_pinned() -> None:
    assert shipyard.__all__ == EXPECTED


def test_every_name_resolves() -> None:
    for name in shipyard.__all__:
        assert getattr(shipyard, name) is not None, name
    assert set(dir(shipyard)) == set(EXPECTED)


def test_unknown_attribute() -> None:
    try:
        shipyard.nope  # noqa: B018
    except AttributeError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
