"""Activation functions, shared by the standalone activation ops and every kernel with a fused one.

Each activation is an integer code plus two float parameters (a, b), so a kernel takes three scalars
instead of a function argument (function arguments defeat numba's cache).
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import inline, kernel
from .simd import vclamp, vrelu

NONE, RELU, CLIP, SIGMOID, HARDSIGMOID, HARDSWISH, TANH, LEAKYRELU = range(8)
CODES = {"none": NONE, "relu": RELU, "clip": CLIP, "sigmoid": SIGMOID, "hardsigmoid": HARDSIGMOID,
         "hardswish": HARDSWISH, "tanh": TANH, "leakyrelu": LEAKYRELU}
# Default (a, b) per activation, matching ONNX's attribute defaults.
DEFAULT_PARAMS = {"none": (0.0, 0.0), "relu": (0.0, 0.0), "clip": (-math.inf, math.inf),
                  "sigmoid": (0.0, 0.0), "hardsigmoid": (0.2, 0.5), "hardswish": (0.0, 0.0),
                  "tanh": (0.0, 0.0), "leakyrelu": (0.01, 0.0)}


@inline
def apply_act(v, code, a, b):
    if code == NONE:
        return v
    if code == RELU:
        # NaN stays NaN (v != v); -inf and negatives become exactly 0 like max(v, 0).
        return v if (v > 0.0 or v != v) else 0.0
    if code == CLIP:
        return min(max(v, a), b)
    if code == SIGMOID:
        return 1.0 / (1.0 + math.exp(-v))
    if code == HARDSIGMOID:
        return min(max(a * v + b, 0.0), 1.0)
    if code == HARDSWISH:
        return v * min(max(v * (1.0 / 6.0) + 0.5, 0.0), 1.0)
    if code == TANH:
        return math.tanh(v)
    if code == LEAKYRELU:
        return v if v >= 0.0 else a * v
    return v


@inline
def vact(v, code, a, b):
    """A SIMD vector through relu or clip in registers (kernels with a register epilogue); other
    codes leave it as is, for a scalar pass with apply_act after the store."""
    if code == RELU:
        return vrelu(v)
    if code == CLIP:
        return vclamp(v, a, b)
    return v


@kernel
def f32_act_inplace(y, code, a, b):
    """Apply an activation to a contiguous buffer in place (used after kernels without fusion)."""
    flat = y.reshape(-1)
    if code == NONE:
        return
    for i in range(flat.size):
        flat[i] = apply_act(flat[i], code, a, b)


@kernel
def f32_act(x, out, code, a, b):
    xf = x.reshape(-1)
    of = out.reshape(-1)
    for i in range(xf.size):
        of[i] = apply_act(xf[i], code, a, b)


def reference_act(x: np.ndarray, name: str, a: float, b: float) -> np.ndarray:
    """Numpy reference of every activation (float64 inside for a clean oracle)."""
    v = x.astype(np.float64)
    if name == "none":
        r = v
    elif name == "relu":
        r = np.maximum(v, 0.0)
    elif name == "clip":
        r = np.minimum(np.maximum(v, a), b)
    elif name == "sigmoid":
        r = 1.0 / (1.0 + np.exp(-v))
    elif name == "hardsigmoid":
        r = np.clip(a * v + b, 0.0, 1.0)
    elif name == "hardswish":
        r = v * np.clip(v / 6.0 + 0.5, 0.0, 1.0)
    elif name == "tanh":
        r = np.tanh(v)
    elif name == "leakyrelu":
        r = np.where(v >= 0, v, a * v)
    else:
        raise ValueError(f"unknown activation {name!r}")
    return r.astype(x.dtype)


def act_args(attrs: dict):
    """(code, a, b) for a node's fused-activation attributes."""
    name = attrs.get("activation", "none")
    return CODES[name], float(attrs.get("act_a", 0.0)), float(attrs.get("act_b", 0.0))
