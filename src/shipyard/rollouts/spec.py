"""What a deployment routes to: strategies, variants and revisions (pure types, no I/O).

A Deployment is a named endpoint (`fraud`). Each change to where its traffic goes is a new
numbered Revision holding a RevisionSpec; data planes route every request by the current one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shipyard.core.errors import InvalidArgument
from shipyard.core.refs import check_name

# The sticky-key header; the same key always lands on the same variant.
KEY_HEADER = "x-shipyard-key"
VERSION_HEADER = "x-shipyard-model-version"
MAX_VARIANTS = 8


class Strategy(enum.StrEnum):
    DIRECT = "direct"  # all traffic to one version
    CANARY = "canary"  # a weighted split, usually stepped by a rollout
    AB = "ab"  # a weighted split, sticky by key
    SHADOW = "shadow"  # live traffic to the primary, a copy to the shadow
    BLUEGREEN = "bluegreen"  # all traffic to the new version, the old one kept warm


class Role(enum.StrEnum):
    """What a variant is to a rollout's analysis."""

    PRIMARY = "primary"
    CANDIDATE = "candidate"
    SHADOW = "shadow"


def parse_strategy(text: str) -> Strategy:
    try:
        return Strategy(text)
    except ValueError:
        choices = ", ".join(s.value for s in Strategy)
        raise InvalidArgument(f"unknown strategy {text!r}; choose one of {choices}") from None


@dataclass(frozen=True, slots=True)
class Variant:
    """One model version a deployment sends traffic to, with its share in percent. A weight of
    0 keeps the version loaded (blue-green standby) without sending it live traffic."""

    model: str
    version: int
    weight: int = 100

    def __post_init__(self) -> None:
        check_name(self.model)
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise InvalidArgument(f"version must be a positive integer, got {self.version!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int):
            raise InvalidArgument(f"weight must be an integer percentage, got {self.weight!r}")
        if not 0 <= self.weight <= 100:
            raise InvalidArgument(f"weight must be between 0 and 100, got {self.weight}")

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "weight": self.weight}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Variant:
        return cls(str(data["model"]), int(data["version"]), int(data.get("weight", 100)))


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """Requests whose `header` equals `value` go to variant number `variant` (0-based),
    whatever the weights say: for testers and internal traffic."""

    header: str
    value: str
    variant: int

    def __post_init__(self) -> None:
        if not self.header or not self.header.isascii() or self.header != self.header.lower():
            raise InvalidArgument(f"header names must be lowercase ASCII, got {self.header!r}")

    def to_json(self) -> dict[str, Any]:
        return {"header": self.header, "value": self.value, "variant": self.variant}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HeaderMatch:
        return cls(str(data["header"]), str(data["value"]), int(data["variant"]))


@dataclass(frozen=True, slots=True)
class RevisionSpec:
    """Where a deployment's traffic goes at one moment."""

    strategy: Strategy
    variants: tuple[Variant, ...]
    shadow: Variant | None = None
    # For sticky routing: the input whose first value is the key when no header gives one.
    sticky_field: str | None = None
    matches: tuple[HeaderMatch, ...] = field(default=())

    def __post_init__(self) -> None:
        if not 1 <= len(self.variants) <= MAX_VARIANTS:
            raise InvalidArgument(f"a revision routes to 1 to {MAX_VARIANTS} variants")
        total = sum(v.weight for v in self.variants)
        if total != 100:
            weights = " + ".join(str(v.weight) for v in self.variants)
            raise InvalidArgument(f"weights must sum to 100, got {weights} = {total}")
        refs = [v.ref for v in self.variants]
        if len(set(refs)) != len(refs):
            raise InvalidArgument(f"a version appears twice among the variants: {refs}")
        if self.shadow is not None and self.shadow.ref in refs:
            raise InvalidArgument(f"the shadow {self.shadow.ref} is also a live variant")
        for match in self.matches:
            if not 0 <= match.variant < len(self.variants):
                raise InvalidArgument(
                    f"header match points at variant {match.variant}, "
                    f"but there are {len(self.variants)}"
                )
        if self.sticky_field is not None:
            check_name(self.sticky_field)

    @property
    def primary(self) -> Variant:
        """The variant with the most traffic (the first one on a tie)."""
        return max(self.variants, key=lambda v: v.weight)

    def loaded(self) -> tuple[Variant, ...]:
        """Every version a data plane must hold for this revision."""
        return self.variants + ((self.shadow,) if self.shadow is not None else ())

    def routes_to(self, model: str, version: int) -> bool:
        return any(v.model == model and v.version == version for v in self.loaded())

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.value,
            "variants": [v.to_json() for v in self.variants],
            "shadow": self.shadow.to_json() if self.shadow is not None else None,
            "sticky_field": self.sticky_field,
            "matches": [m.to_json() for m in self.matches],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RevisionSpec:
        shadow = data.get("shadow")
        return cls(
            strategy=parse_strategy(str(data["strategy"])),
            variants=tuple(Variant.from_json(v) for v in data["variants"]),
            shadow=Variant.from_json(shadow) if shadow else None,
            sticky_field=data.get("sticky_field"),
            matches=tuple(HeaderMatch.from_json(m) for m in data.get("matches", ())),
        )


@dataclass(frozen=True, slots=True)
class Revision:
    deployment: str
    number: int
    spec: RevisionSpec
    created_at: datetime
    actor: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    description: str | None
    created_at: datetime
    created_by: str
    revision: Revision  # the current one
