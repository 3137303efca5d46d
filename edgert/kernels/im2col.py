"""Panel packers: the B operand of the GEMM micro-kernel, one panel of NR output pixels at a time.

A panel is ``bp[k*NR + j]`` for k < K and j < NR: row k of B restricted to the panel's columns,
contiguous so the micro-kernel reads two vectors per k. Columns past the end of B (j >= n) are
zero, so a partial panel computes zeros that the tile store then drops.

``pack_rows`` copies from a row-major [K, ldb] matrix (1x1 convolution: B = X[C, H*W]).
``pack_im2col`` gathers the convolution taps of NR output pixels straight into the panel (im2col
without an im2col buffer): k = (c*kh + ki)*kw + kj matches the weight layout W[M, C/g, kh, kw].

Inner loops index row views from offset 0 (``d = bp[a:b]; d[t]``) so LLVM can prove the index is
non-negative and vectorise the copy (see pool.py).
"""

from __future__ import annotations

from ._jit import inline, kernel
from .simd import VW, vdeinterleave, vload, vstore

# Panel width: two vectors (the micro-kernel's NV) per tile row.
NR = 2 * VW

# Fields of the im2col geometry (int64 array), after the GEMM fields: see gemm.G_* for those.
IM_C, IM_H, IM_W, IM_OW, IM_KH, IM_KW, IM_SH, IM_SW, IM_PT, IM_PL, IM_DH, IM_DW = range(21, 33)


@kernel
def pack_rows(x, xo, ldb, K, p0, n, bp):
    """bp[k*NR + j] = x[xo + k*ldb + p0 + j] for j < n; zero for n <= j < NR."""
    for k in range(K):
        d = bp[k * NR:(k + 1) * NR]
        s = x[xo + k * ldb + p0:xo + k * ldb + p0 + n]
        for j in range(n):
            d[j] = s[j]
        for j in range(n, NR):
            d[j] = 0.0


@inline
def valid_range(off, sw, W, o0, o1):
    """The output columns in [o0, o1) whose input column ``ow*sw + off`` lies in [0, W), as [lo, hi)."""
    lo = o0 if off >= 0 else min(o1, max(o0, (-off + sw - 1) // sw))
    last = W - 1 - off
    if last < 0:
        return lo, lo
    return lo, max(lo, min(o1, last // sw + 1))


@inline
def _gather(x, src, s, n, row_end, bp, do):
    """bp[do + t] = x[src + t*s] for t < n, with vector copies (stride 1) or deinterleaving loads
    (stride 2) while whole vectors stay inside the input row (which ends at x[row_end - 1])."""
    t = 0
    if s == 1:
        while t + VW <= n:
            vstore(bp, do + t, vload(x, src + t))
            t += VW
    elif s == 2:
        while t + VW <= n and src + 2 * (t + VW) <= row_end:
            even, _ = vdeinterleave(vload(x, src + 2 * t), vload(x, src + 2 * t + VW))
            vstore(bp, do + t, even)
            t += VW
    while t < n:
        bp[do + t] = x[src + t * s]
        t += 1


@kernel
def pack_im2col(x, xo, g, p0, n, bp):
    """Panel of the im2col matrix of one group's input planes ``x[xo:]`` ([C/g, H, W] contiguous).

    bp[k*NR + j] = x[c, oh*sh - pt + ki*dh, ow*sw - pl + kj*dw] for output pixel p0 + j = oh*OW + ow,
    k = (c*kh + ki)*kw + kj; zero where the tap falls in the padding and for j >= n. Plain index
    arithmetic and vector copies (no array slices: each one costs reference-count updates).
    """
    C, H, W, OW = g[IM_C], g[IM_H], g[IM_W], g[IM_OW]
    kh, kw, sh, sw = g[IM_KH], g[IM_KW], g[IM_SH], g[IM_SW]
    pt, pl, dh, dw = g[IM_PT], g[IM_PL], g[IM_DH], g[IM_DW]
    K = C * kh * kw
    if n < NR:
        for k in range(K):
            for j in range(n, NR):
                bp[k * NR + j] = 0.0
    j0 = 0
    while j0 < n:
        # One segment: the panel's pixels that lie in output row oh, columns [ow0, ow1).
        p = p0 + j0
        oh = p // OW
        ow0 = p - oh * OW
        ow1 = min(OW, ow0 + n - j0)
        seg = ow1 - ow0
        for kj in range(kw):
            # The valid columns depend on the kernel column only: one division per (segment, kj).
            off = kj * dw - pl
            lo, hi = valid_range(off, sw, W, ow0, ow1)
            for c in range(C):
                for ki in range(kh):
                    do = ((c * kh + ki) * kw + kj) * NR + j0
                    ih = oh * sh - pt + ki * dh
                    if ih < 0 or ih >= H or hi <= lo:
                        for t in range(seg):
                            bp[do + t] = 0.0
                        continue
                    for t in range(lo - ow0):
                        bp[do + t] = 0.0
                    for t in range(hi - ow0, seg):
                        bp[do + t] = 0.0
                    row = xo + (c * H + ih) * W
                    _gather(x, row + lo * sw + off, sw, hi - lo, row + W, bp, do + lo - ow0)
        j0 += seg
