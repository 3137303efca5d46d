"""The small blocked-layout kernels (kernels/blocked_ops.py) against their ops' numpy references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgert.kernels import blocked_ops as K
from edgert.kernels.blocked import from_blocked_np, to_blocked_np, work_counter
from edgert.kernels.simd import VW
from edgert.ops import REGISTRY
from tests.helpers import assert_close

CHANNELS = st.sampled_from(sorted({1, 2, VW - 1, VW, VW + 1, 2 * VW + 3} - {0}))


def _blocked_with_garbage(x, seed=0):
    N, C, H, W = x.shape
    b = to_blocked_np(x).reshape(N, -(-C // VW), H * W, VW)
    rng = np.random.default_rng(seed)
    last = C - (b.shape[1] - 1) * VW
    b[:, -1, :, last:] = rng.uniform(-1e6, 1e6, b[:, -1, :, last:].shape)
    return np.ascontiguousarray(b.reshape(-1), np.float32)


@pytest.mark.arm
@settings(max_examples=25, deadline=None)
@given(C=CHANNELS, H=st.integers(1, 9), W=st.integers(1, 9), k=st.integers(1, 3), s=st.integers(1, 3),
       pad=st.integers(0, 1), d=st.integers(1, 2), seed=st.integers(0, 99))
def test_maxpool(C, H, W, k, s, pad, d, seed):
    attrs = {"kernel": [k, k], "strides": [s, s], "pads": [pad, pad, 0, pad], "dilations": [d, d], "ceil_mode": 0}
    op = REGISTRY["MaxPool"]
    kh, kw, sh, sw, pt, pl, _, _, dh, dw, OH, OW = op.geometry(attrs, (1, C, H, W))
    if OH < 1 or OW < 1 or pad >= (k - 1) * d + 1:
        return
    x = np.random.default_rng(seed).standard_normal((2, C, H, W)).astype(np.float32)
    if seed % 3 == 0:
        x.reshape(-1)[seed % x.size] = np.nan  # NaN wins, in whichever tap it is
    want = op.reference(attrs, x)[0]
    out = np.zeros(2 * -(-C // VW) * OH * OW * VW, np.float32)
    g = np.array([2 * -(-C // VW), H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw], np.int64)
    K.f32_blocked_maxpool(_blocked_with_garbage(x, seed), out, g)
    got = from_blocked_np(out, 2, C, OH, OW)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert_close(np.nan_to_num(got), np.nan_to_num(want), what="maxpool")
    mt = np.full_like(out, 7.0)  # 3 workers on 2 threads: every item once, whoever takes it
    K.f32_blocked_maxpool_mt(_blocked_with_garbage(x, seed), mt, g, work_counter(3))
    np.testing.assert_array_equal(mt, out)


@pytest.mark.arm
@settings(max_examples=20, deadline=None)
@given(C=CHANNELS, extra=st.integers(1, 2 * VW), P=st.integers(1, 40), seed=st.integers(0, 99))
def test_pad_channels(C, extra, P, seed):
    x = np.random.default_rng(seed).standard_normal((2, C, 1, P)).astype(np.float32)
    attrs = {"pads": [0, 0, 0, 0, 0, extra, 0, 0], "mode": "constant", "value": 0.0}
    want = REGISTRY["Pad"].reference(attrs, x)[0]
    CBi, CBo = -(-C // VW), -(-(C + extra) // VW)
    out = np.full(2 * CBo * P * VW, 7.0, np.float32)
    K.f32_blocked_pad_channels(_blocked_with_garbage(x, seed), out, np.array([2, C, CBi, CBo, P], np.int64))
    np.testing.assert_array_equal(from_blocked_np(out, 2, C + extra, 1, P), want)
    assert not out.reshape(2, CBo, P, VW)[:, -1, :, (C + extra) - (CBo - 1) * VW:].any()  # new pad lanes: 0
    mt = np.full_like(out, 7.0)
    K.f32_blocked_pad_channels_mt(_blocked_with_garbage(x, seed), mt, np.array([2, C, CBi, CBo, P], np.int64),
                                  work_counter(3))
    np.testing.assert_array_equal(mt, out)


@pytest.mark.arm
@settings(max_examples=20, deadline=None)
@given(C=CHANNELS, P=st.sampled_from([1, 7, 40, K.PRELU_ITEM_PIXELS + 3]), residual=st.booleans(),
       seed=st.integers(0, 99))
def test_prelu(C, P, residual, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, C, 1, P)).astype(np.float32)
    x.reshape(-1)[: min(3, x.size)] = [np.inf, -np.inf, 0.0][: min(3, x.size)]
    slope = rng.uniform(-0.5, 0.5, (C, 1, 1)).astype(np.float32)
    r = rng.standard_normal(x.shape).astype(np.float32) if residual else None
    want = REGISTRY["PRelu"].reference({}, x, slope, r)[0]
    CB = -(-C // VW)
    s = np.zeros(CB * VW, np.float32)
    s[:C] = slope.reshape(-1)
    out = np.zeros(2 * CB * P * VW, np.float32)
    rb = to_blocked_np(r).reshape(-1) if residual else np.zeros(1, np.float32)
    g = np.array([2, CB, P, int(residual)], np.int64)
    K.f32_blocked_prelu(_blocked_with_garbage(x, seed), rb, s, out, g)
    np.testing.assert_array_equal(from_blocked_np(out, 2, C, 1, P), want)
    mt = np.zeros_like(out)
    K.f32_blocked_prelu_mt(_blocked_with_garbage(x, seed), rb, s, mt, g, work_counter(3))
    np.testing.assert_array_equal(mt, out)
    assert np.isfinite(out.reshape(2, CB, P, VW)[:, -1, :, C - (CB - 1) * VW:]).all()


@pytest.mark.arm
@settings(max_examples=15, deadline=None)
@given(C=CHANNELS, P=st.integers(1, 40), seed=st.integers(0, 99))
def test_scale_and_nhwc(C, P, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, C, 1, P)).astype(np.float32)
    gate = rng.standard_normal((2, C, 1, 1)).astype(np.float32)
    CB = -(-C // VW)
    out = np.zeros(2 * CB * P * VW, np.float32)
    K.f32_blocked_scale(_blocked_with_garbage(x, seed), _blocked_with_garbage(gate, seed + 1), out,
                        np.array([2 * CB, P], np.int64))
    np.testing.assert_array_equal(from_blocked_np(out, 2, C, 1, P), x * gate)
    nhwc = np.zeros(2 * P * C, np.float32)
    K.f32_blocked_to_nhwc(_blocked_with_garbage(x, seed), nhwc, np.array([2, C, P], np.int64))
    np.testing.assert_array_equal(nhwc.reshape(2, 1, P, C), x.transpose(0, 2, 3, 1))
    mt = np.full_like(nhwc, 7.0)
    K.f32_blocked_to_nhwc_mt(_blocked_with_garbage(x, seed), mt, np.array([2, C, P], np.int64), work_counter(3))
    np.testing.assert_array_equal(mt, nhwc)


@pytest.mark.arm
@settings(max_examples=15, deadline=None)
@given(C=CHANNELS, H=st.integers(1, 9), W=st.integers(1, 9), OH=st.integers(1, 13), OW=st.integers(1, 13),
       seed=st.integers(0, 99))
def test_resize_mt_matches_serial(C, H, W, OH, OW, seed):
    """The _mt resizes split (plane, row span) items among workers: bitwise the serial result (which
    test_layout checks against Resize's reference), for any source tables."""
    rng = np.random.default_rng(seed)
    x = _blocked_with_garbage(rng.standard_normal((2, C, H, W)).astype(np.float32), seed)
    g = np.array([2 * -(-C // VW), H, W, OH, OW], np.int64)
    n = int(g[0]) * OH * OW * VW
    rows, cols = rng.integers(0, H, OH), rng.integers(0, W, OW)
    want, got = np.zeros(n, np.float32), np.full(n, 7.0, np.float32)
    K.f32_blocked_resize_nearest(x, want, rows, cols, g)
    K.f32_blocked_resize_nearest_mt(x, got, rows, cols, g, work_counter(3))
    np.testing.assert_array_equal(got, want)
    h0, h1, w0, w1 = rng.integers(0, H, OH), rng.integers(0, H, OH), rng.integers(0, W, OW), rng.integers(0, W, OW)
    hw, ww = rng.random(OH).astype(np.float32), rng.random(OW).astype(np.float32)
    K.f32_blocked_resize_linear(x, want, h0, h1, hw, w0, w1, ww, g)
    K.f32_blocked_resize_linear_mt(x, got, h0, h1, hw, w0, w1, ww, g, work_counter(3))
    np.testing.assert_array_equal(got, want)


@pytest.mark.arm
@settings(max_examples=15, deadline=None)
@given(planes=st.integers(1, 5), P=st.integers(1, 300), act=st.sampled_from(["none", "relu", "clip"]),
       seed=st.integers(0, 99))
def test_blocked_add_mt(planes, P, act, seed):
    from edgert.kernels.act import CODES
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(planes * P * VW).astype(np.float32) * 4 for _ in range(2))
    a[0] = np.nan
    lo, hi = (-1.0, 2.5) if act == "clip" else (0.0, 0.0)
    want = REGISTRY["Add"].reference({"activation": act, "act_a": lo, "act_b": hi}, a, b)[0]
    out = np.full_like(a, 7.0)
    K.f32_blocked_add_mt(a, b, out, P, CODES[act], lo, hi, work_counter(3))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_array_equal(np.nan_to_num(out), np.nan_to_num(want))
    K.f32_blocked_add_mt(a, b, a, P, CODES[act], lo, hi, work_counter(2))  # out aliasing an operand
    np.testing.assert_array_equal(np.nan_to_num(a), np.nan_to_num(want))
