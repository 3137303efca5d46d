"""Depthwise convolution (group == C): each output plane is one input plane filtered by its own kernel.

Layouts: x [N, C, H, W] and out [N, M, OH, OW] flat; M = C * mult (a channel multiplier is allowed:
output channel m reads input channel m // mult); w [M, kh*kw] (the ONNX weight [M, 1, kh, kw] as is,
so no packing); bias [M] (zeros when the node has none). ``g`` is the geometry (int64):

    g = [planes, mult, H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw, Hq, Wq]

with planes = N*M, and Hq x Wq the size of one phase plane of the generic path.

3x3 and 5x5 at stride 1 or 2 without dilation (``f32_dwconv_direct``; MobileNet and EfficientNet
use nothing else): per plane, the padded input rows are copied into scratch with vector loads that
are masked at the edges (the padding costs nothing extra), at stride 2 split into even and odd
columns so every tap reads a contiguous run. Then two output rows at a time (they share input
rows), VW outputs per step: all taps summed in registers, one partial sum per kernel row (fenced,
so fastmath cannot merge them into one long dependent chain), bias, relu/clip in registers, one
store (masked for a row's tail). Kernel size and stride are literal arguments of ``_plane_rows``:
numba compiles one branch-free version per case.

Everything else (``f32_dwconv_generic``: other sizes, dilation, unequal strides): the padded input
is split into sh x sw phase planes (phase (a, b) holds padded rows a, a+sh, ... and columns b,
b+sw, ...), so tap (ki, kj) of output (oh, ow) reads phase (ki*dh % sh, kj*dw % sw) at
(oh + ki*dh // sh, ow + kj*dw // sw): a shifted contiguous run. Outputs are computed on the phase
grid (OH rows of Wq, the last Wq - OW of each row junk and never stored) one tap per pass over the
whole plane, which keeps the loops long enough for LLVM's vector loop, then stored with the
activation. Scratch per worker: sh*sw*(Hq+1)*Wq + OH*Wq floats (``scratch_floats``).

``_mt`` kernels share the planes among work[0] workers in bands (``_planes_mt``, work.py).
"""

from __future__ import annotations

import numpy as np

from ._jit import inline, kernel, prange
from .act import CLIP, RELU, apply_act
from .im2col import valid_range
from .work import ITEMS_PER_WORKER, start_work, take
from .simd import (
    VW,
    vadd,
    vbroadcast,
    vbroadcast_at,
    vclamp,
    vdeinterleave,
    vfence,
    vfma,
    vload,
    vload_row,
    vmul,
    vstore,
    vstore_n,
)

(D_PLANES, D_MULT, D_H, D_W, D_OH, D_OW, D_KH, D_KW, D_SH, D_SW, D_PT, D_PL, D_DH, D_DW, D_HQ,
 D_WQ) = range(16)


def geometry(planes, mult, H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw) -> np.ndarray:
    Hp, Wp = (OH - 1) * sh + (kh - 1) * dh + 1, (OW - 1) * sw + (kw - 1) * dw + 1
    Hq, Wq = -(-Hp // sh), -(-Wp // sw)
    return np.array([planes, mult, H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw, Hq, Wq], np.int64)


def scratch_floats(g) -> int:
    return int(g[D_SH] * g[D_SW] * (g[D_HQ] + 1) * g[D_WQ] + g[D_OH] * g[D_WQ])


@inline
def _fill(x, xo, W, off, s, d):
    """d[j] = x[xo + j*s + off] where 0 <= j*s + off < W, else 0 (one row of a phase plane)."""
    n = d.size
    lo, hi = valid_range(off, s, W, 0, n)
    for j in range(lo):
        d[j] = 0.0
    for j in range(hi, n):
        d[j] = 0.0
    if hi > lo:
        dv = d[lo:hi]
        start = xo + lo * s + off
        if s == 1:
            src = x[start:start + hi - lo]
            for j in range(hi - lo):
                dv[j] = src[j]
        else:
            src = x[start:start + (hi - lo - 1) * s + 1]
            for j in range(hi - lo):
                dv[j] = src[j * s]


@inline
def _phases(x, xo, g, P):
    """Fill the sh*sw phase planes of the padded input plane x[xo:] into P (module docstring)."""
    H, W, sh, sw, pt, pl = g[D_H], g[D_W], g[D_SH], g[D_SW], g[D_PT], g[D_PL]
    Hq, Wq = g[D_HQ], g[D_WQ]
    size = (Hq + 1) * Wq
    for a in range(sh):
        for b in range(sw):
            base = (a * sw + b) * size
            for i in range(Hq + 1):
                row = P[base + i * Wq:base + (i + 1) * Wq]
                ih = a + i * sh - pt
                if i == Hq or ih < 0 or ih >= H:
                    for j in range(Wq):
                        row[j] = 0.0
                else:
                    _fill(x, xo + ih * W, W, b - pl, sw, row)


@inline
def _tap(P, g, ki, kj, L):
    """The 1-D view of the phase buffer that tap (ki, kj) reads for the L grid outputs."""
    sh, sw, dh, dw, Hq, Wq = g[D_SH], g[D_SW], g[D_DH], g[D_DW], g[D_HQ], g[D_WQ]
    r, c = ki * dh, kj * dw
    o = ((r % sh) * sw + c % sw) * (Hq + 1) * Wq + (r // sh) * Wq + c // sw
    return P[o:o + L]


@inline
def _taps_generic(P, g, t, w, wo, b, L):
    kh, kw = g[D_KH], g[D_KW]
    for i in range(L):
        t[i] = b
    for ki in range(kh):
        for kj in range(kw):
            v = _tap(P, g, ki, kj, L)
            wv = w[wo + ki * kw + kj]
            for i in range(L):
                t[i] += wv * v[i]


@kernel
def _plane_phases(x, w, bias, out, g, buf, pidx, code, p, q):
    """Output plane pidx = n*M + m through phase planes (any kernel size, stride, dilation)."""
    H, W, OH, OW, Hq, Wq = g[D_H], g[D_W], g[D_OH], g[D_OW], g[D_HQ], g[D_WQ]
    nph = g[D_SH] * g[D_SW] * (Hq + 1) * Wq
    P = buf[:nph]
    L = OH * Wq
    t = buf[nph:nph + L]
    m = pidx % bias.size
    # The input plane is n*C + m // mult, which is pidx // mult since M = C * mult.
    _phases(x, (pidx // g[D_MULT]) * H * W, g, P)
    _taps_generic(P, g, t, w, m * g[D_KH] * g[D_KW], bias[m], L)
    for oh in range(OH):
        o = out[(pidx * OH + oh) * OW:(pidx * OH + oh + 1) * OW]
        s = t[oh * Wq:oh * Wq + OW]
        for j in range(OW):
            o[j] = apply_act(s[j], code, p, q)


# --- 3x3 and 5x5 at stride 1 or 2 without dilation: padded rows, explicit vectors ---------------
@inline
def _rows(x, g, xo, buf, RS, Wq, K, s):
    """Padded input rows into buf, RS floats each (zero padding from masked loads, no other pass).
    At stride 2 a row is stored as its even columns (offset 0) and its odd columns (offset Wq), so
    every tap reads a contiguous run."""
    H, W, OH, pt, pl = g[D_H], g[D_W], g[D_OH], g[D_PT], g[D_PL]
    z = vbroadcast(0.0)
    for r in range(OH * s + K):  # one row pair past OH - 1 when OH is odd (computed, never stored)
        ih = r - pt
        o = r * RS
        if ih < 0 or ih >= H:
            for j in range(0, RS, VW):
                vstore(buf, o + j, z)
        elif s == 1:
            for j in range(0, RS, VW):
                vstore(buf, o + j, vload_row(x, xo + ih * W, j - pl, W))
        else:
            for j in range(0, Wq, VW):
                c = 2 * j - pl
                e, d = vdeinterleave(vload_row(x, xo + ih * W, c, W), vload_row(x, xo + ih * W, c + VW, W))
                vstore(buf, o + j, e)
                vstore(buf, o + Wq + j, d)


@inline
def _r3s1(P, a, RS, w0, w1, w2, w3, w4, w5, w6, w7, w8, j):
    """VW outputs of a 3x3 stride-1 kernel from padded rows a, a+RS, a+2*RS at column j. One partial
    sum per kernel row keeps the FMA chains short."""
    x0 = vfma(w2, vload(P, a + j + 2), vfma(w1, vload(P, a + j + 1), vmul(w0, vload(P, a + j))))
    a += RS
    x1 = vfma(w5, vload(P, a + j + 2), vfma(w4, vload(P, a + j + 1), vmul(w3, vload(P, a + j))))
    a += RS
    x2 = vfma(w8, vload(P, a + j + 2), vfma(w7, vload(P, a + j + 1), vmul(w6, vload(P, a + j))))
    return vadd(vadd(vfence(x0), vfence(x1)), vfence(x2))


@inline
def _r3s2(P, a, RS, Wq, w0, w1, w2, w3, w4, w5, w6, w7, w8, j):
    """As _r3s1 at stride 2: a row's even columns start at its offset, its odd ones Wq later."""
    x0 = vfma(w2, vload(P, a + j + 1), vfma(w1, vload(P, a + Wq + j), vmul(w0, vload(P, a + j))))
    a += RS
    x1 = vfma(w5, vload(P, a + j + 1), vfma(w4, vload(P, a + Wq + j), vmul(w3, vload(P, a + j))))
    a += RS
    x2 = vfma(w8, vload(P, a + j + 1), vfma(w7, vload(P, a + Wq + j), vmul(w6, vload(P, a + j))))
    return vadd(vadd(vfence(x0), vfence(x1)), vfence(x2))


@inline
def _k5s1(P, a, w, k, j):
    """One kernel row of a 5x5 stride-1 kernel: sum over kj of w[k + kj] * P[a + j + kj]."""
    t = vmul(vbroadcast_at(w, k), vload(P, a + j))
    t = vfma(vbroadcast_at(w, k + 1), vload(P, a + j + 1), t)
    t = vfma(vbroadcast_at(w, k + 2), vload(P, a + j + 2), t)
    t = vfma(vbroadcast_at(w, k + 3), vload(P, a + j + 3), t)
    return vfence(vfma(vbroadcast_at(w, k + 4), vload(P, a + j + 4), t))


@inline
def _k5s2(P, a, Wq, w, k, j):
    """One kernel row of a 5x5 stride-2 kernel (even columns at a, odd ones at a + Wq)."""
    t = vmul(vbroadcast_at(w, k), vload(P, a + j))
    t = vfma(vbroadcast_at(w, k + 1), vload(P, a + Wq + j), t)
    t = vfma(vbroadcast_at(w, k + 2), vload(P, a + j + 1), t)
    t = vfma(vbroadcast_at(w, k + 3), vload(P, a + Wq + j + 1), t)
    return vfence(vfma(vbroadcast_at(w, k + 4), vload(P, a + j + 2), t))


@inline
def _r5s1(P, a, RS, w, k, j):
    """VW outputs of a 5x5 stride-1 kernel (weights w[k:k+25]) from padded rows a, a+RS, ...
    Written out (no loop): arrays passed into an inlined loop cost reference-count calls per use."""
    r01 = vadd(_k5s1(P, a, w, k, j), _k5s1(P, a + RS, w, k + 5, j))
    r23 = vadd(_k5s1(P, a + 2 * RS, w, k + 10, j), _k5s1(P, a + 3 * RS, w, k + 15, j))
    return vadd(vadd(r01, r23), _k5s1(P, a + 4 * RS, w, k + 20, j))


@inline
def _r5s2(P, a, RS, Wq, w, k, j):
    """As _r5s1 at stride 2 (even and odd columns, see _r3s2)."""
    r01 = vadd(_k5s2(P, a, Wq, w, k, j), _k5s2(P, a + RS, Wq, w, k + 5, j))
    r23 = vadd(_k5s2(P, a + 2 * RS, Wq, w, k + 10, j), _k5s2(P, a + 3 * RS, Wq, w, k + 15, j))
    return vadd(vadd(r01, r23), _k5s2(P, a + 4 * RS, Wq, w, k + 20, j))


@inline
def _vec(P, a, RS, Wq, K, s, w, k, w0, w1, w2, w3, w4, w5, w6, w7, w8, j):
    """VW outputs of one output row (K and s are compile-time constants in every caller)."""
    if K == 3 and s == 1:
        return _r3s1(P, a, RS, w0, w1, w2, w3, w4, w5, w6, w7, w8, j)
    if K == 3:
        return _r3s2(P, a, RS, Wq, w0, w1, w2, w3, w4, w5, w6, w7, w8, j)
    if s == 1:
        return _r5s1(P, a, RS, w, k, j)
    return _r5s2(P, a, RS, Wq, w, k, j)


@kernel
def _plane_rows(x, w, bias, out, g, buf, pidx, code, p, q, K, s):
    """Output plane pidx of a KxK kernel (K = 3 or 5) at stride s (1 or 2): padded rows, then two
    output rows at a time (they share input rows), VW outputs per step with all taps in registers.
    K and s arrive as literals, so numba compiles one branch-free version per (K, s)."""
    H, W, OH, OW = g[D_H], g[D_W], g[D_OH], g[D_OW]
    Wq = (((OW - 1) * s + K + 1) // 2 + VW - 1) // VW * VW + VW
    RS = (((OW - 1) * s + K + VW - 1) // VW * VW + VW) if s == 1 else 2 * Wq
    m = pidx % bias.size
    _rows(x, g, (pidx // g[D_MULT]) * H * W, buf, RS, Wq, K, s)
    b = vbroadcast_at(bias, m)
    k = m * K * K
    w0, w1, w2 = vbroadcast_at(w, k), vbroadcast_at(w, k + 1), vbroadcast_at(w, k + 2)
    w3, w4, w5 = vbroadcast_at(w, k + 3), vbroadcast_at(w, k + 4), vbroadcast_at(w, k + 5)
    w6, w7, w8 = vbroadcast_at(w, k + 6), vbroadcast_at(w, k + 7), vbroadcast_at(w, k + 8)
    # Relu and clip as one clamp in registers (none: an infinite clamp); others after the store.
    lo, hi = -np.inf, np.inf
    if code == RELU:
        lo = 0.0
    elif code == CLIP:
        lo, hi = p, q
    step = s * RS  # padded-row offset between consecutive output rows
    full = OW - OW % VW
    for oh in range(0, OH, 2):
        o = (pidx * OH + oh) * OW
        a = oh * step
        if oh + 1 < OH:
            for j in range(0, full, VW):
                v0 = _vec(buf, a, RS, Wq, K, s, w, k, w0, w1, w2, w3, w4, w5, w6, w7, w8, j)
                v1 = _vec(buf, a + step, RS, Wq, K, s, w, k, w0, w1, w2, w3, w4, w5, w6, w7, w8, j)
                vstore(out, o + j, vclamp(vadd(v0, b), lo, hi))
                vstore(out, o + OW + j, vclamp(vadd(v1, b), lo, hi))
            if full < OW:
                v0 = _vec(buf, a, RS, Wq, K, s, w, k, w0, w1, w2, w3, w4, w5, w6, w7, w8, full)
                v1 = _vec(buf, a + step, RS, Wq, K, s, w, k, w0, w1, w2, w3, w4, w5, w6, w7, w8, full)
                vstore_n(out, o + full, vclamp(vadd(v0, b), lo, hi), OW - full)
                vstore_n(out, o + OW + full, vclamp(vadd(v1, b), lo, hi), OW - full)
            n = 2 * OW
        else:
            for j in range(0, OW, VW):
                v0 = _vec(buf, a, RS, Wq, K, s, w, k, w0, w1, w2, w3, w4, w5, w6, w7, w8, j)
                vstore_n(out, o + j, vclamp(vadd(v0, b), lo, hi), min(VW, OW - j))
            n = OW
        if code > CLIP:
            for j in range(n):
                out[o + j] = apply_act(out[o + j], code, p, q)


def rows_scratch_floats(OH, OW, K, s, VW=VW) -> int:
    """Scratch floats per worker of the 3x3/5x5 path (matches _plane_rows' layout)."""
    Wq = (((OW - 1) * s + K + 1) // 2 + VW - 1) // VW * VW + VW
    RS = (((OW - 1) * s + K + VW - 1) // VW * VW + VW) if s == 1 else 2 * Wq
    # One extra padded row per output row pair: an odd OH computes (and drops) one row past the end.
    return (OH * s + K) * RS


# --- small planes: the whole output plane as one flat grid of vectors -----------------------------
def grid_layout(OH, OW, K, s, VW=VW):
    """(Wq, PS, L, size) of the grid path: phase rows of Wq floats, phase planes PS floats apart,
    L grid outputs (OH rows of Wq, the last Wq - OW of each junk), scratch floats per worker."""
    Wq = (OW - 1) + K if s == 1 else OW + (K - 1) // 2
    Hq = OH + K - 1 if s == 1 else OH + (K - 1) // 2 + 1
    L = OH * Wq
    Lr = -(-L // (2 * VW)) * 2 * VW  # the compute loop runs two vectors at a time
    # Each plane: Hq rows, the spill of the last row's vector stores, and what the junk lanes of the
    # last grid vectors read past the rows (at most K + Lr - L + VW floats).
    PS = -(-(Hq * Wq + Lr - L + 3 * VW + K) // VW) * VW
    return Wq, PS, L, s * s * PS + Lr + VW


@inline
def _grid_fill(x, xo, g, P, Wq, PS, K, s):
    """The padded input plane x[xo:] into P: one plane of Hq rows of Wq floats at stride 1; at stride
    2 four phase planes PS apart, (row parity a, column parity b) at (2a + b) * PS, so every tap
    reads a contiguous run. Rows are written in order with whole vectors (zero padding from masked
    loads); each store spills into the next row, which is written after it."""
    H, W, OH, pt, pl = g[D_H], g[D_W], g[D_OH], g[D_PT], g[D_PL]
    z = vbroadcast(0.0)
    Hp = (OH - 1) * s + K
    for r in range(Hp):
        ih = r - pt
        if s == 1:
            o = r * Wq
            if ih < 0 or ih >= H:
                for j in range(0, Wq, VW):
                    vstore(P, o + j, z)
            else:
                for j in range(0, Wq, VW):
                    vstore(P, o + j, vload_row(x, xo + ih * W, j - pl, W))
        else:
            o = (r % 2) * 2 * PS + (r // 2) * Wq
            if ih < 0 or ih >= H:
                for j in range(0, Wq, VW):
                    vstore(P, o + j, z)
                    vstore(P, o + PS + j, z)
            else:
                for j in range(0, Wq, VW):
                    c = 2 * j - pl
                    e, d = vdeinterleave(vload_row(x, xo + ih * W, c, W), vload_row(x, xo + ih * W, c + VW, W))
                    vstore(P, o + j, e)
                    vstore(P, o + PS + j, d)


@inline
def _g3(P, a, odd, w0, w1, w2, j, s):
    """One kernel row of a 3-tap kernel at grid offset j: stride 1 reads a+j..a+j+2; stride 2 reads
    even columns at a (taps 0 and 2) and odd ones at a + odd (tap 1)."""
    if s == 1:
        return vfence(vfma(w2, vload(P, a + j + 2), vfma(w1, vload(P, a + j + 1), vmul(w0, vload(P, a + j)))))
    return vfence(vfma(w2, vload(P, a + j + 1), vfma(w1, vload(P, a + odd + j), vmul(w0, vload(P, a + j)))))


@inline
def _gvec(P, Wq, PS, K, s, w, k, w0, w1, w2, w3, w4, w5, w6, w7, w8, j):
    """VW grid outputs at offset j: kernel row ki reads phase row parity ki % s, ki // s rows down
    (stride 1: ki rows down), one fenced partial sum per kernel row."""
    if K == 3 and s == 1:
        r0 = _g3(P, 0, 0, w0, w1, w2, j, 1)
        r1 = _g3(P, Wq, 0, w3, w4, w5, j, 1)
        r2 = _g3(P, 2 * Wq, 0, w6, w7, w8, j, 1)
        return vadd(vadd(r0, r1), r2)
    if K == 3:
        r0 = _g3(P, 0, PS, w0, w1, w2, j, 2)
        r1 = _g3(P, 2 * PS, PS, w3, w4, w5, j, 2)
        r2 = _g3(P, Wq, PS, w6, w7, w8, j, 2)
        return vadd(vadd(r0, r1), r2)
    if s == 1:
        r01 = vadd(_k5s1(P, 0, w, k, j), _k5s1(P, Wq, w, k + 5, j))
        r23 = vadd(_k5s1(P, 2 * Wq, w, k + 10, j), _k5s1(P, 3 * Wq, w, k + 15, j))
        return vadd(vadd(r01, r23), _k5s1(P, 4 * Wq, w, k + 20, j))
    r01 = vadd(_k5s2(P, 0, PS, w, k, j), _k5s2(P, 2 * PS, PS, w, k + 5, j))
    r23 = vadd(_k5s2(P, Wq, PS, w, k + 10, j), _k5s2(P, 2 * PS + Wq, PS, w, k + 15, j))
    return vadd(vadd(r01, r23), _k5s2(P, 2 * Wq, PS, w, k + 20, j))


@kernel
def _plane_grid(x, w, bias, out, g, buf, pidx, code, p, q, K, s):
    """Output plane pidx of a KxK kernel (3 or 5) at stride s (1 or 2) for small planes: the padded
    input (or its phase planes) is filled, then the OH x Wq output grid is computed as one flat run
    of vectors (row ends are junk lanes), so a 7-wide row does not leave most of a vector idle as
    in _plane_rows; then the OW valid outputs of each grid row are stored with the activation."""
    H, W, OH, OW = g[D_H], g[D_W], g[D_OH], g[D_OW]
    Wq = (OW - 1) + K if s == 1 else OW + (K - 1) // 2
    Hq = OH + K - 1 if s == 1 else OH + (K - 1) // 2 + 1
    L = OH * Wq
    Lr = (L + 2 * VW - 1) // (2 * VW) * (2 * VW)
    PS = (Hq * Wq + Lr - L + 3 * VW + K + VW - 1) // VW * VW
    P = buf[:s * s * PS]
    t = buf[s * s * PS:s * s * PS + Lr + VW]
    m = pidx % bias.size
    _grid_fill(x, (pidx // g[D_MULT]) * H * W, g, P, Wq, PS, K, s)
    k = m * K * K
    w0, w1, w2 = vbroadcast_at(w, k), vbroadcast_at(w, k + 1), vbroadcast_at(w, k + 2)
    w3, w4, w5 = vbroadcast_at(w, k + 3), vbroadcast_at(w, k + 4), vbroadcast_at(w, k + 5)
    w6, w7, w8 = vbroadcast_at(w, k + 6), vbroadcast_at(w, k + 7), vbroadcast_at(w, k + 8)
    for j in range(0, Lr, 2 * VW):
        v0 = _gvec(P, Wq, PS, K, s, w, k, w0, w1, w2, w3, w4, w5, w6, w7, w8, j)
        v1 = _gvec(P, Wq, PS, K, s, w, k, w0, w1, w2, w3, w4, w5, w6, w7, w8, j + VW)
        vstore(t, j, v0)
        vstore(t, j + VW, v1)
    b = vbroadcast_at(bias, m)
    lo, hi = -np.inf, np.inf
    if code == RELU:
        lo = 0.0
    elif code == CLIP:
        lo, hi = p, q
    # Rows in order with whole vectors: a store past a row's end is overwritten by the next row;
    # only stores that would pass the plane's end are masked (the next plane may be another worker's).
    o = pidx * OH * OW
    n = OH * OW
    for oh in range(OH):
        for j in range(0, OW, VW):
            v = vclamp(vadd(vload(t, oh * Wq + j), b), lo, hi)
            if oh * OW + j + VW <= n:
                vstore(out, o + oh * OW + j, v)
            else:
                vstore_n(out, o + oh * OW + j, v, min(VW, OW - j))
    if code > CLIP:
        for j in range(OH * OW):
            out[o + j] = apply_act(out[o + j], code, p, q)


MODE_GENERIC, MODE_ROWS, MODE_GRID = 0, 1, 2


@inline
def _planes(x, w, bias, out, g, buf, p0, p1, mode, code, p, q):
    """Output planes p0..p1-1 with scratch row ``buf``."""
    for pidx in range(p0, p1):
        if mode == MODE_GRID:
            if g[D_KH] == 3 and g[D_SW] == 1:
                _plane_grid(x, w, bias, out, g, buf, pidx, code, p, q, 3, 1)
            elif g[D_KH] == 3:
                _plane_grid(x, w, bias, out, g, buf, pidx, code, p, q, 3, 2)
            elif g[D_SW] == 1:
                _plane_grid(x, w, bias, out, g, buf, pidx, code, p, q, 5, 1)
            else:
                _plane_grid(x, w, bias, out, g, buf, pidx, code, p, q, 5, 2)
        elif mode == MODE_ROWS:
            # Literal kernel size and stride: a branch-free compiled version of each.
            if g[D_KH] == 3 and g[D_SW] == 1:
                _plane_rows(x, w, bias, out, g, buf, pidx, code, p, q, 3, 1)
            elif g[D_KH] == 3:
                _plane_rows(x, w, bias, out, g, buf, pidx, code, p, q, 3, 2)
            elif g[D_SW] == 1:
                _plane_rows(x, w, bias, out, g, buf, pidx, code, p, q, 5, 1)
            else:
                _plane_rows(x, w, bias, out, g, buf, pidx, code, p, q, 5, 2)
        else:
            _plane_phases(x, w, bias, out, g, buf, pidx, code, p, q)


@inline
def _planes_mt(x, w, bias, out, g, scratch, mode, code, p, q, work):
    """The planes in ITEMS_PER_WORKER contiguous chunks per worker, taken from the bands (work.py):
    on idle cores worker t computes the t-th band of planes, the band of output channels the sparse
    1x1 before it wrote on the same core; a worker on a busy core leaves chunks to the other.
    Contiguous planes, not every T-th: with every other plane two workers wrote the cache lines
    where neighbouring small planes meet (a 7x7 plane is 196 bytes)."""
    P = g[D_PLANES]
    n = min(P, ITEMS_PER_WORKER * work[0])
    start_work(work)
    for t in prange(work[0]):
        it = take(work, t, n)
        while it >= 0:
            _planes(x, w, bias, out, g, scratch[t], P * it // n, P * (it + 1) // n, mode, code, p, q)
            it = take(work, t, n)


@kernel
def f32_dwconv_direct(x, w, bias, out, g, scratch, code, p, q):
    """Depthwise 3x3 or 5x5 at stride 1 or 2 (same on both axes), no dilation, any pads."""
    _planes(x, w, bias, out, g, scratch[0], np.int64(0), g[D_PLANES], MODE_ROWS, code, p, q)


@kernel(parallel=True)
def f32_dwconv_direct_mt(x, w, bias, out, g, scratch, code, p, q, work):
    """``f32_dwconv_direct`` by work[0] workers (scratch row t for worker t)."""
    _planes_mt(x, w, bias, out, g, scratch, MODE_ROWS, code, p, q, work)


@kernel
def f32_dwconv_generic(x, w, bias, out, g, scratch, code, p, q):
    """Depthwise with any kernel size, stride, dilation and pads, through phase planes."""
    _planes(x, w, bias, out, g, scratch[0], np.int64(0), g[D_PLANES], MODE_GENERIC, code, p, q)


@kernel(parallel=True)
def f32_dwconv_generic_mt(x, w, bias, out, g, scratch, code, p, q, work):
    """``f32_dwconv_generic`` by work[0] workers (scratch row t for worker t)."""
    _planes_mt(x, w, bias, out, g, scratch, MODE_GENERIC, code, p, q, work)


@kernel
def f32_dwconv_grid(x, w, bias, out, g, scratch, code, p, q):
    """Depthwise 3x3 or 5x5 at stride 1 or 2, no dilation, on small planes (flat output grid)."""
    _planes(x, w, bias, out, g, scratch[0], np.int64(0), g[D_PLANES], MODE_GRID, code, p, q)


@kernel(parallel=True)
def f32_dwconv_grid_mt(x, w, bias, out, g, scratch, code, p, q, work):
    """``f32_dwconv_grid`` by work[0] workers (scratch row t for worker t)."""
    _planes_mt(x, w, bias, out, g, scratch, MODE_GRID, code, p, q, work)


# --- small planes, VW channels at a time: channels in the vector lanes ------------------------------
def cvec_layout(H, W, OH, OW, kh, kw, sh, sw, pt, pl, VW=VW):
    """(Hp, Wp, scratch floats per worker) of the channel-vector path: the padded input of VW channels
    pixel-major [Hp][Wp][VW] (zero borders) and the output [OH*OW][VW] before it is written back."""
    Hp, Wp = max(H + pt, (OH - 1) * sh + kh), max(W + pl, (OW - 1) * sw + kw)
    return Hp, Wp, Hp * Wp * VW + OH * OW * VW


def pack_cvec(w: np.ndarray, b: np.ndarray, VW=VW):
    """Weights [M, kh*kw] -> [ceil(M/VW)][kh*kw][VW] and bias [M] -> [ceil(M/VW)*VW] (zero lanes past M)."""
    M, KK = w.shape
    nb = -(-M // VW)
    wp = np.zeros((nb * VW, KK), np.float32)
    wp[:M] = w
    bp = np.zeros(nb * VW, np.float32)
    bp[:M] = b
    return np.ascontiguousarray(wp.reshape(nb, VW, KK).transpose(0, 2, 1)).reshape(-1), bp


@inline
def _cv_tap4(T, wp, wo, Wp, K, y, x, dx, b):
    """Four outputs at padded positions (y, x + i*dx), i < 4: each weight vector loaded once for all
    four (four independent FMA chains)."""
    a0 = b
    a1 = b
    a2 = b
    a3 = b
    for ki in range(K):
        for kj in range(K):
            wv = vload(wp, wo + (ki * K + kj) * VW)
            o = ((y + ki) * Wp + x + kj) * VW
            a0 = vfma(wv, vload(T, o), a0)
            a1 = vfma(wv, vload(T, o + dx * VW), a1)
            a2 = vfma(wv, vload(T, o + 2 * dx * VW), a2)
            a3 = vfma(wv, vload(T, o + 3 * dx * VW), a3)
    return a0, a1, a2, a3


@inline
def _cv_tap(T, wp, wo, Wp, K, y, x, acc):
    """acc + sum over the KxK taps at padded position (y, x) (K literal 3 or 5)."""
    for ki in range(K):
        for kj in range(K):
            acc = vfma(vload(wp, wo + (ki * K + kj) * VW), vload(T, ((y + ki) * Wp + x + kj) * VW), acc)
    return acc


@kernel
def _cvec_block(x, wp, bp, out, g, buf, blk, code, p, q, K):
    """Channels c0 = cb*VW .. c0+VW-1 of image n (blk = n * nblocks + cb; here g[D_PLANES] is the
    channel count, not planes, and the batch is out.size // (C*OH*OW)): transpose the planes into
    the padded pixel-major buffer, compute every output pixel as VW lanes with four pixels in flight
    (independent FMA chains), then write the planes back with the activation."""
    C, H, W, OH, OW = g[D_PLANES], g[D_H], g[D_W], g[D_OH], g[D_OW]
    sh, sw, pt, pl = g[D_SH], g[D_SW], g[D_PT], g[D_PL]
    nb = (C + VW - 1) // VW
    n = blk // nb
    cb = blk - n * nb
    c0 = cb * VW
    nc = min(VW, C - c0)
    Hp = max(H + pt, (OH - 1) * sh + K)
    Wp = max(W + pl, (OW - 1) * sw + K)
    T = buf[:Hp * Wp * VW]
    U = buf[Hp * Wp * VW:Hp * Wp * VW + OH * OW * VW]
    # Lanes past the last channel read the last channel again (their results are never stored), so
    # every pixel is one fixed-length loop over VW lanes: a gather where the CPU has one.
    HW = H * W
    base = (n * C + c0) * HW
    last = (nc - 1) * HW
    for ih in range(H):
        for iw in range(W):
            d = T[((ih + pt) * Wp + pl + iw) * VW:((ih + pt) * Wp + pl + iw + 1) * VW]
            s0 = base + ih * W + iw
            for lane in range(VW):
                d[lane] = x[s0 + min(lane * HW, last)]
    wo = cb * K * K * VW
    b = vload(bp, c0)
    lo, hi = -np.inf, np.inf
    if code == RELU:
        lo = 0.0
    elif code == CLIP:
        lo, hi = p, q
    for oh in range(OH):
        y = oh * sh
        ow = 0
        while ow + 4 <= OW:
            a0, a1, a2, a3 = _cv_tap4(T, wp, wo, Wp, K, y, ow * sw, sw, b)
            o = (oh * OW + ow) * VW
            vstore(U, o, vclamp(a0, lo, hi))
            vstore(U, o + VW, vclamp(a1, lo, hi))
            vstore(U, o + 2 * VW, vclamp(a2, lo, hi))
            vstore(U, o + 3 * VW, vclamp(a3, lo, hi))
            ow += 4
        while ow < OW:
            vstore(U, (oh * OW + ow) * VW, vclamp(_cv_tap(T, wp, wo, Wp, K, y, ow * sw, b), lo, hi))
            ow += 1
    P = OH * OW
    for lane in range(nc):
        dst = out[(n * C + c0 + lane) * P:(n * C + c0 + lane + 1) * P]
        if code > CLIP:
            for i in range(P):
                dst[i] = apply_act(U[i * VW + lane], code, p, q)
        else:
            for i in range(P):
                dst[i] = U[i * VW + lane]


@inline
def _cvec_blocks(x, wp, bp, out, g, scratch, t, T):
    """Worker t's scratch row, zeroed."""
    buf = scratch[t]
    # Borders of the padded buffer are never written: zero it once per call.
    for i in range(buf.size):
        buf[i] = 0.0
    return buf


@kernel
def f32_dwconv_cvec(x, wp, bp, out, g, scratch, code, p, q):
    """Depthwise 3x3 or 5x5, any stride and pads, no dilation or channel multiplier, on small planes:
    VW channels per vector (weights and bias packed by ``pack_cvec``); scratch [1, cvec_layout()[2]]."""
    buf = _cvec_blocks(x, wp, bp, out, g, scratch, np.int64(0), np.int64(1))
    nblk = ((g[D_PLANES] + VW - 1) // VW) * (out.size // (g[D_PLANES] * g[D_OH] * g[D_OW]))
    for blk in range(nblk):
        if g[D_KH] == 3:
            _cvec_block(x, wp, bp, out, g, buf, blk, code, p, q, 3)
        else:
            _cvec_block(x, wp, bp, out, g, buf, blk, code, p, q, 5)


@kernel(parallel=True)
def f32_dwconv_cvec_mt(x, wp, bp, out, g, scratch, code, p, q):
    """``f32_dwconv_cvec`` with the channel blocks split over scratch.shape[0] workers."""
    T = scratch.shape[0]
    nblk = ((g[D_PLANES] + VW - 1) // VW) * (out.size // (g[D_PLANES] * g[D_OH] * g[D_OW]))
    for t in prange(T):
        buf = _cvec_blocks(x, wp, bp, out, g, scratch, t, T)
        for blk in range(t * nblk // T, (t + 1) * nblk // T):
            if g[D_KH] == 3:
                _cvec_block(x, wp, bp, out, g, buf, blk, code, p, q, 3)
            else:
                _cvec_block(x, wp, bp, out, g, buf, blk, code, p, q, 5)
