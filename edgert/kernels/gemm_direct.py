"""1x1 convolution with few output channels, B read in place: C = W[M, K] @ X[K, P] + bias (+ R).

``gemm.f32_gemm_rows`` copies every 32-pixel panel of X into scratch before its tiles run. With
few output channels (M <= 32: a projection to 16-32 channels, BlazeFace's 24-48 channel blocks) a
panel serves only 2-4 row blocks, so the copy costs about as much as the multiply-adds. When P is
a whole number of panels the micro-kernel can read the panel's rows straight from X instead (row k
of panel p at x[k*P + p*NR], via the geometry's K offsets k*P), with nothing to pad.

Work: items are (image, panel); T workers take contiguous ranges. With a residual R (laid out like
C) a panel's M x NR outputs get R added and the activation applied right after its tiles, still in
L1 (then the tiles run without activation).
"""

from __future__ import annotations

import numpy as np

from ._jit import inline, kernel, prange
from .act import CLIP, NONE, RELU, apply_act
from .gemm import G_B_IS, G_K, G_LDY, G_M, G_N, G_NIMG, G_Y_IS, MR, tile1, tile8
from .im2col import NR


@inline
def _add_res(y, r, o, rows, ldy, code, p, q):
    for i in range(rows):
        yv = y[o + i * ldy:o + i * ldy + NR]
        rv = r[o + i * ldy:o + i * ldy + NR]
        for j in range(NR):
            yv[j] = apply_act(yv[j] + rv[j], code, p, q)


@kernel
def direct_worker(t, T, a, x, bias, y, r, has_res, g, tile, code, p, q):
    """Worker t of T: items [t*total/T, (t+1)*total/T) of (image, panel)."""
    M, N, K, ldy = g[G_M], g[G_N], g[G_K], g[G_LDY]
    npan = N // NR
    total = g[G_NIMG] * npan
    tcode = np.int64(NONE) if has_res else code
    bmode = np.int64(1)  # BIAS_ROW (bias is zeros when the conv has none)
    for it in range(t * total // T, (t + 1) * total // T):
        img = it // npan
        p0 = (it - img * npan) * NR
        bo = img * g[G_B_IS] + p0
        yo = img * g[G_Y_IS] + p0
        for m0 in range(0, M, MR):
            rows = min(MR, M - m0)
            if rows >= 4:
                tile8(a, m0 * K, rows, x, bo, g, K, bias, bmode, m0, np.int64(0), y, yo + m0 * ldy, ldy,
                      np.int64(NR), tile, tcode, p, q)
            else:
                for rr in range(rows):
                    tile1(a, m0 * K + rr, x, bo, g, K, bias, bmode, m0 + rr, np.int64(0), y, yo + (m0 + rr) * ldy,
                          np.int64(NR), tile, tcode, p, q)
        if has_res:
            if code == NONE:
                _add_res(y, r, yo, M, ldy, NONE, p, q)
            elif code == RELU:
                _add_res(y, r, yo, M, ldy, RELU, p, q)
            elif code == CLIP:
                _add_res(y, r, yo, M, ldy, CLIP, p, q)
            else:
                _add_res(y, r, yo, M, ldy, code, p, q)


@kernel
def f32_gemm_direct(a, x, bias, y, r, has_res, g, scratch, code, p, q):
    """C = A @ X (+ R) with A packed in prepare (``gemm.pack_a``), X read in place (P a multiple of
    NR; g[G_KOFF + k] = k * P), bias [M] (zeros when absent); r: like y, or a dummy when not has_res."""
    direct_worker(np.int64(0), np.int64(1), a, x, bias, y, r, has_res, g, scratch[0], code, p, q)


@kernel(parallel=True)
def f32_gemm_direct_mt(a, x, bias, y, r, has_res, g, scratch, code, p, q):
    """``f32_gemm_direct`` with scratch.shape[0] workers under prange."""
    T = scratch.shape[0]
    for t in prange(T):
        direct_worker(t, T, a, x, bias, y, r, has_res, g, scratch[t], code, p, q)
