"""Pooling kernels over NCHW planes: separable, in row form.

Every kernel works on flat C-contiguous buffers: ``x`` holds ``planes = N*C`` planes of ``H*W`` and
``out`` holds ``planes`` planes of ``OH*OW``. The geometry comes as one int64 array ``g``:

    g = [planes, H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw]

Max and sum over a rectangular window are separable, so one output row takes two passes:

1. vertical: max (or sum) of the window's input rows that lie inside the input, into a scratch row
   of W elements: kh contiguous passes that vectorise;
2. horizontal: for each kernel column, one contiguous pass over the columns whose tap lies inside
   the input (the valid range is computed up front, so no bounds checks), at column stride 1; with
   a larger stride that goes to a second scratch row and every sw-th element is kept (kw
   vectorised passes plus one strided read beat kw strided reads).

Padding therefore never takes part: it never wins a max, and only counts toward an average through
the divisor tables prepare builds. Prepare guarantees every window has an input tap on both axes.

Inner loops index row views (``xr = x[a:b]; xr[i]``), never ``x[a + i]``: numba cannot prove
``a + i >= 0`` and its negative-index wraparound check then blocks vectorisation (16x slower here).

Rows are processed in ``scratch.shape[0]`` chunks; each chunk owns two scratch rows of
L = max(W, (OW-1)*sw + 1) elements. ``_mt`` variants run the chunks under ``prange``.
"""

from __future__ import annotations

import numpy as np

from ._jit import inline, kernel, prange


@inline
def _valid_columns(off, sw, W, OW):
    """The output columns ``[lo, hi)`` whose input column ``ow*sw + off`` lies inside ``[0, W)``."""
    lo = 0 if off >= 0 else (-off + sw - 1) // sw
    last = W - 1 - off
    hi = 0 if last < 0 else last // sw + 1
    hi = min(hi, OW)
    return min(lo, hi), hi


@inline
def _max_nan(a, b):
    # NaN wins, in either argument (numpy's and the reference's rule); a bare max() keeps or drops
    # a NaN depending on argument order. Still a compare-and-select, so loops vectorise.
    return a if (a >= b or a != a) else b


@inline
def _vertical(x, v, g, p, oh, is_max):
    """v = max (or sum) over the window's valid input rows for output row oh of plane p."""
    H, W, kh, sh, pt, dh = g[1], g[2], g[5], g[7], g[9], g[11]
    first = True
    for ki in range(kh):
        ih = oh * sh - pt + ki * dh
        if ih < 0 or ih >= H:
            continue
        base = (p * H + ih) * W
        xr = x[base:base + W]
        if first:
            for w in range(W):
                v[w] = xr[w]
            first = False
        elif is_max:
            for w in range(W):
                v[w] = _max_nan(v[w], xr[w])
        else:
            for w in range(W):
                v[w] += xr[w]


@inline
def _horizontal(v, dst, n, g, is_max):
    """dst[q] = max (or sum) over kernel columns kj of v[q + kj*dw - pl], for q < n, valid taps only.

    This is the pool at column stride 1: every pass is contiguous and vectorises."""
    W, kw, pl, dw = g[2], g[6], g[10], g[12]
    init = -np.inf if is_max else 0.0
    for q in range(n):
        dst[q] = init
    for kj in range(kw):
        off = kj * dw - pl
        lo, hi = _valid_columns(off, 1, W, n)
        if hi <= lo:
            continue
        o = dst[lo:hi]
        s = v[lo + off:hi + off]
        if is_max:
            for t in range(hi - lo):
                o[t] = _max_nan(o[t], s[t])
        else:
            for t in range(hi - lo):
                o[t] += s[t]


@inline
def _pool_row(x, orow, v, u, g, p, oh, is_max):
    """One output row: the vertical pass into v, the horizontal pass at stride 1 into u, then every
    sw-th column of u; with sw == 1 the horizontal pass writes the output row directly."""
    OW, sw = g[4], g[8]
    _vertical(x, v, g, p, oh, is_max)
    if sw == 1:
        _horizontal(v, orow, OW, g, is_max)
    else:
        _horizontal(v, u, (OW - 1) * sw + 1, g, is_max)
        us = u[::sw]
        for ow in range(OW):
            orow[ow] = us[ow]


@inline
def _maxpool_chunk(x, out, scratch, g, r0, r1):
    OH, OW = g[3], g[4]
    for r in range(r0, r1):
        p = r // OH
        _pool_row(x, out[r * OW:(r + 1) * OW], scratch[0], scratch[1], g, p, r - p * OH, True)


@inline
def _avgpool_chunk(x, out, scratch, rscale, cscale, g, r0, r1):
    OH, OW = g[3], g[4]
    for r in range(r0, r1):
        p = r // OH
        oh = r - p * OH
        orow = out[r * OW:(r + 1) * OW]
        _pool_row(x, orow, scratch[0], scratch[1], g, p, oh, False)
        rs = rscale[oh]
        for ow in range(OW):
            orow[ow] *= rs * cscale[ow]


@kernel
def f32_maxpool_rows(x, out, scratch, g):
    """Max pool (dilated, padded, any stride). x, out: flat NCHW; g: geometry; scratch: [1, 2, L] f32."""
    _maxpool_chunk(x, out, scratch[0], g, 0, g[0] * g[3])


@kernel(parallel=True)
def f32_maxpool_rows_mt(x, out, scratch, g):
    """``f32_maxpool_rows`` with output rows split into scratch.shape[0] chunks run in parallel."""
    rows, chunks = g[0] * g[3], scratch.shape[0]
    per = (rows + chunks - 1) // chunks
    for c in prange(chunks):
        _maxpool_chunk(x, out, scratch[c], g, c * per, min(rows, (c + 1) * per))


@inline
def _max2x2_rows(x, out, H, W, OH, OW, r0, r1):
    # The 2x2 stride-2 pool of most detectors: two input rows per output row, one pass, no scratch.
    # (The separable path makes five short passes per output row, 3.5 ns per output on 64x16x16.)
    for r in range(r0, r1):
        p = r // OH
        oh = r - p * OH
        base = (p * H + 2 * oh) * W
        a = x[base:base + W]
        b = x[base + W:base + 2 * W]
        orow = out[r * OW:(r + 1) * OW]
        for ow in range(OW):
            orow[ow] = _max_nan(_max_nan(a[2 * ow], a[2 * ow + 1]), _max_nan(b[2 * ow], b[2 * ow + 1]))


@kernel
def f32_maxpool_2x2s2(x, out, g):
    """Max pool 2x2, stride 2, no padding, floor mode. x, out: flat NCHW; g: geometry."""
    _max2x2_rows(x, out, g[1], g[2], g[3], g[4], 0, g[0] * g[3])


@kernel(parallel=True)
def f32_maxpool_2x2s2_mt(x, out, g, chunks):
    rows = g[0] * g[3]
    per = (rows + chunks - 1) // chunks
    for c in prange(chunks):
        _max2x2_rows(x, out, g[1], g[2], g[3], g[4], c * per, min(rows, (c + 1) * per))


@kernel
def f32_avgpool_rows(x, out, rscale, cscale, scratch, g):
    """Average pool (padded, any stride, no dilation). x, out: flat NCHW; g: geometry; scratch: [1, 2, L].

    ``rscale[oh] * cscale[ow]`` is 1 / (number of counted taps) of that window: the divisor is
    separable into a row count and a column count, which prepare computes for count_include_pad.
    """
    _avgpool_chunk(x, out, scratch[0], rscale, cscale, g, 0, g[0] * g[3])


@kernel(parallel=True)
def f32_avgpool_rows_mt(x, out, rscale, cscale, scratch, g):
    """``f32_avgpool_rows`` with output rows split into scratch.shape[0] chunks run in parallel."""
    rows, chunks = g[0] * g[3], scratch.shape[0]
    per = (rows + chunks - 1) // chunks
    for c in prange(chunks):
        _avgpool_chunk(x, out, scratch[c], rscale, cscale, g, c * per, min(rows, (c + 1) * per))
