"""Resize kernels (NCHW, spatial dims only): nearest and bilinear, from precomputed tables.

Prepare computes, per output row and per output column, the source index (nearest) or the two
source indices and the weight of the second one (linear), so the kernels are gathers and lerps.
``g = [planes, H, W, OH, OW]`` with planes = N*C. Row tables are int64; column tables are uint64
because numba skips its negative-index wraparound check for unsigned indices.

Output rows are processed in chunks (``_mt`` variants run chunks under ``prange``). Within a chunk:

* nearest: an output row with the same source row as the previous one is a copy of it;
* linear: the horizontally interpolated source rows are cached in two scratch rows, so upsampling
  interpolates each source row once and each output row is one vectorised vertical lerp.
"""

from __future__ import annotations

from ._jit import inline, kernel, prange
from .shape import _copy


@inline
def _nearest_chunk(x, out, hidx, widx, g, r0, r1):
    H, W, OH, OW = g[1], g[2], g[3], g[4]
    for r in range(r0, r1):
        p = r // OH
        oh = r - p * OH
        orow = out[r * OW:(r + 1) * OW]
        if r > r0 and oh > 0 and hidx[oh] == hidx[oh - 1]:
            _copy(orow, out[(r - 1) * OW:r * OW], OW)
        else:
            base = (p * H + hidx[oh]) * W
            xrow = x[base:base + W]
            for ow in range(OW):
                orow[ow] = xrow[widx[ow]]


@inline
def _horizontal_lerp(xrow, dst, w0, w1, ww, OW):
    for ow in range(OW):
        a = xrow[w0[ow]]
        dst[ow] = a + ww[ow] * (xrow[w1[ow]] - a)


@inline
def _linear_chunk(x, out, h0, h1, hw, w0, w1, ww, rows2, g, r0, r1):
    """rows2: [2, OW] scratch holding the horizontal lerps of two source rows (keys k0, k1)."""
    H, W, OH, OW = g[1], g[2], g[3], g[4]
    k0 = -1
    k1 = -1
    for r in range(r0, r1):
        p = r // OH
        oh = r - p * OH
        a = p * H + h0[oh]
        b = p * H + h1[oh]
        if a == k0:
            ta = 0
        elif a == k1:
            ta = 1
        else:
            ta = 1 if k0 == b else 0  # keep the slot that already holds b
            _horizontal_lerp(x[a * W:(a + 1) * W], rows2[ta], w0, w1, ww, OW)
            if ta == 0:
                k0 = a
            else:
                k1 = a
        if b == k0:
            tb = 0
        elif b == k1:
            tb = 1
        else:
            tb = 1 - ta
            _horizontal_lerp(x[b * W:(b + 1) * W], rows2[tb], w0, w1, ww, OW)
            if tb == 0:
                k0 = b
            else:
                k1 = b
        top = rows2[ta]
        bot = rows2[tb]
        t = hw[oh]
        orow = out[r * OW:(r + 1) * OW]
        for ow in range(OW):
            orow[ow] = top[ow] + t * (bot[ow] - top[ow])


@kernel
def f32_resize_nearest(x, out, hidx, widx, g, chunks):
    """out[p, oh, ow] = x[p, hidx[oh], widx[ow]]; x, out flat NCHW; hidx int64, widx uint64."""
    _nearest_chunk(x, out, hidx, widx, g, 0, g[0] * g[3])


@kernel(parallel=True)
def f32_resize_nearest_mt(x, out, hidx, widx, g, chunks):
    """``f32_resize_nearest`` with output rows split into ``chunks`` run in parallel."""
    rows = g[0] * g[3]
    per = (rows + chunks - 1) // chunks
    for c in prange(chunks):
        _nearest_chunk(x, out, hidx, widx, g, c * per, min(rows, (c + 1) * per))


@kernel
def f32_resize_linear(x, out, h0, h1, hw, w0, w1, ww, scratch, g):
    """Bilinear: lerp columns (w0, w1, weight ww) of rows h0 and h1, then lerp those by hw.

    Indices are already clamped into the input (h0/h1 int64, w0/w1 uint64); weights are float32 in
    [0, 1]; scratch: [1, 2, OW] float32.
    """
    _linear_chunk(x, out, h0, h1, hw, w0, w1, ww, scratch[0], g, 0, g[0] * g[3])


@kernel(parallel=True)
def f32_resize_linear_mt(x, out, h0, h1, hw, w0, w1, ww, scratch, g):
    """``f32_resize_linear`` with output rows split into scratch.shape[0] chunks run in parallel."""
    rows, chunks = g[0] * g[3], scratch.shape[0]
    per = (rows + chunks - 1) // chunks
    for c in prange(chunks):
        _linear_chunk(x, out, h0, h1, hw, w0, w1, ww, scratch[c], g, c * per, min(rows, (c + 1) * per))
