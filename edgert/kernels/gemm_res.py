"""1x1 convolution with a fused residual: Y = act(W @ X + bias + R) (a Conv that took over the Add
reading it, see ``converters/passes/fuse_conv_add.py``).

Each work item of ``gemm.gemm_worker`` (a group of panels times a chunk of row blocks) is run on its
own (worker t = item, T = item count runs exactly that item) without activation, and right after it
the item's part of C, still in L1/L2, gets the residual added and the activation applied. A separate
Add would read C and R back from memory and write the sum again.
"""

from __future__ import annotations

import numpy as np

from ._jit import inline, kernel, prange
from .act import CLIP, NONE, RELU, apply_act
from .gemm import (
    B_ROWS,
    G_LDY,
    G_M,
    G_MCHUNKS,
    G_N,
    G_NGRP,
    G_NIMG,
    G_PGROUP,
    G_Y_GS,
    G_Y_IS,
    MR,
    gemm_worker,
)
from .im2col import NR


@inline
def _add_rows(y, r, o, rows, ldy, n, code, p, q):
    """y[o + i*ldy + j] = act(y[...] + r[...]) for i < rows, j < n (row views: vectorised loops)."""
    for i in range(rows):
        yv = y[o + i * ldy:o + i * ldy + n]
        rv = r[o + i * ldy:o + i * ldy + n]
        for j in range(n):
            yv[j] = apply_act(yv[j] + rv[j], code, p, q)


@kernel
def _res_item(it, total, a, x, bias, y, r, g, buf, code, p, q):
    """Work item ``it`` of ``total``: its GEMM tiles, then residual and activation over its part of C."""
    zero = np.int64(0)
    gemm_worker(it, total, a, x, bias, y, g, buf, zero, zero, np.int64(B_ROWS), np.int64(NONE), 0.0, 0.0)
    M, N = g[G_M], g[G_N]
    mchunks, pg = g[G_MCHUNKS], g[G_PGROUP]
    npan = (N + NR - 1) // NR
    mblocks = (M + MR - 1) // MR
    per_mat = ((npan + pg - 1) // pg) * mchunks
    mat = it // per_mat
    rest = it - mat * per_mat
    c0 = (rest // mchunks) * pg * NR
    c1 = min(N, c0 + pg * NR)
    mc = rest - (rest // mchunks) * mchunks
    m0 = min(M, (mc * mblocks // mchunks) * MR)
    m1 = min(M, ((mc + 1) * mblocks // mchunks) * MR)
    img = mat // g[G_NGRP]
    grp = mat - img * g[G_NGRP]
    o = img * g[G_Y_IS] + grp * g[G_Y_GS] + m0 * g[G_LDY] + c0
    ldy = g[G_LDY]
    # Constant activation codes in the common cases, so LLVM vectorises the loop.
    if code == NONE:
        _add_rows(y, r, o, m1 - m0, ldy, c1 - c0, NONE, p, q)
    elif code == RELU:
        _add_rows(y, r, o, m1 - m0, ldy, c1 - c0, RELU, p, q)
    elif code == CLIP:
        _add_rows(y, r, o, m1 - m0, ldy, c1 - c0, CLIP, p, q)
    else:
        _add_rows(y, r, o, m1 - m0, ldy, c1 - c0, code, p, q)


@inline
def _items(g):
    npan = (g[G_N] + NR - 1) // NR
    return g[G_NIMG] * g[G_NGRP] * ((npan + g[G_PGROUP] - 1) // g[G_PGROUP]) * g[G_MCHUNKS]


@kernel
def f32_gemm_rows_res(a, x, bias, y, r, g, scratch, code, p, q):
    """``gemm.f32_gemm_rows`` (A packed in prepare) plus the residual r (laid out like y) before the
    activation."""
    total = _items(g)
    for it in range(total):
        _res_item(it, total, a, x, bias, y, r, g, scratch[0], code, p, q)


@kernel(parallel=True)
def f32_gemm_rows_res_mt(a, x, bias, y, r, g, scratch, code, p, q):
    """``f32_gemm_rows_res`` with scratch.shape[0] workers under prange (items t, t+T, ...)."""
    T = scratch.shape[0]
    total = _items(g)
    for t in prange(T):
        for it in range(t, total, T):
            _res_item(it, total, a, x, bias, y, r, g, scratch[t], code, p, q)
