"""GEMM: C[M, N] = A[M, K] @ B[K, N] + bias, then a fused activation; the core of Conv, FC and MatMul.

The micro-kernel computes an MR x NR tile of C (MR = 8 rows, NR = 2 vectors of VW floats) with its
16 accumulators in registers across the whole K loop: per k it loads two B vectors, broadcasts
eight A values and issues 16 FMAs (``simd.py``). On the development machine (AVX-512) that runs at
its measured FMA peak, level with OpenBLAS and onnxruntime; the same loops written as row-view axpys
reach ~70% (the accumulators round-trip through L1 on every k).

Operands (all flat float32 buffers; offsets in elements):

* A: packed in row blocks [ceil(M/MR)][K][MR] (zero rows past M), so the eight broadcasts of one k
  are adjacent. Constant weights are packed in prepare; activations (MatMul, FC) and weights that
  are not constants are packed into scratch at the start of the kernel (see G_AP_*).
* B: consumed one panel at a time, [K][NR], zero past column N; row k of a panel starts at
  g[G_KOFF + k] (k * NR for a packed panel; ``conv.f32_conv_rows`` points them into padded input
  rows instead). Where a panel comes from is the kernel: ``_rows`` packs it from a row-major
  [K, ldb] matrix (1x1 conv, MatMul), ``_im2col`` gathers convolution taps
  (``im2col.pack_im2col``), ``_prepacked`` reads panels packed in prepare from constant weights
  ([G][ceil(N/NR)][K][NR]).
* C: ``y[yo + m*ldy + n]``.
* bias: none, one value per row of C (conv: per output channel; reads are clamped to M, so no
  padding) or one per column (FC; padded to whole panels), see G_BIAS_MODE.

Batches: two nested levels (images x groups, or MatMul's batch dims) with their own element strides
for A, B, C and bias, so grouped convolution and broadcast batched MatMul need no copies.

Work split: work items are (matrix, group of panels, chunk of row blocks); worker t of T takes items
t, t+T, ... and owns scratch row t (one tile and its panels). ``_mt`` kernels run the T workers under
prange; prepare picks T, the grouping and the chunking (``work_split``).
"""

from __future__ import annotations

import numpy as np

from . import im2col
from ._jit import inline, kernel, prange
from .act import CLIP, apply_act, vact
from .im2col import NR, pack_im2col, pack_rows
from .simd import VW, vadd, vbroadcast, vbroadcast_at, vfma, vload, vstore

MR = 8
PANEL_GROUP_BYTES = 48 * 1024  # packed B per work item: stays in L1/L2 while every row block reads it

# Fields of the int64 geometry array ``g`` (the im2col fields follow, see im2col.IM_*).
(G_M, G_N, G_K, G_NIMG, G_NGRP, G_MCHUNKS, G_A_IS, G_A_GS, G_B_IS, G_B_GS, G_LDB, G_Y_IS, G_Y_GS, G_LDY,
 G_BIAS_GS, G_BIAS_MODE) = range(16)
G_PGROUP = 33  # panels per work item (after the im2col fields)
# Packing A at run time from a row-major source: matrices per image and per group (0 images: A was
# packed in prepare), the source's element strides per image and per group, and its row stride.
G_AP_NIMG, G_AP_NGRP, G_AP_SIS, G_AP_SGS, G_AP_LDA = range(16, 21)
# Then the im2col fields (21..32) and G_PGROUP; from G_KOFF on, K offsets: row k of B is at G_KOFF + k.
G_KOFF = 34
B_ROWS, B_PREPACKED, B_IM2COL = 0, 1, 2
BIAS_NONE, BIAS_ROW, BIAS_COL = 0, 1, 2


def scratch_floats(K: int, pgroup: int = 1) -> int:
    """Scratch floats per worker: one tile and ``pgroup`` B panels."""
    return MR * NR + pgroup * K * NR


@inline
def _store2(y, o, v0, v1, code, p, q):
    """y[o:o+NR] = v0 ++ v1 with relu or clip applied in registers (other activations: _act_rows)."""
    vstore(y, o, vact(v0, code, p, q))
    vstore(y, o + VW, vact(v1, code, p, q))


# Helpers below are compiled once and called (not inlined), which keeps compile times short. Callers
# pass constants as np.int64(...): a bare literal would compile a separate specialisation.
@kernel
def _act_rows(y, yo, ldy, rows, cols, code, p, q):
    """The activation over C[0:rows, 0:cols] of a tile stored at y[yo:] (activations beyond clip)."""
    for r in range(rows):
        d = y[yo + r * ldy:yo + r * ldy + cols]
        for j in range(cols):
            d[j] = apply_act(d[j], code, p, q)


@kernel
def _copy_tile(tile, rows, cols, y, yo, ldy, code, p, q):
    """A partial tile: the first rows x cols of tile [MR][NR] into C, with the activation."""
    for r in range(rows):
        d = y[yo + r * ldy:yo + r * ldy + cols]
        s = tile[r * NR:r * NR + cols]
        for j in range(cols):
            d[j] = apply_act(s[j], code, p, q)


@inline
def _init(bias, bmode, brow, bcol, r):
    """Accumulator start for tile row r: bias[brow + r] (per row) or bias[bcol:bcol+NR] (per column)."""
    if bmode == BIAS_COL:
        return vload(bias, bcol), vload(bias, bcol + VW)
    if bmode == BIAS_ROW:
        s = vbroadcast_at(bias, brow + r)
        return s, s
    z = vbroadcast(0.0)
    return z, z


@inline
def tile8(a, ao, rows, bp, bo, g, K, bias, bmode, brow, bcol, y, yo, ldy, cols, tile, code, p, q):
    """C[0:rows, 0:cols] of one tile (rows <= MR, cols <= NR) = packed A block a[ao:] @ B, plus bias,
    then the activation. Row k of B is bp[bo + g[G_KOFF + k]:][:NR] (a panel, or a padded input row)."""
    last = rows - 1
    c0a, c0b = _init(bias, bmode, brow, bcol, 0)
    c1a, c1b = _init(bias, bmode, brow, bcol, min(1, last))
    c2a, c2b = _init(bias, bmode, brow, bcol, min(2, last))
    c3a, c3b = _init(bias, bmode, brow, bcol, min(3, last))
    c4a, c4b = _init(bias, bmode, brow, bcol, min(4, last))
    c5a, c5b = _init(bias, bmode, brow, bcol, min(5, last))
    c6a, c6b = _init(bias, bmode, brow, bcol, min(6, last))
    c7a, c7b = _init(bias, bmode, brow, bcol, min(7, last))
    for k in range(K):
        o = bo + g[G_KOFF + k]
        b0 = vload(bp, o)
        b1 = vload(bp, o + VW)
        ks = ao + k * MR
        w = vbroadcast_at(a, ks)
        c0a = vfma(w, b0, c0a)
        c0b = vfma(w, b1, c0b)
        w = vbroadcast_at(a, ks + 1)
        c1a = vfma(w, b0, c1a)
        c1b = vfma(w, b1, c1b)
        w = vbroadcast_at(a, ks + 2)
        c2a = vfma(w, b0, c2a)
        c2b = vfma(w, b1, c2b)
        w = vbroadcast_at(a, ks + 3)
        c3a = vfma(w, b0, c3a)
        c3b = vfma(w, b1, c3b)
        w = vbroadcast_at(a, ks + 4)
        c4a = vfma(w, b0, c4a)
        c4b = vfma(w, b1, c4b)
        w = vbroadcast_at(a, ks + 5)
        c5a = vfma(w, b0, c5a)
        c5b = vfma(w, b1, c5b)
        w = vbroadcast_at(a, ks + 6)
        c6a = vfma(w, b0, c6a)
        c6b = vfma(w, b1, c6b)
        w = vbroadcast_at(a, ks + 7)
        c7a = vfma(w, b0, c7a)
        c7b = vfma(w, b1, c7b)
    if rows == MR and cols == NR:
        _store2(y, yo, c0a, c0b, code, p, q)
        _store2(y, yo + ldy, c1a, c1b, code, p, q)
        _store2(y, yo + 2 * ldy, c2a, c2b, code, p, q)
        _store2(y, yo + 3 * ldy, c3a, c3b, code, p, q)
        _store2(y, yo + 4 * ldy, c4a, c4b, code, p, q)
        _store2(y, yo + 5 * ldy, c5a, c5b, code, p, q)
        _store2(y, yo + 6 * ldy, c6a, c6b, code, p, q)
        _store2(y, yo + 7 * ldy, c7a, c7b, code, p, q)
        if code > CLIP:
            _act_rows(y, yo, ldy, np.int64(MR), np.int64(NR), code, p, q)
    else:
        vstore(tile, 0, c0a)
        vstore(tile, VW, c0b)
        vstore(tile, NR, c1a)
        vstore(tile, NR + VW, c1b)
        vstore(tile, 2 * NR, c2a)
        vstore(tile, 2 * NR + VW, c2b)
        vstore(tile, 3 * NR, c3a)
        vstore(tile, 3 * NR + VW, c3b)
        vstore(tile, 4 * NR, c4a)
        vstore(tile, 4 * NR + VW, c4b)
        vstore(tile, 5 * NR, c5a)
        vstore(tile, 5 * NR + VW, c5b)
        vstore(tile, 6 * NR, c6a)
        vstore(tile, 6 * NR + VW, c6b)
        vstore(tile, 7 * NR, c7a)
        vstore(tile, 7 * NR + VW, c7b)
        _copy_tile(tile, rows, cols, y, yo, ldy, code, p, q)


@inline
def tile1(a, ao, bp, bo, g, K, bias, bmode, brow, bcol, y, yo, cols, tile, code, p, q):
    """One row of C from packed A row a[ao + k*MR] (for blocks of < 4 rows): two accumulator sets,
    over even and odd k, hide the FMA latency."""
    c0, c1 = _init(bias, bmode, brow, bcol, 0)
    e0 = vbroadcast(0.0)
    e1 = e0
    for k2 in range(K // 2):
        k = 2 * k2
        w = vbroadcast_at(a, ao + k * MR)
        o = bo + g[G_KOFF + k]
        c0 = vfma(w, vload(bp, o), c0)
        c1 = vfma(w, vload(bp, o + VW), c1)
        w = vbroadcast_at(a, ao + (k + 1) * MR)
        o = bo + g[G_KOFF + k + 1]
        e0 = vfma(w, vload(bp, o), e0)
        e1 = vfma(w, vload(bp, o + VW), e1)
    if K % 2:
        k = K - 1
        w = vbroadcast_at(a, ao + k * MR)
        o = bo + g[G_KOFF + k]
        c0 = vfma(w, vload(bp, o), c0)
        c1 = vfma(w, vload(bp, o + VW), c1)
    c0 = vadd(c0, e0)
    c1 = vadd(c1, e1)
    if cols == NR:
        _store2(y, yo, c0, c1, code, p, q)
        if code > CLIP:
            _act_rows(y, yo, np.int64(0), np.int64(1), np.int64(NR), code, p, q)
    else:
        vstore(tile, 0, c0)
        vstore(tile, VW, c1)
        _copy_tile(tile, np.int64(1), cols, y, yo, np.int64(0), code, p, q)


@kernel
def gemm_worker(t, T, a, x, bias, y, g, buf, xb, yb, b_mode, code, p, q):
    """Worker t of T: every T-th work item. An item is a group of up to g[G_PGROUP] panels of one
    matrix and a chunk of its row blocks: the panels are packed first, then each row block runs
    over all of them, so C is written in long runs per row (friendlier to the prefetchers than
    one 128-byte piece per row and panel). ``buf`` is this worker's scratch row; xb and yb are base
    offsets added to every B and C offset (ConvTranspose runs one image at a time)."""
    M, N, K = g[G_M], g[G_N], g[G_K]
    n_grp, mchunks, pg = g[G_NGRP], g[G_MCHUNKS], g[G_PGROUP]
    ldy, bmode = g[G_LDY], g[G_BIAS_MODE]
    npan = (N + NR - 1) // NR
    ngroups = (npan + pg - 1) // pg
    mblocks = (M + MR - 1) // MR
    per_mat = ngroups * mchunks
    total = g[G_NIMG] * n_grp * per_mat
    tile = buf[:MR * NR]
    panels = buf[MR * NR:MR * NR + pg * K * NR]
    for it in range(t, total, T):
        mat = it // per_mat
        rest = it - mat * per_mat
        pn0 = (rest // mchunks) * pg
        pn1 = min(npan, pn0 + pg)
        mc = rest - (rest // mchunks) * mchunks
        img = mat // n_grp
        grp = mat - img * n_grp
        bo = xb + img * g[G_B_IS] + grp * g[G_B_GS]
        if b_mode == B_PREPACKED:
            bp = x
            bo += pn0 * K * NR
        else:
            bp = panels
            for pn in range(pn0, pn1):
                p0 = pn * NR
                dst = panels[(pn - pn0) * K * NR:(pn - pn0 + 1) * K * NR]
                if b_mode == B_ROWS:
                    pack_rows(x, bo, g[G_LDB], K, p0, min(NR, N - p0), dst)
                else:
                    pack_im2col(x, bo, g, p0, min(NR, N - p0), dst)
            bo = 0
        ao = img * g[G_A_IS] + grp * g[G_A_GS]
        yo = yb + img * g[G_Y_IS] + grp * g[G_Y_GS]
        bg = grp * g[G_BIAS_GS]
        for mb in range(mc * mblocks // mchunks, (mc + 1) * mblocks // mchunks):
            m0 = mb * MR
            rows = min(MR, M - m0)
            for pn in range(pn0, pn1):
                p0 = pn * NR
                n = min(NR, N - p0)
                po = bo + (pn - pn0) * K * NR
                if rows >= 4:
                    tile8(a, ao + m0 * K, rows, bp, po, g, K, bias, bmode, bg + m0, bg + p0,
                           y, yo + m0 * ldy + p0, ldy, n, tile, code, p, q)
                else:
                    for r in range(rows):
                        tile1(a, ao + m0 * K + r, bp, po, g, K, bias, bmode, bg + m0 + r, bg + p0,
                               y, yo + (m0 + r) * ldy + p0, n, tile, code, p, q)


@kernel
def _pack_a_block(src, so, lda, rows, K, dst, do):
    """dst[do + k*MR + r] = src[so + r*lda + k] for r < rows; zero for rows <= r < MR."""
    d = dst[do:do + K * MR]
    for r in range(MR):
        if r < rows:
            s = src[so + r * lda:so + r * lda + K]
            for k in range(K):
                d[k * MR + r] = s[k]
        else:
            for k in range(K):
                d[k * MR + r] = 0.0


@kernel
def pack_a_blocks(src, dst, g, t, T):
    """Pack row blocks t, t+T, ... of every A matrix from the row-major ``src`` (see G_AP_*) into dst."""
    M, K = g[G_M], g[G_K]
    mblocks = (M + MR - 1) // MR
    n_g = g[G_AP_NGRP]
    total = g[G_AP_NIMG] * n_g * mblocks
    for it in range(t, total, T):
        mat = it // mblocks
        mb = it - mat * mblocks
        img = mat // n_g
        grp = mat - img * n_g
        so = img * g[G_AP_SIS] + grp * g[G_AP_SGS] + mb * MR * g[G_AP_LDA]
        _pack_a_block(src, so, g[G_AP_LDA], min(MR, M - mb * MR), K, dst, it * MR * K)


@inline
def _gemm_serial(a, asrc, x, bias, y, g, scratch, b_mode, code, p, q):
    zero, one = np.int64(0), np.int64(1)
    if g[G_AP_NIMG] > 0:
        pack_a_blocks(asrc, a, g, zero, one)
    gemm_worker(zero, one, a, x, bias, y, g, scratch[0], zero, zero, b_mode, code, p, q)


@kernel
def f32_gemm_rows(a, asrc, x, bias, y, g, scratch, code, p, q):
    """C = A @ B with B a row-major [K, ldb] matrix (1x1 convolution, MatMul).

    a: packed A; when g[G_AP_NIMG] > 0 it is scratch, first filled from the row-major ``asrc``
    (activations, or weights that are not constants). x: B source; y: C; bias; all flat f32.
    g: geometry (module docstring); scratch: [1, scratch_floats(K)]."""
    _gemm_serial(a, asrc, x, bias, y, g, scratch, np.int64(B_ROWS), code, p, q)


@kernel(parallel=True)
def f32_gemm_rows_mt(a, asrc, x, bias, y, g, scratch, code, p, q):
    """``f32_gemm_rows`` with scratch.shape[0] workers under prange."""
    T = scratch.shape[0]
    zero = np.int64(0)
    if g[G_AP_NIMG] > 0:
        for t in prange(T):
            pack_a_blocks(asrc, a, g, t, T)
    for t in prange(T):
        gemm_worker(t, T, a, x, bias, y, g, scratch[t], zero, zero, np.int64(B_ROWS), code, p, q)


@kernel
def f32_gemm_im2col(a, asrc, x, bias, y, g, scratch, code, p, q):
    """Convolution: weights [M, C/g*kh*kw] @ im2col(X), panels gathered on the fly.

    a: packed A; when g[G_AP_NIMG] > 0 it is scratch, first filled from the row-major ``asrc``
    (activations, or weights that are not constants). x: B source; y: C; bias; all flat f32.
    g: geometry (module docstring); scratch: [1, scratch_floats(K)]."""
    _gemm_serial(a, asrc, x, bias, y, g, scratch, np.int64(B_IM2COL), code, p, q)


@kernel(parallel=True)
def f32_gemm_im2col_mt(a, asrc, x, bias, y, g, scratch, code, p, q):
    """``f32_gemm_im2col`` with scratch.shape[0] workers under prange."""
    T = scratch.shape[0]
    zero = np.int64(0)
    if g[G_AP_NIMG] > 0:
        for t in prange(T):
            pack_a_blocks(asrc, a, g, t, T)
    for t in prange(T):
        gemm_worker(t, T, a, x, bias, y, g, scratch[t], zero, zero, np.int64(B_IM2COL), code, p, q)


@kernel
def f32_gemm_prepacked(a, asrc, x, bias, y, g, scratch, code, p, q):
    """C = A @ B with B packed into panels in prepare (constant weights: FC, MatMul).

    a: packed A; when g[G_AP_NIMG] > 0 it is scratch, first filled from the row-major ``asrc``
    (activations, or weights that are not constants). x: B source; y: C; bias; all flat f32.
    g: geometry (module docstring); scratch: [1, scratch_floats(K)]."""
    _gemm_serial(a, asrc, x, bias, y, g, scratch, np.int64(B_PREPACKED), code, p, q)


@kernel(parallel=True)
def f32_gemm_prepacked_mt(a, asrc, x, bias, y, g, scratch, code, p, q):
    """``f32_gemm_prepacked`` with scratch.shape[0] workers under prange."""
    T = scratch.shape[0]
    zero = np.int64(0)
    if g[G_AP_NIMG] > 0:
        for t in prange(T):
            pack_a_blocks(asrc, a, g, t, T)
    for t in prange(T):
        gemm_worker(t, T, a, x, bias, y, g, scratch[t], zero, zero, np.int64(B_PREPACKED), code, p, q)


# --- layout helpers for prepare (plain numpy, run once) ----------------------------------------
def pack_a(w: np.ndarray) -> np.ndarray:
    """[..., M, K] -> flat packed row blocks [...][ceil(M/MR)][K][MR] (zero rows past M)."""
    *lead, M, K = w.shape
    mb = -(-M // MR)
    padded = np.zeros((*lead, mb * MR, K), np.float32)
    padded[..., :M, :] = w
    blocks = padded.reshape(*lead, mb, MR, K)
    return np.ascontiguousarray(np.swapaxes(blocks, -1, -2)).reshape(-1)


def packed_a_floats(M: int, K: int) -> int:
    return -(-M // MR) * MR * K


def pack_b(b: np.ndarray) -> np.ndarray:
    """[..., K, N] -> flat panels [...][ceil(N/NR)][K][NR] (zero columns past N)."""
    *lead, K, N = b.shape
    npan = -(-N // NR)
    padded = np.zeros((*lead, K, npan * NR), np.float32)
    padded[..., :N] = b
    panels = padded.reshape(*lead, K, npan, NR)
    return np.ascontiguousarray(np.swapaxes(panels, -2, -3)).reshape(-1)


def packed_b_floats(K: int, N: int) -> int:
    return -(-N // NR) * NR * K


def geometry(koff=None, **fields) -> np.ndarray:
    """The int64 geometry array from keyword fields named like the G_* constants (``m=`` for G_M),
    followed by the K offsets of B's rows (default: rows of a packed panel, k * NR)."""
    K = int(fields["k"])
    g = np.zeros(G_KOFF + K, np.int64)
    g[G_KOFF:] = np.arange(K) * NR if koff is None else koff
    g[G_NIMG] = g[G_NGRP] = g[G_MCHUNKS] = g[G_PGROUP] = 1
    names = {k[2:].lower(): v for k, v in globals().items() if k.startswith("G_")}
    names.update({k.lower(): v for k, v in vars(im2col).items() if k.startswith("IM_")})
    for key, value in fields.items():
        g[names[key]] = int(value)
    return g


def work_split(threads: int, matrices: int, M: int, N: int, K: int, packed_b: bool = False) -> tuple:
    """(workers, row-block chunks, panels per item) for ``matrices`` GEMMs of M x N x K.

    Panels are grouped up to PANEL_GROUP_BYTES of packed B per item (prepacked B needs no scratch, so
    it groups freely). Workers get enough items (a few each, so one slowed by another process does
    not hold up the node): smaller groups first, then chunks of row blocks (each chunk repacks its
    panels)."""
    npan, mblocks = -(-N // NR), -(-M // MR)
    pg = max(1, min(npan, PANEL_GROUP_BYTES // (4 * K * NR))) if not packed_b else min(npan, 16)
    if threads <= 1:
        return 1, 1, pg
    want = 4 * threads
    while pg > 1 and matrices * -(-npan // pg) < want:
        pg = max(1, pg // 2)
    items = matrices * -(-npan // pg)
    chunks = 1 if items >= want else min(mblocks, -(-want // items))
    return threads, chunks, pg
