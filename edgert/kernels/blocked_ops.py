"""Channel-blocked versions of the small ops found between convolutions in MediaPipe-style networks:
max pooling, the channel zero-padding of BlazeNet residuals, the per-channel scale of
squeeze-and-excitation blocks, and the NHWC transpose at detection heads.

Layout as in ``blocked.py``: [N][CB][P][VW], VW channels of a pixel adjacent. Every one of these is
a loop over VW lanes per pixel (a fixed trip count: LLVM turns it into one vector operation), so
a region of blocked convolutions does not have to leave the layout for them.
"""

from __future__ import annotations

from ._jit import inline, kernel, prange
from .simd import VW, fetch_add, vadd, vbroadcast, vfma, vload, vmul, vrelu, vstore

# f32_blocked_maxpool geometry
(MP_PLANES, MP_H, MP_W, MP_OH, MP_OW, MP_KH, MP_KW, MP_SH, MP_SW, MP_PT, MP_PL, MP_DH, MP_DW) = range(13)


@inline
def _max_nan(a, b):
    return a if (a >= b or a != a) else b  # NaN wins, in either argument (as numpy's max)


@inline
def _maxpool_2x2s2(x, out, planes, H, W, OH, OW):
    # Row slices, so LLVM sees one input and one output row per loop (and vectorises the lanes).
    for b in range(planes):
        for oh in range(OH):
            r0 = (b * H + 2 * oh) * W * VW
            top = x[r0:r0 + W * VW]
            bottom = x[r0 + W * VW:r0 + 2 * W * VW]
            orow = out[(b * OH + oh) * OW * VW:(b * OH + oh + 1) * OW * VW]
            for ow in range(OW):
                for lane in range(VW):
                    i = 2 * ow * VW + lane
                    orow[ow * VW + lane] = _max_nan(_max_nan(top[i], top[i + VW]), _max_nan(bottom[i], bottom[i + VW]))


@kernel
def f32_blocked_maxpool(x, out, g):
    """Max over each window, VW channels at a time; taps outside the input are skipped (ONNX's -inf
    padding) and NaN propagates. g: [N*CB, H, W, OH, OW, KH, KW, SH, SW, PT, PL, DH, DW]."""
    planes, H, W, OH, OW = g[MP_PLANES], g[MP_H], g[MP_W], g[MP_OH], g[MP_OW]
    KH, KW, SH, SW, PT, PL, DH, DW = g[MP_KH], g[MP_KW], g[MP_SH], g[MP_SW], g[MP_PT], g[MP_PL], g[MP_DH], g[MP_DW]
    if KH == KW == SH == SW == 2 and PT == PL == 0 and DH == DW == 1 and 2 * OH <= H and 2 * OW <= W:
        _maxpool_2x2s2(x, out, planes, H, W, OH, OW)  # BlazeNet's residual pooling: 4 vectors per pixel
        return
    for b in range(planes):
        xo = b * H * W * VW
        for oh in range(OH):
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
def f32_blocked_scale(x, s, out, g):
    """out = x * s with s one value per channel ([N][CB][1][VW], a squeeze-and-excitation gate).
    g: [N*CB, P]."""
    planes, P = g[0], g[1]
    for b in range(planes):
        gate = vload(s, b * VW)
        for p in range(P):
            o = (b * P + p) * VW
            vstore(out, o, vmul(vload(x, o), gate))


@kernel
def f32_blocked_pad_channels(x, out, g):
    """Zero channels appended: out has CBo >= CBi blocks; lanes of channels >= C are 0 (the input's
    pad lanes too: they may hold anything finite). g: [N, C, CBi, CBo, P]."""
    N, C, CBi, CBo, P = g[0], g[1], g[2], g[3], g[4]
    n_full = C // VW
    live = C - n_full * VW
    for n in range(N):
        src = x[n * CBi * P * VW:(n * CBi + n_full) * P * VW]
        dst = out[n * CBo * P * VW:(n * CBo + n_full) * P * VW]
        dst[:] = src  # whole blocks: one contiguous copy
        o = (n * CBo + n_full) * P * VW
        if live:
            part_in = x[(n * CBi + n_full) * P * VW:(n * CBi + n_full + 1) * P * VW]
            part = out[o:o + P * VW]
            for p in range(P):
                for lane in range(VW):
                    part[p * VW + lane] = part_in[p * VW + lane] if lane < live else 0.0
            o += P * VW
        rest = out[o:(n + 1) * CBo * P * VW]
        rest[:] = 0.0


@kernel
def f32_blocked_to_nhwc(x, out, g):
    """Blocked [N][CB][P][VW] -> NHWC [N][P][C] (a detection head's transpose, straight from the
    blocks). g: [N, C, P]."""
    N, C, P = g[0], g[1], g[2]
    CB = (C + VW - 1) // VW
    for n in range(N):
        for p in range(P):
            o = (n * P + p) * C
            for cb in range(CB):
                i = ((n * CB + cb) * P + p) * VW
                live = min(C - cb * VW, VW)
                for lane in range(live):
                    out[o + cb * VW + lane] = x[i + lane]


@inline
def _prelu_span(x, r, slope, out, g, b, p0, p1):
    """Pixels p0..p1-1 of block b of [N*CB]: out = PRelu(x (+ r)) as relu(v) - slope * relu(-v)
    (exact for v >= 0 and v < 0 alike, infinities and NaN as numpy's where)."""
    CB, P, has_res = g[1], g[2], g[3]
    m1 = vbroadcast(-1.0)
    ns = vmul(vload(slope, (b % CB) * VW), m1)
    o = b * P * VW
    if has_res == 1:
        for p in range(p0, p1):
            v = vadd(vload(x, o + p * VW), vload(r, o + p * VW))
            vstore(out, o + p * VW, vfma(ns, vrelu(vmul(v, m1)), vrelu(v)))
    else:
        for p in range(p0, p1):
            v = vload(x, o + p * VW)
            vstore(out, o + p * VW, vfma(ns, vrelu(vmul(v, m1)), vrelu(v)))


@kernel
def f32_blocked_prelu(x, r, slope, out, g):
    """PRelu with a per-channel slope ([CB*VW], zero padded), optionally of x + r (a fused residual;
    r is a dummy when has_res is 0). g: [N, CB, P, has_res]; out may alias x or r."""
    for b in range(g[0] * g[1]):
        _prelu_span(x, r, slope, out, g, b, 0, g[2])


PRELU_ITEM_PIXELS = 512  # pixels per work item of the _mt variant (32 KiB of input at VW = 16)


@kernel(parallel=True)
def f32_blocked_prelu_mt(x, r, slope, out, g, work):
    """``f32_blocked_prelu`` over work[1] workers taking (block, pixel span) items from the shared
    counter work[0] (see blocked.work_counter)."""
    P = g[2]
    spans = (P + PRELU_ITEM_PIXELS - 1) // PRELU_ITEM_PIXELS
    total = g[0] * g[1] * spans
    work[0] = 0
    for _t in prange(work[1]):
        it = fetch_add(work, 0, 1)
        while it < total:
            b = it // spans
            p0 = (it - b * spans) * PRELU_ITEM_PIXELS
            _prelu_span(x, r, slope, out, g, b, p0, min(p0 + PRELU_ITEM_PIXELS, P))
            it = fetch_add(work, 0, 1)


@kernel
def f32_blocked_resize_linear(x, out, h0, h1, hw, w0, w1, ww, g):
    """Bilinear resize of blocked planes (g: [N*CB, H, W, OH, OW]): per output pixel, lerp columns
    (w0, w1, weight ww) of rows h0 and h1, then lerp those by hw, as the NCHW kernel does, VW
    channels at a time. Tables as Resize.prepare builds them (int64 indices, float32 weights)."""
    planes, H, W, OH, OW = g[0], g[1], g[2], g[3], g[4]
    m1 = vbroadcast(-1.0)
    for b in range(planes):
        for oh in range(OH):
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
def f32_blocked_resize_nearest(x, out, rows, cols, g):
    """Nearest-neighbour resize of blocked planes: one vector copied per output pixel."""
    planes, H, W, OH, OW = g[0], g[1], g[2], g[3], g[4]
    for b in range(planes):
        for oh in range(OH):
            src = x[((b * H + rows[oh]) * W) * VW:((b * H + rows[oh] + 1) * W) * VW]
            orow = out[(b * OH + oh) * OW * VW:(b * OH + oh + 1) * OW * VW]
            for ow in range(OW):
                i = cols[ow] * VW
                for lane in range(VW):
                    orow[ow * VW + lane] = src[i + lane]
