"""Channel-blocked versions of the small ops found between convolutions in MediaPipe-style networks:
max pooling, the channel zero-padding of BlazeNet residuals, the per-channel scale of
squeeze-and-excitation blocks, and the NHWC transpose at detection heads.

Layout as in ``blocked.py``: [N][CB][P][VW], VW channels of a pixel adjacent. Every one of these is
a loop over VW lanes per pixel (a fixed trip count: LLVM turns it into one vector operation), so
a region of blocked convolutions does not have to leave the layout for them.

The ``_mt`` variants take the same arguments plus ``work`` (work.work_counter): workers take
(row span, plane) or block items, their own band first (work.py). On two cores these small passes mostly
move data the other core's half of the previous conv wrote, so even at ~1x of their 1-thread time
in parallel they beat a serial pass (1.2-2.6x slower in a 2-thread session than in a 1-thread one).
"""

from __future__ import annotations

import numpy as np

from ._jit import inline, kernel, prange
from .act import vact
from .blocked import MT_ITEMS, vprelu
from .simd import VW, vadd, vbroadcast, vfma, vload, vmul, vstore
from .work import band_item, spans_per_plane, start_work, take


# f32_blocked_maxpool geometry
(MP_PLANES, MP_H, MP_W, MP_OH, MP_OW, MP_KH, MP_KW, MP_SH, MP_SW, MP_PT, MP_PL, MP_DH, MP_DW) = range(13)


@inline
def _max_nan(a, b):
    return a if (a >= b or a != a) else b  # NaN wins, in either argument (as numpy's max)


@inline
def _maxpool_rows(x, out, g, b, oh0, oh1):
    """Output rows oh0..oh1-1 of plane b."""
    H, W, OH, OW = g[MP_H], g[MP_W], g[MP_OH], g[MP_OW]
    KH, KW, SH, SW, PT, PL, DH, DW = g[MP_KH], g[MP_KW], g[MP_SH], g[MP_SW], g[MP_PT], g[MP_PL], g[MP_DH], g[MP_DW]
    if KH == KW == SH == SW == 2 and PT == PL == 0 and DH == DW == 1 and 2 * OH <= H and 2 * OW <= W:
        # BlazeNet's residual pooling: 4 vectors per pixel. Row slices, so LLVM sees one input and one
        # output row per loop (and vectorises the lanes).
        for oh in range(oh0, oh1):
            r0 = (b * H + 2 * oh) * W * VW
            top = x[r0:r0 + W * VW]
            bottom = x[r0 + W * VW:r0 + 2 * W * VW]
            orow = out[(b * OH + oh) * OW * VW:(b * OH + oh + 1) * OW * VW]
            for ow in range(OW):
                for lane in range(VW):
                    i = 2 * ow * VW + lane
                    orow[ow * VW + lane] = _max_nan(_max_nan(top[i], top[i + VW]), _max_nan(bottom[i], bottom[i + VW]))
        return
    xo = b * H * W * VW
    for oh in range(oh0, oh1):
        for ow in range(OW):
            o = ((b * OH + oh) * OW + ow) * VW
            for lane in range(VW):
                out[o + lane] = -float("inf")
            for ki in range(KH):
                ih = oh * SH - PT + ki * DH
                if ih < 0 or ih >= H:
                    continue
                for kj in range(KW):
                    iw = ow * SW - PL + kj * DW
                    if iw < 0 or iw >= W:
                        continue
                    s = xo + (ih * W + iw) * VW
                    for lane in range(VW):
                        v = x[s + lane]
                        m = out[o + lane]
                        out[o + lane] = v if (v > m or v != v) else m


@kernel
def f32_blocked_maxpool(x, out, g):
    """Max over each window, VW channels at a time; taps outside the input are skipped (ONNX's -inf
    padding) and NaN propagates. g: [N*CB, H, W, OH, OW, KH, KW, SH, SW, PT, PL, DH, DW]."""
    for b in range(g[MP_PLANES]):
        _maxpool_rows(x, out, g, b, 0, g[MP_OH])


@kernel(parallel=True)
def f32_blocked_maxpool_mt(x, out, g, work):
    """``f32_blocked_maxpool`` over work[0] workers taking (plane, row chunk) items (work.py)."""
    planes, OH = g[MP_PLANES], g[MP_OH]
    nch = spans_per_plane(planes, OH, MT_ITEMS)
    start_work(work)
    for _t in prange(work[0]):
        it = take(work, _t, planes * nch)
        while it >= 0:
            b, oh0, oh1 = band_item(it, planes, OH, nch)
            _maxpool_rows(x, out, g, b, oh0, oh1)
            it = take(work, _t, planes * nch)


@kernel
def f32_blocked_scale(x, s, out, g):
    """out = x * s with s one value per channel ([N][CB][1][VW], a squeeze-and-excitation gate).
    g: [N*CB, P]."""
    planes, P = g[0], g[1]
    for b in range(planes):
        gate = vload(s, b * VW)
        for p in range(P):
            o = (b * P + p) * VW
            vstore(out, o, vmul(vload(x, o), gate))


@inline
def _pad_block(x, out, g, n, cb):
    """Output block cb of image n: a copy of a whole input block, the live lanes of a partial one
    with the rest 0, or zeros."""
    C, CBi, CBo, P = g[1], g[2], g[3], g[4]
    n_full = C // VW
    live = C - n_full * VW
    dst = out[(n * CBo + cb) * P * VW:(n * CBo + cb + 1) * P * VW]
    if cb < n_full:
        dst[:] = x[(n * CBi + cb) * P * VW:(n * CBi + cb + 1) * P * VW]
    elif cb == n_full and live:
        src = x[(n * CBi + cb) * P * VW:(n * CBi + cb + 1) * P * VW]
        for p in range(P):
            for lane in range(VW):
                dst[p * VW + lane] = src[p * VW + lane] if lane < live else 0.0
    else:
        dst[:] = 0.0


@kernel
def f32_blocked_pad_channels(x, out, g):
    """Zero channels appended: out has CBo >= CBi blocks; lanes of channels >= C are 0 (the input's
    pad lanes too: they may hold anything finite). g: [N, C, CBi, CBo, P]."""
    for n in range(g[0]):
        for cb in range(g[3]):
            _pad_block(x, out, g, n, cb)


@kernel(parallel=True)
def f32_blocked_pad_channels_mt(x, out, g, work):
    """``f32_blocked_pad_channels`` over work[0] workers taking output blocks (work.py)."""
    CBo = g[3]
    start_work(work)
    for _t in prange(work[0]):
        it = take(work, _t, g[0] * CBo)
        while it >= 0:
            _pad_block(x, out, g, it // CBo, it % CBo)
            it = take(work, _t, g[0] * CBo)


@inline
def _to_nhwc_px(x, out, g, n, p0, p1):
    C, P = g[1], g[2]
    CB = (C + VW - 1) // VW
    for p in range(p0, p1):
        o = (n * P + p) * C
        for cb in range(CB):
            i = ((n * CB + cb) * P + p) * VW
            live = min(C - cb * VW, VW)
            for lane in range(live):
                out[o + cb * VW + lane] = x[i + lane]


@kernel
def f32_blocked_to_nhwc(x, out, g):
    """Blocked [N][CB][P][VW] -> NHWC [N][P][C] (a detection head's transpose, straight from the
    blocks). g: [N, C, P]."""
    for n in range(g[0]):
        _to_nhwc_px(x, out, g, n, 0, g[2])


@kernel(parallel=True)
def f32_blocked_to_nhwc_mt(x, out, g, work):
    """``f32_blocked_to_nhwc`` over work[0] workers taking (image, pixel span) items (work.py)."""
    N, P = g[0], g[2]
    nch = spans_per_plane(N, P, MT_ITEMS)
    start_work(work)
    for _t in prange(work[0]):
        it = take(work, _t, N * nch)
        while it >= 0:
            n, p0, p1 = band_item(it, N, P, nch)
            _to_nhwc_px(x, out, g, n, p0, p1)
            it = take(work, _t, N * nch)


@inline
def _prelu_span(x, r, slope, out, g, b, p0, p1):
    """Pixels p0..p1-1 of block b of [N*CB]: out = PRelu(x (+ r)) as relu(v) - slope * relu(-v)
    (exact for v >= 0 and v < 0 alike, infinities and NaN as numpy's where)."""
    CB, P, has_res = g[1], g[2], g[3]
    ns = vmul(vload(slope, (b % CB) * VW), vbroadcast(-1.0))
    o = b * P * VW
    if has_res == 1:
        for p in range(p0, p1):
            vstore(out, o + p * VW, vprelu(vadd(vload(x, o + p * VW), vload(r, o + p * VW)), ns))
    else:
        for p in range(p0, p1):
            vstore(out, o + p * VW, vprelu(vload(x, o + p * VW), ns))


@kernel
def f32_blocked_prelu(x, r, slope, out, g):
    """PRelu with a per-channel slope ([CB*VW], zero padded), optionally of x + r (a fused residual;
    r is a dummy when has_res is 0). g: [N, CB, P, has_res]; out may alias x or r."""
    for b in range(g[0] * g[1]):
        _prelu_span(x, r, slope, out, g, b, 0, g[2])


PRELU_ITEM_PIXELS = 512  # pixels per work item of the _mt variant at most (32 KiB of input at VW = 16)


@kernel(parallel=True)
def f32_blocked_prelu_mt(x, r, slope, out, g, work):
    """``f32_blocked_prelu`` over work[0] workers taking (block, pixel span) items (work.py)."""
    P, planes = g[2], g[0] * g[1]
    spans = max(min(P, np.int64(4)), (P + PRELU_ITEM_PIXELS - 1) // PRELU_ITEM_PIXELS)
    total = planes * spans
    start_work(work)
    for _t in prange(work[0]):
        it = take(work, _t, total)
        while it >= 0:
            b, p0, p1 = band_item(it, planes, P, spans)
            _prelu_span(x, r, slope, out, g, b, p0, p1)
            it = take(work, _t, total)


@inline
def _resize_linear_rows(x, out, h0, h1, hw, w0, w1, ww, g, b, oh0, oh1):
    H, W, OH, OW = g[1], g[2], g[3], g[4]
    m1 = vbroadcast(-1.0)
    for oh in range(oh0, oh1):
        top = ((b * H + h0[oh]) * W) * VW
        bottom = ((b * H + h1[oh]) * W) * VW
        o = (b * OH + oh) * OW * VW
        t = vbroadcast(hw[oh])
        for ow in range(OW):
            i0, i1, s = w0[ow] * VW, w1[ow] * VW, vbroadcast(ww[ow])
            x0 = vload(x, top + i0)
            a = vfma(s, vfma(m1, x0, vload(x, top + i1)), x0)  # x0 + s * (x1 - x0)
            y0 = vload(x, bottom + i0)
            c = vfma(s, vfma(m1, y0, vload(x, bottom + i1)), y0)
            vstore(out, o + ow * VW, vfma(t, vfma(m1, a, c), a))


@kernel
def f32_blocked_resize_linear(x, out, h0, h1, hw, w0, w1, ww, g):
    """Bilinear resize of blocked planes (g: [N*CB, H, W, OH, OW]): per output pixel, lerp columns
    (w0, w1, weight ww) of rows h0 and h1, then lerp those by hw, as the NCHW kernel does, VW
    channels at a time. Tables as Resize.prepare builds them (int64 indices, float32 weights)."""
    for b in range(g[0]):
        _resize_linear_rows(x, out, h0, h1, hw, w0, w1, ww, g, b, 0, g[3])


@kernel(parallel=True)
def f32_blocked_resize_linear_mt(x, out, h0, h1, hw, w0, w1, ww, g, work):
    """``f32_blocked_resize_linear`` over work[0] workers taking (plane, row chunk) items (work.py)."""
    planes, OH = g[0], g[3]
    nch = spans_per_plane(planes, OH, MT_ITEMS)
    start_work(work)
    for _t in prange(work[0]):
        it = take(work, _t, planes * nch)
        while it >= 0:
            b, oh0, oh1 = band_item(it, planes, OH, nch)
            _resize_linear_rows(x, out, h0, h1, hw, w0, w1, ww, g, b, oh0, oh1)
            it = take(work, _t, planes * nch)


@inline
def _resize_nearest_rows(x, out, rows, cols, g, b, oh0, oh1):
    H, W, OH, OW = g[1], g[2], g[3], g[4]
    for oh in range(oh0, oh1):
        src = x[((b * H + rows[oh]) * W) * VW:((b * H + rows[oh] + 1) * W) * VW]
        orow = out[(b * OH + oh) * OW * VW:(b * OH + oh + 1) * OW * VW]
        for ow in range(OW):
            i = cols[ow] * VW
            for lane in range(VW):
                orow[ow * VW + lane] = src[i + lane]


@kernel
def f32_blocked_resize_nearest(x, out, rows, cols, g):
    """Nearest-neighbour resize of blocked planes: one vector copied per output pixel."""
    for b in range(g[0]):
        _resize_nearest_rows(x, out, rows, cols, g, b, 0, g[3])


@kernel(parallel=True)
def f32_blocked_resize_nearest_mt(x, out, rows, cols, g, work):
    """``f32_blocked_resize_nearest`` over work[0] workers taking (plane, row chunk) items (work.py)."""
    planes, OH = g[0], g[3]
    nch = spans_per_plane(planes, OH, MT_ITEMS)
    start_work(work)
    for _t in prange(work[0]):
        it = take(work, _t, planes * nch)
        while it >= 0:
            b, oh0, oh1 = band_item(it, planes, OH, nch)
            _resize_nearest_rows(x, out, rows, cols, g, b, oh0, oh1)
            it = take(work, _t, planes * nch)


@kernel(parallel=True)
def f32_blocked_add_mt(a, b, out, P, code, p, q, work):
    """out = act(a + b) over same-shape blocked tensors of P pixels per plane (relu or clip in
    registers; the planner blocks no other activation), by work[0] workers taking (pixel span,
    plane) items, pixel span first (work.py). The serial case is elementwise.f32_binary_same's flat
    loop. out may alias a or b."""
    planes = out.size // (P * VW)
    spans = min(P, np.int64(8))
    total = planes * spans
    start_work(work)
    for _t in prange(work[0]):
        it = take(work, _t, total)
        while it >= 0:
            pl, p0, p1 = band_item(it, planes, P, spans)
            for o in range((pl * P + p0) * VW, (pl * P + p1) * VW, VW):
                vstore(out, o, vact(vadd(vload(a, o), vload(b, o)), code, p, q))
            it = take(work, _t, total)
