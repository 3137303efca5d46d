"""Data-movement kernels: strided copy (slice, general transpose), tiled 2-d transpose, concat/split
blocks, pad, gather, depth-to-space.

All buffers are flat and C-contiguous. Prepare coalesces dims first, so the general kernels need at
most 6 dims, and their innermost loop is a contiguous copy whenever the layout allows it. Inner loops
index row views (``xr = x[a:b]; xr[i]``) rather than ``x[a + i]``: numba cannot prove ``a + i >= 0``,
and its negative-index wraparound check then keeps the copy scalar (16x slower on the dev box).
"""

from __future__ import annotations

import numpy as np

from ._jit import inline, kernel, prange
from .work import start_work, take

PAD_CONSTANT, PAD_REFLECT, PAD_EDGE = range(3)
PAD_CODES = {"constant": PAD_CONSTANT, "reflect": PAD_REFLECT, "edge": PAD_EDGE}


@inline
def _copy(dst, src, n):
    for i in range(n):
        dst[i] = src[i]


@kernel
def f32_copy_strided6(x, base, xs, out, shape):
    """out (C order over ``shape``, 6 dims) = x[base + sum_d i_d * xs[d]]; strides may be negative.

    Serves Slice (strides are step * element stride) and general Transpose (permuted strides).
    """
    n0, n1, n2, n3, n4, n5 = shape[0], shape[1], shape[2], shape[3], shape[4], shape[5]
    s5 = xs[5]
    o = 0
    for i0 in range(n0):
        for i1 in range(n1):
            for i2 in range(n2):
                for i3 in range(n3):
                    for i4 in range(n4):
                        b = base + i0 * xs[0] + i1 * xs[1] + i2 * xs[2] + i3 * xs[3] + i4 * xs[4]
                        orow = out[o:o + n5]
                        if s5 == 1 or n5 <= 1:  # (a lone element may carry stride 0 from coalescing)
                            _copy(orow, x[b:b + n5], n5)
                        else:
                            _copy(orow, x[b::s5], n5)
                        o += n5


@kernel
def f32_transpose_2d(x, out, batch, rows, cols):
    """x [batch, rows, cols] -> out [batch, cols, rows] in 32x32 tiles (both sides stay in cache).

    NCHW<->NHWC is this kernel: NCHW->NHWC has rows=C, cols=H*W; NHWC->NCHW rows=H*W, cols=C.
    The inner loop writes contiguous output rows; with fewer than 16 rows it reads contiguous input
    rows instead (a 3-row inner loop would be all overhead).
    """
    tiles = (rows + TRANSPOSE_TILE - 1) // TRANSPOSE_TILE
    for bt in range(batch):
        _transpose_rows(x, out, bt, rows, cols, 0, tiles)


TRANSPOSE_TILE = 32


@inline
def _transpose_rows(x, out, bt, rows, cols, rt0, rt1):
    """Row tiles rt0..rt1-1 (TRANSPOSE_TILE input rows each) of matrix bt."""
    T = TRANSPOSE_TILE
    n = rows * cols
    xm = x[bt * n:(bt + 1) * n].reshape((rows, cols))
    om = out[bt * n:(bt + 1) * n].reshape((cols, rows))
    for r0 in range(rt0 * T, min(rt1 * T, rows), T):
        r1 = min(r0 + T, rows)
        for c0 in range(0, cols, T):
            c1 = min(c0 + T, cols)
            if rows >= 16:
                for c in range(c0, c1):
                    _copy(om[c, r0:r1], xm[r0:r1, c], r1 - r0)
            else:
                for r in range(r0, r1):
                    _copy(om[c0:c1, r], xm[r, c0:c1], c1 - c0)


@kernel(parallel=True)
def f32_transpose_2d_mt(x, out, batch, rows, cols, work):
    """``f32_transpose_2d`` over work[0] workers taking (row span, matrix) items, row span first
    (work.py): NHWC -> NCHW at a model's input gives each worker a band of pixels, as the stem
    conv after it splits its output."""
    tiles = (rows + TRANSPOSE_TILE - 1) // TRANSPOSE_TILE
    spans = min(tiles, np.int64(16))  # items of several row tiles: one tile of 32 pixels x 3 is too small
    start_work(work)
    for _t in prange(work[0]):
        it = take(work, _t, spans * batch)
        while it >= 0:
            sp = it // batch
            _transpose_rows(x, out, it - sp * batch, rows, cols, sp * tiles // spans, (sp + 1) * tiles // spans)
            it = take(work, _t, spans * batch)


@kernel
def f32_concat_blocks(xs, inners, out, outer, out_inner):
    """Concat: input k viewed as [outer, inners[k]] fills columns of out viewed as [outer, out_inner].

    xs: a tuple of flat float32 arrays (all writable, so the tuple is homogeneous for numba).
    """
    for o in range(outer):
        dst = o * out_inner
        for k in range(len(xs)):
            n = inners[k]
            _copy(out[dst:dst + n], xs[k][o * n:(o + 1) * n], n)
            dst += n


@kernel
def f32_split_blocks(x, outs, inners, outer, in_inner):
    """Split: the inverse of ``f32_concat_blocks`` (outs: tuple of flat float32 arrays)."""
    for o in range(outer):
        src = o * in_inner
        for k in range(len(outs)):
            n = inners[k]
            _copy(outs[k][o * n:(o + 1) * n], x[src:src + n], n)
            src += n


@inline
def _pad_source(j, pb, n, mode):
    """Source index of output index j on a dim of n with pb leading pads; -1 = the constant."""
    i = j - pb
    if i >= 0 and i < n:
        return i
    if mode == PAD_CONSTANT:
        return -1
    if mode == PAD_EDGE:
        return 0 if i < 0 else n - 1
    return -i if i < 0 else 2 * (n - 1) - i  # reflect; prepare guarantees pads < n


@inline
def _pad_block(x, xb, dst, src, block, value):
    """dst (one block) = the source block ``src`` of the row at xb, or the constant if src < 0."""
    if src < 0:
        for t in range(block):
            dst[t] = value
    else:
        _copy(dst, x[xb + src * block:xb + (src + 1) * block], block)


@kernel
def f32_pad_rows6(x, out, dims, block, mode, value):
    """Pad over 6 dims. dims: int64 [6, 4] rows of (out_len, in_len, pad_begin, x_stride).

    The last dim is counted in blocks of ``block`` contiguous elements (the trailing unpadded dims),
    so its interior is one contiguous copy and only the padded ends look up source indices.
    """
    n5, m5, p5 = dims[5, 0], dims[5, 1], dims[5, 2]
    rowlen = n5 * block
    o = 0
    for i0 in range(dims[0, 0]):
        s0 = _pad_source(i0, dims[0, 2], dims[0, 1], mode)
        for i1 in range(dims[1, 0]):
            s1 = _pad_source(i1, dims[1, 2], dims[1, 1], mode)
            for i2 in range(dims[2, 0]):
                s2 = _pad_source(i2, dims[2, 2], dims[2, 1], mode)
                for i3 in range(dims[3, 0]):
                    s3 = _pad_source(i3, dims[3, 2], dims[3, 1], mode)
                    for i4 in range(dims[4, 0]):
                        s4 = _pad_source(i4, dims[4, 2], dims[4, 1], mode)
                        orow = out[o:o + rowlen]
                        if s0 < 0 or s1 < 0 or s2 < 0 or s3 < 0 or s4 < 0:
                            for t in range(rowlen):
                                orow[t] = value
                        else:
                            xb = s0 * dims[0, 3] + s1 * dims[1, 3] + s2 * dims[2, 3] + s3 * dims[3, 3] \
                                + s4 * dims[4, 3]
                            for j in range(p5):
                                _pad_block(x, xb, orow[j * block:(j + 1) * block], _pad_source(j, p5, m5, mode),
                                           block, value)
                            _copy(orow[p5 * block:(p5 + m5) * block], x[xb:xb + m5 * block], m5 * block)
                            for j in range(p5 + m5, n5):
                                _pad_block(x, xb, orow[j * block:(j + 1) * block], _pad_source(j, p5, m5, mode),
                                           block, value)
                        o += rowlen


@kernel
def f32_gather_rows(x, idx, out, outer, n, inner):
    """x [outer, n, inner], idx [m] int64 already in [0, n) -> out [outer, m, inner]."""
    m = idx.size
    for o in range(outer):
        for k in range(m):
            src = (o * n + idx[k]) * inner
            dst = (o * m + k) * inner
            _copy(out[dst:dst + inner], x[src:src + inner], inner)


@kernel
def f32_gather_rows_checked(x, idx, out, outer, n, inner, status):
    """Like ``f32_gather_rows`` for runtime indices (int32/int64, negatives wrap).

    Checks every index before reading anything: on the first one outside [-n, n) it sets
    status[0] = 1 and status[1] = that index and returns without writing; else status[0] = 0.
    """
    m = idx.size
    status[0] = 0
    for k in range(m):
        v = idx[k]
        if v < -n or v >= n:
            status[0] = 1
            status[1] = v
            return
    for o in range(outer):
        for k in range(m):
            v = idx[k]
            if v < 0:
                v += n
            src = (o * n + v) * inner
            dst = (o * m + k) * inner
            _copy(out[dst:dst + inner], x[src:src + inner], inner)


@kernel
def f32_depth_to_space(x, out, chan, N, C, H, W, b):
    """x [N, C*b*b, H, W] -> out [N, C, H*b, W*b].

    chan[(c*b + i)*b + j] is the input channel feeding output channel c at block offset (i, j); it
    encodes the mode (DCR or CRD). Each output row interleaves b contiguous input rows.
    """
    for nc in range(N * C):
        _d2s_plane(x, out, chan, C, H, W, b, nc)


@inline
def _d2s_plane(x, out, chan, C, H, W, b, nc):
    """Output plane nc = n*C + c."""
    n = nc // C
    c = nc - n * C
    Ci = C * b * b
    OW = W * b
    for h in range(H):
        for i in range(b):
            ob = ((nc * H + h) * b + i) * OW
            orow = out[ob:ob + OW]
            for j in range(b):
                src = ((n * Ci + chan[(c * b + i) * b + j]) * H + h) * W
                _copy(orow[j::b], x[src:src + W], W)


@kernel(parallel=True)
def f32_depth_to_space_mt(x, out, chan, N, C, H, W, b, work):
    """``f32_depth_to_space`` over work[0] workers taking output planes, a band each first
    (work.py): the 1x1 conv before it writes its output by channel bands too."""
    start_work(work)
    for _t in prange(work[0]):
        nc = take(work, _t, N * C)
        while nc >= 0:
            _d2s_plane(x, out, chan, C, H, W, b, nc)
            nc = take(work, _t, N * C)
