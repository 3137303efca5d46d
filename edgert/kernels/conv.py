"""Convolution kernels beyond the plain GEMMs: direct convolution on padded input rows (small-channel
convolutions such as a network's stem) and transposed convolution as GEMM + col2im.

Direct convolution on rows (``f32_conv_rows``). For one output row, the C/g*kh input rows it
reads are copied once, zero-padded and (stride 2) split into even and odd columns, into a row buffer.
Row k = (c, ki, kj) of the im2col matrix restricted to that output row is then a contiguous run of
the buffer, at offset koff[k] (geometry field G_KOFF on): the GEMM micro-kernel reads it in place,
so there is no per-panel im2col gather. It pays off when K = C/g*kh*kw is small (the gather then
costs as much as the arithmetic) and output rows are long enough to fill whole panels. Buffer
layout: row (c, ki, phase b) at ((c*kh + ki)*sw + b) * RW, RW = g[G_LDB].

Transposed convolution as GEMM + col2im.

For one image and group g, every input pixel scatters W[c, m, ki, kj] * x[c, ih, iw] to output
pixel (ih*sh - pt + ki*dh, iw*sw - pl + kj*dw). The products summed over c form a GEMM:

    cols[(m, ki, kj), (ih, iw)] = sum_c W[g*C/g + c, m, ki, kj] * x[g*C/g + c, ih, iw]

(A = the group's weights transposed, packed in prepare; B = the input planes, read as rows), and
col2im then adds each row of ``cols`` into its output plane at the shifted, strided positions.
The output starts as the bias and gets the activation at the end.

Layouts: x [N, C, H, W], out [N, M, OH, OW] flat; ``cols`` scratch holds one image: [G][R][H*W] with
R = (M/G)*kh*kw. ``ct`` is the col2im geometry (int64):

    ct = [N, C, H, W, M, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw, G]
"""

from __future__ import annotations

import numpy as np

from ._jit import inline, kernel, prange
from .act import NONE, SIGMOID, apply_act
from .gemm import (
    B_ROWS,
    G_A_GS,
    G_A_IS,
    G_B_GS,
    G_B_IS,
    G_BIAS_GS,
    G_BIAS_MODE,
    G_K,
    G_LDB,
    G_LDY,
    G_M,
    G_MCHUNKS,
    G_N,
    G_NGRP,
    G_NIMG,
    G_Y_GS,
    G_Y_IS,
    MR,
    gemm_worker,
    tile1,
    tile8,
)
from .im2col import IM_C, IM_DH, IM_H, IM_KH, IM_OW, IM_PL, IM_PT, IM_SH, IM_SW, IM_W, NR, valid_range
from .simd import VW, vbroadcast, vdeinterleave, vload_row, vstore


@kernel
def _fill_rows(x, xo, g, oh, buf, bo):
    """The padded input rows output row oh reads, into buf[bo:] (layout in the module docstring)."""
    C, H, W, kh, sh, sw = g[IM_C], g[IM_H], g[IM_W], g[IM_KH], g[IM_SH], g[IM_SW]
    pt, pl, dh, RW = g[IM_PT], g[IM_PL], g[IM_DH], g[G_LDB]
    z = vbroadcast(0.0)
    for c in range(C):
        for ki in range(kh):
            ih = oh * sh - pt + ki * dh
            o = bo + (c * kh + ki) * sw * RW
            src = xo + (c * H + ih) * W
            if ih < 0 or ih >= H:
                for j in range(0, sw * RW, VW):
                    vstore(buf, o + j, z)
            elif sw == 1:
                for j in range(0, RW, VW):
                    vstore(buf, o + j, vload_row(x, src, j - pl, W))
            else:
                for j in range(0, RW, VW):
                    e, d = vdeinterleave(vload_row(x, src, 2 * j - pl, W), vload_row(x, src, 2 * j - pl + VW, W))
                    vstore(buf, o + j, e)
                    vstore(buf, o + RW + j, d)


@kernel
def conv_rows_worker(t, T, a, x, bias, y, g, buf, code, p, q):
    """Worker t of T of the direct convolution: items are (image, group, output row, row-block chunk)."""
    M, K, OW = g[G_M], g[G_K], g[IM_OW]
    OH = g[G_N] // OW
    n_grp, mchunks, ldy, bmode = g[G_NGRP], g[G_MCHUNKS], g[G_LDY], g[G_BIAS_MODE]
    mblocks = (M + MR - 1) // MR
    per_mat = OH * mchunks
    tile = buf[:MR * NR]
    for it in range(t, g[G_NIMG] * n_grp * per_mat, T):
        mat = it // per_mat
        oh = (it - mat * per_mat) // mchunks
        mc = it - mat * per_mat - oh * mchunks
        img = mat // n_grp
        grp = mat - img * n_grp
        _fill_rows(x, img * g[G_B_IS] + grp * g[G_B_GS], g, oh, buf, MR * NR)
        ao = img * g[G_A_IS] + grp * g[G_A_GS]
        yo = img * g[G_Y_IS] + grp * g[G_Y_GS] + oh * OW
        bg = grp * g[G_BIAS_GS]
        for mb in range(mc * mblocks // mchunks, (mc + 1) * mblocks // mchunks):
            m0 = mb * MR
            rows = min(MR, M - m0)
            for ow0 in range(0, OW, NR):
                n = min(NR, OW - ow0)
                if rows >= 4:
                    tile8(a, ao + m0 * K, rows, buf, MR * NR + ow0, g, K, bias, bmode, bg + m0, bg,
                           y, yo + m0 * ldy + ow0, ldy, n, tile, code, p, q)
                else:
                    for r in range(rows):
                        tile1(a, ao + m0 * K + r, buf, MR * NR + ow0, g, K, bias, bmode, bg + m0 + r, bg,
                               y, yo + (m0 + r) * ldy + ow0, n, tile, code, p, q)


@kernel
def f32_conv_rows(a, asrc, x, bias, y, g, scratch, code, p, q):
    """Direct convolution on padded rows (module docstring); the signature of the GEMM kernels
    (asrc unused: the weights are packed in prepare)."""
    conv_rows_worker(np.int64(0), np.int64(1), a, x, bias, y, g, scratch[0], code, p, q)


@kernel(parallel=True)
def f32_conv_rows_mt(a, asrc, x, bias, y, g, scratch, code, p, q):
    """``f32_conv_rows`` with scratch.shape[0] workers under prange."""
    T = scratch.shape[0]
    for t in prange(T):
        conv_rows_worker(t, T, a, x, bias, y, g, scratch[t], code, p, q)


def rows_layout(OW, kw, sw, dw) -> tuple:
    """(RW, koff column part): floats per buffered row phase, and for each kj its (phase, shift)."""
    RW = (-(-OW // NR) * NR + (kw - 1) * dw // sw + VW - 1) // VW * VW
    return RW, [((kj * dw) % sw, (kj * dw) // sw) for kj in range(kw)]


(CT_N, CT_C, CT_H, CT_W, CT_M, CT_OH, CT_OW, CT_KH, CT_KW, CT_SH, CT_SW, CT_PT, CT_PL, CT_DH, CT_DW,
 CT_G) = range(16)
CT_GEOMETRY_LEN = 16


@kernel
def _col2im_plane(cols, out, bias, ct, img, m, code, p, q):
    """Output plane (img, m) = bias[m] + its kh*kw rows of ``cols`` scattered, then the activation."""
    H, W, M, OH, OW = ct[CT_H], ct[CT_W], ct[CT_M], ct[CT_OH], ct[CT_OW]
    kh, kw, sh, sw = ct[CT_KH], ct[CT_KW], ct[CT_SH], ct[CT_SW]
    pt, pl, dh, dw = ct[CT_PT], ct[CT_PL], ct[CT_DH], ct[CT_DW]
    o = out[(img * M + m) * OH * OW:(img * M + m + 1) * OH * OW]
    b = bias[m] if bias.size == M else 0.0
    for i in range(OH * OW):
        o[i] = b
    # Row (m, ki, kj) of the group's block of cols: groups are consecutive, so it is row m*kh*kw + ...
    for ki in range(kh):
        for kj in range(kw):
            crow = (m * kh + ki) * kw + kj
            off = kj * dw - pl
            # Input columns iw whose output column iw*sw + off lies inside [0, OW).
            lo, hi = valid_range(off, sw, OW, 0, W)
            if hi <= lo:
                continue
            for ih in range(H):
                oh = ih * sh - pt + ki * dh
                if oh < 0 or oh >= OH:
                    continue
                src = cols[(crow * H + ih) * W + lo:(crow * H + ih) * W + hi]
                dst = o[oh * OW + lo * sw + off:oh * OW + (hi - 1) * sw + off + 1]
                if sw == 1:
                    for t in range(hi - lo):
                        dst[t] += src[t]
                else:
                    for t in range(hi - lo):
                        dst[t * sw] += src[t]
    if code != NONE:
        for i in range(OH * OW):
            o[i] = apply_act(o[i], code, p, q)


@kernel
def f32_convtranspose_col2im(a, x, bias, out, g, ct, cols, scratch, code, p, q):
    """ConvTranspose, one image at a time: GEMM into ``cols`` (geometry g, one image), then col2im.
    a: packed transposed weights; bias: [M] or one dummy element when absent."""
    N, C, H, W, M = ct[CT_N], ct[CT_C], ct[CT_H], ct[CT_W], ct[CT_M]
    zero, one = np.int64(0), np.int64(1)
    for img in range(N):
        gemm_worker(zero, one, a, x, bias, cols, g, scratch[0], img * C * H * W, zero, np.int64(B_ROWS),
                    np.int64(NONE), 0.0, 0.0)
        for m in range(M):
            _col2im_plane(cols, out, bias, ct, img, m, code, p, q)


@kernel(parallel=True)
def f32_convtranspose_col2im_mt(a, x, bias, out, g, ct, cols, scratch, code, p, q):
    """``f32_convtranspose_col2im`` with the GEMM over scratch.shape[0] workers and col2im over planes."""
    N, C, H, W, M = ct[CT_N], ct[CT_C], ct[CT_H], ct[CT_W], ct[CT_M]
    T = scratch.shape[0]
    zero = np.int64(0)
    for img in range(N):
        for t in prange(T):
            gemm_worker(t, T, a, x, bias, cols, g, scratch[t], img * C * H * W, zero, np.int64(B_ROWS),
                        np.int64(NONE), 0.0, 0.0)
        for m in prange(M):
            _col2im_plane(cols, out, bias, ct, img, m, code, p, q)


# --- ConvTranspose with kernel == stride: every input pixel owns one kh x kw output block -------------
@inline
def _sigmoid_rows(t, ef, n):
    """t[i] = 1 / (1 + exp(-t[i])) for i < n in loops LLVM vectorises (a libm exp per element is
    scalar: 2.6 ns each, 0.17 ms for selfie_segmentation's 256x256 mask). exp(z) = 2^k * exp(r) with
    k = round(z / ln 2), r = z - k ln 2 (|r| <= ln 2 / 2, ln 2 in two parts), exp(r) by its Taylor
    series to r^8 (relative error < 1e-8); 2^k is built in the exponent bits of the scratch ``ef``
    (float32, written through an int32 view). z is clamped to [-87, 87] so 2^k stays a normal
    float; NaN stays NaN."""
    ei = ef.view(np.int32)
    for i in range(n):
        v = t[i]
        z = min(max(-v, np.float32(-87.0)), np.float32(87.0))
        k = np.floor(z * np.float32(1.4426950408889634) + np.float32(0.5))
        r = z - k * np.float32(0.693145751953125) - k * np.float32(1.428606765330187e-06)
        q = np.float32(1.0) + r * (np.float32(1.0) + r * (np.float32(0.5) + r * (
            np.float32(1.0 / 6.0) + r * (np.float32(1.0 / 24.0) + r * (np.float32(1.0 / 120.0) + r * (
                np.float32(1.0 / 720.0) + r * (np.float32(1.0 / 5040.0) + r * np.float32(1.0 / 40320.0))))))))
        ei[i] = (np.int32(k) + np.int32(127)) << np.int32(23)
        t[i] = q if v == v else v
    for i in range(n):
        t[i] = np.float32(1.0) / (np.float32(1.0) + t[i] * ef[i])


@kernel
def _blocks_row(x, w, bias, out, ct, t, ef, n, m, ih, ki, code, p, q):
    """Output row ih*kh + ki of plane (n, m): for each kj the W products of input row ih, summed over
    channels into t[kj*W:(kj+1)*W], then the activation, then interleaved into the output row."""
    C, H, W, M, OH, OW = ct[CT_C], ct[CT_H], ct[CT_W], ct[CT_M], ct[CT_OH], ct[CT_OW]
    kh, kw = ct[CT_KH], ct[CT_KW]
    b = bias[m] if bias.size == M else np.float32(0.0)
    for kj in range(kw):
        acc = t[kj * W:(kj + 1) * W]
        for iw in range(W):
            acc[iw] = b
        for c in range(C):
            wv = w[((c * M + m) * kh + ki) * kw + kj]
            xr = x[((n * C + c) * H + ih) * W:((n * C + c) * H + ih + 1) * W]
            for iw in range(W):
                acc[iw] += wv * xr[iw]
    L = kw * W
    if code == SIGMOID:
        _sigmoid_rows(t, ef, L)
    elif code != NONE:
        for i in range(L):
            t[i] = apply_act(t[i], code, p, q)
    o = ((n * M + m) * OH + ih * kh + ki) * OW
    orow = out[o:o + OW]
    for iw in range(W):
        for kj in range(kw):
            orow[iw * kw + kj] = t[kj * W + iw]


@inline
def _blocks(x, w, bias, out, ct, buf, t, T, code, p, q):
    N, H, M, kh, W, kw = ct[CT_N], ct[CT_H], ct[CT_M], ct[CT_KH], ct[CT_W], ct[CT_KW]
    rows = N * M * H * kh
    tb = buf[:kw * W]
    ef = buf[kw * W:2 * kw * W]
    for it in range(t * rows // T, (t + 1) * rows // T):
        ki = it % kh
        ih = (it // kh) % H
        m = (it // (kh * H)) % M
        n = it // (kh * H * M)
        _blocks_row(x, w, bias, out, ct, tb, ef, n, m, ih, ki, code, p, q)


@kernel
def f32_convtranspose_blocks(x, w, bias, out, ct, scratch, code, p, q):
    """ConvTranspose with kernel == stride, no pads/dilation/groups (a learned 2x upsampler): output
    block (ih, iw) of plane m is W[:, m] . x[:, ih, iw], so there is no overlap to add up and no GEMM
    with 4 rows. x [N, C, H, W], w [C, M, kh, kw] as in ONNX, bias [M] (or one dummy element);
    scratch: [1, 2*kw*W]."""
    _blocks(x, w, bias, out, ct, scratch[0], np.int64(0), np.int64(1), code, p, q)


@kernel(parallel=True)
def f32_convtranspose_blocks_mt(x, w, bias, out, ct, scratch, code, p, q):
    """``f32_convtranspose_blocks`` with the output rows split over scratch.shape[0] workers."""
    T = scratch.shape[0]
    for t in prange(T):
        _blocks(x, w, bias, out, ct, scratch[t], t, T, code, p, q)
