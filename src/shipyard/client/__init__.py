"""The Python client and the module-level shortcuts `shipyard.register` / `shipyard.load`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipyard.app.settings import Settings
from shipyard.client.registry import Registry
from shipyard.core.lineage import Lineage
from shipyard.core.refs import ModelRef
from shipyard.packaging.load import LoadedModel
from shipyard.registry.models import ModelVersion

__all__ = ["Registry", "default_registry", "load", "register"]

_default: tuple[Settings, Registry] | None = None


def default_registry() -> Registry:
    """The registry the environment points at, reopened if SHIPYARD_* settings changed."""
    global _default
    settings = Settings()
    if _default is None or _default[0] != settings:
        if _default is not None:
            _default[1].close()
        _default = (settings, Registry(settings=settings))
    return _default[1]


def register(
    model: object,
    name: str,
    *,
    sample_input: object = None,
    reference_data: object = None,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    lineage: Lineage | Mapping[str, Any] | None = None,
    trust: bool = False,
) -> ModelVersion:
    """Register `model` as the next version of `name` in the default registry."""
    return default_registry().register(
        model,
        name,
        sample_input=sample_input,
        reference_data=reference_data,
        tags=tags,
        description=description,
        params=params,
        metrics=metrics,
        lineage=lineage,
        trust=trust,
    )


def load(ref: ModelRef | str, *, compiled: bool = True) -> LoadedModel:
    """Load `name`, `name:3` or `name@alias` from the default registry."""
    return default_registry().load(ref, compiled=compiled)
