"""Helpers shared by op records: broadcasting, fused-activation attributes, flat views."""

from __future__ import annotations

import numpy as np

from ..kernels.act import CODES, DEFAULT_PARAMS

# Ops with a fused activation carry these three attributes.
ACT_ATTRS = {"activation": "none", "act_a": 0.0, "act_b": 0.0}


def check_activation(opdef, node, attrs):
    if attrs["activation"] not in CODES:
        raise opdef.error(node, f"unknown activation {attrs['activation']!r}; known: {', '.join(CODES)}")


def act_defaults(name: str) -> dict:
    """Fused-activation attributes for ``name`` with ONNX's default parameters."""
    a, b = DEFAULT_PARAMS[name]
    return {"activation": name, "act_a": a, "act_b": b}


def broadcast_shape(opdef, node, *shapes):
    try:
        return tuple(np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        raise opdef.error(node, "input shapes " + " and ".join(str(list(s)) for s in shapes)
                          + " do not broadcast") from None


def broadcast_strides(in_shape, out_shape):
    """Element strides of a C-contiguous ``in_shape`` tensor read at ``out_shape`` (0 on broadcast dims)."""
    rank = len(out_shape)
    padded = (1,) * (rank - len(in_shape)) + tuple(in_shape)
    strides, acc = [0] * rank, 1
    for d in range(rank - 1, -1, -1):
        strides[d] = 0 if padded[d] == 1 and out_shape[d] != 1 else acc
        acc *= padded[d]
    return strides


def coalesce(out_shape, *stride_lists, rank=4):
    """Merge adjacent dims that stay contiguous for every operand; pad/limit to ``rank`` dims.

    Returns (shape, [strides...]) as int64 arrays of length ``rank``, or None when more than
    ``rank`` dims remain (callers fall back to a general path).
    """
    dims = [(n, [s[i] for s in stride_lists]) for i, n in enumerate(out_shape) if n != 1]
    merged = []
    for n, strides in dims:
        if merged:
            pn, pstrides = merged[-1]
            if all(ps == s * n for ps, s in zip(pstrides, strides)):
                merged[-1] = (pn * n, strides)
                continue
        merged.append((n, strides))
    if len(merged) > rank:
        return None
    merged = [(1, [0] * len(stride_lists))] * (rank - len(merged)) + merged
    shape = np.array([n for n, _ in merged], dtype=np.int64)
    strides = [np.array([s[k] for _, s in merged], dtype=np.int64) for k in range(len(stride_lists))]
    return shape, strides


def flat(a: np.ndarray) -> np.ndarray:
    """A 1-D view of a contiguous array (arena views and packed weights always are)."""
    return a.reshape(-1)
