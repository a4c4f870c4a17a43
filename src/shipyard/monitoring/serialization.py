"""Compact, versioned, pickle-free bytes for a DriftDetector (stored with the model version).

Layout: MAGIC, one format-version byte, then zlib( u32 header length | JSON header | arrays ).
The header holds names, kinds, categorical counts and array lengths; arrays are little-endian
float64 cut points and int64 *differences* of cumulative counts (near-constant, so they compress
to almost nothing). Reading validates every length and bounds the decompressed size.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.errors import InvalidArgument
from shipyard.monitoring.detector import DriftDetector, Profile
from shipyard.monitoring.multivariate import MultivariateProfile
from shipyard.monitoring.profiles import CategoricalProfile, Floats, NumericProfile

MAGIC = b"SYDRIFT"
FORMAT_VERSION = 1
MAX_DECOMPRESSED = 64 * 1024 * 1024


def _numeric_header(p: NumericProfile) -> dict[str, Any]:
    return {"kind": "numeric", "n_cuts": int(p.cuts.size), "n_missing": p.n_missing}


def _numeric_arrays(p: NumericProfile) -> list[bytes]:
    return [p.cuts.astype("<f8").tobytes(), np.diff(p.cum, prepend=0).astype("<i8").tobytes()]


def _feature_header(name: str, p: Profile) -> dict[str, Any]:
    if isinstance(p, NumericProfile):
        return {"name": name, **_numeric_header(p)}
    return {
        "name": name,
        "kind": "categorical",
        "counts": list(p.counts.items()),
        "other": p.other,
        "other_distinct": p.other_distinct,
        "n_missing": p.n_missing,
    }


def dump(det: DriftDetector) -> bytes:
    arrays: list[bytes] = []
    features = []
    for name, profile in det.profiles.items():
        features.append(_feature_header(name, profile))
        if isinstance(profile, NumericProfile):
            arrays += _numeric_arrays(profile)
    mv = det.multivariate
    mv_header = None
    if mv is not None:
        mv_header = {
            "columns": mv.columns,
            "k": int(mv.components.shape[1]),
            "n_fit": mv.n_fit,
            "errors": _numeric_header(mv.null_errors),
        }
        for arr in (mv.center, mv.scale, mv.components):
            arrays.append(np.ascontiguousarray(arr, dtype="<f8").tobytes())
        arrays += _numeric_arrays(mv.null_errors)
    header = {"alpha": det.alpha, "features": features, "skipped": det.skipped, "mv": mv_header}
    head = json.dumps(header, separators=(",", ":")).encode()
    body = struct.pack("<I", len(head)) + head + b"".join(arrays)
    return MAGIC + bytes([FORMAT_VERSION]) + zlib.compress(body, 9)


class _Reader:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.pos = 0

    def take(self, count: int, dtype: str) -> np.ndarray:
        size = count * 8
        if count < 0 or self.pos + size > len(self.blob):
            raise InvalidArgument("drift profile is truncated or corrupt")
        arr = np.frombuffer(self.blob, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return arr.copy()

    def numeric(self, header: dict[str, Any]) -> NumericProfile:
        n = int(header["n_cuts"])
        cuts: Floats = self.take(n, "<f8").astype(np.float64)
        cum = np.cumsum(self.take(n, "<i8")).astype(np.int64)
        return NumericProfile(cuts, cum, int(header["n_missing"]))


def _decompress(data: bytes) -> bytes:
    if not data.startswith(MAGIC) or len(data) <= len(MAGIC):
        raise InvalidArgument("not a shipyard drift profile")
    version = data[len(MAGIC)]
    if version != FORMAT_VERSION:
        raise InvalidArgument(f"unsupported drift profile format version {version}")
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(data[len(MAGIC) + 1 :], MAX_DECOMPRESSED)
    except zlib.error as exc:
        raise InvalidArgument("drift profile is corrupt") from exc
    if inflater.unconsumed_tail:
        raise InvalidArgument("drift profile is too large")
    return body


def load(data: bytes) -> DriftDetector:
    body = _decompress(data)
    try:
        (head_len,) = struct.unpack_from("<I", body, 0)
        header = json.loads(body[4 : 4 + head_len])
        reader = _Reader(body[4 + head_len :])
        profiles: dict[str, Profile] = {}
        for f in header["features"]:
            if f["kind"] == "numeric":
                profiles[f["name"]] = reader.numeric(f)
            else:
                counts = {str(k): int(c) for k, c in f["counts"]}
                profiles[f["name"]] = CategoricalProfile(
                    counts, int(f["other"]), int(f["other_distinct"]), int(f["n_missing"])
                )
        mv = None
        if header["mv"] is not None:
            h = header["mv"]
            d, k = len(h["columns"]), int(h["k"])
            center, scale = reader.take(d, "<f8"), reader.take(d, "<f8")
            components = reader.take(d * k, "<f8").reshape(d, k)
            errors = reader.numeric(h["errors"])
            mv = MultivariateProfile(
                list(h["columns"]), center, scale, components, errors, int(h["n_fit"])
            )
        skipped = {str(k): str(v) for k, v in header["skipped"].items()}
        return DriftDetector(profiles, mv, skipped, float(header["alpha"]))
    except (KeyError, TypeError, ValueError, struct.error) as exc:
        raise InvalidArgument("drift profile is corrupt") from exc


def reference_profile(reference: pd.DataFrame) -> bytes:
    """What registration stores beside a version's reference table: the table's fitted
    detector, so monitoring loads ~2 KB per feature instead of refitting the whole table."""
    return DriftDetector.fit(reference).to_bytes()
