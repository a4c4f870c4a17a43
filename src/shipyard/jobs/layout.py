"""Which input columns feed the model, checked against its signature before anything runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.core.signatures import Signature, TensorSpec
from shipyard.jobs.sources import InputFile, read_schema


@dataclass(frozen=True, slots=True)
class Layout:
    """Feature columns (in model order) with their datatypes, and the columns carried along.

    `columnar` models take a table by column name; otherwise the features are stacked into
    one 2-D tensor in the order the first input file lists them.
    """

    features: tuple[str, ...]
    datatypes: tuple[str, ...]
    columnar: bool
    id_column: str | None
    passthrough: tuple[str, ...]

    @property
    def carried(self) -> tuple[str, ...]:
        first = (self.id_column,) if self.id_column else ()
        return first + tuple(c for c in self.passthrough if c != self.id_column)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.carried + tuple(c for c in self.features if c not in self.carried)

    @property
    def numeric_features(self) -> tuple[str, ...]:
        """Read as text from CSV so a bad value fails one row, not the whole read."""
        return tuple(
            name
            for name, datatype in zip(self.features, self.datatypes, strict=True)
            if datatype != "BYTES"
        )


def plan_layout(
    signature: Signature | None,
    files: Sequence[InputFile],
    id_column: str | None,
    passthrough: Sequence[str],
) -> Layout:
    """Check every input file against the signature; errors name the file and the column."""
    if signature is None:
        raise FailedPrecondition("this model version has no signature; register it with a sample")
    schemas = [(f, read_schema(f)) for f in files]
    carried = tuple(dict.fromkeys([*([id_column] if id_column else []), *passthrough]))
    first_file, first = schemas[0]
    if signature.columnar:
        features = tuple(s.name for s in signature.inputs)
        datatypes = tuple(s.datatype for s in signature.inputs)
    else:
        features, datatypes = _tensor_features(signature, first, carried, first_file)
    layout = Layout(features, datatypes, signature.columnar, id_column, tuple(passthrough))
    for file, schema in schemas:
        _check_file(layout, file, schema)
    return layout


def _tensor_features(
    signature: Signature, schema: pa.Schema, carried: tuple[str, ...], file: InputFile
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if len(signature.inputs) != 1 or len(signature.inputs[0].shape) != 2:
        raise InvalidArgument(
            "batch scoring takes models with one 2-D input or a table of named columns"
        )
    spec: TensorSpec = signature.inputs[0]
    features = tuple(name for name in schema.names if name not in carried)
    want = spec.shape[1]
    if want != -1 and len(features) != want:
        raise InvalidArgument(
            f"{file.name}: the model takes {want} feature columns; got {len(features)} "
            f"({', '.join(features[:30])}) besides the id/passthrough columns"
        )
    return features, tuple(spec.datatype for _ in features)


def _check_file(layout: Layout, file: InputFile, schema: pa.Schema) -> None:
    names = set(schema.names)
    missing = [c for c in (*layout.carried, *layout.features) if c not in names]
    if missing:
        raise InvalidArgument(
            f"{file.name}: missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)}",
            details={"file": file.name, "missing": missing},
        )
    for name, datatype in zip(layout.features, layout.datatypes, strict=True):
        kind = schema.field(name).type
        if not castable(kind, datatype):
            raise InvalidArgument(
                f"{file.name}: column {name!r} holds {kind}, which cannot be cast to {datatype}",
                details={"file": file.name, "column": name, "type": str(kind)},
            )


def castable(kind: pa.DataType, datatype: str) -> bool:
    """Whether values of an Arrow type can become `datatype` (text is checked row by row)."""
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if datatype == "BYTES":
        return text or pa.types.is_binary(kind) or _numeric(kind) or pa.types.is_null(kind)
    return text or _numeric(kind) or pa.types.is_null(kind)


def _numeric(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
    )
