"""1x1 convolution on small planes as the transposed product: C^T[P, M] = X^T[P, K] @ W^T[K, M].

``gemm.py`` tiles C = W[M, K] @ X[K, P] with the P output pixels as the NR-wide panel dimension, so a
7x7 plane (P = 49) costs as much as 64 pixels (two 32-wide panels), a 6x6 one as 64 too. Here the
roles swap: the output channels are the panel dimension (M is a multiple of 32 in most networks)
and the pixels are the MR = 8 rows of a tile, so 49 pixels cost 6 tiles of 8 rows plus one
single-row tile (``tile1``) - nothing computed is thrown away but the rounding of M.

Operands (flat float32; the same micro-kernels and geometry fields as ``gemm.py``):

* A = X^T: packed at the start of the kernel into row blocks [ceil(P/MR)][K][MR] (pixel r of a block
  at lane r; zero past P) from the input planes x[img][K][ldb] (one contiguous run of MR floats per
  channel and block). Shared by all workers: packed in its own parallel loop first.
* B = W^T: panels [ceil(M/NR)][K][NR] packed in prepare (``gemm.pack_b``), zero past M.
* bias: per column of C^T (per output channel), padded to whole panels (BIAS_COL).
* C^T tiles are computed into a scratch tile [MR][NR] with bias and activation, then written
  transposed into the NCHW output, y[img*G_Y_IS + m*ldy + p].

Work: items are (image, panel, row block), split into T contiguous ranges (consecutive items share
their weight panel, so each panel streams from memory about once).
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel, prange
from .gemm import G_B_IS, G_K, G_LDB, G_LDY, G_M, G_N, G_NIMG, G_Y_IS, MR, tile1, tile8
from .im2col import NR


def scratch_floats() -> int:
    """Per worker: one tile."""
    return MR * NR


def packed_x_floats(P: int, K: int, images: int) -> int:
    return images * -(-P // MR) * MR * K


@kernel
def _pack_xt(x, xo, ldb, K, p0, rows, a, ao):
    """a[ao + k*MR + r] = x[xo + k*ldb + p0 + r] for r < rows; zero for rows <= r < MR."""
    for k in range(K):
        d = a[ao + k * MR:ao + (k + 1) * MR]
        s = x[xo + k * ldb + p0:xo + k * ldb + p0 + rows]
        for r in range(rows):
            d[r] = s[r]
        for r in range(rows, MR):
            d[r] = 0.0


@kernel
def pack_xt_blocks(x, a, g, t, T):
    """Row blocks t, t+T, ... (over all images) of X^T into a."""
    P, K = g[G_M], g[G_K]
    mblocks = (P + MR - 1) // MR
    for it in range(t, g[G_NIMG] * mblocks, T):
        img = it // mblocks
        mb = it - img * mblocks
        _pack_xt(x, img * g[G_B_IS], g[G_LDB], K, mb * MR, min(MR, P - mb * MR), a, it * MR * K)


@kernel
def _store_t(tile, rows, cols, y, yo, ldy):
    """y[yo + j*ldy + r] = tile[r*NR + j] for r < rows, j < cols (a tile of C^T into NCHW)."""
    for j in range(cols):
        d = y[yo + j * ldy:yo + j * ldy + rows]
        for r in range(rows):
            d[r] = tile[r * NR + j]


@kernel
def gemm_t_worker(t, T, a, wp, bias, y, g, tile, code, p, q):
    """Worker t of T: items [t*total/T, (t+1)*total/T) of (image, panel, row block)."""
    P, M, K = g[G_M], g[G_N], g[G_K]
    ldy = g[G_LDY]
    npan = (M + NR - 1) // NR
    mblocks = (P + MR - 1) // MR
    per_img = npan * mblocks
    total = g[G_NIMG] * per_img
    zero = np.int64(0)
    for it in range(t * total // T, (t + 1) * total // T):
        img = it // per_img
        rest = it - img * per_img
        pn = rest // mblocks
        mb = rest - pn * mblocks
        p0, n0 = mb * MR, pn * NR
        rows, cols = min(MR, P - p0), min(NR, M - n0)
        ao = (img * mblocks + mb) * MR * K
        bo = pn * K * NR
        if rows >= 4:
            tile8(a, ao, np.int64(MR), wp, bo, g, K, bias, np.int64(2), zero, n0, tile, zero, np.int64(NR),
                  np.int64(NR), tile, code, p, q)
        else:
            for r in range(rows):
                tile1(a, ao + r, wp, bo, g, K, bias, np.int64(2), zero, n0, tile, r * NR, np.int64(NR), tile,
                      code, p, q)
        _store_t(tile, rows, cols, y, img * g[G_Y_IS] + n0 * ldy + p0, ldy)


@kernel
def f32_gemm_t(a, wp, x, bias, y, g, scratch, code, p, q):
    """1x1 convolution as C^T = X^T @ W^T (module docstring). a: scratch for packed X^T
    (packed_x_floats); wp: W^T panels; bias: padded to whole panels; scratch: [1, MR*NR]."""
    zero, one = np.int64(0), np.int64(1)
    pack_xt_blocks(x, a, g, zero, one)
    gemm_t_worker(zero, one, a, wp, bias, y, g, scratch[0], code, p, q)


@kernel(parallel=True)
def f32_gemm_t_mt(a, wp, x, bias, y, g, scratch, code, p, q):
    """``f32_gemm_t`` with scratch.shape[0] workers under prange (packing, then the tiles)."""
    T = scratch.shape[0]
    for t in prange(T):
        pack_xt_blocks(x, a, g, t, T)
    for t in prange(T):
        gemm_t_worker(t, T, a, wp, bias, y, g, scratch[t], code, p, q)
