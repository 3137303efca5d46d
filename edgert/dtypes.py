"""Tensor element types the IR knows, by their short names in the file format."""

from __future__ import annotations

import numpy as np

from .errors import ModelFormatError

# Short name in the .ert table -> numpy dtype. Little-endian always: the file is little-endian.
DTYPES = {
    "f32": np.dtype("<f4"),
    "f16": np.dtype("<f2"),
    "f64": np.dtype("<f8"),
    "i64": np.dtype("<i8"),
    "i32": np.dtype("<i4"),
    "i16": np.dtype("<i2"),
    "i8": np.dtype("i1"),
    "u8": np.dtype("u1"),
    "u16": np.dtype("<u2"),
    "bool": np.dtype("?"),
}
_BY_NUMPY = {v.newbyteorder("="): k for k, v in DTYPES.items()}


def to_numpy(name: str) -> np.dtype:
    try:
        return DTYPES[name]
    except (KeyError, TypeError):
        raise ModelFormatError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}") from None


def from_numpy(dtype) -> str:
    dt = np.dtype(dtype).newbyteorder("=")
    try:
        return _BY_NUMPY[dt]
    except KeyError:
        raise ModelFormatError(f"dtype {dt} cannot be stored in an .ert file") from None


def is_float(name: str) -> bool:
    return name in ("f32", "f16", "f64")
