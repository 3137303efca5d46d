"""The fused 3-D MBConv of a reversible block, over depth slabs, accumulated into the coupled buffer:

    out = x;  out[:, o0:o0+Cout] += project(act2(depthwise(act1(norm(expand(x[:, i0:i0+Cin]))))))

The expanded tensor (expansion x Cin channels, the peak of an unfused MBConv) never exists whole:
a ring of k expanded depth planes feeds the k x k x k depthwise convolution one output plane at a time,
and the projection adds that plane straight into the output channels. Scratch is (k + 1) expanded
planes instead of two expanded volumes.

The normalisation after the expansion (InstanceNorm / GroupNorm) needs statistics over the whole
expanded volume before any plane is normalised. The expansion is affine in x (e = W x + b), so they
follow exactly from x's channel means mu and covariance S: mean_e = w_e . mu + b_e and
var_e = w_e^T S w_e; a group's are the average of its channels' (var adding the spread of the means).
One pass over the Cin input channels (float64) replaces materialising the expansion.

``g``: N, C_total, i0, Cin, D, H, W, E, Cout, o0, k, groups (0: no norm), copy_rest.
"""

from __future__ import annotations

import math

from ._jit import inline, kernel, prange
from .act import apply_act


@inline
def _valid_range(n_out, n_in, stride, offset):
    """Output indices o with 0 <= o*stride + offset < n_in, as (lo, hi). (A copy of conv3d's: kernel
    files that other kernel files import are hashed into every kernel's cache key.)"""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    hi = (n_in - 1 - offset) // stride + 1 if n_in - 1 - offset >= 0 else 0
    return lo, min(max(hi, lo), n_out)


@inline
def _affine_act(buf, base, n, scale, shift, code, a, b):
    """buf[base:base+n] = act(scale * buf + shift), with ReLU and clip as branch-free loops LLVM
    vectorises (the generic activation dispatch inside the loop would not be)."""
    s = buf.dtype.type(scale)
    t = buf.dtype.type(shift)
    if code == 0:
        for i in range(base, base + n):
            buf[i] = s * buf[i] + t
    elif code == 1:
        for i in range(base, base + n):
            v = s * buf[i] + t
            buf[i] = v if (v > 0.0 or v != v) else buf.dtype.type(0.0)  # noqa: PLR0124  (NaN stays NaN)
    elif code == 2:
        lo = buf.dtype.type(a)
        hi = buf.dtype.type(b)
        for i in range(base, base + n):
            v = s * buf[i] + t
            buf[i] = min(max(v, lo), hi)
    else:
        for i in range(base, base + n):
            buf[i] = apply_act(s * buf[i] + t, code, a, b)


@kernel(parallel=True)
def f32_mbconv3d_slab(x, out, w_exp, b_exp, gscale, gbias, w_dw, b_dw, w_proj, b_proj, ring, dwo, stats, g,
                      eps, code1, a1, b1, code2, a2, b2):
    N, Ct, i0, Cin, D, H, W = g[0], g[1], g[2], g[3], g[4], g[5], g[6]
    E, Cout, o0, k, groups, copy_rest = g[7], g[8], g[9], g[10], g[11], g[12]
    HW = H * W
    S = D * HW
    p = k // 2
    fk = stats[0:E]
    ft = stats[E:2 * E]
    mu = stats[2 * E:2 * E + Cin]
    cov = stats[2 * E + Cin:2 * E + Cin + Cin * Cin]
    mean_e = stats[2 * E + Cin + Cin * Cin:3 * E + Cin + Cin * Cin]
    var_e = stats[3 * E + Cin + Cin * Cin:4 * E + Cin + Cin * Cin]
    for n in range(N):
        xb = n * Ct * S
        if copy_rest:
            for i in range(Ct * S):
                out[xb + i] = x[xb + i]
        # --- per expanded channel, the folded affine map v = act1(fk * (w_e . x) + ft) ---------------
        if groups > 0:
            for c in prange(Cin):
                s = 0.0
                cb = xb + (i0 + c) * S
                for i in range(S):
                    s += x[cb + i]
                mu[c] = s / S
            for c1 in prange(Cin):
                for c2 in range(c1, Cin):
                    s = 0.0
                    b1_ = xb + (i0 + c1) * S
                    b2_ = xb + (i0 + c2) * S
                    m1, m2 = mu[c1], mu[c2]
                    for i in range(S):
                        s += (x[b1_ + i] - m1) * (x[b2_ + i] - m2)
                    cov[c1 * Cin + c2] = s / S
                    cov[c2 * Cin + c1] = s / S
            for e in range(E):
                m = b_exp[e]
                v = 0.0
                for c1 in range(Cin):
                    w1 = w_exp[e * Cin + c1]
                    m += w1 * mu[c1]
                    for c2 in range(Cin):
                        v += w1 * w_exp[e * Cin + c2] * cov[c1 * Cin + c2]
                mean_e[e] = m
                var_e[e] = v
            eg = E // groups
            for gi in range(groups):
                gm = 0.0
                for e in range(gi * eg, (gi + 1) * eg):
                    gm += mean_e[e]
                gm /= eg
                gv = 0.0
                for e in range(gi * eg, (gi + 1) * eg):
                    gv += var_e[e] + (mean_e[e] - gm) * (mean_e[e] - gm)
                gv /= eg
                inv = 1.0 / math.sqrt(gv + eps)
                for e in range(gi * eg, (gi + 1) * eg):
                    fk[e] = gscale[e] * inv
                    ft[e] = (b_exp[e] - gm) * fk[e] + gbias[e]
        else:
            for e in range(E):
                fk[e] = 1.0
                ft[e] = b_exp[e]
        # --- one output depth plane at a time --------------------------------------------------------
        for od in range(D):
            lo = 0 if od == 0 else od + p
            hi = min(D - 1, od + p)
            for d in range(lo, hi + 1):  # expand the depth planes this output plane newly needs
                slot = d % k
                for e in prange(E):
                    rb = (slot * E + e) * HW
                    for i in range(HW):
                        ring[rb + i] = 0.0
                    for c in range(Cin):
                        wv = w_exp[e * Cin + c]
                        xr = xb + (i0 + c) * S + d * HW
                        for i in range(HW):
                            ring[rb + i] += wv * x[xr + i]
                    _affine_act(ring, rb, HW, fk[e], ft[e], code1, a1, b1)
            for e in prange(E):  # depthwise k x k x k, 'same' zero padding
                ob = e * HW
                bv = b_dw[e]
                for i in range(HW):
                    dwo[ob + i] = bv
                for ta in range(k):
                    d = od + ta - p
                    if d < 0 or d >= D:
                        continue
                    rb = ((d % k) * E + e) * HW
                    for tb in range(k):
                        oh_lo, oh_hi = _valid_range(H, H, 1, tb - p)
                        for tc in range(k):
                            wv = w_dw[((e * k + ta) * k + tb) * k + tc]
                            off = tc - p
                            ow_lo, ow_hi = _valid_range(W, W, 1, off)
                            for oh in range(oh_lo, oh_hi):
                                rr = rb + (oh + tb - p) * W + off
                                orow = ob + oh * W
                                for ow in range(ow_lo, ow_hi):
                                    dwo[orow + ow] += wv * ring[rr + ow]
                _affine_act(dwo, ob, HW, 1.0, 0.0, code2, a2, b2)
            for m in prange(Cout):  # project and add into the coupled half
                orow = xb + (o0 + m) * S + od * HW
                bv = b_proj[m]
                for i in range(HW):
                    out[orow + i] += bv
                for e in range(E):
                    wv = w_proj[m * E + e]
                    eb = e * HW
                    for i in range(HW):
                        out[orow + i] += wv * dwo[eb + i]
