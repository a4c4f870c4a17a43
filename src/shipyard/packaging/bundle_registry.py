"""A bundle as a registry: `shipyard serve --bundle` serves through the normal data plane.

The data plane reads versions from a Registry (resolve, revision, artifact paths). Rather than
teach every layer a second source, a verified bundle is imported into a fresh embedded registry
(SQLite + local blobs in a private directory) under its own name and version number; the server
then runs unchanged on that registry. Nothing of the user's registry is read or written.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.core.errors import InvalidArgument
from shipyard.core.lineage import Lineage
from shipyard.packaging.bundle import MODEL_DIR, BundleInfo, open_bundle
from shipyard.registry.models import ModelVersion, VersionSpec
from shipyard.registry.service import Registry
from shipyard.storage.tables import ModelRow, utcnow

DATABASE_FILE = "shipyard.db"
BLOB_DIR = "blobs"
_EXTRACT_DIR = "bundle"
ACTOR = "shipyard-bundle"


@dataclass(frozen=True, slots=True)
class ImportedBundle:
    info: BundleInfo
    version: ModelVersion
    database_url: str
    blob_location: Path


def embedded_database_url(home: Path) -> str:
    return f"sqlite:///{home / DATABASE_FILE}"


def _spec(record: dict[str, Any]) -> VersionSpec:
    """The version spec a bundle's version.json describes (checked again by the registry)."""
    try:
        return VersionSpec(
            flavor=str(record["flavor"]),
            signature=record.get("signature"),
            flavor_meta=dict(record.get("flavor_meta") or {}),
            compiled=record.get("compiled"),
            description=record.get("description"),
            tags=dict(record.get("tags") or {}),
            params=dict(record.get("params") or {}),
            metrics=dict(record.get("metrics") or {}),
            lineage=Lineage.from_dict(record.get("lineage") or {}),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InvalidArgument("bundle file version.json is malformed") from None


def _reserve_number(registry: Registry, name: str, version: int) -> None:
    """Make the next version number of `name` equal `version`: the served version keeps the
    number it had where it was exported (URLs and X-Shipyard-Model-Version say so)."""
    with registry.database.write() as session:
        session.add(
            ModelRow(
                name=name, tags={}, created_at=utcnow(), last_version=version - 1, archived=False
            )
        )


def _check_unchanged(info: BundleInfo, version: ModelVersion) -> None:
    """A directory bundle could change between verification and copy: compare the stored
    blobs with the manifest once more."""
    for logical, artifact in version.artifacts.items():
        if info.files[f"{MODEL_DIR}/{logical}"].sha256 != artifact.sha256:
            raise InvalidArgument(f"bundle file {MODEL_DIR}/{logical} changed while being read")


def import_bundle(
    bundle: Path | str, home: Path, *, public_key: Path | None = None
) -> ImportedBundle:
    """Verify `bundle` (a directory or .tar.gz; its signature with `public_key`) and register
    its version in a new embedded registry under the empty or new directory `home`."""
    home.mkdir(parents=True, exist_ok=True)
    if any(home.iterdir()):
        raise InvalidArgument(f"{home} is not empty; a bundle registry needs a fresh directory")
    extract_to = home / _EXTRACT_DIR
    info, artifacts = open_bundle(bundle, extract_to=extract_to, public_key=public_key)
    spec = _spec(info.record)
    if info.version < 1:
        raise InvalidArgument(f"bundle file version.json has version {info.version}; must be >= 1")
    url = embedded_database_url(home)
    try:
        with Registry.open(url, home / BLOB_DIR, actor=ACTOR) as registry:
            _reserve_number(registry, info.name, info.version)
            version = registry.register_version(
                info.name, artifacts, spec, reason=f"served from bundle {info.path.name}"
            )
    finally:
        shutil.rmtree(extract_to, ignore_errors=True)  # the blobs hold the copies now
    _check_unchanged(info, version)
    return ImportedBundle(info, version, url, home / BLOB_DIR)
