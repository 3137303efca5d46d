"""Sparse weights x dense activations (SpMM) for 1x1 convolutions and fully connected layers.

edgert's activations are already channel-major (NCHW, batch 1 on boards), so a 1x1 convolution is
``out[M, P] = W[M, K] @ X[K, P]`` with P = H*W pixels and every input channel a contiguous row of
P floats. With W in CSR form (rows = output channels), each nonzero w[m, k] adds ``w * X[k, :]`` to
output row m. A fully connected layer with batch N is the same product with P = 1 per batch row.

Loop structure (XNNPACK's, with explicit vectors from ``simd.py``): a tile of ``TILE_V`` vectors of
consecutive pixels stays in registers while the row's nonzeros stream past; for each nonzero one
scalar weight is broadcast and multiplied into the tile's vectors, read from the input row at a
precomputed offset ``offs[j] = k * P`` (no multiply per nonzero). The tile then gets bias and
activation and is stored once. The X panel touched by one tile is K x TILE floats (L1/L2).

Why this form and not numpy-style row axpys: an axpy over a long row loads and stores the output
row once per nonzero (memory traffic proportional to nnz * P * 2); the register tile loads only X.

Work split for threads: items are (channel chunk, pixel chunk) pairs, so both large-P layers
(112x112) and small-P ones (7x7 at 960 channels) have enough independent items; workers take
their own band first (``work``, work.py, as the blocked kernels do).
"""

from __future__ import annotations

import numpy as np

from ._jit import inline, kernel, prange
from .act import CLIP, NONE, RELU, apply_act, vact
from .work import ITEMS_PER_WORKER, start_work, take
from .simd import VW, vadd, vbroadcast, vbroadcast_at, vfma, vload, vload_window, vstore, vstore_n

TILE_V = 4  # vectors per register tile (16 registers on AVX-512/NEON: 4 accumulators + loads)
TILE = TILE_V * VW  # pixels per tile
SMALL_MAP = 256  # pixels: up to here (14x14, 7x7) a worker's item is a band of whole output rows


def use_pixel_bands(n_pixels: int, n_rows: int, n_cols: int, threads: int) -> bool:
    """Split a layer's work in bands of pixels rather than of output channels? Each worker then reads
    only its band of the input instead of all of it, but a band's end cuts a register tile short
    (a 7x7 map split 32 + 17 pixels loads 4 vectors per nonzero for each part: 2x slower). Measured
    on pose_detection's 38 sparse layers at 2 threads (2026-11-27): pixel bands win on 112x112 and
    56x56 maps (0.120 -> 0.089 ms on 16 -> 64 channels at 112x112) and on 28x28 projections (more
    input than output channels), lose on 28x28 expansions, tie or lose at 14x14 and lose at 7x7."""
    tiles = n_pixels // TILE
    return (threads > 1 and tiles >= 4 * threads and n_pixels >= SMALL_MAP * threads
            and (n_rows <= n_cols or tiles >= 32 * threads))


def chunks(n_pixels: int, n_rows: int, threads: int, pixel_bands: bool = False) -> tuple:
    """(pixel chunks, channel chunks) giving about ITEMS_PER_WORKER items per thread when possible.

    Channel bands (items numbered channel chunk first): on idle cores worker t writes the t-th band
    of output planes, which the NCHW depthwise conv after it reads on the same core; the pixels are
    split at tile boundaries within. Pixel bands (pixel chunk first, a multiple of ``threads`` chunks
    split evenly at vector bounds): worker t reads and writes only the t-th band of pixels of every
    plane. Workers take what is left of the others' bands (work.py), so unequal items (a last
    partial tile, rows with more nonzeros) even out: with 4 items per thread taken statically, 14x14
    maps (3 full tiles of 64 pixels and one of 4 at VW 16) split 128 : 68 pixels and scaled 1.5x on
    2 threads."""
    if threads <= 1:
        return 1, 1
    want = ITEMS_PER_WORKER * threads
    if pixel_bands:
        pc = max(threads, min(want, n_pixels // TILE) // threads * threads)
        return pc, max(1, min(n_rows, -(-want // pc)))
    tiles = -(-n_pixels // TILE)
    if n_pixels <= SMALL_MAP and n_rows >= want:
        return 1, want  # whole rows: each row's nonzeros stream past once (4 pixel chunks of a 14x14 map: 20% slower)
    mc = max(1, min(n_rows, threads))  # channel bands first, as the depthwise convs around split planes
    pc = max(1, min(tiles, -(-want // mc)))
    mc = max(mc, min(n_rows, -(-want // pc)))
    return pc, mc


@inline
def _sparse_dot(x, xo, values, offs, j0, j1):
    """sum of values[j] * x[xo + offs[j]] over j0..j1, in four independent chains (one chain: 188 us,
    four: 157 us on the 1280 -> 1000 classifier at 90%; the gathers bound it, and the dense
    matrix-vector product is faster there below ~95% sparsity, which the cost model knows)."""
    s0 = np.float32(0.0)
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    s3 = np.float32(0.0)
    j = j0
    while j + 4 <= j1:
        s0 += values[j] * x[xo + offs[j]]
        s1 += values[j + 1] * x[xo + offs[j + 1]]
        s2 += values[j + 2] * x[xo + offs[j + 2]]
        s3 += values[j + 3] * x[xo + offs[j + 3]]
        j += 4
    while j < j1:
        s0 += values[j] * x[xo + offs[j]]
        j += 1
    return (s0 + s1) + (s2 + s3)


@inline
def _block(x, xo, values, offs, rowptr, bias, res, has_res, out, oo, m0, m1, p0, p1, P, code, a, b):
    """Output rows m0..m1, pixels p0..p1 of one image: x starts at xo, out (and res) at oo (flat).
    With has_res the tile starts from bias + res (a fused residual Add; res may be out itself: each
    tile is read before it is written)."""
    if P == 1:  # a fully connected layer: one sparse dot product per output
        for m in range(m0, m1):
            r0 = res[oo + m] if has_res else np.float32(0.0)
            out[oo + m] = apply_act(bias[m] + r0 + _sparse_dot(x, xo, values, offs, rowptr[m], rowptr[m + 1]),
                                    code, a, b)
        return
    vec_act = code == NONE or code == RELU or code == CLIP
    for m in range(m0, m1):
        j0, j1 = rowptr[m], rowptr[m + 1]
        bm = bias[m]
        ob = oo + m * P
        p = p0
        vec_end = p1  # where the scalar path (a few pixels per row) takes over
        # Register tiles of TILE_V vectors.
        while p + TILE <= p1:
            xb = xo + p
            acc0 = vbroadcast(bm)
            acc1 = acc0
            acc2 = acc0
            acc3 = acc0
            if has_res:
                acc0 = vadd(acc0, vload(res, ob + p))
                acc1 = vadd(acc1, vload(res, ob + p + VW))
                acc2 = vadd(acc2, vload(res, ob + p + 2 * VW))
                acc3 = vadd(acc3, vload(res, ob + p + 3 * VW))
            for j in range(j0, j1):
                w = vbroadcast_at(values, j)
                src = xb + offs[j]
                acc0 = vfma(w, vload(x, src), acc0)
                acc1 = vfma(w, vload(x, src + VW), acc1)
                acc2 = vfma(w, vload(x, src + 2 * VW), acc2)
                acc3 = vfma(w, vload(x, src + 3 * VW), acc3)
            if vec_act:
                acc0 = vact(acc0, code, a, b)
                acc1 = vact(acc1, code, a, b)
                acc2 = vact(acc2, code, a, b)
                acc3 = vact(acc3, code, a, b)
            vstore(out, ob + p, acc0)
            vstore(out, ob + p + VW, acc1)
            vstore(out, ob + p + 2 * VW, acc2)
            vstore(out, ob + p + 3 * VW, acc3)
            p += TILE
        # A last partial tile of 2..TILE_V vectors (a 7x7 layer has 49 pixels): masked loads, so the
        # nonzeros still stream past once for all of it.
        if p1 - p > VW and P >= VW:
            r = p1 - p
            xb = xo + p
            acc0 = vbroadcast(bm)
            acc1 = acc0
            acc2 = acc0
            acc3 = acc0
            if has_res:
                acc0 = vadd(acc0, vload(res, ob + p))
                acc1 = vadd(acc1, vload_window(res, ob + p, VW, r))
                acc2 = vadd(acc2, vload_window(res, ob + p, 2 * VW, r))
                acc3 = vadd(acc3, vload_window(res, ob + p, 3 * VW, r))
            for j in range(j0, j1):
                w = vbroadcast_at(values, j)
                src = xb + offs[j]
                acc0 = vfma(w, vload(x, src), acc0)
                acc1 = vfma(w, vload_window(x, src, VW, r), acc1)
                acc2 = vfma(w, vload_window(x, src, 2 * VW, r), acc2)
                acc3 = vfma(w, vload_window(x, src, 3 * VW, r), acc3)
            if vec_act:
                acc0 = vact(acc0, code, a, b)
                acc1 = vact(acc1, code, a, b)
                acc2 = vact(acc2, code, a, b)
                acc3 = vact(acc3, code, a, b)
            vstore(out, ob + p, acc0)
            vstore_n(out, ob + p + VW, acc1, min(VW, r - VW))
            if r > 2 * VW:
                vstore_n(out, ob + p + 2 * VW, acc2, min(VW, r - 2 * VW))
            if r > 3 * VW:
                vstore_n(out, ob + p + 3 * VW, acc3, r - 3 * VW)
            p = p1
        # Single vectors, the last one masked.
        while p < p1:
            n = min(VW, p1 - p)
            xb = xo + p
            acc = vbroadcast(bm)
            if has_res and (n >= 4 or P >= VW):
                acc = vadd(acc, vload_window(res, ob + p, 0, n))
            if n == VW:
                for j in range(j0, j1):
                    acc = vfma(vbroadcast_at(values, j), vload(x, xb + offs[j]), acc)
            elif n >= 4 or P >= VW:
                for j in range(j0, j1):
                    acc = vfma(vbroadcast_at(values, j), vload_window(x, xb + offs[j], 0, n), acc)
            else:  # a few pixels per row (a fully connected layer: P == 1): plain scalars
                vec_end = p
                for q in range(n):
                    s = bm + (res[ob + p + q] if has_res else np.float32(0.0))
                    for j in range(j0, j1):
                        s += values[j] * x[xb + offs[j] + q]
                    out[ob + p + q] = apply_act(s, code, a, b)
                p += n
                continue
            if vec_act:
                acc = vact(acc, code, a, b)
            if n == VW:
                vstore(out, ob + p, acc)
            else:
                vstore_n(out, ob + p, acc, n)
            p += n
        if not vec_act:  # activations without a vector form: applied to the stored tile
            for q in range(ob + p0, ob + vec_end):
                out[q] = apply_act(out[q], code, a, b)


@kernel
def f32_spmm_rows(x, values, offs, rowptr, bias, res, has_res, out, nimg, M, K, P, code, a, b):
    """out[n, M, P] = act(W @ x[n, K, P] + bias (+ res[n, M, P])) for every image n; W in CSR (values,
    offs = k * P)."""
    for n in range(nimg):
        _block(x, n * K * P, values, offs, rowptr, bias, res, has_res, out, n * M * P, 0, M, 0, P, P, code, a, b)


@kernel
def _block_item(x, xo, values, offs, rowptr, bias, res, has_res, out, oo, m0, m1, p0, p1, P, code, a, b):
    """``_block`` as a function of its own for the workers: inlined into the parallel loop's body it
    ran 15-33% slower than in the serial kernel (1152x192 at 7x7: 181 against 136 us on one worker)."""
    _block(x, xo, values, offs, rowptr, bias, res, has_res, out, oo, m0, m1, p0, p1, P, code, a, b)


@kernel(parallel=True)
def f32_spmm_rows_mt(x, values, offs, rowptr, bias, res, has_res, out, nimg, M, K, P, code, a, b, pchunks, mchunks,
                     pixel_bands, work):
    """f32_spmm_rows over nimg * pchunks * mchunks independent items, taken by work[0] workers
    (work.py). With pixel_bands the items are numbered pixel chunk first and the chunks split P
    evenly at vector bounds (a worker's band is a band of pixels of every plane); without, channel
    chunk first and the pixel chunks at tile bounds (a band of output planes). See ``chunks``."""
    tiles = (P + TILE - 1) // TILE
    vecs = (P + VW - 1) // VW
    per = nimg * pchunks * mchunks
    start_work(work)
    for _t in prange(work[0]):
        item = take(work, _t, per)
        while item >= 0:
            n = item // (pchunks * mchunks)
            r = item - n * pchunks * mchunks
            if pixel_bands:
                pc = r // mchunks
                mc = r - pc * mchunks
                p0 = min(P, (vecs * pc // pchunks) * VW)
                p1 = min(P, (vecs * (pc + 1) // pchunks) * VW)
            else:
                mc = r // pchunks
                pc = r - mc * pchunks
                p0 = min(P, (tiles * pc // pchunks) * TILE)
                p1 = min(P, (tiles * (pc + 1) // pchunks) * TILE)
            m0 = M * mc // mchunks
            m1 = M * (mc + 1) // mchunks
            if p1 > p0 and m1 > m0:
                _block_item(x, n * K * P, values, offs, rowptr, bias, res, has_res, out, n * M * P, m0, m1, p0, p1,
                            P, code, a, b)
            item = take(work, _t, per)


@kernel
def f32_add_act(acc, res, out, code, a, b):
    """out = act(acc + res) over flat buffers: the fused residual Add after a dense 1x1 GEMM (out may
    be res itself)."""
    for i in range(out.size):
        out[i] = apply_act(acc[i] + res[i], code, a, b)
