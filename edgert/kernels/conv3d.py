"""Kernels over NCDHW volumes: direct 3-D convolution (dense, grouped, depthwise), transposed 3-D
convolution, 3-D pooling, trilinear/nearest resizing and the reversible-coupling add.

Every kernel runs its inner loop along W over a precomputed valid range (no per-element bounds test),
so LLVM vectorises it; outer loops keep one output depth slice (OH*OW floats) hot while the taps and
input channels accumulate into it. ``g`` is an int64 geometry vector; its layout is given per kernel.

Conv geometry ``g``: N, C_total, c0, D, H, W, M, OD, OH, OW, G, Cg, kd, kh, kw, sd, sh, sw, pd, ph, pw,
dd, dh, dw. The input channels read are [c0, c0 + G*Cg) of a C_total-channel buffer, so a reversible
block's F and G read their half of the coupled buffer without a copy.
"""

from __future__ import annotations

from ._jit import inline, kernel, prange
from .act import apply_act


@inline
def _valid_range(n_out, n_in, stride, offset):
    """Output indices o with 0 <= o*stride + offset < n_in, as (lo, hi)."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    hi = (n_in - 1 - offset) // stride + 1 if n_in - 1 - offset >= 0 else 0
    return lo, min(max(hi, lo), n_out)


@kernel(parallel=True)
def f32_conv3d_direct(x, w, bias, out, g, code, a, b):
    N, Ct, c0, D, H, W = g[0], g[1], g[2], g[3], g[4], g[5]
    M, OD, OH, OW, G, Cg = g[6], g[7], g[8], g[9], g[10], g[11]
    kd, kh, kw, sd, sh, sw = g[12], g[13], g[14], g[15], g[16], g[17]
    pd, ph, pw, dd, dh, dw = g[18], g[19], g[20], g[21], g[22], g[23]
    Mg = M // G
    plane = OH * OW
    for item in prange(N * M):
        n = item // M
        m = item % M
        gi = m // Mg
        for od in range(OD):
            ob = ((n * M + m) * OD + od) * plane
            bv = bias[m]
            for i in range(plane):
                out[ob + i] = bv
            for ci in range(Cg):
                xb = (n * Ct + c0 + gi * Cg + ci) * D * H * W
                wb = (m * Cg + ci) * kd * kh * kw
                for ta in range(kd):
                    id_ = od * sd + ta * dd - pd
                    if id_ < 0 or id_ >= D:
                        continue
                    for tb in range(kh):
                        oh_lo, oh_hi = _valid_range(OH, H, sh, tb * dh - ph)
                        for tc in range(kw):
                            wv = w[wb + (ta * kh + tb) * kw + tc]
                            off = tc * dw - pw
                            ow_lo, ow_hi = _valid_range(OW, W, sw, off)
                            for oh in range(oh_lo, oh_hi):
                                xr = xb + (id_ * H + oh * sh + tb * dh - ph) * W + off
                                orow = ob + oh * OW
                                for ow in range(ow_lo, ow_hi):
                                    out[orow + ow] += wv * x[xr + ow * sw]
            if code != 0:
                for i in range(plane):
                    out[ob + i] = apply_act(out[ob + i], code, a, b)


@kernel(parallel=True)
def f32_convtranspose3d_direct(x, w, bias, out, g, code, a, b):
    """Scatter form: every input voxel adds w * x into its kernel footprint of the output. Geometry as
    for conv with C_total = C, c0 = 0, and w laid out [C, Mg, kd, kh, kw]; pads crop the full output."""
    N, C, D, H, W = g[0], g[1], g[3], g[4], g[5]
    M, OD, OH, OW, G, Cg = g[6], g[7], g[8], g[9], g[10], g[11]
    kd, kh, kw, sd, sh, sw = g[12], g[13], g[14], g[15], g[16], g[17]
    pd, ph, pw, dd, dh, dw = g[18], g[19], g[20], g[21], g[22], g[23]
    Mg = M // G
    vol = OD * OH * OW
    for item in prange(N * M):
        n = item // M
        m = item % M
        gi = m // Mg
        mj = m % Mg
        ob = (n * M + m) * vol
        bv = bias[m]
        for i in range(vol):
            out[ob + i] = bv
        for ci in range(Cg):
            c = gi * Cg + ci
            xb = (n * C + c) * D * H * W
            wb = (c * Mg + mj) * kd * kh * kw
            for id_ in range(D):
                for ta in range(kd):
                    od = id_ * sd + ta * dd - pd
                    if od < 0 or od >= OD:
                        continue
                    for ih in range(H):
                        for tb in range(kh):
                            oh = ih * sh + tb * dh - ph
                            if oh < 0 or oh >= OH:
                                continue
                            xr = xb + (id_ * H + ih) * W
                            orow = ob + (od * OH + oh) * OW
                            for tc in range(kw):
                                wv = w[wb + (ta * kh + tb) * kw + tc]
                                off = tc * dw - pw
                                # input columns iw whose output column iw*sw + off lies in [0, OW)
                                iw_lo, iw_hi = _valid_range(W, OW, sw, off)
                                for iw in range(iw_lo, iw_hi):
                                    out[orow + iw * sw + off] += wv * x[xr + iw]
        if code != 0:
            for i in range(vol):
                out[ob + i] = apply_act(out[ob + i], code, a, b)


@kernel(parallel=True)
def f32_pool3d(x, out, g, is_max, count_include_pad):
    """Max or average pooling over planes. ``g``: planes, D, H, W, OD, OH, OW, kd, kh, kw, sd, sh, sw,
    pd, ph, pw, dd, dh, dw, then the end pads. Average divides by the in-bounds count, or (count_include_pad) by the
    window clipped to the padded input, as ONNX does with ceil_mode."""
    P, D, H, W, OD, OH, OW = g[0], g[1], g[2], g[3], g[4], g[5], g[6]
    kd, kh, kw, sd, sh, sw = g[7], g[8], g[9], g[10], g[11], g[12]
    pd, ph, pw, dd, dh, dw = g[13], g[14], g[15], g[16], g[17], g[18]
    ed, eh, ew = g[19], g[20], g[21]
    for p in prange(P):
        xb = p * D * H * W
        ob = p * OD * OH * OW
        for od in range(OD):
            for oh in range(OH):
                for ow in range(OW):
                    acc = -3.4028234663852886e38 if is_max else 0.0
                    seen = False
                    count = 0
                    padded = 0
                    for ta in range(kd):
                        id_ = od * sd + ta * dd - pd
                        if id_ >= D + ed:
                            continue
                        for tb in range(kh):
                            ih = oh * sh + tb * dh - ph
                            if ih >= H + eh:
                                continue
                            for tc in range(kw):
                                iw = ow * sw + tc * dw - pw
                                if iw >= W + ew:
                                    continue
                                padded += 1
                                if id_ < 0 or id_ >= D or ih < 0 or ih >= H or iw < 0 or iw >= W:
                                    continue
                                v = x[xb + (id_ * H + ih) * W + iw]
                                count += 1
                                if is_max:
                                    if not seen or v > acc or v != v:  # noqa: PLR0124  (NaN propagates)
                                        acc = v
                                    seen = True
                                else:
                                    acc += v
                    if not is_max:
                        div = padded if count_include_pad else count
                        acc = acc / div if div > 0 else 0.0
                    out[ob + (od * OH + oh) * OW + ow] = acc


@kernel(parallel=True)
def f32_resize3d(x, out, d0, d1, dwt, h0, h1, hwt, w0, w1, wwt, g):
    """Trilinear interpolation from per-axis tables (nearest uses i0 == i1 and weight 0).
    ``g``: planes, D, H, W, OD, OH, OW."""
    P, D, H, W, OD, OH, OW = g[0], g[1], g[2], g[3], g[4], g[5], g[6]
    for item in prange(P * OD):
        p = item // OD
        od = item % OD
        xb = p * D * H * W
        za, zb, fz = d0[od], d1[od], dwt[od]
        for oh in range(OH):
            ya, yb, fy = h0[oh], h1[oh], hwt[oh]
            r00 = xb + (za * H + ya) * W
            r01 = xb + (za * H + yb) * W
            r10 = xb + (zb * H + ya) * W
            r11 = xb + (zb * H + yb) * W
            orow = ((p * OD + od) * OH + oh) * OW
            for ow in range(OW):
                xa, xb2, fx = w0[ow], w1[ow], wwt[ow]
                v00 = x[r00 + xa] + fx * (x[r00 + xb2] - x[r00 + xa])
                v01 = x[r01 + xa] + fx * (x[r01 + xb2] - x[r01 + xa])
                v10 = x[r10 + xa] + fx * (x[r10 + xb2] - x[r10 + xa])
                v11 = x[r11 + xa] + fx * (x[r11 + xb2] - x[r11 + xa])
                v0 = v00 + fy * (v01 - v00)
                v1 = v10 + fy * (v11 - v10)
                out[orow + ow] = v0 + fz * (v1 - v0)


@kernel
def f32_coupling_add(x, f, out, n_images, c_total, c0, c_half, spatial, copy_rest):
    """Reversible coupling: out = x with channels [c0, c0 + c_half) increased by f. When the planner
    put out over x (the usual case) only those channels are touched; otherwise (copy_rest) the other
    channels are copied first."""
    img = c_total * spatial
    span = c_half * spatial
    for n in range(n_images):
        base = n * img
        if copy_rest:
            for i in range(img):
                out[base + i] = x[base + i]
        start = base + c0 * spatial
        fb = n * span
        for i in range(span):
            out[start + i] = x[start + i] + f[fb + i]
