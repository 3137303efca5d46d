"""Channel-blocked (NCHWc) kernels against float64 numpy references of the logical operation.

Inputs are converted with to_blocked_np, outputs back with from_blocked_np; every blocked output is
also checked for finite pad lanes, and inputs get large finite garbage in their pad lanes (kernels
must ignore it). Channel counts straddle the vector width VW of this machine, pixel counts the
register tiles (6, 12 and 24 pixels).
"""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edgert.kernels import blocked as B
from edgert.kernels.act import CODES
from edgert.ops import REGISTRY
from edgert.ops.conv import conv_output_size
from tests.helpers import assert_close

VW = B.VW
ACTS = sorted(CODES)
CHANNELS = sorted({1, VW - 1, VW, VW + 1, 2 * VW + 3} - {0})
# Plane sizes: 1..25 pixels (both sides of every tile size), 7x7, 14x14 and odd shapes.
PLANES = [(1, 1), (1, 2), (2, 3), (1, 5), (2, 4), (1, 7), (3, 4), (1, 13), (4, 6), (5, 5), (7, 7), (14, 14),
          (13, 15), (9, 11), (3, 17)]
GARBAGE = 1e6


def act_attrs(act):
    return {"activation": act, "act_a": -0.5 if act == "clip" else 0.2, "act_b": 1.5 if act == "clip" else 0.5}


def act_args(act):
    a = act_attrs(act)
    return CODES[act], a["act_a"], a["act_b"]


def conv_attrs(s, pads, act, group=1, d=1):
    return {"strides": [s, s], "pads": list(pads), "dilations": [d, d], "group": group, **act_attrs(act)}


def blocked_in(x, garbage=True):
    """x [N, C, H, W] blocked, with GARBAGE in the pad lanes (kernels must not depend on them)."""
    N, C, H, W = x.shape
    flat = B.to_blocked_np(x)
    if garbage:
        view = flat.reshape(N, -(-C // VW), H * W, VW)
        for c in range(C, view.shape[1] * VW):
            view[:, c // VW, :, c % VW] = GARBAGE * (1 + c % 3)
    return flat


def blocked_out(N, C, H, W):
    return np.full(B.blocked_floats(N, C, H, W), np.nan, np.float32)


def check_blocked(out, N, C, H, W, want, what):
    assert np.isfinite(out).all(), f"{what}: non-finite lanes"  # pad lanes included
    assert_close(B.from_blocked_np(out, N, C, H, W), want, what=what)


def mt_args(mt):
    """The _mt kernels' shared work counter; 3 workers (more than this machine's 2 threads: a worker
    numba does not run must leave its items to the others, never skip them)."""
    return (B.work_counter(3),) if mt else ()


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# --- reorders ----------------------------------------------------------------------------------------
def check_reorder(N, C, H, W, mt, seed):
    x = randn(np.random.default_rng(seed), N, C, H, W)
    g = np.array([N, C, H * W], np.int64)
    out = np.full(B.blocked_floats(N, C, H, W), np.nan, np.float32)
    (B.f32_to_blocked_mt if mt else B.f32_to_blocked)(x.reshape(-1), out, g, *mt_args(mt))
    np.testing.assert_array_equal(out, B.to_blocked_np(x))
    back = np.full(x.size, np.nan, np.float32)
    (B.f32_from_blocked_mt if mt else B.f32_from_blocked)(blocked_in(x), back, g, *mt_args(mt))
    np.testing.assert_array_equal(back.reshape(x.shape), x)


@given(n=st.integers(1, 2), c=st.sampled_from(CHANNELS), hw=st.sampled_from(PLANES + [(17, 19)]),
       mt=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_reorders_round_trip(n, c, hw, mt, seed):
    check_reorder(n, c, *hw, mt, seed)


@pytest.mark.arm
@pytest.mark.parametrize("mt", [False, True])
def test_reorders_arm(mt):
    check_reorder(2, 2 * VW + 3, 5, 7, mt, 1)
    check_reorder(1, 32, 23, 23, mt, 2)  # more than one pixel chunk


def test_numpy_layout_helpers():
    x = np.arange(2 * 5 * 2 * 3, dtype=np.float32).reshape(2, 5, 2, 3)
    flat = B.to_blocked_np(x, VW=4)
    assert flat.size == B.blocked_floats(2, 5, 2, 3, VW=4) == 2 * 2 * 6 * 4
    n, c, h, w = 1, 4, 1, 2
    assert flat[((n * 2 + c // 4) * 6 + h * 3 + w) * 4 + c % 4] == x[n, c, h, w]
    assert flat.reshape(2, 2, 6, 4)[:, 1, :, 1:].sum() == 0  # pad lanes
    np.testing.assert_array_equal(B.from_blocked_np(flat, 2, 5, 2, 3, VW=4), x)
    w2d = np.arange(6 * 5, dtype=np.float32).reshape(6, 5)
    packed = B.pack_conv1x1(w2d, VW=4).reshape(2, 8, 4)
    assert packed[1, 3, 1] == w2d[5, 3] and packed[1, 3, 2] == 0 and packed[0, 6, 0] == 0
    np.testing.assert_array_equal(B.pad_bias(None, 5, VW=4), np.zeros(8, np.float32))
    np.testing.assert_array_equal(B.pad_bias(np.ones(5), 5, VW=4), [1] * 5 + [0] * 3)


# --- 1x1 convolution --------------------------------------------------------------------------------
def check_conv1x1(N, K, M, H, W, act, res, mt, seed, garbage=True, bias=True, in_place=False, with_k=True):
    rng = np.random.default_rng(seed)
    x, w = randn(rng, N, K, H, W), randn(rng, M, K, 1, 1)
    b = randn(rng, M) if bias else None
    r = randn(rng, N, M, H, W) if res else None
    want = REGISTRY["Conv"].reference(conv_attrs(1, [0] * 4, act), x, w, b, r)[0]
    g = np.array([N, -(-K // VW), -(-M // VW), H * W, int(res)] + ([K] if with_k else []), np.int64)
    out = blocked_out(N, M, H, W)
    rb = blocked_in(r, garbage) if res else np.zeros(1, np.float32)
    if in_place:  # the residual's buffer is the output
        out = rb
    kern = B.f32_blocked_conv1x1_mt if mt else B.f32_blocked_conv1x1
    kern(blocked_in(x, garbage), B.pack_conv1x1(w[:, :, 0, 0]), B.pad_bias(b, M), rb, out, g, *act_args(act),
         *mt_args(mt))
    check_blocked(out, N, M, H, W, want, f"conv1x1 {N}x{K}->{M} {H}x{W} {act} res={res} mt={mt} in_place={in_place}")


@given(n=st.integers(1, 2), k=st.sampled_from(CHANNELS), m=st.sampled_from(CHANNELS + [4 * VW, 5 * VW + 1, 7 * VW]),
       hw=st.sampled_from(PLANES), act=st.sampled_from(ACTS), res=st.booleans(), mt=st.booleans(),
       bias=st.booleans(), with_k=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_conv1x1_matches_reference(n, k, m, hw, act, res, mt, bias, with_k, seed):
    """With and without the optional real input channel count g[5] (pad lanes of x skipped or not)."""
    check_conv1x1(n, k, m, *hw, act, res, mt, seed, bias=bias, with_k=with_k)


@pytest.mark.arm
@pytest.mark.parametrize("shape", [(1, VW + 1, 7 * VW, 7, 7), (2, 2 * VW + 3, VW - 1 or 1, 5, 6), (1, 3, 3 * VW, 1, 1),
                                   (1, 2 * VW, VW, 14, 14)])
@pytest.mark.parametrize("mt", [False, True])
def test_conv1x1_shapes(shape, mt):
    check_conv1x1(*shape, "clip", True, mt, 4)
    check_conv1x1(*shape, "hardswish", False, mt, 5, with_k=False)


@pytest.mark.parametrize("mt", [False, True])
def test_conv1x1_residual_in_place(mt):
    """r and out may be one buffer: shifted tail tiles never re-read a residual they overwrote."""
    check_conv1x1(1, VW + 3, 5 * VW, 7, 7, "relu", True, mt, 6, garbage=False, in_place=True)
    check_conv1x1(1, 2 * VW, 2 * VW, 5, 7, "none", True, mt, 7, garbage=False, in_place=True)


# --- depthwise ----------------------------------------------------------------------------------------
def check_dwconv(N, C, H, W, k, s, pads, act, mt, seed):
    rng = np.random.default_rng(seed)
    x, w, b = randn(rng, N, C, H, W), randn(rng, C, 1, k, k), randn(rng, C)
    want = REGISTRY["Conv"].reference(conv_attrs(s, pads, act, group=C), x, w, b)[0]
    OH, OW = want.shape[2:]
    g = np.array([N, -(-C // VW), H, W, OH, OW, k, k, s, s, pads[0], pads[1]], np.int64)
    out = blocked_out(N, C, OH, OW)
    kern = B.f32_blocked_dwconv_mt if mt else B.f32_blocked_dwconv
    kern(blocked_in(x), B.pack_dwconv(w, C), B.pad_bias(b, C), out, g, *act_args(act), *mt_args(mt))
    check_blocked(out, N, C, OH, OW, want, f"dwconv {C}x{H}x{W} k{k} s{s} pads {pads} {act} mt={mt}")


@given(n=st.integers(1, 2), c=st.sampled_from(CHANNELS), h=st.integers(1, 20), w=st.integers(1, 20),
       k=st.sampled_from([1, 3, 3, 5, 5, 2, 4]), s=st.sampled_from([1, 2, 2, 3]),
       pads=st.lists(st.integers(0, 2), min_size=4, max_size=4), act=st.sampled_from(ACTS), mt=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_dwconv_matches_reference(n, c, h, w, k, s, pads, act, mt, seed):
    assume(conv_output_size(h, k, s, pads[0], pads[2], 1) >= 1 and conv_output_size(w, k, s, pads[1], pads[3], 1) >= 1)
    check_dwconv(n, c, h, w, k, s, pads, act, mt, seed)


@pytest.mark.arm
@pytest.mark.parametrize("case", [(1, VW + 1, 7, 7, 3, 1, [1, 1, 1, 1]), (2, 2 * VW + 3, 14, 14, 3, 2, [0, 0, 1, 1]),
                                  (1, VW, 13, 17, 5, 1, [2, 2, 2, 2]), (1, VW - 1 or 1, 11, 9, 5, 2, [1, 2, 2, 1]),
                                  (1, 3, 6, 9, 4, 3, [1, 0, 2, 2])])
@pytest.mark.parametrize("mt", [False, True])
def test_dwconv_shapes(case, mt):
    check_dwconv(*case, "relu", mt, 8)
    check_dwconv(*case, "sigmoid", mt, 9)


# --- general convolution ----------------------------------------------------------------------------
def check_conv(N, C, M, H, W, k, s, pads, d, inb, act, mt, seed):
    rng = np.random.default_rng(seed)
    x, w, b = randn(rng, N, C, H, W), randn(rng, M, C, k, k), randn(rng, M)
    want = REGISTRY["Conv"].reference(conv_attrs(s, pads, act, d=d), x, w, b)[0]
    OH, OW = want.shape[2:]
    g = np.array([N, C, -(-M // VW), H, W, OH, OW, k, k, s, s, pads[0], pads[1], d, d, int(inb)], np.int64)
    out = blocked_out(N, M, OH, OW)
    kern = B.f32_blocked_conv_mt if mt else B.f32_blocked_conv
    xin = blocked_in(x) if inb else x.reshape(-1)
    kern(xin, B.pack_conv(w, inb), B.pad_bias(b, M), out, g, *act_args(act), *mt_args(mt))
    check_blocked(out, N, M, OH, OW, want, f"conv {C}->{M} {H}x{W} k{k} s{s} d{d} pads {pads} in_blocked={inb} "
                                           f"{act} mt={mt}")


@given(n=st.integers(1, 2), c=st.sampled_from([1, 3] + CHANNELS), m=st.sampled_from(CHANNELS + [4 * VW, 5 * VW + 1]),
       h=st.integers(1, 16), w=st.integers(1, 30), k=st.sampled_from([1, 3, 3, 5, 2]), s=st.sampled_from([1, 2, 2, 3]),
       d=st.sampled_from([1, 1, 1, 2]), pads=st.lists(st.integers(0, 2), min_size=4, max_size=4),
       inb=st.booleans(), act=st.sampled_from(ACTS), mt=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_conv_matches_reference(n, c, m, h, w, k, s, d, pads, inb, act, mt, seed):
    assume(conv_output_size(h, k, s, pads[0], pads[2], d) >= 1 and conv_output_size(w, k, s, pads[1], pads[3], d) >= 1)
    check_conv(n, c, m, h, w, k, s, pads, d, inb, act, mt, seed)


@pytest.mark.arm
@pytest.mark.parametrize("case", [(1, 3, 2 * VW, 17, 30, 3, 2, [1, 1, 1, 1], 1, False),  # a stem
                                  (1, 3, VW + 8, 12, 33, 5, 2, [1, 1, 2, 2], 1, False),  # BlazeFace's stem
                                  (2, VW + 1, 5 * VW + 1, 7, 7, 3, 1, [1, 0, 2, 1], 1, True),
                                  (1, 5, VW - 1 or 1, 9, 29, 3, 1, [0, 2, 1, 0], 2, True)])
@pytest.mark.parametrize("mt", [False, True])
def test_conv_shapes(case, mt):
    check_conv(*case, "clip", mt, 10)
    check_conv(*case, "tanh", mt, 11)


# --- global average pool ----------------------------------------------------------------------------
def check_gap(N, C, H, W, seed):
    x = randn(np.random.default_rng(seed), N, C, H, W) + 3.0
    out = blocked_out(N, C, 1, 1)
    B.f32_blocked_gap(blocked_in(x), out, np.array([N, -(-C // VW), H * W], np.int64))
    want = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
    got = B.from_blocked_np(out, N, C, 1, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.isfinite(out).all(), "pad lanes"


@given(n=st.integers(1, 2), c=st.sampled_from(CHANNELS), hw=st.sampled_from(PLANES + [(112, 112)]),
       seed=st.integers(0, 2**31 - 1))
def test_gap_matches_reference(n, c, hw, seed):
    check_gap(n, c, *hw, seed)


@pytest.mark.arm
def test_gap_shapes():
    check_gap(2, 2 * VW + 3, 7, 7, 12)


def test_generated_tiles_are_current():
    """The register tiles in blocked.py are generated: the file holds what generate_tiles() gives."""
    text = Path(B.__file__).read_text(encoding="utf-8")
    start = text.index(B._GEN_BEGIN)
    end = text.index(B._GEN_END) + len(B._GEN_END)
    assert text[start:end] == B.generate_tiles(), "run python -m edgert.kernels.blocked"
