"""Kernels for the channel-blocked layout (NCHWc): VW channels of a pixel are one vector.

Layout. A logical NCHW float32 tensor [N, C, H, W] is stored as a flat buffer [N][CB][H*W][VW],
CB = ceil(C / VW): element (n, c, h, w) is at ((n*CB + c // VW)*H*W + h*W + w)*VW + c % VW. Lanes
with c >= C are pad lanes. Kernels writing a blocked tensor write every lane of every block (pad
lanes get act(0 + 0) from zero weights and bias: finite); kernels reading one give correct real
lanes whatever finite values pad lanes hold (weights of pad input channels are packed as zeros).
This is onnxruntime's NCHWc layout (NCHW16c on AVX-512): no per-layer transposes, no GEMM panel
packing at run time, and depthwise convolutions vectorised over channels.

Kernels (arguments: 1-D C-contiguous float32 arrays, an int64 geometry ``g``, then the fused
activation ``code, p, q`` of act.py; relu and clip are applied in registers, other codes per lane
after the store):

* ``f32_to_blocked`` / ``f32_from_blocked`` (g = [N, C, P]): plain [N][C][P] <-> blocked.
* ``f32_blocked_conv1x1`` (g = [N, CBi, CBo, P, has_res] or [N, CBi, CBo, P, has_res, K]; the
  optional real input channel count K lets the last input block skip its pad lanes): 1x1 stride 1. Weights from
  ``pack_conv1x1``: [CBo][CBi*VW][VW]. Micro-kernel ``_c1_OBxPT``: OB output blocks x PT consecutive
  pixels with OB*PT accumulators in registers (4x6, 2x12, 1x24: 24 of the 32 vector registers of
  AVX-512 and NEON; with AVX2's 16, VW == 8, 2x6 and 1x12); per input channel k it loads OB weight
  vectors, broadcasts the PT pixels' x[k] and issues OB*PT FMAs. Work items are (image, pixel chunk, group of 4 output blocks); a chunk is
  a multiple of 24 pixels whose input (~32 KiB) stays in L1 while the group's tiles sweep it. A
  chunk's remainder of 6 pixels or more runs as one tile shifted back (it stores only its new
  pixels, so a residual that aliases ``out`` stays right), a smaller one as one-pixel tiles (OB
  independent chains).
* ``f32_blocked_dwconv`` (g = [N, CB, H, W, OH, OW, KH, KW, SH, SW, PT, PL]): depthwise, one vector
  per output pixel. 3x3/5x5 at stride 1 or 2 (square; kernel size and stride then literal):
  per output row, columns whose taps are all inside the input run in 8-pixel tiles (8 independent
  accumulators, each weight vector loaded once per tap for all of them, loads shared between taps
  folded by LLVM, kernel rows outside the input skipped per tile), edge columns one checked pixel
  at a time; rows with fewer than 8 interior columns (7x7, 14x14 at stride 2) run as 8-pixel tiles
  that check each tap's column. Any other kernel size or stride: checked tiles with run-time sizes.
* ``f32_blocked_conv`` (g = [N, C, CBo, H, W, OH, OW, KH, KW, SH, SW, PT, PL, DH, DW, in_blocked]):
  dense conv, group 1, input plain NCHW (a stem) or blocked. Weights from ``pack_conv``:
  [CBo][Ci][KH][KW][VW]. Micro-kernel ``_cv_OBxPT``: OB output blocks x PT consecutive output
  pixels of one row; per tap (ci, ki, kj) OB weight loads, PT broadcasts, OB*PT FMAs. Columns whose
  taps are inside the input run unchecked (kernel rows outside are skipped per tile), with the
  pixel step in x a constant for plain input at stride 2 (the stems: 2x faster than a run-time
  step); edge pixels go through checked one-pixel tiles. No scratch.
* ``f32_blocked_gap`` (g = [N, CB, P]): global average pool, blocked in and out ([N][CB][1][VW]),
  four independent sums per block.

The register tiles and their drivers are generated Python (``generate_tiles`` at the end of this
file; ``python -m edgert.kernels.blocked`` rewrites the section, a test checks it is current).

``_mt`` variants take the same arguments plus ``work`` (``work.work_counter``): T workers under
prange take items, their own band first, then what is left of the others' (work.py), so a worker
on a busy or slower core takes fewer items instead of holding up the region, as it would with
prange's static split. Items are numbered pixels (or rows) first, channels within, so on idle
cores each worker keeps the same band of every tensor in its cache.
"""

from __future__ import annotations

import numpy as np

from ._jit import inline, kernel, prange
from .act import CLIP, RELU, apply_act, vact
from .work import band_item, spans_per_plane, start_work, take, work_counter  # noqa: F401  (work_counter: the _mt kernels' argument)
from .simd import VW, vadd, vbroadcast, vbroadcast_at, vclamp, vfence, vfma, vload, vmul, vrelu, vstore

# Geometry fields.
C1_N, C1_CBI, C1_CBO, C1_P, C1_RES, C1_K = range(6)
(DW_N, DW_CB, DW_H, DW_W, DW_OH, DW_OW, DW_KH, DW_KW, DW_SH, DW_SW, DW_PT, DW_PL) = range(12)
(CV_N, CV_C, CV_CBO, CV_H, CV_W, CV_OH, CV_OW, CV_KH, CV_KW, CV_SH, CV_SW, CV_PT, CV_PL, CV_DH, CV_DW,
 CV_INB) = range(16)

C1_CHUNK_FLOATS = 8192  # input floats of one pixel chunk of the 1x1 conv (32 KiB: L1)
MT_ITEMS = 16  # the _mt kernels cut work into at least this many items where the shape allows


# The fused-activation code of PRelu with a per-channel slope (after act.py's codes): the conv tiles
# read the slope vector stored right after the bias (``pack_prelu_bias``); nothing else takes it.
PRELU = 8


@inline
def vprelu(v, neg_slope):
    """PRelu of a vector as relu(v) - slope * relu(-v), given -slope: exact for v >= 0 and v < 0
    alike; NaN stays NaN and infinities match numpy's where(v < 0, slope * v, v)."""
    return vfma(neg_slope, vrelu(vmul(v, vbroadcast(-1.0))), vrelu(v))


@inline
def _prelu_px(y, o, n, bias, bo):
    """PRelu over n pixel vectors y[o:o+n*VW] of one output block, with the slope vector stored at
    bias[len/2 + bo] (pack_prelu_bias): a tile's stores are still in L1. A loop per block of a tile
    rather than the slope in every store's registers: inlined in each of the tiles' ~200 stores
    that doubled the tiles' compile time (cold start 88 -> 155-172 s); as a called function instead
    of inlined it cost palm_detection_lite ~5% at 2 threads (a call per 6 pixels)."""
    ns = vmul(vload(bias, (bias.size >> 1) + bo), vbroadcast(-1.0))
    for i in range(n):
        vstore(y, o + i * VW, vprelu(vload(y, o + i * VW), ns))


@kernel
def _act_span(y, o, n, code, p, q):
    """The activation (beyond clip) over y[o:o+n]."""
    d = y[o:o + n]
    for i in range(n):
        d[i] = apply_act(d[i], code, p, q)


# --- generated micro-kernels (from generate_tiles: do not edit by hand) ---
@inline
def _c1_4x6(x, xo, KB, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, oo, OBS, skip, lim, code, p,
        q):
    """4 output blocks x 6 pixels of a 1x1 conv (generated, see _c1 in the module doc)."""
    b0 = vload(bias, bo + 0 * VW)
    b1 = vload(bias, bo + 1 * VW)
    b2 = vload(bias, bo + 2 * VW)
    b3 = vload(bias, bo + 3 * VW)
    a0_0 = b0
    a1_0 = b1
    a2_0 = b2
    a3_0 = b3
    a0_1 = b0
    a1_1 = b1
    a2_1 = b2
    a3_1 = b3
    a0_2 = b0
    a1_2 = b1
    a2_2 = b2
    a3_2 = b3
    a0_3 = b0
    a1_3 = b1
    a2_3 = b2
    a3_3 = b3
    a0_4 = b0
    a1_4 = b1
    a2_4 = b2
    a3_4 = b3
    a0_5 = b0
    a1_5 = b1
    a2_5 = b2
    a3_5 = b3
    for kb in range(KB):
        xk = xo + kb * XBS
        wk = wo + kb * (VW * VW)
        for l in range(VW if kb < KB - 1 else KL):  # the last block: its KL real input channels
            w0 = vload(w, wk + l * VW)
            w1 = vload(w, wk + l * VW + 1 * WOS)
            w2 = vload(w, wk + l * VW + 2 * WOS)
            w3 = vload(w, wk + l * VW + 3 * WOS)
            s = vbroadcast_at(x, xk + l)
            a0_0 = vfma(s, w0, a0_0)
            a1_0 = vfma(s, w1, a1_0)
            a2_0 = vfma(s, w2, a2_0)
            a3_0 = vfma(s, w3, a3_0)
            s = vbroadcast_at(x, xk + l + 1 * VW)
            a0_1 = vfma(s, w0, a0_1)
            a1_1 = vfma(s, w1, a1_1)
            a2_1 = vfma(s, w2, a2_1)
            a3_1 = vfma(s, w3, a3_1)
            s = vbroadcast_at(x, xk + l + 2 * VW)
            a0_2 = vfma(s, w0, a0_2)
            a1_2 = vfma(s, w1, a1_2)
            a2_2 = vfma(s, w2, a2_2)
            a3_2 = vfma(s, w3, a3_2)
            s = vbroadcast_at(x, xk + l + 3 * VW)
            a0_3 = vfma(s, w0, a0_3)
            a1_3 = vfma(s, w1, a1_3)
            a2_3 = vfma(s, w2, a2_3)
            a3_3 = vfma(s, w3, a3_3)
            s = vbroadcast_at(x, xk + l + 4 * VW)
            a0_4 = vfma(s, w0, a0_4)
            a1_4 = vfma(s, w1, a1_4)
            a2_4 = vfma(s, w2, a2_4)
            a3_4 = vfma(s, w3, a3_4)
            s = vbroadcast_at(x, xk + l + 5 * VW)
            a0_5 = vfma(s, w0, a0_5)
            a1_5 = vfma(s, w1, a1_5)
            a2_5 = vfma(s, w2, a2_5)
            a3_5 = vfma(s, w3, a3_5)
    if has_res == 1:
        a0_0 = vadd(a0_0, vload(r, oo + 0 * OBS + 0 * VW))
        a1_0 = vadd(a1_0, vload(r, oo + 1 * OBS + 0 * VW))
        a2_0 = vadd(a2_0, vload(r, oo + 2 * OBS + 0 * VW))
        a3_0 = vadd(a3_0, vload(r, oo + 3 * OBS + 0 * VW))
        a0_1 = vadd(a0_1, vload(r, oo + 0 * OBS + 1 * VW))
        a1_1 = vadd(a1_1, vload(r, oo + 1 * OBS + 1 * VW))
        a2_1 = vadd(a2_1, vload(r, oo + 2 * OBS + 1 * VW))
        a3_1 = vadd(a3_1, vload(r, oo + 3 * OBS + 1 * VW))
        a0_2 = vadd(a0_2, vload(r, oo + 0 * OBS + 2 * VW))
        a1_2 = vadd(a1_2, vload(r, oo + 1 * OBS + 2 * VW))
        a2_2 = vadd(a2_2, vload(r, oo + 2 * OBS + 2 * VW))
        a3_2 = vadd(a3_2, vload(r, oo + 3 * OBS + 2 * VW))
        a0_3 = vadd(a0_3, vload(r, oo + 0 * OBS + 3 * VW))
        a1_3 = vadd(a1_3, vload(r, oo + 1 * OBS + 3 * VW))
        a2_3 = vadd(a2_3, vload(r, oo + 2 * OBS + 3 * VW))
        a3_3 = vadd(a3_3, vload(r, oo + 3 * OBS + 3 * VW))
        a0_4 = vadd(a0_4, vload(r, oo + 0 * OBS + 4 * VW))
        a1_4 = vadd(a1_4, vload(r, oo + 1 * OBS + 4 * VW))
        a2_4 = vadd(a2_4, vload(r, oo + 2 * OBS + 4 * VW))
        a3_4 = vadd(a3_4, vload(r, oo + 3 * OBS + 4 * VW))
        a0_5 = vadd(a0_5, vload(r, oo + 0 * OBS + 5 * VW))
        a1_5 = vadd(a1_5, vload(r, oo + 1 * OBS + 5 * VW))
        a2_5 = vadd(a2_5, vload(r, oo + 2 * OBS + 5 * VW))
        a3_5 = vadd(a3_5, vload(r, oo + 3 * OBS + 5 * VW))
    if skip <= 0 and 0 < lim:
        vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
        vstore(out, oo + 1 * OBS + 0 * VW, vact(a1_0, code, p, q))
        vstore(out, oo + 2 * OBS + 0 * VW, vact(a2_0, code, p, q))
        vstore(out, oo + 3 * OBS + 0 * VW, vact(a3_0, code, p, q))
    if skip <= 1 and 1 < lim:
        vstore(out, oo + 0 * OBS + 1 * VW, vact(a0_1, code, p, q))
        vstore(out, oo + 1 * OBS + 1 * VW, vact(a1_1, code, p, q))
        vstore(out, oo + 2 * OBS + 1 * VW, vact(a2_1, code, p, q))
        vstore(out, oo + 3 * OBS + 1 * VW, vact(a3_1, code, p, q))
    if skip <= 2 and 2 < lim:
        vstore(out, oo + 0 * OBS + 2 * VW, vact(a0_2, code, p, q))
        vstore(out, oo + 1 * OBS + 2 * VW, vact(a1_2, code, p, q))
        vstore(out, oo + 2 * OBS + 2 * VW, vact(a2_2, code, p, q))
        vstore(out, oo + 3 * OBS + 2 * VW, vact(a3_2, code, p, q))
    if skip <= 3 and 3 < lim:
        vstore(out, oo + 0 * OBS + 3 * VW, vact(a0_3, code, p, q))
        vstore(out, oo + 1 * OBS + 3 * VW, vact(a1_3, code, p, q))
        vstore(out, oo + 2 * OBS + 3 * VW, vact(a2_3, code, p, q))
        vstore(out, oo + 3 * OBS + 3 * VW, vact(a3_3, code, p, q))
    if skip <= 4 and 4 < lim:
        vstore(out, oo + 0 * OBS + 4 * VW, vact(a0_4, code, p, q))
        vstore(out, oo + 1 * OBS + 4 * VW, vact(a1_4, code, p, q))
        vstore(out, oo + 2 * OBS + 4 * VW, vact(a2_4, code, p, q))
        vstore(out, oo + 3 * OBS + 4 * VW, vact(a3_4, code, p, q))
    if skip <= 5 and 5 < lim:
        vstore(out, oo + 0 * OBS + 5 * VW, vact(a0_5, code, p, q))
        vstore(out, oo + 1 * OBS + 5 * VW, vact(a1_5, code, p, q))
        vstore(out, oo + 2 * OBS + 5 * VW, vact(a2_5, code, p, q))
        vstore(out, oo + 3 * OBS + 5 * VW, vact(a3_5, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 1 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 2 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 3 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)
        _prelu_px(out, oo + 1 * OBS + skip * VW, lim - skip, bias, bo + 1 * VW)
        _prelu_px(out, oo + 2 * OBS + skip * VW, lim - skip, bias, bo + 2 * VW)
        _prelu_px(out, oo + 3 * OBS + skip * VW, lim - skip, bias, bo + 3 * VW)


@inline
def _c1_2x12(x, xo, KB, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, oo, OBS, skip, lim, code, p,
        q):
    """2 output blocks x 12 pixels of a 1x1 conv (generated, see _c1 in the module doc)."""
    b0 = vload(bias, bo + 0 * VW)
    b1 = vload(bias, bo + 1 * VW)
    a0_0 = b0
    a1_0 = b1
    a0_1 = b0
    a1_1 = b1
    a0_2 = b0
    a1_2 = b1
    a0_3 = b0
    a1_3 = b1
    a0_4 = b0
    a1_4 = b1
    a0_5 = b0
    a1_5 = b1
    a0_6 = b0
    a1_6 = b1
    a0_7 = b0
    a1_7 = b1
    a0_8 = b0
    a1_8 = b1
    a0_9 = b0
    a1_9 = b1
    a0_10 = b0
    a1_10 = b1
    a0_11 = b0
    a1_11 = b1
    for kb in range(KB):
        xk = xo + kb * XBS
        wk = wo + kb * (VW * VW)
        for l in range(VW if kb < KB - 1 else KL):  # the last block: its KL real input channels
            w0 = vload(w, wk + l * VW)
            w1 = vload(w, wk + l * VW + 1 * WOS)
            s = vbroadcast_at(x, xk + l)
            a0_0 = vfma(s, w0, a0_0)
            a1_0 = vfma(s, w1, a1_0)
            s = vbroadcast_at(x, xk + l + 1 * VW)
            a0_1 = vfma(s, w0, a0_1)
            a1_1 = vfma(s, w1, a1_1)
            s = vbroadcast_at(x, xk + l + 2 * VW)
            a0_2 = vfma(s, w0, a0_2)
            a1_2 = vfma(s, w1, a1_2)
            s = vbroadcast_at(x, xk + l + 3 * VW)
            a0_3 = vfma(s, w0, a0_3)
            a1_3 = vfma(s, w1, a1_3)
            s = vbroadcast_at(x, xk + l + 4 * VW)
            a0_4 = vfma(s, w0, a0_4)
            a1_4 = vfma(s, w1, a1_4)
            s = vbroadcast_at(x, xk + l + 5 * VW)
            a0_5 = vfma(s, w0, a0_5)
            a1_5 = vfma(s, w1, a1_5)
            s = vbroadcast_at(x, xk + l + 6 * VW)
            a0_6 = vfma(s, w0, a0_6)
            a1_6 = vfma(s, w1, a1_6)
            s = vbroadcast_at(x, xk + l + 7 * VW)
            a0_7 = vfma(s, w0, a0_7)
            a1_7 = vfma(s, w1, a1_7)
            s = vbroadcast_at(x, xk + l + 8 * VW)
            a0_8 = vfma(s, w0, a0_8)
            a1_8 = vfma(s, w1, a1_8)
            s = vbroadcast_at(x, xk + l + 9 * VW)
            a0_9 = vfma(s, w0, a0_9)
            a1_9 = vfma(s, w1, a1_9)
            s = vbroadcast_at(x, xk + l + 10 * VW)
            a0_10 = vfma(s, w0, a0_10)
            a1_10 = vfma(s, w1, a1_10)
            s = vbroadcast_at(x, xk + l + 11 * VW)
            a0_11 = vfma(s, w0, a0_11)
            a1_11 = vfma(s, w1, a1_11)
    if has_res == 1:
        a0_0 = vadd(a0_0, vload(r, oo + 0 * OBS + 0 * VW))
        a1_0 = vadd(a1_0, vload(r, oo + 1 * OBS + 0 * VW))
        a0_1 = vadd(a0_1, vload(r, oo + 0 * OBS + 1 * VW))
        a1_1 = vadd(a1_1, vload(r, oo + 1 * OBS + 1 * VW))
        a0_2 = vadd(a0_2, vload(r, oo + 0 * OBS + 2 * VW))
        a1_2 = vadd(a1_2, vload(r, oo + 1 * OBS + 2 * VW))
        a0_3 = vadd(a0_3, vload(r, oo + 0 * OBS + 3 * VW))
        a1_3 = vadd(a1_3, vload(r, oo + 1 * OBS + 3 * VW))
        a0_4 = vadd(a0_4, vload(r, oo + 0 * OBS + 4 * VW))
        a1_4 = vadd(a1_4, vload(r, oo + 1 * OBS + 4 * VW))
        a0_5 = vadd(a0_5, vload(r, oo + 0 * OBS + 5 * VW))
        a1_5 = vadd(a1_5, vload(r, oo + 1 * OBS + 5 * VW))
        a0_6 = vadd(a0_6, vload(r, oo + 0 * OBS + 6 * VW))
        a1_6 = vadd(a1_6, vload(r, oo + 1 * OBS + 6 * VW))
        a0_7 = vadd(a0_7, vload(r, oo + 0 * OBS + 7 * VW))
        a1_7 = vadd(a1_7, vload(r, oo + 1 * OBS + 7 * VW))
        a0_8 = vadd(a0_8, vload(r, oo + 0 * OBS + 8 * VW))
        a1_8 = vadd(a1_8, vload(r, oo + 1 * OBS + 8 * VW))
        a0_9 = vadd(a0_9, vload(r, oo + 0 * OBS + 9 * VW))
        a1_9 = vadd(a1_9, vload(r, oo + 1 * OBS + 9 * VW))
        a0_10 = vadd(a0_10, vload(r, oo + 0 * OBS + 10 * VW))
        a1_10 = vadd(a1_10, vload(r, oo + 1 * OBS + 10 * VW))
        a0_11 = vadd(a0_11, vload(r, oo + 0 * OBS + 11 * VW))
        a1_11 = vadd(a1_11, vload(r, oo + 1 * OBS + 11 * VW))
    if skip <= 0 and 0 < lim:
        vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
        vstore(out, oo + 1 * OBS + 0 * VW, vact(a1_0, code, p, q))
    if skip <= 1 and 1 < lim:
        vstore(out, oo + 0 * OBS + 1 * VW, vact(a0_1, code, p, q))
        vstore(out, oo + 1 * OBS + 1 * VW, vact(a1_1, code, p, q))
    if skip <= 2 and 2 < lim:
        vstore(out, oo + 0 * OBS + 2 * VW, vact(a0_2, code, p, q))
        vstore(out, oo + 1 * OBS + 2 * VW, vact(a1_2, code, p, q))
    if skip <= 3 and 3 < lim:
        vstore(out, oo + 0 * OBS + 3 * VW, vact(a0_3, code, p, q))
        vstore(out, oo + 1 * OBS + 3 * VW, vact(a1_3, code, p, q))
    if skip <= 4 and 4 < lim:
        vstore(out, oo + 0 * OBS + 4 * VW, vact(a0_4, code, p, q))
        vstore(out, oo + 1 * OBS + 4 * VW, vact(a1_4, code, p, q))
    if skip <= 5 and 5 < lim:
        vstore(out, oo + 0 * OBS + 5 * VW, vact(a0_5, code, p, q))
        vstore(out, oo + 1 * OBS + 5 * VW, vact(a1_5, code, p, q))
    if skip <= 6 and 6 < lim:
        vstore(out, oo + 0 * OBS + 6 * VW, vact(a0_6, code, p, q))
        vstore(out, oo + 1 * OBS + 6 * VW, vact(a1_6, code, p, q))
    if skip <= 7 and 7 < lim:
        vstore(out, oo + 0 * OBS + 7 * VW, vact(a0_7, code, p, q))
        vstore(out, oo + 1 * OBS + 7 * VW, vact(a1_7, code, p, q))
    if skip <= 8 and 8 < lim:
        vstore(out, oo + 0 * OBS + 8 * VW, vact(a0_8, code, p, q))
        vstore(out, oo + 1 * OBS + 8 * VW, vact(a1_8, code, p, q))
    if skip <= 9 and 9 < lim:
        vstore(out, oo + 0 * OBS + 9 * VW, vact(a0_9, code, p, q))
        vstore(out, oo + 1 * OBS + 9 * VW, vact(a1_9, code, p, q))
    if skip <= 10 and 10 < lim:
        vstore(out, oo + 0 * OBS + 10 * VW, vact(a0_10, code, p, q))
        vstore(out, oo + 1 * OBS + 10 * VW, vact(a1_10, code, p, q))
    if skip <= 11 and 11 < lim:
        vstore(out, oo + 0 * OBS + 11 * VW, vact(a0_11, code, p, q))
        vstore(out, oo + 1 * OBS + 11 * VW, vact(a1_11, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 1 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)
        _prelu_px(out, oo + 1 * OBS + skip * VW, lim - skip, bias, bo + 1 * VW)


@inline
def _c1_1x24(x, xo, KB, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, oo, OBS, skip, lim, code, p,
        q):
    """1 output blocks x 24 pixels of a 1x1 conv (generated, see _c1 in the module doc)."""
    b0 = vload(bias, bo + 0 * VW)
    a0_0 = b0
    a0_1 = b0
    a0_2 = b0
    a0_3 = b0
    a0_4 = b0
    a0_5 = b0
    a0_6 = b0
    a0_7 = b0
    a0_8 = b0
    a0_9 = b0
    a0_10 = b0
    a0_11 = b0
    a0_12 = b0
    a0_13 = b0
    a0_14 = b0
    a0_15 = b0
    a0_16 = b0
    a0_17 = b0
    a0_18 = b0
    a0_19 = b0
    a0_20 = b0
    a0_21 = b0
    a0_22 = b0
    a0_23 = b0
    for kb in range(KB):
        xk = xo + kb * XBS
        wk = wo + kb * (VW * VW)
        for l in range(VW if kb < KB - 1 else KL):  # the last block: its KL real input channels
            w0 = vload(w, wk + l * VW)
            s = vbroadcast_at(x, xk + l)
            a0_0 = vfma(s, w0, a0_0)
            s = vbroadcast_at(x, xk + l + 1 * VW)
            a0_1 = vfma(s, w0, a0_1)
            s = vbroadcast_at(x, xk + l + 2 * VW)
            a0_2 = vfma(s, w0, a0_2)
            s = vbroadcast_at(x, xk + l + 3 * VW)
            a0_3 = vfma(s, w0, a0_3)
            s = vbroadcast_at(x, xk + l + 4 * VW)
            a0_4 = vfma(s, w0, a0_4)
            s = vbroadcast_at(x, xk + l + 5 * VW)
            a0_5 = vfma(s, w0, a0_5)
            s = vbroadcast_at(x, xk + l + 6 * VW)
            a0_6 = vfma(s, w0, a0_6)
            s = vbroadcast_at(x, xk + l + 7 * VW)
            a0_7 = vfma(s, w0, a0_7)
            s = vbroadcast_at(x, xk + l + 8 * VW)
            a0_8 = vfma(s, w0, a0_8)
            s = vbroadcast_at(x, xk + l + 9 * VW)
            a0_9 = vfma(s, w0, a0_9)
            s = vbroadcast_at(x, xk + l + 10 * VW)
            a0_10 = vfma(s, w0, a0_10)
            s = vbroadcast_at(x, xk + l + 11 * VW)
            a0_11 = vfma(s, w0, a0_11)
            s = vbroadcast_at(x, xk + l + 12 * VW)
            a0_12 = vfma(s, w0, a0_12)
            s = vbroadcast_at(x, xk + l + 13 * VW)
            a0_13 = vfma(s, w0, a0_13)
            s = vbroadcast_at(x, xk + l + 14 * VW)
            a0_14 = vfma(s, w0, a0_14)
            s = vbroadcast_at(x, xk + l + 15 * VW)
            a0_15 = vfma(s, w0, a0_15)
            s = vbroadcast_at(x, xk + l + 16 * VW)
            a0_16 = vfma(s, w0, a0_16)
            s = vbroadcast_at(x, xk + l + 17 * VW)
            a0_17 = vfma(s, w0, a0_17)
            s = vbroadcast_at(x, xk + l + 18 * VW)
            a0_18 = vfma(s, w0, a0_18)
            s = vbroadcast_at(x, xk + l + 19 * VW)
            a0_19 = vfma(s, w0, a0_19)
            s = vbroadcast_at(x, xk + l + 20 * VW)
            a0_20 = vfma(s, w0, a0_20)
            s = vbroadcast_at(x, xk + l + 21 * VW)
            a0_21 = vfma(s, w0, a0_21)
            s = vbroadcast_at(x, xk + l + 22 * VW)
            a0_22 = vfma(s, w0, a0_22)
            s = vbroadcast_at(x, xk + l + 23 * VW)
            a0_23 = vfma(s, w0, a0_23)
    if has_res == 1:
        a0_0 = vadd(a0_0, vload(r, oo + 0 * OBS + 0 * VW))
        a0_1 = vadd(a0_1, vload(r, oo + 0 * OBS + 1 * VW))
        a0_2 = vadd(a0_2, vload(r, oo + 0 * OBS + 2 * VW))
        a0_3 = vadd(a0_3, vload(r, oo + 0 * OBS + 3 * VW))
        a0_4 = vadd(a0_4, vload(r, oo + 0 * OBS + 4 * VW))
        a0_5 = vadd(a0_5, vload(r, oo + 0 * OBS + 5 * VW))
        a0_6 = vadd(a0_6, vload(r, oo + 0 * OBS + 6 * VW))
        a0_7 = vadd(a0_7, vload(r, oo + 0 * OBS + 7 * VW))
        a0_8 = vadd(a0_8, vload(r, oo + 0 * OBS + 8 * VW))
        a0_9 = vadd(a0_9, vload(r, oo + 0 * OBS + 9 * VW))
        a0_10 = vadd(a0_10, vload(r, oo + 0 * OBS + 10 * VW))
        a0_11 = vadd(a0_11, vload(r, oo + 0 * OBS + 11 * VW))
        a0_12 = vadd(a0_12, vload(r, oo + 0 * OBS + 12 * VW))
        a0_13 = vadd(a0_13, vload(r, oo + 0 * OBS + 13 * VW))
        a0_14 = vadd(a0_14, vload(r, oo + 0 * OBS + 14 * VW))
        a0_15 = vadd(a0_15, vload(r, oo + 0 * OBS + 15 * VW))
        a0_16 = vadd(a0_16, vload(r, oo + 0 * OBS + 16 * VW))
        a0_17 = vadd(a0_17, vload(r, oo + 0 * OBS + 17 * VW))
        a0_18 = vadd(a0_18, vload(r, oo + 0 * OBS + 18 * VW))
        a0_19 = vadd(a0_19, vload(r, oo + 0 * OBS + 19 * VW))
        a0_20 = vadd(a0_20, vload(r, oo + 0 * OBS + 20 * VW))
        a0_21 = vadd(a0_21, vload(r, oo + 0 * OBS + 21 * VW))
        a0_22 = vadd(a0_22, vload(r, oo + 0 * OBS + 22 * VW))
        a0_23 = vadd(a0_23, vload(r, oo + 0 * OBS + 23 * VW))
    if skip <= 0 and 0 < lim:
        vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
    if skip <= 1 and 1 < lim:
        vstore(out, oo + 0 * OBS + 1 * VW, vact(a0_1, code, p, q))
    if skip <= 2 and 2 < lim:
        vstore(out, oo + 0 * OBS + 2 * VW, vact(a0_2, code, p, q))
    if skip <= 3 and 3 < lim:
        vstore(out, oo + 0 * OBS + 3 * VW, vact(a0_3, code, p, q))
    if skip <= 4 and 4 < lim:
        vstore(out, oo + 0 * OBS + 4 * VW, vact(a0_4, code, p, q))
    if skip <= 5 and 5 < lim:
        vstore(out, oo + 0 * OBS + 5 * VW, vact(a0_5, code, p, q))
    if skip <= 6 and 6 < lim:
        vstore(out, oo + 0 * OBS + 6 * VW, vact(a0_6, code, p, q))
    if skip <= 7 and 7 < lim:
        vstore(out, oo + 0 * OBS + 7 * VW, vact(a0_7, code, p, q))
    if skip <= 8 and 8 < lim:
        vstore(out, oo + 0 * OBS + 8 * VW, vact(a0_8, code, p, q))
    if skip <= 9 and 9 < lim:
        vstore(out, oo + 0 * OBS + 9 * VW, vact(a0_9, code, p, q))
    if skip <= 10 and 10 < lim:
        vstore(out, oo + 0 * OBS + 10 * VW, vact(a0_10, code, p, q))
    if skip <= 11 and 11 < lim:
        vstore(out, oo + 0 * OBS + 11 * VW, vact(a0_11, code, p, q))
    if skip <= 12 and 12 < lim:
        vstore(out, oo + 0 * OBS + 12 * VW, vact(a0_12, code, p, q))
    if skip <= 13 and 13 < lim:
        vstore(out, oo + 0 * OBS + 13 * VW, vact(a0_13, code, p, q))
    if skip <= 14 and 14 < lim:
        vstore(out, oo + 0 * OBS + 14 * VW, vact(a0_14, code, p, q))
    if skip <= 15 and 15 < lim:
        vstore(out, oo + 0 * OBS + 15 * VW, vact(a0_15, code, p, q))
    if skip <= 16 and 16 < lim:
        vstore(out, oo + 0 * OBS + 16 * VW, vact(a0_16, code, p, q))
    if skip <= 17 and 17 < lim:
        vstore(out, oo + 0 * OBS + 17 * VW, vact(a0_17, code, p, q))
    if skip <= 18 and 18 < lim:
        vstore(out, oo + 0 * OBS + 18 * VW, vact(a0_18, code, p, q))
    if skip <= 19 and 19 < lim:
        vstore(out, oo + 0 * OBS + 19 * VW, vact(a0_19, code, p, q))
    if skip <= 20 and 20 < lim:
        vstore(out, oo + 0 * OBS + 20 * VW, vact(a0_20, code, p, q))
    if skip <= 21 and 21 < lim:
        vstore(out, oo + 0 * OBS + 21 * VW, vact(a0_21, code, p, q))
    if skip <= 22 and 22 < lim:
        vstore(out, oo + 0 * OBS + 22 * VW, vact(a0_22, code, p, q))
    if skip <= 23 and 23 < lim:
        vstore(out, oo + 0 * OBS + 23 * VW, vact(a0_23, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)


@inline
def _c1_2x6(x, xo, KB, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, oo, OBS, skip, lim, code, p,
        q):
    """2 output blocks x 6 pixels of a 1x1 conv (generated, see _c1 in the module doc)."""
    b0 = vload(bias, bo + 0 * VW)
    b1 = vload(bias, bo + 1 * VW)
    a0_0 = b0
    a1_0 = b1
    a0_1 = b0
    a1_1 = b1
    a0_2 = b0
    a1_2 = b1
    a0_3 = b0
    a1_3 = b1
    a0_4 = b0
    a1_4 = b1
    a0_5 = b0
    a1_5 = b1
    for kb in range(KB):
        xk = xo + kb * XBS
        wk = wo + kb * (VW * VW)
        for l in range(VW if kb < KB - 1 else KL):  # the last block: its KL real input channels
            w0 = vload(w, wk + l * VW)
            w1 = vload(w, wk + l * VW + 1 * WOS)
            s = vbroadcast_at(x, xk + l)
            a0_0 = vfma(s, w0, a0_0)
            a1_0 = vfma(s, w1, a1_0)
            s = vbroadcast_at(x, xk + l + 1 * VW)
            a0_1 = vfma(s, w0, a0_1)
            a1_1 = vfma(s, w1, a1_1)
            s = vbroadcast_at(x, xk + l + 2 * VW)
            a0_2 = vfma(s, w0, a0_2)
            a1_2 = vfma(s, w1, a1_2)
            s = vbroadcast_at(x, xk + l + 3 * VW)
            a0_3 = vfma(s, w0, a0_3)
            a1_3 = vfma(s, w1, a1_3)
            s = vbroadcast_at(x, xk + l + 4 * VW)
            a0_4 = vfma(s, w0, a0_4)
            a1_4 = vfma(s, w1, a1_4)
            s = vbroadcast_at(x, xk + l + 5 * VW)
            a0_5 = vfma(s, w0, a0_5)
            a1_5 = vfma(s, w1, a1_5)
    if has_res == 1:
        a0_0 = vadd(a0_0, vload(r, oo + 0 * OBS + 0 * VW))
        a1_0 = vadd(a1_0, vload(r, oo + 1 * OBS + 0 * VW))
        a0_1 = vadd(a0_1, vload(r, oo + 0 * OBS + 1 * VW))
        a1_1 = vadd(a1_1, vload(r, oo + 1 * OBS + 1 * VW))
        a0_2 = vadd(a0_2, vload(r, oo + 0 * OBS + 2 * VW))
        a1_2 = vadd(a1_2, vload(r, oo + 1 * OBS + 2 * VW))
        a0_3 = vadd(a0_3, vload(r, oo + 0 * OBS + 3 * VW))
        a1_3 = vadd(a1_3, vload(r, oo + 1 * OBS + 3 * VW))
        a0_4 = vadd(a0_4, vload(r, oo + 0 * OBS + 4 * VW))
        a1_4 = vadd(a1_4, vload(r, oo + 1 * OBS + 4 * VW))
        a0_5 = vadd(a0_5, vload(r, oo + 0 * OBS + 5 * VW))
        a1_5 = vadd(a1_5, vload(r, oo + 1 * OBS + 5 * VW))
    if skip <= 0 and 0 < lim:
        vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
        vstore(out, oo + 1 * OBS + 0 * VW, vact(a1_0, code, p, q))
    if skip <= 1 and 1 < lim:
        vstore(out, oo + 0 * OBS + 1 * VW, vact(a0_1, code, p, q))
        vstore(out, oo + 1 * OBS + 1 * VW, vact(a1_1, code, p, q))
    if skip <= 2 and 2 < lim:
        vstore(out, oo + 0 * OBS + 2 * VW, vact(a0_2, code, p, q))
        vstore(out, oo + 1 * OBS + 2 * VW, vact(a1_2, code, p, q))
    if skip <= 3 and 3 < lim:
        vstore(out, oo + 0 * OBS + 3 * VW, vact(a0_3, code, p, q))
        vstore(out, oo + 1 * OBS + 3 * VW, vact(a1_3, code, p, q))
    if skip <= 4 and 4 < lim:
        vstore(out, oo + 0 * OBS + 4 * VW, vact(a0_4, code, p, q))
        vstore(out, oo + 1 * OBS + 4 * VW, vact(a1_4, code, p, q))
    if skip <= 5 and 5 < lim:
        vstore(out, oo + 0 * OBS + 5 * VW, vact(a0_5, code, p, q))
        vstore(out, oo + 1 * OBS + 5 * VW, vact(a1_5, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 1 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)
        _prelu_px(out, oo + 1 * OBS + skip * VW, lim - skip, bias, bo + 1 * VW)


@inline
def _c1_1x12(x, xo, KB, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, oo, OBS, skip, lim, code, p,
        q):
    """1 output blocks x 12 pixels of a 1x1 conv (generated, see _c1 in the module doc)."""
    b0 = vload(bias, bo + 0 * VW)
    a0_0 = b0
    a0_1 = b0
    a0_2 = b0
    a0_3 = b0
    a0_4 = b0
    a0_5 = b0
    a0_6 = b0
    a0_7 = b0
    a0_8 = b0
    a0_9 = b0
    a0_10 = b0
    a0_11 = b0
    for kb in range(KB):
        xk = xo + kb * XBS
        wk = wo + kb * (VW * VW)
        for l in range(VW if kb < KB - 1 else KL):  # the last block: its KL real input channels
            w0 = vload(w, wk + l * VW)
            s = vbroadcast_at(x, xk + l)
            a0_0 = vfma(s, w0, a0_0)
            s = vbroadcast_at(x, xk + l + 1 * VW)
            a0_1 = vfma(s, w0, a0_1)
            s = vbroadcast_at(x, xk + l + 2 * VW)
            a0_2 = vfma(s, w0, a0_2)
            s = vbroadcast_at(x, xk + l + 3 * VW)
            a0_3 = vfma(s, w0, a0_3)
            s = vbroadcast_at(x, xk + l + 4 * VW)
            a0_4 = vfma(s, w0, a0_4)
            s = vbroadcast_at(x, xk + l + 5 * VW)
            a0_5 = vfma(s, w0, a0_5)
            s = vbroadcast_at(x, xk + l + 6 * VW)
            a0_6 = vfma(s, w0, a0_6)
            s = vbroadcast_at(x, xk + l + 7 * VW)
            a0_7 = vfma(s, w0, a0_7)
            s = vbroadcast_at(x, xk + l + 8 * VW)
            a0_8 = vfma(s, w0, a0_8)
            s = vbroadcast_at(x, xk + l + 9 * VW)
            a0_9 = vfma(s, w0, a0_9)
            s = vbroadcast_at(x, xk + l + 10 * VW)
            a0_10 = vfma(s, w0, a0_10)
            s = vbroadcast_at(x, xk + l + 11 * VW)
            a0_11 = vfma(s, w0, a0_11)
    if has_res == 1:
        a0_0 = vadd(a0_0, vload(r, oo + 0 * OBS + 0 * VW))
        a0_1 = vadd(a0_1, vload(r, oo + 0 * OBS + 1 * VW))
        a0_2 = vadd(a0_2, vload(r, oo + 0 * OBS + 2 * VW))
        a0_3 = vadd(a0_3, vload(r, oo + 0 * OBS + 3 * VW))
        a0_4 = vadd(a0_4, vload(r, oo + 0 * OBS + 4 * VW))
        a0_5 = vadd(a0_5, vload(r, oo + 0 * OBS + 5 * VW))
        a0_6 = vadd(a0_6, vload(r, oo + 0 * OBS + 6 * VW))
        a0_7 = vadd(a0_7, vload(r, oo + 0 * OBS + 7 * VW))
        a0_8 = vadd(a0_8, vload(r, oo + 0 * OBS + 8 * VW))
        a0_9 = vadd(a0_9, vload(r, oo + 0 * OBS + 9 * VW))
        a0_10 = vadd(a0_10, vload(r, oo + 0 * OBS + 10 * VW))
        a0_11 = vadd(a0_11, vload(r, oo + 0 * OBS + 11 * VW))
    if skip <= 0 and 0 < lim:
        vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
    if skip <= 1 and 1 < lim:
        vstore(out, oo + 0 * OBS + 1 * VW, vact(a0_1, code, p, q))
    if skip <= 2 and 2 < lim:
        vstore(out, oo + 0 * OBS + 2 * VW, vact(a0_2, code, p, q))
    if skip <= 3 and 3 < lim:
        vstore(out, oo + 0 * OBS + 3 * VW, vact(a0_3, code, p, q))
    if skip <= 4 and 4 < lim:
        vstore(out, oo + 0 * OBS + 4 * VW, vact(a0_4, code, p, q))
    if skip <= 5 and 5 < lim:
        vstore(out, oo + 0 * OBS + 5 * VW, vact(a0_5, code, p, q))
    if skip <= 6 and 6 < lim:
        vstore(out, oo + 0 * OBS + 6 * VW, vact(a0_6, code, p, q))
    if skip <= 7 and 7 < lim:
        vstore(out, oo + 0 * OBS + 7 * VW, vact(a0_7, code, p, q))
    if skip <= 8 and 8 < lim:
        vstore(out, oo + 0 * OBS + 8 * VW, vact(a0_8, code, p, q))
    if skip <= 9 and 9 < lim:
        vstore(out, oo + 0 * OBS + 9 * VW, vact(a0_9, code, p, q))
    if skip <= 10 and 10 < lim:
        vstore(out, oo + 0 * OBS + 10 * VW, vact(a0_10, code, p, q))
    if skip <= 11 and 11 < lim:
        vstore(out, oo + 0 * OBS + 11 * VW, vact(a0_11, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)


@inline
def _c1_4x1(x, xo, KB, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, oo, OBS, skip, lim, code, p,
        q):
    """4 output blocks x 1 pixels of a 1x1 conv (generated, see _c1 in the module doc)."""
    b0 = vload(bias, bo + 0 * VW)
    b1 = vload(bias, bo + 1 * VW)
    b2 = vload(bias, bo + 2 * VW)
    b3 = vload(bias, bo + 3 * VW)
    a0_0 = b0
    a1_0 = b1
    a2_0 = b2
    a3_0 = b3
    for kb in range(KB):
        xk = xo + kb * XBS
        wk = wo + kb * (VW * VW)
        for l in range(VW if kb < KB - 1 else KL):  # the last block: its KL real input channels
            w0 = vload(w, wk + l * VW)
            w1 = vload(w, wk + l * VW + 1 * WOS)
            w2 = vload(w, wk + l * VW + 2 * WOS)
            w3 = vload(w, wk + l * VW + 3 * WOS)
            s = vbroadcast_at(x, xk + l)
            a0_0 = vfma(s, w0, a0_0)
            a1_0 = vfma(s, w1, a1_0)
            a2_0 = vfma(s, w2, a2_0)
            a3_0 = vfma(s, w3, a3_0)
    if has_res == 1:
        a0_0 = vadd(a0_0, vload(r, oo + 0 * OBS + 0 * VW))
        a1_0 = vadd(a1_0, vload(r, oo + 1 * OBS + 0 * VW))
        a2_0 = vadd(a2_0, vload(r, oo + 2 * OBS + 0 * VW))
        a3_0 = vadd(a3_0, vload(r, oo + 3 * OBS + 0 * VW))
    vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
    vstore(out, oo + 1 * OBS + 0 * VW, vact(a1_0, code, p, q))
    vstore(out, oo + 2 * OBS + 0 * VW, vact(a2_0, code, p, q))
    vstore(out, oo + 3 * OBS + 0 * VW, vact(a3_0, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 1 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 2 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 3 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)
        _prelu_px(out, oo + 1 * OBS + skip * VW, lim - skip, bias, bo + 1 * VW)
        _prelu_px(out, oo + 2 * OBS + skip * VW, lim - skip, bias, bo + 2 * VW)
        _prelu_px(out, oo + 3 * OBS + skip * VW, lim - skip, bias, bo + 3 * VW)


@inline
def _c1_2x1(x, xo, KB, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, oo, OBS, skip, lim, code, p,
        q):
    """2 output blocks x 1 pixels of a 1x1 conv (generated, see _c1 in the module doc)."""
    b0 = vload(bias, bo + 0 * VW)
    b1 = vload(bias, bo + 1 * VW)
    a0_0 = b0
    a1_0 = b1
    for kb in range(KB):
        xk = xo + kb * XBS
        wk = wo + kb * (VW * VW)
        for l in range(VW if kb < KB - 1 else KL):  # the last block: its KL real input channels
            w0 = vload(w, wk + l * VW)
            w1 = vload(w, wk + l * VW + 1 * WOS)
            s = vbroadcast_at(x, xk + l)
            a0_0 = vfma(s, w0, a0_0)
            a1_0 = vfma(s, w1, a1_0)
    if has_res == 1:
        a0_0 = vadd(a0_0, vload(r, oo + 0 * OBS + 0 * VW))
        a1_0 = vadd(a1_0, vload(r, oo + 1 * OBS + 0 * VW))
    vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
    vstore(out, oo + 1 * OBS + 0 * VW, vact(a1_0, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 1 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)
        _prelu_px(out, oo + 1 * OBS + skip * VW, lim - skip, bias, bo + 1 * VW)


@inline
def _c1_1x1(x, xo, KB, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, oo, OBS, skip, lim, code, p,
        q):
    """1 output blocks x 1 pixels of a 1x1 conv (generated, see _c1 in the module doc)."""
    b0 = vload(bias, bo + 0 * VW)
    a0_0 = b0
    for kb in range(KB):
        xk = xo + kb * XBS
        wk = wo + kb * (VW * VW)
        for l in range(VW if kb < KB - 1 else KL):  # the last block: its KL real input channels
            w0 = vload(w, wk + l * VW)
            s = vbroadcast_at(x, xk + l)
            a0_0 = vfma(s, w0, a0_0)
    if has_res == 1:
        a0_0 = vadd(a0_0, vload(r, oo + 0 * OBS + 0 * VW))
    vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)


@inline
def _cv_4x6(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, skip,
        lim, code, p, q):
    """4 output blocks x 6 pixels of one output row of the general conv (generated; columns inside the input, rows checked)."""
    b0 = vload(bias, bo + 0 * VW)
    b1 = vload(bias, bo + 1 * VW)
    b2 = vload(bias, bo + 2 * VW)
    b3 = vload(bias, bo + 3 * VW)
    a0_0 = b0
    a1_0 = b1
    a2_0 = b2
    a3_0 = b3
    a0_1 = b0
    a1_1 = b1
    a2_1 = b2
    a3_1 = b3
    a0_2 = b0
    a1_2 = b1
    a2_2 = b2
    a3_2 = b3
    a0_3 = b0
    a1_3 = b1
    a2_3 = b2
    a3_3 = b3
    a0_4 = b0
    a1_4 = b1
    a2_4 = b2
    a3_4 = b3
    a0_5 = b0
    a1_5 = b1
    a2_5 = b2
    a3_5 = b3
    for ci in range(Ci):
        if inb == 1:
            xc = xn + (ci // VW) * HW * VW + ci % VW
        else:
            xc = xn + ci * HW
        for ki in range(KH):
            ih = ih0 + ki * DH
            if ih >= 0 and ih < H:
                xr = xc + (ih * W + iw0) * ps
                wr = wo + (ci * KH + ki) * KW * VW
                for kj in range(KW):
                    xk = xr + kj * DW * ps
                    wk = wr + kj * VW
                    w0 = vload(w, wk)
                    w1 = vload(w, wk + 1 * WOS)
                    w2 = vload(w, wk + 2 * WOS)
                    w3 = vload(w, wk + 3 * WOS)
                    s = vbroadcast_at(x, xk)
                    a0_0 = vfma(s, w0, a0_0)
                    a1_0 = vfma(s, w1, a1_0)
                    a2_0 = vfma(s, w2, a2_0)
                    a3_0 = vfma(s, w3, a3_0)
                    s = vbroadcast_at(x, xk + 1 * d)
                    a0_1 = vfma(s, w0, a0_1)
                    a1_1 = vfma(s, w1, a1_1)
                    a2_1 = vfma(s, w2, a2_1)
                    a3_1 = vfma(s, w3, a3_1)
                    s = vbroadcast_at(x, xk + 2 * d)
                    a0_2 = vfma(s, w0, a0_2)
                    a1_2 = vfma(s, w1, a1_2)
                    a2_2 = vfma(s, w2, a2_2)
                    a3_2 = vfma(s, w3, a3_2)
                    s = vbroadcast_at(x, xk + 3 * d)
                    a0_3 = vfma(s, w0, a0_3)
                    a1_3 = vfma(s, w1, a1_3)
                    a2_3 = vfma(s, w2, a2_3)
                    a3_3 = vfma(s, w3, a3_3)
                    s = vbroadcast_at(x, xk + 4 * d)
                    a0_4 = vfma(s, w0, a0_4)
                    a1_4 = vfma(s, w1, a1_4)
                    a2_4 = vfma(s, w2, a2_4)
                    a3_4 = vfma(s, w3, a3_4)
                    s = vbroadcast_at(x, xk + 5 * d)
                    a0_5 = vfma(s, w0, a0_5)
                    a1_5 = vfma(s, w1, a1_5)
                    a2_5 = vfma(s, w2, a2_5)
                    a3_5 = vfma(s, w3, a3_5)
    if skip <= 0 and 0 < lim:
        vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
        vstore(out, oo + 1 * OBS + 0 * VW, vact(a1_0, code, p, q))
        vstore(out, oo + 2 * OBS + 0 * VW, vact(a2_0, code, p, q))
        vstore(out, oo + 3 * OBS + 0 * VW, vact(a3_0, code, p, q))
    if skip <= 1 and 1 < lim:
        vstore(out, oo + 0 * OBS + 1 * VW, vact(a0_1, code, p, q))
        vstore(out, oo + 1 * OBS + 1 * VW, vact(a1_1, code, p, q))
        vstore(out, oo + 2 * OBS + 1 * VW, vact(a2_1, code, p, q))
        vstore(out, oo + 3 * OBS + 1 * VW, vact(a3_1, code, p, q))
    if skip <= 2 and 2 < lim:
        vstore(out, oo + 0 * OBS + 2 * VW, vact(a0_2, code, p, q))
        vstore(out, oo + 1 * OBS + 2 * VW, vact(a1_2, code, p, q))
        vstore(out, oo + 2 * OBS + 2 * VW, vact(a2_2, code, p, q))
        vstore(out, oo + 3 * OBS + 2 * VW, vact(a3_2, code, p, q))
    if skip <= 3 and 3 < lim:
        vstore(out, oo + 0 * OBS + 3 * VW, vact(a0_3, code, p, q))
        vstore(out, oo + 1 * OBS + 3 * VW, vact(a1_3, code, p, q))
        vstore(out, oo + 2 * OBS + 3 * VW, vact(a2_3, code, p, q))
        vstore(out, oo + 3 * OBS + 3 * VW, vact(a3_3, code, p, q))
    if skip <= 4 and 4 < lim:
        vstore(out, oo + 0 * OBS + 4 * VW, vact(a0_4, code, p, q))
        vstore(out, oo + 1 * OBS + 4 * VW, vact(a1_4, code, p, q))
        vstore(out, oo + 2 * OBS + 4 * VW, vact(a2_4, code, p, q))
        vstore(out, oo + 3 * OBS + 4 * VW, vact(a3_4, code, p, q))
    if skip <= 5 and 5 < lim:
        vstore(out, oo + 0 * OBS + 5 * VW, vact(a0_5, code, p, q))
        vstore(out, oo + 1 * OBS + 5 * VW, vact(a1_5, code, p, q))
        vstore(out, oo + 2 * OBS + 5 * VW, vact(a2_5, code, p, q))
        vstore(out, oo + 3 * OBS + 5 * VW, vact(a3_5, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 1 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 2 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 3 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)
        _prelu_px(out, oo + 1 * OBS + skip * VW, lim - skip, bias, bo + 1 * VW)
        _prelu_px(out, oo + 2 * OBS + skip * VW, lim - skip, bias, bo + 2 * VW)
        _prelu_px(out, oo + 3 * OBS + skip * VW, lim - skip, bias, bo + 3 * VW)


@inline
def _cv_2x12(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, skip,
        lim, code, p, q):
    """2 output blocks x 12 pixels of one output row of the general conv (generated; columns inside the input, rows checked)."""
    b0 = vload(bias, bo + 0 * VW)
    b1 = vload(bias, bo + 1 * VW)
    a0_0 = b0
    a1_0 = b1
    a0_1 = b0
    a1_1 = b1
    a0_2 = b0
    a1_2 = b1
    a0_3 = b0
    a1_3 = b1
    a0_4 = b0
    a1_4 = b1
    a0_5 = b0
    a1_5 = b1
    a0_6 = b0
    a1_6 = b1
    a0_7 = b0
    a1_7 = b1
    a0_8 = b0
    a1_8 = b1
    a0_9 = b0
    a1_9 = b1
    a0_10 = b0
    a1_10 = b1
    a0_11 = b0
    a1_11 = b1
    for ci in range(Ci):
        if inb == 1:
            xc = xn + (ci // VW) * HW * VW + ci % VW
        else:
            xc = xn + ci * HW
        for ki in range(KH):
            ih = ih0 + ki * DH
            if ih >= 0 and ih < H:
                xr = xc + (ih * W + iw0) * ps
                wr = wo + (ci * KH + ki) * KW * VW
                for kj in range(KW):
                    xk = xr + kj * DW * ps
                    wk = wr + kj * VW
                    w0 = vload(w, wk)
                    w1 = vload(w, wk + 1 * WOS)
                    s = vbroadcast_at(x, xk)
                    a0_0 = vfma(s, w0, a0_0)
                    a1_0 = vfma(s, w1, a1_0)
                    s = vbroadcast_at(x, xk + 1 * d)
                    a0_1 = vfma(s, w0, a0_1)
                    a1_1 = vfma(s, w1, a1_1)
                    s = vbroadcast_at(x, xk + 2 * d)
                    a0_2 = vfma(s, w0, a0_2)
                    a1_2 = vfma(s, w1, a1_2)
                    s = vbroadcast_at(x, xk + 3 * d)
                    a0_3 = vfma(s, w0, a0_3)
                    a1_3 = vfma(s, w1, a1_3)
                    s = vbroadcast_at(x, xk + 4 * d)
                    a0_4 = vfma(s, w0, a0_4)
                    a1_4 = vfma(s, w1, a1_4)
                    s = vbroadcast_at(x, xk + 5 * d)
                    a0_5 = vfma(s, w0, a0_5)
                    a1_5 = vfma(s, w1, a1_5)
                    s = vbroadcast_at(x, xk + 6 * d)
                    a0_6 = vfma(s, w0, a0_6)
                    a1_6 = vfma(s, w1, a1_6)
                    s = vbroadcast_at(x, xk + 7 * d)
                    a0_7 = vfma(s, w0, a0_7)
                    a1_7 = vfma(s, w1, a1_7)
                    s = vbroadcast_at(x, xk + 8 * d)
                    a0_8 = vfma(s, w0, a0_8)
                    a1_8 = vfma(s, w1, a1_8)
                    s = vbroadcast_at(x, xk + 9 * d)
                    a0_9 = vfma(s, w0, a0_9)
                    a1_9 = vfma(s, w1, a1_9)
                    s = vbroadcast_at(x, xk + 10 * d)
                    a0_10 = vfma(s, w0, a0_10)
                    a1_10 = vfma(s, w1, a1_10)
                    s = vbroadcast_at(x, xk + 11 * d)
                    a0_11 = vfma(s, w0, a0_11)
                    a1_11 = vfma(s, w1, a1_11)
    if skip <= 0 and 0 < lim:
        vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
        vstore(out, oo + 1 * OBS + 0 * VW, vact(a1_0, code, p, q))
    if skip <= 1 and 1 < lim:
        vstore(out, oo + 0 * OBS + 1 * VW, vact(a0_1, code, p, q))
        vstore(out, oo + 1 * OBS + 1 * VW, vact(a1_1, code, p, q))
    if skip <= 2 and 2 < lim:
        vstore(out, oo + 0 * OBS + 2 * VW, vact(a0_2, code, p, q))
        vstore(out, oo + 1 * OBS + 2 * VW, vact(a1_2, code, p, q))
    if skip <= 3 and 3 < lim:
        vstore(out, oo + 0 * OBS + 3 * VW, vact(a0_3, code, p, q))
        vstore(out, oo + 1 * OBS + 3 * VW, vact(a1_3, code, p, q))
    if skip <= 4 and 4 < lim:
        vstore(out, oo + 0 * OBS + 4 * VW, vact(a0_4, code, p, q))
        vstore(out, oo + 1 * OBS + 4 * VW, vact(a1_4, code, p, q))
    if skip <= 5 and 5 < lim:
        vstore(out, oo + 0 * OBS + 5 * VW, vact(a0_5, code, p, q))
        vstore(out, oo + 1 * OBS + 5 * VW, vact(a1_5, code, p, q))
    if skip <= 6 and 6 < lim:
        vstore(out, oo + 0 * OBS + 6 * VW, vact(a0_6, code, p, q))
        vstore(out, oo + 1 * OBS + 6 * VW, vact(a1_6, code, p, q))
    if skip <= 7 and 7 < lim:
        vstore(out, oo + 0 * OBS + 7 * VW, vact(a0_7, code, p, q))
        vstore(out, oo + 1 * OBS + 7 * VW, vact(a1_7, code, p, q))
    if skip <= 8 and 8 < lim:
        vstore(out, oo + 0 * OBS + 8 * VW, vact(a0_8, code, p, q))
        vstore(out, oo + 1 * OBS + 8 * VW, vact(a1_8, code, p, q))
    if skip <= 9 and 9 < lim:
        vstore(out, oo + 0 * OBS + 9 * VW, vact(a0_9, code, p, q))
        vstore(out, oo + 1 * OBS + 9 * VW, vact(a1_9, code, p, q))
    if skip <= 10 and 10 < lim:
        vstore(out, oo + 0 * OBS + 10 * VW, vact(a0_10, code, p, q))
        vstore(out, oo + 1 * OBS + 10 * VW, vact(a1_10, code, p, q))
    if skip <= 11 and 11 < lim:
        vstore(out, oo + 0 * OBS + 11 * VW, vact(a0_11, code, p, q))
        vstore(out, oo + 1 * OBS + 11 * VW, vact(a1_11, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 1 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)
        _prelu_px(out, oo + 1 * OBS + skip * VW, lim - skip, bias, bo + 1 * VW)


@inline
def _cv_1x24(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, skip,
        lim, code, p, q):
    """1 output blocks x 24 pixels of one output row of the general conv (generated; columns inside the input, rows checked)."""
    b0 = vload(bias, bo + 0 * VW)
    a0_0 = b0
    a0_1 = b0
    a0_2 = b0
    a0_3 = b0
    a0_4 = b0
    a0_5 = b0
    a0_6 = b0
    a0_7 = b0
    a0_8 = b0
    a0_9 = b0
    a0_10 = b0
    a0_11 = b0
    a0_12 = b0
    a0_13 = b0
    a0_14 = b0
    a0_15 = b0
    a0_16 = b0
    a0_17 = b0
    a0_18 = b0
    a0_19 = b0
    a0_20 = b0
    a0_21 = b0
    a0_22 = b0
    a0_23 = b0
    for ci in range(Ci):
        if inb == 1:
            xc = xn + (ci // VW) * HW * VW + ci % VW
        else:
            xc = xn + ci * HW
        for ki in range(KH):
            ih = ih0 + ki * DH
            if ih >= 0 and ih < H:
                xr = xc + (ih * W + iw0) * ps
                wr = wo + (ci * KH + ki) * KW * VW
                for kj in range(KW):
                    xk = xr + kj * DW * ps
                    wk = wr + kj * VW
                    w0 = vload(w, wk)
                    s = vbroadcast_at(x, xk)
                    a0_0 = vfma(s, w0, a0_0)
                    s = vbroadcast_at(x, xk + 1 * d)
                    a0_1 = vfma(s, w0, a0_1)
                    s = vbroadcast_at(x, xk + 2 * d)
                    a0_2 = vfma(s, w0, a0_2)
                    s = vbroadcast_at(x, xk + 3 * d)
                    a0_3 = vfma(s, w0, a0_3)
                    s = vbroadcast_at(x, xk + 4 * d)
                    a0_4 = vfma(s, w0, a0_4)
                    s = vbroadcast_at(x, xk + 5 * d)
                    a0_5 = vfma(s, w0, a0_5)
                    s = vbroadcast_at(x, xk + 6 * d)
                    a0_6 = vfma(s, w0, a0_6)
                    s = vbroadcast_at(x, xk + 7 * d)
                    a0_7 = vfma(s, w0, a0_7)
                    s = vbroadcast_at(x, xk + 8 * d)
                    a0_8 = vfma(s, w0, a0_8)
                    s = vbroadcast_at(x, xk + 9 * d)
                    a0_9 = vfma(s, w0, a0_9)
                    s = vbroadcast_at(x, xk + 10 * d)
                    a0_10 = vfma(s, w0, a0_10)
                    s = vbroadcast_at(x, xk + 11 * d)
                    a0_11 = vfma(s, w0, a0_11)
                    s = vbroadcast_at(x, xk + 12 * d)
                    a0_12 = vfma(s, w0, a0_12)
                    s = vbroadcast_at(x, xk + 13 * d)
                    a0_13 = vfma(s, w0, a0_13)
                    s = vbroadcast_at(x, xk + 14 * d)
                    a0_14 = vfma(s, w0, a0_14)
                    s = vbroadcast_at(x, xk + 15 * d)
                    a0_15 = vfma(s, w0, a0_15)
                    s = vbroadcast_at(x, xk + 16 * d)
                    a0_16 = vfma(s, w0, a0_16)
                    s = vbroadcast_at(x, xk + 17 * d)
                    a0_17 = vfma(s, w0, a0_17)
                    s = vbroadcast_at(x, xk + 18 * d)
                    a0_18 = vfma(s, w0, a0_18)
                    s = vbroadcast_at(x, xk + 19 * d)
                    a0_19 = vfma(s, w0, a0_19)
                    s = vbroadcast_at(x, xk + 20 * d)
                    a0_20 = vfma(s, w0, a0_20)
                    s = vbroadcast_at(x, xk + 21 * d)
                    a0_21 = vfma(s, w0, a0_21)
                    s = vbroadcast_at(x, xk + 22 * d)
                    a0_22 = vfma(s, w0, a0_22)
                    s = vbroadcast_at(x, xk + 23 * d)
                    a0_23 = vfma(s, w0, a0_23)
    if skip <= 0 and 0 < lim:
        vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
    if skip <= 1 and 1 < lim:
        vstore(out, oo + 0 * OBS + 1 * VW, vact(a0_1, code, p, q))
    if skip <= 2 and 2 < lim:
        vstore(out, oo + 0 * OBS + 2 * VW, vact(a0_2, code, p, q))
    if skip <= 3 and 3 < lim:
        vstore(out, oo + 0 * OBS + 3 * VW, vact(a0_3, code, p, q))
    if skip <= 4 and 4 < lim:
        vstore(out, oo + 0 * OBS + 4 * VW, vact(a0_4, code, p, q))
    if skip <= 5 and 5 < lim:
        vstore(out, oo + 0 * OBS + 5 * VW, vact(a0_5, code, p, q))
    if skip <= 6 and 6 < lim:
        vstore(out, oo + 0 * OBS + 6 * VW, vact(a0_6, code, p, q))
    if skip <= 7 and 7 < lim:
        vstore(out, oo + 0 * OBS + 7 * VW, vact(a0_7, code, p, q))
    if skip <= 8 and 8 < lim:
        vstore(out, oo + 0 * OBS + 8 * VW, vact(a0_8, code, p, q))
    if skip <= 9 and 9 < lim:
        vstore(out, oo + 0 * OBS + 9 * VW, vact(a0_9, code, p, q))
    if skip <= 10 and 10 < lim:
        vstore(out, oo + 0 * OBS + 10 * VW, vact(a0_10, code, p, q))
    if skip <= 11 and 11 < lim:
        vstore(out, oo + 0 * OBS + 11 * VW, vact(a0_11, code, p, q))
    if skip <= 12 and 12 < lim:
        vstore(out, oo + 0 * OBS + 12 * VW, vact(a0_12, code, p, q))
    if skip <= 13 and 13 < lim:
        vstore(out, oo + 0 * OBS + 13 * VW, vact(a0_13, code, p, q))
    if skip <= 14 and 14 < lim:
        vstore(out, oo + 0 * OBS + 14 * VW, vact(a0_14, code, p, q))
    if skip <= 15 and 15 < lim:
        vstore(out, oo + 0 * OBS + 15 * VW, vact(a0_15, code, p, q))
    if skip <= 16 and 16 < lim:
        vstore(out, oo + 0 * OBS + 16 * VW, vact(a0_16, code, p, q))
    if skip <= 17 and 17 < lim:
        vstore(out, oo + 0 * OBS + 17 * VW, vact(a0_17, code, p, q))
    if skip <= 18 and 18 < lim:
        vstore(out, oo + 0 * OBS + 18 * VW, vact(a0_18, code, p, q))
    if skip <= 19 and 19 < lim:
        vstore(out, oo + 0 * OBS + 19 * VW, vact(a0_19, code, p, q))
    if skip <= 20 and 20 < lim:
        vstore(out, oo + 0 * OBS + 20 * VW, vact(a0_20, code, p, q))
    if skip <= 21 and 21 < lim:
        vstore(out, oo + 0 * OBS + 21 * VW, vact(a0_21, code, p, q))
    if skip <= 22 and 22 < lim:
        vstore(out, oo + 0 * OBS + 22 * VW, vact(a0_22, code, p, q))
    if skip <= 23 and 23 < lim:
        vstore(out, oo + 0 * OBS + 23 * VW, vact(a0_23, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)


@inline
def _cv_2x6(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, skip,
        lim, code, p, q):
    """2 output blocks x 6 pixels of one output row of the general conv (generated; columns inside the input, rows checked)."""
    b0 = vload(bias, bo + 0 * VW)
    b1 = vload(bias, bo + 1 * VW)
    a0_0 = b0
    a1_0 = b1
    a0_1 = b0
    a1_1 = b1
    a0_2 = b0
    a1_2 = b1
    a0_3 = b0
    a1_3 = b1
    a0_4 = b0
    a1_4 = b1
    a0_5 = b0
    a1_5 = b1
    for ci in range(Ci):
        if inb == 1:
            xc = xn + (ci // VW) * HW * VW + ci % VW
        else:
            xc = xn + ci * HW
        for ki in range(KH):
            ih = ih0 + ki * DH
            if ih >= 0 and ih < H:
                xr = xc + (ih * W + iw0) * ps
                wr = wo + (ci * KH + ki) * KW * VW
                for kj in range(KW):
                    xk = xr + kj * DW * ps
                    wk = wr + kj * VW
                    w0 = vload(w, wk)
                    w1 = vload(w, wk + 1 * WOS)
                    s = vbroadcast_at(x, xk)
                    a0_0 = vfma(s, w0, a0_0)
                    a1_0 = vfma(s, w1, a1_0)
                    s = vbroadcast_at(x, xk + 1 * d)
                    a0_1 = vfma(s, w0, a0_1)
                    a1_1 = vfma(s, w1, a1_1)
                    s = vbroadcast_at(x, xk + 2 * d)
                    a0_2 = vfma(s, w0, a0_2)
                    a1_2 = vfma(s, w1, a1_2)
                    s = vbroadcast_at(x, xk + 3 * d)
                    a0_3 = vfma(s, w0, a0_3)
                    a1_3 = vfma(s, w1, a1_3)
                    s = vbroadcast_at(x, xk + 4 * d)
                    a0_4 = vfma(s, w0, a0_4)
                    a1_4 = vfma(s, w1, a1_4)
                    s = vbroadcast_at(x, xk + 5 * d)
                    a0_5 = vfma(s, w0, a0_5)
                    a1_5 = vfma(s, w1, a1_5)
    if skip <= 0 and 0 < lim:
        vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
        vstore(out, oo + 1 * OBS + 0 * VW, vact(a1_0, code, p, q))
    if skip <= 1 and 1 < lim:
        vstore(out, oo + 0 * OBS + 1 * VW, vact(a0_1, code, p, q))
        vstore(out, oo + 1 * OBS + 1 * VW, vact(a1_1, code, p, q))
    if skip <= 2 and 2 < lim:
        vstore(out, oo + 0 * OBS + 2 * VW, vact(a0_2, code, p, q))
        vstore(out, oo + 1 * OBS + 2 * VW, vact(a1_2, code, p, q))
    if skip <= 3 and 3 < lim:
        vstore(out, oo + 0 * OBS + 3 * VW, vact(a0_3, code, p, q))
        vstore(out, oo + 1 * OBS + 3 * VW, vact(a1_3, code, p, q))
    if skip <= 4 and 4 < lim:
        vstore(out, oo + 0 * OBS + 4 * VW, vact(a0_4, code, p, q))
        vstore(out, oo + 1 * OBS + 4 * VW, vact(a1_4, code, p, q))
    if skip <= 5 and 5 < lim:
        vstore(out, oo + 0 * OBS + 5 * VW, vact(a0_5, code, p, q))
        vstore(out, oo + 1 * OBS + 5 * VW, vact(a1_5, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 1 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)
        _prelu_px(out, oo + 1 * OBS + skip * VW, lim - skip, bias, bo + 1 * VW)


@inline
def _cv_1x12(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, skip,
        lim, code, p, q):
    """1 output blocks x 12 pixels of one output row of the general conv (generated; columns inside the input, rows checked)."""
    b0 = vload(bias, bo + 0 * VW)
    a0_0 = b0
    a0_1 = b0
    a0_2 = b0
    a0_3 = b0
    a0_4 = b0
    a0_5 = b0
    a0_6 = b0
    a0_7 = b0
    a0_8 = b0
    a0_9 = b0
    a0_10 = b0
    a0_11 = b0
    for ci in range(Ci):
        if inb == 1:
            xc = xn + (ci // VW) * HW * VW + ci % VW
        else:
            xc = xn + ci * HW
        for ki in range(KH):
            ih = ih0 + ki * DH
            if ih >= 0 and ih < H:
                xr = xc + (ih * W + iw0) * ps
                wr = wo + (ci * KH + ki) * KW * VW
                for kj in range(KW):
                    xk = xr + kj * DW * ps
                    wk = wr + kj * VW
                    w0 = vload(w, wk)
                    s = vbroadcast_at(x, xk)
                    a0_0 = vfma(s, w0, a0_0)
                    s = vbroadcast_at(x, xk + 1 * d)
                    a0_1 = vfma(s, w0, a0_1)
                    s = vbroadcast_at(x, xk + 2 * d)
                    a0_2 = vfma(s, w0, a0_2)
                    s = vbroadcast_at(x, xk + 3 * d)
                    a0_3 = vfma(s, w0, a0_3)
                    s = vbroadcast_at(x, xk + 4 * d)
                    a0_4 = vfma(s, w0, a0_4)
                    s = vbroadcast_at(x, xk + 5 * d)
                    a0_5 = vfma(s, w0, a0_5)
                    s = vbroadcast_at(x, xk + 6 * d)
                    a0_6 = vfma(s, w0, a0_6)
                    s = vbroadcast_at(x, xk + 7 * d)
                    a0_7 = vfma(s, w0, a0_7)
                    s = vbroadcast_at(x, xk + 8 * d)
                    a0_8 = vfma(s, w0, a0_8)
                    s = vbroadcast_at(x, xk + 9 * d)
                    a0_9 = vfma(s, w0, a0_9)
                    s = vbroadcast_at(x, xk + 10 * d)
                    a0_10 = vfma(s, w0, a0_10)
                    s = vbroadcast_at(x, xk + 11 * d)
                    a0_11 = vfma(s, w0, a0_11)
    if skip <= 0 and 0 < lim:
        vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
    if skip <= 1 and 1 < lim:
        vstore(out, oo + 0 * OBS + 1 * VW, vact(a0_1, code, p, q))
    if skip <= 2 and 2 < lim:
        vstore(out, oo + 0 * OBS + 2 * VW, vact(a0_2, code, p, q))
    if skip <= 3 and 3 < lim:
        vstore(out, oo + 0 * OBS + 3 * VW, vact(a0_3, code, p, q))
    if skip <= 4 and 4 < lim:
        vstore(out, oo + 0 * OBS + 4 * VW, vact(a0_4, code, p, q))
    if skip <= 5 and 5 < lim:
        vstore(out, oo + 0 * OBS + 5 * VW, vact(a0_5, code, p, q))
    if skip <= 6 and 6 < lim:
        vstore(out, oo + 0 * OBS + 6 * VW, vact(a0_6, code, p, q))
    if skip <= 7 and 7 < lim:
        vstore(out, oo + 0 * OBS + 7 * VW, vact(a0_7, code, p, q))
    if skip <= 8 and 8 < lim:
        vstore(out, oo + 0 * OBS + 8 * VW, vact(a0_8, code, p, q))
    if skip <= 9 and 9 < lim:
        vstore(out, oo + 0 * OBS + 9 * VW, vact(a0_9, code, p, q))
    if skip <= 10 and 10 < lim:
        vstore(out, oo + 0 * OBS + 10 * VW, vact(a0_10, code, p, q))
    if skip <= 11 and 11 < lim:
        vstore(out, oo + 0 * OBS + 11 * VW, vact(a0_11, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)


@inline
def _cv_4x1(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, skip,
        lim, code, p, q):
    """4 output blocks x 1 pixels of one output row of the general conv (generated; columns inside the input, rows checked)."""
    b0 = vload(bias, bo + 0 * VW)
    b1 = vload(bias, bo + 1 * VW)
    b2 = vload(bias, bo + 2 * VW)
    b3 = vload(bias, bo + 3 * VW)
    a0_0 = b0
    a1_0 = b1
    a2_0 = b2
    a3_0 = b3
    for ci in range(Ci):
        if inb == 1:
            xc = xn + (ci // VW) * HW * VW + ci % VW
        else:
            xc = xn + ci * HW
        for ki in range(KH):
            ih = ih0 + ki * DH
            if ih >= 0 and ih < H:
                xr = xc + (ih * W + iw0) * ps
                wr = wo + (ci * KH + ki) * KW * VW
                for kj in range(KW):
                    xk = xr + kj * DW * ps
                    wk = wr + kj * VW
                    w0 = vload(w, wk)
                    w1 = vload(w, wk + 1 * WOS)
                    w2 = vload(w, wk + 2 * WOS)
                    w3 = vload(w, wk + 3 * WOS)
                    s = vbroadcast_at(x, xk)
                    a0_0 = vfma(s, w0, a0_0)
                    a1_0 = vfma(s, w1, a1_0)
                    a2_0 = vfma(s, w2, a2_0)
                    a3_0 = vfma(s, w3, a3_0)
    vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
    vstore(out, oo + 1 * OBS + 0 * VW, vact(a1_0, code, p, q))
    vstore(out, oo + 2 * OBS + 0 * VW, vact(a2_0, code, p, q))
    vstore(out, oo + 3 * OBS + 0 * VW, vact(a3_0, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 1 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 2 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 3 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)
        _prelu_px(out, oo + 1 * OBS + skip * VW, lim - skip, bias, bo + 1 * VW)
        _prelu_px(out, oo + 2 * OBS + skip * VW, lim - skip, bias, bo + 2 * VW)
        _prelu_px(out, oo + 3 * OBS + skip * VW, lim - skip, bias, bo + 3 * VW)


@inline
def _cv_2x1(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, skip,
        lim, code, p, q):
    """2 output blocks x 1 pixels of one output row of the general conv (generated; columns inside the input, rows checked)."""
    b0 = vload(bias, bo + 0 * VW)
    b1 = vload(bias, bo + 1 * VW)
    a0_0 = b0
    a1_0 = b1
    for ci in range(Ci):
        if inb == 1:
            xc = xn + (ci // VW) * HW * VW + ci % VW
        else:
            xc = xn + ci * HW
        for ki in range(KH):
            ih = ih0 + ki * DH
            if ih >= 0 and ih < H:
                xr = xc + (ih * W + iw0) * ps
                wr = wo + (ci * KH + ki) * KW * VW
                for kj in range(KW):
                    xk = xr + kj * DW * ps
                    wk = wr + kj * VW
                    w0 = vload(w, wk)
                    w1 = vload(w, wk + 1 * WOS)
                    s = vbroadcast_at(x, xk)
                    a0_0 = vfma(s, w0, a0_0)
                    a1_0 = vfma(s, w1, a1_0)
    vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
    vstore(out, oo + 1 * OBS + 0 * VW, vact(a1_0, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 1 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)
        _prelu_px(out, oo + 1 * OBS + skip * VW, lim - skip, bias, bo + 1 * VW)


@inline
def _cv_1x1(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, skip,
        lim, code, p, q):
    """1 output blocks x 1 pixels of one output row of the general conv (generated; columns inside the input, rows checked)."""
    b0 = vload(bias, bo + 0 * VW)
    a0_0 = b0
    for ci in range(Ci):
        if inb == 1:
            xc = xn + (ci // VW) * HW * VW + ci % VW
        else:
            xc = xn + ci * HW
        for ki in range(KH):
            ih = ih0 + ki * DH
            if ih >= 0 and ih < H:
                xr = xc + (ih * W + iw0) * ps
                wr = wo + (ci * KH + ki) * KW * VW
                for kj in range(KW):
                    xk = xr + kj * DW * ps
                    wk = wr + kj * VW
                    w0 = vload(w, wk)
                    s = vbroadcast_at(x, xk)
                    a0_0 = vfma(s, w0, a0_0)
    vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)


@inline
def _cvc_4(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, skip,
        lim, code, p, q):
    """4 output blocks x 1 pixels of one output row of the general conv (generated; taps outside the input skipped)."""
    b0 = vload(bias, bo + 0 * VW)
    b1 = vload(bias, bo + 1 * VW)
    b2 = vload(bias, bo + 2 * VW)
    b3 = vload(bias, bo + 3 * VW)
    a0_0 = b0
    a1_0 = b1
    a2_0 = b2
    a3_0 = b3
    for ci in range(Ci):
        if inb == 1:
            xc = xn + (ci // VW) * HW * VW + ci % VW
        else:
            xc = xn + ci * HW
        for ki in range(KH):
            ih = ih0 + ki * DH
            if ih >= 0 and ih < H:
                xr = xc + (ih * W + iw0) * ps
                wr = wo + (ci * KH + ki) * KW * VW
                for kj in range(KW):
                    iw = iw0 + kj * DW
                    if iw >= 0 and iw < W:
                        xk = xr + kj * DW * ps
                        wk = wr + kj * VW
                        w0 = vload(w, wk)
                        w1 = vload(w, wk + 1 * WOS)
                        w2 = vload(w, wk + 2 * WOS)
                        w3 = vload(w, wk + 3 * WOS)
                        s = vbroadcast_at(x, xk)
                        a0_0 = vfma(s, w0, a0_0)
                        a1_0 = vfma(s, w1, a1_0)
                        a2_0 = vfma(s, w2, a2_0)
                        a3_0 = vfma(s, w3, a3_0)
    vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
    vstore(out, oo + 1 * OBS + 0 * VW, vact(a1_0, code, p, q))
    vstore(out, oo + 2 * OBS + 0 * VW, vact(a2_0, code, p, q))
    vstore(out, oo + 3 * OBS + 0 * VW, vact(a3_0, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 1 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 2 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 3 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)
        _prelu_px(out, oo + 1 * OBS + skip * VW, lim - skip, bias, bo + 1 * VW)
        _prelu_px(out, oo + 2 * OBS + skip * VW, lim - skip, bias, bo + 2 * VW)
        _prelu_px(out, oo + 3 * OBS + skip * VW, lim - skip, bias, bo + 3 * VW)


@inline
def _cvc_2(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, skip,
        lim, code, p, q):
    """2 output blocks x 1 pixels of one output row of the general conv (generated; taps outside the input skipped)."""
    b0 = vload(bias, bo + 0 * VW)
    b1 = vload(bias, bo + 1 * VW)
    a0_0 = b0
    a1_0 = b1
    for ci in range(Ci):
        if inb == 1:
            xc = xn + (ci // VW) * HW * VW + ci % VW
        else:
            xc = xn + ci * HW
        for ki in range(KH):
            ih = ih0 + ki * DH
            if ih >= 0 and ih < H:
                xr = xc + (ih * W + iw0) * ps
                wr = wo + (ci * KH + ki) * KW * VW
                for kj in range(KW):
                    iw = iw0 + kj * DW
                    if iw >= 0 and iw < W:
                        xk = xr + kj * DW * ps
                        wk = wr + kj * VW
                        w0 = vload(w, wk)
                        w1 = vload(w, wk + 1 * WOS)
                        s = vbroadcast_at(x, xk)
                        a0_0 = vfma(s, w0, a0_0)
                        a1_0 = vfma(s, w1, a1_0)
    vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
    vstore(out, oo + 1 * OBS + 0 * VW, vact(a1_0, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
        _act_span(out, oo + 1 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)
        _prelu_px(out, oo + 1 * OBS + skip * VW, lim - skip, bias, bo + 1 * VW)


@inline
def _cvc_1(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, skip,
        lim, code, p, q):
    """1 output blocks x 1 pixels of one output row of the general conv (generated; taps outside the input skipped)."""
    b0 = vload(bias, bo + 0 * VW)
    a0_0 = b0
    for ci in range(Ci):
        if inb == 1:
            xc = xn + (ci // VW) * HW * VW + ci % VW
        else:
            xc = xn + ci * HW
        for ki in range(KH):
            ih = ih0 + ki * DH
            if ih >= 0 and ih < H:
                xr = xc + (ih * W + iw0) * ps
                wr = wo + (ci * KH + ki) * KW * VW
                for kj in range(KW):
                    iw = iw0 + kj * DW
                    if iw >= 0 and iw < W:
                        xk = xr + kj * DW * ps
                        wk = wr + kj * VW
                        w0 = vload(w, wk)
                        s = vbroadcast_at(x, xk)
                        a0_0 = vfma(s, w0, a0_0)
    vstore(out, oo + 0 * OBS + 0 * VW, vact(a0_0, code, p, q))
    if CLIP < code < PRELU:
        _act_span(out, oo + 0 * OBS + skip * VW, (lim - skip) * VW, code, p, q)
    elif code == PRELU:
        _prelu_px(out, oo + 0 * OBS + skip * VW, lim - skip, bias, bo + 0 * VW)


@inline
def _dw_8(x, xb, H, W, ih0, iw0, w, wb, bv, out, oo, KH, KW, S, lo, hi):
    """8 consecutive output pixels of a depthwise row (generated): every column inside the input."""
    a0 = bv
    a1 = bv
    a2 = bv
    a3 = bv
    a4 = bv
    a5 = bv
    a6 = bv
    a7 = bv
    for ki in range(KH):
        ih = ih0 + ki
        if ih >= 0 and ih < H:
            xr = xb + (ih * W + iw0) * VW
            for kj in range(KW):
                wv = vload(w, wb + (ki * KW + kj) * VW)
                a0 = vfma(wv, vload(x, xr + (0 * S + kj) * VW), a0)
                a1 = vfma(wv, vload(x, xr + (1 * S + kj) * VW), a1)
                a2 = vfma(wv, vload(x, xr + (2 * S + kj) * VW), a2)
                a3 = vfma(wv, vload(x, xr + (3 * S + kj) * VW), a3)
                a4 = vfma(wv, vload(x, xr + (4 * S + kj) * VW), a4)
                a5 = vfma(wv, vload(x, xr + (5 * S + kj) * VW), a5)
                a6 = vfma(wv, vload(x, xr + (6 * S + kj) * VW), a6)
                a7 = vfma(wv, vload(x, xr + (7 * S + kj) * VW), a7)
    vstore(out, oo + 0 * VW, vclamp(a0, lo, hi))
    vstore(out, oo + 1 * VW, vclamp(a1, lo, hi))
    vstore(out, oo + 2 * VW, vclamp(a2, lo, hi))
    vstore(out, oo + 3 * VW, vclamp(a3, lo, hi))
    vstore(out, oo + 4 * VW, vclamp(a4, lo, hi))
    vstore(out, oo + 5 * VW, vclamp(a5, lo, hi))
    vstore(out, oo + 6 * VW, vclamp(a6, lo, hi))
    vstore(out, oo + 7 * VW, vclamp(a7, lo, hi))


@inline
def _dwc_8(x, xb, H, W, ih0, iw0, w, wb, bv, out, oo, KH, KW, S, lo, hi, nv):
    """8 consecutive output pixels of a depthwise row (generated): taps outside the input skipped, the first nv pixels stored."""
    a0 = bv
    a1 = bv
    a2 = bv
    a3 = bv
    a4 = bv
    a5 = bv
    a6 = bv
    a7 = bv
    for ki in range(KH):
        ih = ih0 + ki
        if ih >= 0 and ih < H:
            xr = xb + (ih * W + iw0) * VW
            for kj in range(KW):
                wv = vload(w, wb + (ki * KW + kj) * VW)
                if iw0 + 0 * S + kj >= 0 and iw0 + 0 * S + kj < W:
                    a0 = vfma(wv, vload(x, xr + (0 * S + kj) * VW), a0)
                if iw0 + 1 * S + kj >= 0 and iw0 + 1 * S + kj < W:
                    a1 = vfma(wv, vload(x, xr + (1 * S + kj) * VW), a1)
                if iw0 + 2 * S + kj >= 0 and iw0 + 2 * S + kj < W:
                    a2 = vfma(wv, vload(x, xr + (2 * S + kj) * VW), a2)
                if iw0 + 3 * S + kj >= 0 and iw0 + 3 * S + kj < W:
                    a3 = vfma(wv, vload(x, xr + (3 * S + kj) * VW), a3)
                if iw0 + 4 * S + kj >= 0 and iw0 + 4 * S + kj < W:
                    a4 = vfma(wv, vload(x, xr + (4 * S + kj) * VW), a4)
                if iw0 + 5 * S + kj >= 0 and iw0 + 5 * S + kj < W:
                    a5 = vfma(wv, vload(x, xr + (5 * S + kj) * VW), a5)
                if iw0 + 6 * S + kj >= 0 and iw0 + 6 * S + kj < W:
                    a6 = vfma(wv, vload(x, xr + (6 * S + kj) * VW), a6)
                if iw0 + 7 * S + kj >= 0 and iw0 + 7 * S + kj < W:
                    a7 = vfma(wv, vload(x, xr + (7 * S + kj) * VW), a7)
    vstore(out, oo + 0 * VW, vclamp(a0, lo, hi))
    if 1 < nv:
        vstore(out, oo + 1 * VW, vclamp(a1, lo, hi))
    if 2 < nv:
        vstore(out, oo + 2 * VW, vclamp(a2, lo, hi))
    if 3 < nv:
        vstore(out, oo + 3 * VW, vclamp(a3, lo, hi))
    if 4 < nv:
        vstore(out, oo + 4 * VW, vclamp(a4, lo, hi))
    if 5 < nv:
        vstore(out, oo + 5 * VW, vclamp(a5, lo, hi))
    if 6 < nv:
        vstore(out, oo + 6 * VW, vclamp(a6, lo, hi))
    if 7 < nv:
        vstore(out, oo + 7 * VW, vclamp(a7, lo, hi))


@kernel
def _c1_run4(x, w, bias, r, out, has_res, xn, on, ob, WOS, CBi, KL, XBS, P, c0, c1, code, p, q):
    """Pixels [c0, c1) of output blocks ob..ob+3: full-width tiles; a remainder of 6 pixels or more
    as one tile shifted back (storing only its new pixels), a smaller one pixel by pixel (4 chains)."""
    wo = ob * WOS
    bo = ob * VW
    pix = c0
    while pix + 6 <= c1:
        _c1_4x6(x, xn + pix * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + pix * VW,
                 XBS, np.int64(0), np.int64(6), code, p, q)
        pix += 6
    if c1 - pix >= 6 and P >= 6:
        st = min(pix, P - 6)
        _c1_4x6(x, xn + st * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + st * VW,
                 XBS, pix - st, c1 - st, code, p, q)
        pix = c1
    zero, one = np.int64(0), np.int64(1)
    while pix < c1:
        _c1_4x1(x, xn + pix * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + pix * VW, XBS,
                zero, one, code, p, q)
        pix += 1


@kernel
def _c1_run2(x, w, bias, r, out, has_res, xn, on, ob, WOS, CBi, KL, XBS, P, c0, c1, code, p, q):
    """Pixels [c0, c1) of output blocks ob..ob+1: full-width tiles; a remainder of 6 pixels or more
    as one tile shifted back (storing only its new pixels), a smaller one pixel by pixel (2 chains)."""
    wo = ob * WOS
    bo = ob * VW
    if VW == 8:
        pix = c0
        while pix + 6 <= c1:
            _c1_2x6(x, xn + pix * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + pix * VW,
                     XBS, np.int64(0), np.int64(6), code, p, q)
            pix += 6
        if c1 - pix >= 6 and P >= 6:
            st = min(pix, P - 6)
            _c1_2x6(x, xn + st * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + st * VW,
                     XBS, pix - st, c1 - st, code, p, q)
            pix = c1
        zero, one = np.int64(0), np.int64(1)
        while pix < c1:
            _c1_2x1(x, xn + pix * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + pix * VW, XBS,
                    zero, one, code, p, q)
            pix += 1
    else:
        pix = c0
        while pix + 12 <= c1:
            _c1_2x12(x, xn + pix * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + pix * VW,
                     XBS, np.int64(0), np.int64(12), code, p, q)
            pix += 12
        if c1 - pix >= 6 and P >= 12:
            st = min(pix, P - 12)
            _c1_2x12(x, xn + st * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + st * VW,
                     XBS, pix - st, c1 - st, code, p, q)
            pix = c1
        zero, one = np.int64(0), np.int64(1)
        while pix < c1:
            _c1_2x1(x, xn + pix * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + pix * VW, XBS,
                    zero, one, code, p, q)
            pix += 1


@kernel
def _c1_run1(x, w, bias, r, out, has_res, xn, on, ob, WOS, CBi, KL, XBS, P, c0, c1, code, p, q):
    """Pixels [c0, c1) of output blocks ob..ob+0: full-width tiles; a remainder of 6 pixels or more
    as one tile shifted back (storing only its new pixels), a smaller one pixel by pixel (1 chains)."""
    wo = ob * WOS
    bo = ob * VW
    if VW == 8:
        pix = c0
        while pix + 12 <= c1:
            _c1_1x12(x, xn + pix * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + pix * VW,
                     XBS, np.int64(0), np.int64(12), code, p, q)
            pix += 12
        if c1 - pix >= 6 and P >= 12:
            st = min(pix, P - 12)
            _c1_1x12(x, xn + st * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + st * VW,
                     XBS, pix - st, c1 - st, code, p, q)
            pix = c1
        zero, one = np.int64(0), np.int64(1)
        while pix < c1:
            _c1_1x1(x, xn + pix * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + pix * VW, XBS,
                    zero, one, code, p, q)
            pix += 1
    else:
        pix = c0
        while pix + 24 <= c1:
            _c1_1x24(x, xn + pix * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + pix * VW,
                     XBS, np.int64(0), np.int64(24), code, p, q)
            pix += 24
        if c1 - pix >= 6 and P >= 24:
            st = min(pix, P - 24)
            _c1_1x24(x, xn + st * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + st * VW,
                     XBS, pix - st, c1 - st, code, p, q)
            pix = c1
        zero, one = np.int64(0), np.int64(1)
        while pix < c1:
            _c1_1x1(x, xn + pix * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + pix * VW, XBS,
                    zero, one, code, p, q)
            pix += 1


@kernel
def _cv_row4(x, w, bias, out, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, SW, PL, d, ps, ob, WOS, orow,
            OBS, OW, lo, hi, code, p, q):
    """One output row of output blocks ob..ob+3: edge columns [0, lo) and [hi, OW) one checked pixel
    at a time, the interior in full-width tiles (the last shifted back, storing only new pixels)."""
    wo = ob * WOS
    bo = ob * VW
    zero, one = np.int64(0), np.int64(1)
    for ow in range(lo):
        _cvc_4(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, ow * SW - PL, d, ps, w, wo, WOS, bias, bo, out, orow + ow * VW, OBS, zero, one, code, p, q)
    if hi - lo >= 6:
        ow = lo
        while ow < hi:
            st = min(ow, hi - 6)
            iw0 = st * SW - PL
            oo = orow + st * VW
            if d == 2:  # the pixel step as a constant: addresses fold into displacements
                _cv_4x6(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, 2, ps, w, wo, WOS, bias, bo, out, oo, OBS, ow - st,
                        np.int64(6), code, p, q)
            else:
                _cv_4x6(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, ow - st,
                        np.int64(6), code, p, q)
            ow += 6
    else:
        for ow in range(lo, hi):
            _cv_4x1(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, ow * SW - PL, d, ps, w, wo, WOS, bias, bo, out, orow + ow * VW, OBS, zero, one,
                    code, p, q)
    for ow in range(max(lo, hi), OW):
        _cvc_4(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, ow * SW - PL, d, ps, w, wo, WOS, bias, bo, out, orow + ow * VW, OBS, zero, one, code, p, q)


@kernel
def _cv_row2(x, w, bias, out, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, SW, PL, d, ps, ob, WOS, orow,
            OBS, OW, lo, hi, code, p, q):
    """One output row of output blocks ob..ob+1: edge columns [0, lo) and [hi, OW) one checked pixel
    at a time, the interior in full-width tiles (the last shifted back, storing only new pixels)."""
    wo = ob * WOS
    bo = ob * VW
    zero, one = np.int64(0), np.int64(1)
    for ow in range(lo):
        _cvc_2(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, ow * SW - PL, d, ps, w, wo, WOS, bias, bo, out, orow + ow * VW, OBS, zero, one, code, p, q)
    if VW == 8:
        if hi - lo >= 6:
            ow = lo
            while ow < hi:
                st = min(ow, hi - 6)
                iw0 = st * SW - PL
                oo = orow + st * VW
                if d == 2:  # the pixel step as a constant: addresses fold into displacements
                    _cv_2x6(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, 2, ps, w, wo, WOS, bias, bo, out, oo, OBS, ow - st,
                            np.int64(6), code, p, q)
                else:
                    _cv_2x6(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, ow - st,
                            np.int64(6), code, p, q)
                ow += 6
        else:
            for ow in range(lo, hi):
                _cv_2x1(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, ow * SW - PL, d, ps, w, wo, WOS, bias, bo, out, orow + ow * VW, OBS, zero, one,
                        code, p, q)
    else:
        if hi - lo >= 12:
            ow = lo
            while ow < hi:
                st = min(ow, hi - 12)
                iw0 = st * SW - PL
                oo = orow + st * VW
                if d == 2:  # the pixel step as a constant: addresses fold into displacements
                    _cv_2x12(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, 2, ps, w, wo, WOS, bias, bo, out, oo, OBS, ow - st,
                            np.int64(12), code, p, q)
                else:
                    _cv_2x12(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, ow - st,
                            np.int64(12), code, p, q)
                ow += 12
        else:
            for ow in range(lo, hi):
                _cv_2x1(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, ow * SW - PL, d, ps, w, wo, WOS, bias, bo, out, orow + ow * VW, OBS, zero, one,
                        code, p, q)
    for ow in range(max(lo, hi), OW):
        _cvc_2(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, ow * SW - PL, d, ps, w, wo, WOS, bias, bo, out, orow + ow * VW, OBS, zero, one, code, p, q)


@kernel
def _cv_row1(x, w, bias, out, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, SW, PL, d, ps, ob, WOS, orow,
            OBS, OW, lo, hi, code, p, q):
    """One output row of output blocks ob..ob+0: edge columns [0, lo) and [hi, OW) one checked pixel
    at a time, the interior in full-width tiles (the last shifted back, storing only new pixels)."""
    wo = ob * WOS
    bo = ob * VW
    zero, one = np.int64(0), np.int64(1)
    for ow in range(lo):
        _cvc_1(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, ow * SW - PL, d, ps, w, wo, WOS, bias, bo, out, orow + ow * VW, OBS, zero, one, code, p, q)
    if VW == 8:
        if hi - lo >= 12:
            ow = lo
            while ow < hi:
                st = min(ow, hi - 12)
                iw0 = st * SW - PL
                oo = orow + st * VW
                if d == 2:  # the pixel step as a constant: addresses fold into displacements
                    _cv_1x12(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, 2, ps, w, wo, WOS, bias, bo, out, oo, OBS, ow - st,
                            np.int64(12), code, p, q)
                else:
                    _cv_1x12(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, ow - st,
                            np.int64(12), code, p, q)
                ow += 12
        else:
            for ow in range(lo, hi):
                _cv_1x1(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, ow * SW - PL, d, ps, w, wo, WOS, bias, bo, out, orow + ow * VW, OBS, zero, one,
                        code, p, q)
    else:
        if hi - lo >= 24:
            ow = lo
            while ow < hi:
                st = min(ow, hi - 24)
                iw0 = st * SW - PL
                oo = orow + st * VW
                if d == 2:  # the pixel step as a constant: addresses fold into displacements
                    _cv_1x24(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, 2, ps, w, wo, WOS, bias, bo, out, oo, OBS, ow - st,
                            np.int64(24), code, p, q)
                else:
                    _cv_1x24(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, ow - st,
                            np.int64(24), code, p, q)
                ow += 24
        else:
            for ow in range(lo, hi):
                _cv_1x1(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, ow * SW - PL, d, ps, w, wo, WOS, bias, bo, out, orow + ow * VW, OBS, zero, one,
                        code, p, q)
    for ow in range(max(lo, hi), OW):
        _cvc_1(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, ow * SW - PL, d, ps, w, wo, WOS, bias, bo, out, orow + ow * VW, OBS, zero, one, code, p, q)


# --- end of generated micro-kernels ---


# --- layout conversion -------------------------------------------------------------------------
REORDER_CHUNK = 256  # pixels per work item of the reorders (the item's blocked output: 16 KiB on AVX-512)


@inline
def _reorder_items(g):
    N, C, P = g[0], g[1], g[2]
    CB = (C + VW - 1) // VW
    nch = (P + REORDER_CHUNK - 1) // REORDER_CHUNK
    return N * CB * nch, CB, nch


@inline
def _to_item(x, out, g, it, CB, nch):
    """Pixels of chunk it: VW pixels at a time, each lane's run of VW floats written to the lane's
    place in VW pixel vectors (1 KiB of output per step: stays in L1 while its 16 lanes arrive)."""
    C, P = g[1], g[2]
    ch = it // (g[0] * CB)  # pixel chunk first: a worker's band of items is a band of pixels (work.py)
    nb = it - ch * (g[0] * CB)
    n = nb // CB
    cb = nb - n * CB
    p0 = ch * REORDER_CHUNK
    p1 = min(P, p0 + REORDER_CHUNK)
    ob = nb * P * VW
    nc = min(VW, C - cb * VW)
    for q0 in range(p0, p1, VW):
        m = min(VW, p1 - q0)
        for lane in range(nc):
            src = x[(n * C + cb * VW + lane) * P + q0:(n * C + cb * VW + lane) * P + q0 + m]
            dst = out[ob + q0 * VW + lane:ob + (q0 + m) * VW]
            if m == VW:  # a constant trip count: fully unrolled
                for i in range(VW):
                    dst[i * VW] = src[i]
            else:
                for i in range(m):
                    dst[i * VW] = src[i]
        for lane in range(nc, VW):
            dst = out[ob + q0 * VW + lane:ob + (q0 + m) * VW]
            for i in range(m):
                dst[i * VW] = 0.0


@inline
def _from_item(x, out, g, it, CB, nch):
    C, P = g[1], g[2]
    ch = it // (g[0] * CB)  # pixel chunk first: a worker's band of items is a band of pixels (work.py)
    nb = it - ch * (g[0] * CB)
    n = nb // CB
    cb = nb - n * CB
    p0 = ch * REORDER_CHUNK
    p1 = min(P, p0 + REORDER_CHUNK)
    xb = nb * P * VW
    nc = min(VW, C - cb * VW)
    for q0 in range(p0, p1, VW):
        m = min(VW, p1 - q0)
        for lane in range(nc):
            dst = out[(n * C + cb * VW + lane) * P + q0:(n * C + cb * VW + lane) * P + q0 + m]
            src = x[xb + q0 * VW + lane:xb + (q0 + m) * VW]
            if m == VW:
                for i in range(VW):
                    dst[i] = src[i * VW]
            else:
                for i in range(m):
                    dst[i] = src[i * VW]


@kernel
def f32_to_blocked(x, out, g):
    """out blocked [N][CB][P][VW] (pad lanes 0) from plain x [N][C][P]; g = [N, C, P]."""
    total, CB, nch = _reorder_items(g)
    for it in range(total):
        _to_item(x, out, g, it, CB, nch)


@kernel(parallel=True)
def f32_to_blocked_mt(x, out, g, work):
    total, CB, nch = _reorder_items(g)
    start_work(work)
    for _t in prange(work[0]):
        it = take(work, _t, total)
        while it >= 0:
            _to_item(x, out, g, it, CB, nch)
            it = take(work, _t, total)


@kernel
def f32_from_blocked(x, out, g):
    """out plain [N][C][P] from blocked x [N][CB][P][VW] (pad lanes dropped); g = [N, C, P]."""
    total, CB, nch = _reorder_items(g)
    for it in range(total):
        _from_item(x, out, g, it, CB, nch)


@kernel(parallel=True)
def f32_from_blocked_mt(x, out, g, work):
    total, CB, nch = _reorder_items(g)
    start_work(work)
    for _t in prange(work[0]):
        it = take(work, _t, total)
        while it >= 0:
            _from_item(x, out, g, it, CB, nch)
            it = take(work, _t, total)


# --- 1x1 convolution ---------------------------------------------------------------------------
@inline
def _c1_split(g, mt):
    """(pixels per chunk, chunks, groups of 4 output blocks) per image. Serial chunks are whole
    multiples of 24 pixels (every tile width) holding about C1_CHUNK_FLOATS input floats; parallel
    ones are cut smaller (multiples of 6) until there are MT_ITEMS work items."""
    N, CBi, CBo, P = g[C1_N], g[C1_CBI], g[C1_CBO], g[C1_P]
    nog = (CBo + 3) // 4
    pc = max(24, C1_CHUNK_FLOATS // (CBi * VW) // 24 * 24)
    if mt:
        want = (MT_ITEMS + N * nog - 1) // (N * nog)
        pc = max(6, min(pc, ((P + want - 1) // want + 5) // 6 * 6))
    return pc, (P + pc - 1) // pc, nog


@kernel
def _c1_item(x, w, bias, r, out, g, it, pc, nch, nog, code, p, q):
    """Work item it = (image, pixel chunk, group of up to 4 output blocks)."""
    CBi, CBo, P, has_res = g[C1_CBI], g[C1_CBO], g[C1_P], g[C1_RES]
    n = it // (nch * nog)
    rest = it - n * nch * nog
    ch = rest // nog
    ob = (rest - ch * nog) * 4
    c0 = ch * pc
    c1 = min(P, c0 + pc)
    XBS = P * VW
    WOS = CBi * VW * VW
    xn = n * CBi * XBS
    # Optional g[C1_K]: the real input channel count; the pad lanes of the last input block are then
    # skipped (their weights are zero anyway): 24 channels cost 24, not 32, FMAs per output on AVX-512.
    KL = VW
    if g.size > C1_K:
        KL = max(1, min(VW, g[C1_K] - (CBi - 1) * VW))
    nob = min(4, CBo - ob)
    if nob == 4 and VW != 8:
        _c1_run4(x, w, bias, r, out, has_res, xn, (n * CBo + ob) * XBS, ob, WOS, CBi, KL, XBS, P, c0, c1, code, p, q)
        return
    while nob >= 2:  # with AVX2's 16 registers a group of 4 runs as two of 2
        _c1_run2(x, w, bias, r, out, has_res, xn, (n * CBo + ob) * XBS, ob, WOS, CBi, KL, XBS, P, c0, c1, code, p, q)
        ob += 2
        nob -= 2
    if nob == 1:
        _c1_run1(x, w, bias, r, out, has_res, xn, (n * CBo + ob) * XBS, ob, WOS, CBi, KL, XBS, P, c0, c1, code, p, q)


@kernel
def f32_blocked_conv1x1(x, w, bias, r, out, g, code, p, q):
    """1x1 conv, stride 1, blocked in and out: out = act(W x + bias (+ r)). g = [N, CBi, CBo, P, has_res(, K)];
    w from pack_conv1x1, bias from pad_bias; r (blocked like out) is read only when has_res == 1."""
    pc, nch, nog = _c1_split(g, False)
    for it in range(g[C1_N] * nch * nog):
        _c1_item(x, w, bias, r, out, g, it, pc, nch, nog, code, p, q)


@kernel(parallel=True)
def f32_blocked_conv1x1_mt(x, w, bias, r, out, g, code, p, q, work):
    pc, nch, nog = _c1_split(g, True)
    total = g[C1_N] * nch * nog
    start_work(work)
    for _t in prange(work[0]):
        it = take(work, _t, total)
        while it >= 0:
            _c1_item(x, w, bias, r, out, g, it, pc, nch, nog, code, p, q)
            it = take(work, _t, total)


# --- depthwise convolution ---------------------------------------------------------------------
@inline
def _dw_px(x, xb, H, W, ih0, iw0, w, wb, bv, KH, KW):
    """One output pixel, taps outside the input skipped (row edges of wide rows)."""
    a = bv
    for ki in range(KH):
        ih = ih0 + ki
        if ih >= 0 and ih < H:
            for kj in range(KW):
                iw = iw0 + kj
                if iw >= 0 and iw < W:
                    a = vfma(vload(w, wb + (ki * KW + kj) * VW), vload(x, xb + (ih * W + iw) * VW), a)
    return a


@inline
def _dw_row(x, xb, w, wb, bv, out, orow, H, W, OW, ih0, PL, lo, hi, KH, KW, S):
    """One output row (KH, KW, S literal on the fast paths): columns whose taps are all inside the
    input in unchecked 8-pixel tiles (the last shifted back), edge columns one checked pixel at a
    time; rows without 8 such columns in checked 8-pixel tiles."""
    ilo = min(OW, (PL + S - 1) // S)  # first column whose taps are all inside the input
    ihi = max(ilo, min(OW, (W - KW + PL) // S + 1))  # past the last one
    if ihi - ilo < 8:
        for ow in range(0, OW, 8):
            st = min(ow, max(np.int64(0), OW - 8))
            _dwc_8(x, xb, H, W, ih0, st * S - PL, w, wb, bv, out, orow + st * VW, KH, KW, S, lo, hi,
                   min(np.int64(8), OW - st))
        return
    for ow in range(ilo):
        vstore(out, orow + ow * VW, vclamp(_dw_px(x, xb, H, W, ih0, ow * S - PL, w, wb, bv, KH, KW), lo, hi))
    ow = ilo
    while ow < ihi:
        st = min(ow, ihi - 8)
        _dw_8(x, xb, H, W, ih0, st * S - PL, w, wb, bv, out, orow + st * VW, KH, KW, S, lo, hi)
        ow = st + 8
    for ow in range(ihi, OW):
        vstore(out, orow + ow * VW, vclamp(_dw_px(x, xb, H, W, ih0, ow * S - PL, w, wb, bv, KH, KW), lo, hi))


@kernel
def _dw_rows(x, w, bias, out, g, nb, oh0, oh1, code, p, q):
    """Output rows oh0..oh1-1 of block nb = n*CB + cb."""
    CB, H, W, OH, OW = g[DW_CB], g[DW_H], g[DW_W], g[DW_OH], g[DW_OW]
    KH, KW, SH, SW, PT, PL = g[DW_KH], g[DW_KW], g[DW_SH], g[DW_SW], g[DW_PT], g[DW_PL]
    cb = nb % CB
    xb = nb * H * W * VW
    wb = cb * KH * KW * VW
    bv = vload(bias, cb * VW)
    lo, hi = -np.inf, np.inf
    if code == RELU:
        lo = 0.0
    elif code == CLIP:
        lo, hi = p, q
    fast = KH == KW and SH == SW and (KH == 3 or KH == 5) and (SH == 1 or SH == 2)
    for oh in range(oh0, oh1):
        orow = (nb * OH + oh) * OW * VW
        ih0 = oh * SH - PT
        if fast:
            if KH == 3 and SH == 1:
                _dw_row(x, xb, w, wb, bv, out, orow, H, W, OW, ih0, PL, lo, hi, 3, 3, 1)
            elif KH == 3:
                _dw_row(x, xb, w, wb, bv, out, orow, H, W, OW, ih0, PL, lo, hi, 3, 3, 2)
            elif SH == 1:
                _dw_row(x, xb, w, wb, bv, out, orow, H, W, OW, ih0, PL, lo, hi, 5, 5, 1)
            else:
                _dw_row(x, xb, w, wb, bv, out, orow, H, W, OW, ih0, PL, lo, hi, 5, 5, 2)
        else:
            for ow in range(0, OW, 8):
                _dwc_8(x, xb, H, W, ih0, ow * SW - PL, w, wb, bv, out, orow + ow * VW, KH, KW, SW, lo, hi,
                       min(np.int64(8), OW - ow))
        if code > CLIP:
            _act_span(out, orow, OW * VW, code, p, q)


@inline
def _dw_split(g):
    """(blocks, row chunks per block): enough items for MT_ITEMS in parallel, and at least 4 row
    chunks, so that workers' bands (work.py) are bands of rows, as in the 1x1 convs around."""
    nblk = g[DW_N] * g[DW_CB]
    return nblk, spans_per_plane(nblk, g[DW_OH], MT_ITEMS)


@kernel
def f32_blocked_dwconv(x, w, bias, out, g, code, p, q):
    """Depthwise conv, blocked in and out; w from pack_dwconv, bias from pad_bias.
    g = [N, CB, H, W, OH, OW, KH, KW, SH, SW, PT, PL] (no dilation)."""
    for nb in range(g[DW_N] * g[DW_CB]):
        _dw_rows(x, w, bias, out, g, nb, np.int64(0), g[DW_OH], code, p, q)


@kernel(parallel=True)
def f32_blocked_dwconv_mt(x, w, bias, out, g, code, p, q, work):
    nblk, nch = _dw_split(g)
    OH = g[DW_OH]
    start_work(work)
    for _t in prange(work[0]):
        it = take(work, _t, nblk * nch)
        while it >= 0:
            nb, oh0, oh1 = band_item(it, nblk, OH, nch)
            _dw_rows(x, w, bias, out, g, nb, oh0, oh1, code, p, q)
            it = take(work, _t, nblk * nch)


# --- general dense convolution -----------------------------------------------------------------
@kernel
def _cv_item(x, w, bias, out, g, it, code, p, q):
    """Work item it = (image n, output row oh, group of up to 4 output blocks)."""
    C, CBo, H, W, OH, OW = g[CV_C], g[CV_CBO], g[CV_H], g[CV_W], g[CV_OH], g[CV_OW]
    KH, KW, SH, SW, PT, PL, DH, DW, inb = (g[CV_KH], g[CV_KW], g[CV_SH], g[CV_SW], g[CV_PT], g[CV_PL],
                                          g[CV_DH], g[CV_DW], g[CV_INB])
    nog = (CBo + 3) // 4
    n = it // (OH * nog)
    rest = it - n * OH * nog
    oh = rest // nog
    ob = (rest - oh * nog) * 4
    HW = H * W
    if inb == 1:
        Ci = (C + VW - 1) // VW * VW
        ps = VW
    else:
        Ci = C
        ps = 1
    xn = n * Ci * HW
    WOS = Ci * KH * KW * VW
    OBS = OH * OW * VW
    d = SW * ps
    ih0 = oh * SH - PT
    lo = min(OW, (PL + SW - 1) // SW)  # first column whose taps are all inside the input
    hi = max(lo, min(OW, (W - 1 + PL - (KW - 1) * DW) // SW + 1))  # past the last one
    nob = min(4, CBo - ob)
    if nob == 4 and VW != 8:
        _cv_row4(x, w, bias, out, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, SW, PL, d, ps, ob, WOS,
                 ((n * CBo + ob) * OH + oh) * OW * VW, OBS, OW, lo, hi, code, p, q)
        return
    while nob >= 2:  # with AVX2's 16 registers a group of 4 runs as two of 2
        _cv_row2(x, w, bias, out, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, SW, PL, d, ps, ob, WOS,
                 ((n * CBo + ob) * OH + oh) * OW * VW, OBS, OW, lo, hi, code, p, q)
        ob += 2
        nob -= 2
    if nob == 1:
        _cv_row1(x, w, bias, out, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, SW, PL, d, ps, ob, WOS,
                 ((n * CBo + ob) * OH + oh) * OW * VW, OBS, OW, lo, hi, code, p, q)


@kernel
def f32_blocked_conv(x, w, bias, out, g, code, p, q):
    """Dense conv (group 1), output blocked; input plain NCHW (g[CV_INB] == 0) or blocked (1).
    g = [N, C, CBo, H, W, OH, OW, KH, KW, SH, SW, PT, PL, DH, DW, in_blocked]; w from pack_conv."""
    for it in range(g[CV_N] * g[CV_OH] * ((g[CV_CBO] + 3) // 4)):
        _cv_item(x, w, bias, out, g, it, code, p, q)


@kernel(parallel=True)
def f32_blocked_conv_mt(x, w, bias, out, g, code, p, q, work):
    total = g[CV_N] * g[CV_OH] * ((g[CV_CBO] + 3) // 4)
    start_work(work)
    for _t in prange(work[0]):
        it = take(work, _t, total)
        while it >= 0:
            _cv_item(x, w, bias, out, g, it, code, p, q)
            it = take(work, _t, total)


# --- global average pool -----------------------------------------------------------------------
@kernel
def _gap_item(x, out, P, nb):
    xo = nb * P * VW
    a0 = vbroadcast(0.0)
    a1 = a0
    a2 = a0
    a3 = a0
    i = 0
    while i + 4 <= P:
        a0 = vadd(a0, vload(x, xo + i * VW))
        a1 = vadd(a1, vload(x, xo + (i + 1) * VW))
        a2 = vadd(a2, vload(x, xo + (i + 2) * VW))
        a3 = vadd(a3, vload(x, xo + (i + 3) * VW))
        i += 4
    while i < P:
        a0 = vadd(a0, vload(x, xo + i * VW))
        i += 1
    s = vadd(vadd(vfence(a0), vfence(a1)), vadd(vfence(a2), vfence(a3)))
    vstore(out, nb * VW, vmul(s, vbroadcast(1.0 / P)))


@kernel
def f32_blocked_gap(x, out, g):
    """Global average pool: out blocked [N][CB][1][VW] = mean over the P pixels; g = [N, CB, P]."""
    for nb in range(g[0] * g[1]):
        _gap_item(x, out, g[2], nb)


# --- layout helpers for prepare and tests (plain numpy) -------------------------------------------
def blocked_floats(N: int, C: int, H: int, W: int, VW: int = VW) -> int:
    """Floats of a blocked [N, C, H, W] tensor."""
    return N * -(-C // VW) * H * W * VW


def to_blocked_np(x4d: np.ndarray, VW: int = VW) -> np.ndarray:
    """Plain [N, C, H, W] -> flat blocked (pad lanes zero)."""
    N, C, H, W = x4d.shape
    CB = -(-C // VW)
    padded = np.zeros((N, CB * VW, H, W), np.float32)
    padded[:, :C] = x4d
    return np.ascontiguousarray(padded.reshape(N, CB, VW, H * W).transpose(0, 1, 3, 2)).reshape(-1)


def from_blocked_np(flat: np.ndarray, N: int, C: int, H: int, W: int, VW: int = VW) -> np.ndarray:
    """Flat blocked -> plain [N, C, H, W] (pad lanes dropped)."""
    CB = -(-C // VW)
    b = np.asarray(flat).reshape(N, CB, H * W, VW).transpose(0, 1, 3, 2).reshape(N, CB * VW, H, W)
    return np.ascontiguousarray(b[:, :C])


def pack_prelu_bias(bias: np.ndarray, slope, M: int, VW: int = VW) -> np.ndarray:
    """A padded bias [CBo*VW] (pad_bias) followed by the PRelu slope per output channel, padded alike:
    what the conv tiles read with the PRELU code. ``slope``: one value or one per channel."""
    s = np.zeros_like(bias)
    s[:M] = np.broadcast_to(np.asarray(slope, np.float32).reshape(-1), (M,))
    return np.concatenate([bias, s])


def pad_bias(b, M: int, VW: int = VW) -> np.ndarray:
    """Bias [M] (or None: zeros) -> [ceil(M/VW)*VW] zero padded."""
    out = np.zeros(-(-M // VW) * VW, np.float32)
    if b is not None:
        out[:M] = np.asarray(b, np.float32).reshape(-1)[:M]
    return out


def pack_conv1x1(w2d: np.ndarray, VW: int = VW) -> np.ndarray:
    """[M, K] (output x input channels) -> flat [CBo][CBi*VW][VW]: [ob][k][l] = w2d[ob*VW + l, k]."""
    M, K = w2d.shape
    CBo, CBi = -(-M // VW), -(-K // VW)
    padded = np.zeros((CBo * VW, CBi * VW), np.float32)
    padded[:M, :K] = w2d
    return np.ascontiguousarray(padded.reshape(CBo, VW, CBi * VW).transpose(0, 2, 1)).reshape(-1)


def pack_dwconv(w: np.ndarray, C: int, VW: int = VW) -> np.ndarray:
    """[C, 1, KH, KW] -> flat [CB][KH*KW][VW] (zero pad lanes)."""
    KK = w.shape[2] * w.shape[3]
    CB = -(-C // VW)
    padded = np.zeros((CB * VW, KK), np.float32)
    padded[:C] = np.asarray(w, np.float32).reshape(C, KK)
    return np.ascontiguousarray(padded.reshape(CB, VW, KK).transpose(0, 2, 1)).reshape(-1)


def pack_conv(w: np.ndarray, in_blocked: bool, VW: int = VW) -> np.ndarray:
    """[M, C, KH, KW] -> flat [CBo][Ci][KH][KW][VW], Ci = C (plain input) or CB_in*VW (blocked input,
    zero for pad channels)."""
    M, C, KH, KW = w.shape
    CBo = -(-M // VW)
    Ci = -(-C // VW) * VW if in_blocked else C
    padded = np.zeros((CBo * VW, Ci, KH, KW), np.float32)
    padded[:M, :C] = w
    return np.ascontiguousarray(padded.reshape(CBo, VW, Ci, KH, KW).transpose(0, 2, 3, 4, 1)).reshape(-1)


def conv1x1_geometry(N, K, M, P, has_res=False, VW: int = VW) -> np.ndarray:
    """g of f32_blocked_conv1x1 with the optional real input channel count K (g[C1_K])."""
    return np.array([N, -(-K // VW), -(-M // VW), P, int(has_res), K], np.int64)


def dwconv_geometry(N, C, H, W, OH, OW, KH, KW, SH, SW, PT, PL, VW: int = VW) -> np.ndarray:
    return np.array([N, -(-C // VW), H, W, OH, OW, KH, KW, SH, SW, PT, PL], np.int64)


def conv_geometry(N, C, M, H, W, OH, OW, KH, KW, SH, SW, PT, PL, DH=1, DW=1, in_blocked=False,
                  VW: int = VW) -> np.ndarray:
    return np.array([N, C, -(-M // VW), H, W, OH, OW, KH, KW, SH, SW, PT, PL, DH, DW, int(in_blocked)], np.int64)


# --- the generator of the micro-kernels above (plain Python; run this module to rewrite them) -------
def _gen_acc(j, i):
    """The accumulator of output block j, pixel i."""
    return f"a{j}_{i}"


def _gen_epilogue(OB, PT, ind, res):
    """Residual, relu/clip in registers, stores of pixels skip <= i < lim, other activations after."""
    L = []
    if res:
        L.append(f"{ind}if has_res == 1:")
        for i in range(PT):
            for j in range(OB):
                L.append(f"{ind}    {_gen_acc(j,i)} = vadd({_gen_acc(j,i)}, vload(r, oo + {j} * OBS + {i * 1} * VW))")
    for i in range(PT):
        pre = ind
        if PT > 1:
            L.append(f"{ind}if skip <= {i} and {i} < lim:")
            pre = ind + "    "
        for j in range(OB):
            L.append(f"{pre}vstore(out, oo + {j} * OBS + {i} * VW, vact({_gen_acc(j,i)}, code, p, q))")
    L.append(f"{ind}if CLIP < code < PRELU:")
    for j in range(OB):
        L.append(f"{ind}    _act_span(out, oo + {j} * OBS + skip * VW, (lim - skip) * VW, code, p, q)")
    L.append(f"{ind}elif code == PRELU:")
    for j in range(OB):
        L.append(f"{ind}    _prelu_px(out, oo + {j} * OBS + skip * VW, lim - skip, bias, bo + {j} * VW)")
    return L


def _gen_inits(OB, PT, ind):
    """Accumulators start at the bias vectors of their blocks."""
    L = [f"{ind}b{j} = vload(bias, bo + {j} * VW)" for j in range(OB)]
    for i in range(PT):
        for j in range(OB):
            L.append(f"{ind}{_gen_acc(j,i)} = b{j}")
    return L


def _gen_body(OB, PT, ind, xaddr, waddr):
    """One input channel (tap) of a tile: OB weight loads, PT broadcasts, OB*PT FMAs. xaddr(i): expression of x offset for pixel i; waddr(j): weight offset for block j."""
    L = []
    for j in range(OB):
        L.append(f"{ind}w{j} = vload(w, {waddr(j)})")
    for i in range(PT):
        L.append(f"{ind}s = vbroadcast_at(x, {xaddr(i)})")
        for j in range(OB):
            L.append(f"{ind}{_gen_acc(j,i)} = vfma(s, w{j}, {_gen_acc(j,i)})")
    return L


def _gen_c1(OB, PT):
    L = ["@inline",
         f"def _c1_{OB}x{PT}(x, xo, KB, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, oo, OBS, skip, lim, code, p,",
         "        q):",
         f'    """{OB} output blocks x {PT} pixels of a 1x1 conv (generated, see _c1 in the module doc)."""']
    L += _gen_inits(OB, PT, "    ")
    L += ["    for kb in range(KB):",
          "        xk = xo + kb * XBS",
          "        wk = wo + kb * (VW * VW)",
          "        for l in range(VW if kb < KB - 1 else KL):  # the last block: its KL real input channels"]
    L += _gen_body(OB, PT, "            ", lambda i: f"xk + l + {i} * VW" if i else "xk + l",
              lambda j: f"wk + l * VW + {j} * WOS" if j else "wk + l * VW")
    L += _gen_epilogue(OB, PT, "    ", True)
    return L


def _gen_cv(OB, PT, checked):
    name = f"_cvc_{OB}" if checked else f"_cv_{OB}x{PT}"
    L = ["@inline",
         f"def {name}(x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, iw0, d, ps, w, wo, WOS, bias, bo, out, oo, OBS, skip,",
         "        lim, code, p, q):",
         f'    """{OB} output blocks x {PT} pixels of one output row of the general conv (generated; '
         + ("taps outside the input skipped" if checked else "columns inside the input, rows checked") + ')."""',
         ]
    L += _gen_inits(OB, PT, "    ")
    L += ["    for ci in range(Ci):",
          "        if inb == 1:",
          "            xc = xn + (ci // VW) * HW * VW + ci % VW",
          "        else:",
          "            xc = xn + ci * HW",
          "        for ki in range(KH):",
          "            ih = ih0 + ki * DH",
          "            if ih >= 0 and ih < H:",
          "                xr = xc + (ih * W + iw0) * ps",
          "                wr = wo + (ci * KH + ki) * KW * VW",
          "                for kj in range(KW):"]
    ind = "                    "
    if checked:
        L += [ind + "iw = iw0 + kj * DW",
              ind + "if iw >= 0 and iw < W:"]
        ind += "    "
    L += [ind + "xk = xr + kj * DW * ps", ind + "wk = wr + kj * VW"]
    L += _gen_body(OB, PT, ind, lambda i: f"xk + {i} * d" if i else "xk",
              lambda j: f"wk + {j} * WOS" if j else "wk")
    L += _gen_epilogue(OB, PT, "    ", False)
    return L


def _gen_dw(OT, checked):
    name = f"_dwc_{OT}" if checked else f"_dw_{OT}"
    L = ["@inline",
         f"def {name}(x, xb, H, W, ih0, iw0, w, wb, bv, out, oo, KH, KW, S, lo, hi" + (", nv):" if checked else "):"),
         f'    """{OT} consecutive output pixels of a depthwise row (generated): '
         + ("taps outside the input skipped, the first nv pixels stored." if checked else
            "every column inside the input.") + '"""']
    for i in range(OT):
        L.append(f"    a{i} = bv")
    L += ["    for ki in range(KH):",
          "        ih = ih0 + ki",
          "        if ih >= 0 and ih < H:",
          "            xr = xb + (ih * W + iw0) * VW",
          "            for kj in range(KW):",
          "                wv = vload(w, wb + (ki * KW + kj) * VW)"]
    for i in range(OT):
        if checked:
            L.append(f"                if iw0 + {i} * S + kj >= 0 and iw0 + {i} * S + kj < W:")
            L.append(f"                    a{i} = vfma(wv, vload(x, xr + ({i} * S + kj) * VW), a{i})")
        else:
            L.append(f"                a{i} = vfma(wv, vload(x, xr + ({i} * S + kj) * VW), a{i})")
    for i in range(OT):
        if checked and i:
            L.append(f"    if {i} < nv:")
            L.append(f"        vstore(out, oo + {i} * VW, vclamp(a{i}, lo, hi))")
        else:
            L.append(f"    vstore(out, oo + {i} * VW, vclamp(a{i}, lo, hi))")
    return L


# Tile widths (pixels) per output-block count: 24 accumulators for 32 vector registers (AVX-512,
# NEON); with AVX2's 16 (VW == 8) 12 accumulators, and groups of 4 blocks run as two groups of 2.
_GEN_PTS = {4: 6, 2: 12, 1: 24}
_GEN_PTS8 = {2: 6, 1: 12}


def _gen_by_vw(OB, body):
    """body(PT) for this OB, under `if VW == 8:` (numba prunes the other branch) when AVX2 differs."""
    if OB not in _GEN_PTS8:
        return body(_GEN_PTS[OB])
    return (["    if VW == 8:"] + ["    " + line for line in body(_GEN_PTS8[OB])] + ["    else:"]
            + ["    " + line for line in body(_GEN_PTS[OB])])


def _gen_c1_driver(OB):
    def body(PT):
        return ["    pix = c0",
                f"    while pix + {PT} <= c1:",
                f"        _c1_{OB}x{PT}(x, xn + pix * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + pix * VW,",
                f"                 XBS, np.int64(0), np.int64({PT}), code, p, q)",
                f"        pix += {PT}",
                f"    if c1 - pix >= 6 and P >= {PT}:",
                f"        st = min(pix, P - {PT})",
                f"        _c1_{OB}x{PT}(x, xn + st * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + st * VW,",
                "                 XBS, pix - st, c1 - st, code, p, q)",
                "        pix = c1",
                "    zero, one = np.int64(0), np.int64(1)",
                "    while pix < c1:",
                f"        _c1_{OB}x1(x, xn + pix * VW, CBi, KL, XBS, w, wo, WOS, bias, bo, r, has_res, out, on + pix * VW, XBS,",
                "                zero, one, code, p, q)",
                "        pix += 1"]
    return ["@kernel",
            f"def _c1_run{OB}(x, w, bias, r, out, has_res, xn, on, ob, WOS, CBi, KL, XBS, P, c0, c1, code, p, q):",
            f'    """Pixels [c0, c1) of output blocks ob..ob+{OB - 1}: full-width tiles; a remainder of 6 pixels or more',
            f'    as one tile shifted back (storing only its new pixels), a smaller one pixel by pixel ({OB} chains)."""',
            "    wo = ob * WOS",
            "    bo = ob * VW"] + _gen_by_vw(OB, body)


_GEN_CV_ARGS = "x, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0"
_GEN_CV_TAIL = "ps, w, wo, WOS, bias, bo, out"


def _gen_cv_driver(OB, literal_d=(2,)):
    def body(PT):
        L = [f"    if hi - lo >= {PT}:",
             "        ow = lo",
             "        while ow < hi:",
             f"            st = min(ow, hi - {PT})",
             "            iw0 = st * SW - PL",
             "            oo = orow + st * VW"]
        kw = "if"
        for D in literal_d:
            L += [f"            {kw} d == {D}:  # the pixel step as a constant: addresses fold into displacements",
                  f"                _cv_{OB}x{PT}({_GEN_CV_ARGS}, iw0, {D}, {_GEN_CV_TAIL}, oo, OBS, ow - st,",
                  f"                        np.int64({PT}), code, p, q)"]
            kw = "elif"
        return L + ["            else:",
                    f"                _cv_{OB}x{PT}({_GEN_CV_ARGS}, iw0, d, {_GEN_CV_TAIL}, oo, OBS, ow - st,",
                    f"                        np.int64({PT}), code, p, q)",
                    f"            ow += {PT}",
                    "    else:",
                    "        for ow in range(lo, hi):",
                    f"            _cv_{OB}x1({_GEN_CV_ARGS}, ow * SW - PL, d, {_GEN_CV_TAIL}, orow + ow * VW, OBS, zero, one,",
                    "                    code, p, q)"]
    return (["@kernel",
             f"def _cv_row{OB}(x, w, bias, out, xn, Ci, inb, HW, H, W, KH, KW, DH, DW, ih0, SW, PL, d, ps, ob, WOS, orow,",
             "            OBS, OW, lo, hi, code, p, q):",
             f'    """One output row of output blocks ob..ob+{OB - 1}: edge columns [0, lo) and [hi, OW) one checked pixel',
             '    at a time, the interior in full-width tiles (the last shifted back, storing only new pixels)."""',
             "    wo = ob * WOS",
             "    bo = ob * VW",
             "    zero, one = np.int64(0), np.int64(1)",
             "    for ow in range(lo):",
             f"        _cvc_{OB}({_GEN_CV_ARGS}, ow * SW - PL, d, {_GEN_CV_TAIL}, orow + ow * VW, OBS, zero, one, code, p, q)"]
            + _gen_by_vw(OB, body)
            + ["    for ow in range(max(lo, hi), OW):",
               f"        _cvc_{OB}({_GEN_CV_ARGS}, ow * SW - PL, d, {_GEN_CV_TAIL}, orow + ow * VW, OBS, zero, one, code, p, q)"])


_GEN_BEGIN = "# --- generated micro-kernels"
_GEN_END = "# --- end of generated micro-kernels ---"


def generate_tiles() -> str:
    """The source of the generated section of this file (tests check it is up to date)."""
    out = [_GEN_BEGIN + " (from generate_tiles: do not edit by hand) ---"]
    tiles = [(4, 6), (2, 12), (1, 24), (2, 6), (1, 12), (4, 1), (2, 1), (1, 1)]
    for ob, pt in tiles:
        out += _gen_c1(ob, pt) + ["", ""]
    for ob, pt in tiles:
        out += _gen_cv(ob, pt, False) + ["", ""]
    for ob in (4, 2, 1):
        out += _gen_cv(ob, 1, True) + ["", ""]
    for chk in (False, True):
        out += _gen_dw(8, chk) + ["", ""]
    for ob in (4, 2, 1):
        out += _gen_c1_driver(ob) + ["", ""]
    for ob in (4, 2, 1):
        out += _gen_cv_driver(ob) + ["", ""]
    out.append(_GEN_END)
    return "\n".join(out)


if __name__ == "__main__":
    import pathlib
    path = pathlib.Path(__file__)
    text = path.read_text(encoding="utf-8")
    start = text.index(_GEN_BEGIN)
    end = text.index(_GEN_END) + len(_GEN_END)
    path.write_text(text[:start] + generate_tiles() + text[end:], encoding="utf-8")


