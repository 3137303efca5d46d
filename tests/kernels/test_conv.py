"""Conv and ConvTranspose kernels against their references; the references against onnx's evaluator."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import edgert.ops.conv as conv_op
from edgert.errors import ShapeError
from edgert.kernels.act import CODES
from edgert.kernels.gemm import MR
from edgert.kernels.im2col import NR
from edgert.ops import REGISTRY
from edgert.ops.conv import (
    CVEC_MAX_PIXELS,
    ROWS_MAX_K,
    ROWS_MAX_WASTE,
    conv_output_size,
    dw_grid,
    transposed_better,
)
from tests.helpers import assert_close, onnx_reference, run_both, single_op_graph

ACTS = sorted(CODES)
# Sizes that straddle the GEMM tile (MR rows, NR columns) and the vector width (NR / 2).
EDGE_SIZES = sorted({1, 2, 3, MR - 1, MR, MR + 1, NR // 2 - 1, NR // 2 + 1, 17})


def act_attrs(act):
    return {"activation": act, "act_a": -0.5 if act == "clip" else 0.2, "act_b": 1.5 if act == "clip" else 0.5}


def dw_kernel(same_channels, stride, OH, OW, w_const=True):
    """The kernel prepare picks for a 3x3/5x5 depthwise conv without dilation."""
    if same_channels and stride == 1 and OH * OW <= CVEC_MAX_PIXELS and w_const:
        return "f32_dwconv_cvec"
    return "f32_dwconv_grid" if dw_grid(OW, stride) else "f32_dwconv_direct"


def expected_conv_kernel(C, M, kh, kw, strides, pads, dilations, group, OW, w_const=True, NHW=None, OH=None):
    if group == C and (group > 1 or M == 1):
        direct = kh == kw and kh in (3, 5) and strides[0] == strides[1] and strides[0] in (1, 2) \
            and dilations == [1, 1]
        if direct:
            return dw_kernel(M == C, strides[1], OH, OW, w_const)
        return "f32_dwconv_generic"
    if NHW is not None and w_const and group == 1 and NHW == (1, kh, kw) and pads == [0, 0, 0, 0]:
        return "f32_gemv"  # the kernel covers the whole input: a matrix-vector product
    if kh == kw == 1 and strides == [1, 1] and pads == [0, 0, 0, 0]:
        if NHW is not None and group == 1 and w_const and transposed_better(NHW[1] * NHW[2], M):
            return "f32_gemm_t"
        return "f32_gemm_rows"
    if w_const and C // group * kh * kw <= ROWS_MAX_K and strides[1] in (1, 2) \
            and -(-OW // NR) * NR <= OW * (1 + ROWS_MAX_WASTE):
        return "f32_conv_rows"
    return "f32_gemm_im2col"


@st.composite
def conv_case(draw, kind=None):
    """(x shape, w shape, attrs) for a Conv with at least one output pixel."""
    kind = kind or draw(st.sampled_from(["dense", "depthwise", "grouped", "pointwise"]))
    n = draw(st.integers(1, 2))
    if kind == "depthwise":
        c = draw(st.integers(1, 9))
        group, m = c, c * draw(st.sampled_from([1, 1, 2]))
    elif kind == "grouped":
        group = draw(st.integers(2, 3))
        c, m = group * draw(st.integers(1, 3)), group * draw(st.integers(1, 4))
    else:
        group, c, m = 1, draw(st.integers(1, 9)), draw(st.sampled_from(EDGE_SIZES + [24]))
    if kind == "pointwise":
        k, s, d, pads = [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]
    else:
        sq = draw(st.booleans())
        k = [draw(st.integers(1, 5))] * 2 if sq else [draw(st.integers(1, 5)) for _ in range(2)]
        s = [draw(st.integers(1, 3))] * 2 if sq else [draw(st.integers(1, 3)) for _ in range(2)]
        d = [1, 1] if draw(st.booleans()) else [draw(st.integers(1, 2)) for _ in range(2)]
        pads = [draw(st.integers(0, 3)) for _ in range(4)]
    h, w = draw(st.sampled_from(EDGE_SIZES)), draw(st.integers(1, 17))
    assume(conv_output_size(h, k[0], s[0], pads[0], pads[2], d[0]) >= 1)
    assume(conv_output_size(w, k[1], s[1], pads[1], pads[3], d[1]) >= 1)
    attrs = {"strides": s, "pads": pads, "dilations": d, "group": group}
    return (n, c, h, w), (m, c // group, *k), attrs


def run_conv(op, x_shape, w_shape, attrs, seed, bias=True, fp16=False, w_const=True, threads=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    m = w_shape[0] if op == "Conv" else w_shape[1] * attrs.get("group", 1)
    inputs = [("x", x), ("w", w)] + ([("b", rng.standard_normal(m).astype(np.float32))] if bias else [])
    consts = {"b"} | ({"w"} if w_const else set())
    return run_both(op, inputs, attrs, consts=consts, fp16_consts=fp16, threads=threads)


@pytest.mark.arm
@given(case=conv_case(), act=st.sampled_from(ACTS), bias=st.booleans(), fp16=st.booleans(),
       w_const=st.sampled_from([True, True, True, False]), seed=st.integers(0, 2**31 - 1))
def test_conv_matches_reference(case, act, bias, fp16, w_const, seed):
    x_shape, w_shape, attrs = case
    got, want, sess = run_conv("Conv", x_shape, w_shape, {**attrs, **act_attrs(act)}, seed, bias, fp16, w_const)
    assert sess.describe()["nodes"][0]["kernel"] == expected_conv_kernel(
        x_shape[1], w_shape[0], *w_shape[2:], attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"],
        got[0].shape[3], w_const, NHW=(x_shape[0], *x_shape[2:]), OH=got[0].shape[2])
    assert_close(got[0], want[0], what="Conv")


@pytest.mark.arm
@given(c=st.integers(1, 3), m=st.sampled_from(EDGE_SIZES), k=st.lists(st.integers(1, 3), min_size=2, max_size=2),
       s=st.sampled_from([[1, 1], [2, 2], [3, 1], [1, 2]]), d=st.sampled_from([[1, 1], [2, 1], [1, 2]]),
       pads=st.lists(st.integers(0, 2), min_size=4, max_size=4), h=st.integers(1, 6),
       w=st.integers(NR - 3, 2 * NR + 5), act=st.sampled_from(ACTS), seed=st.integers(0, 2**31 - 1))
def test_direct_rows_conv_matches_reference(c, m, k, s, d, pads, h, w, act, seed):
    """Wide, short inputs with few channels: the direct-on-rows path (when its output rows fill panels)."""
    assume(conv_output_size(h, k[0], s[0], pads[0], pads[2], d[0]) >= 1)
    attrs = {"strides": s, "pads": pads, "dilations": d, **act_attrs(act)}
    got, want, sess = run_conv("Conv", (1, c, h, w), (m, c, *k), attrs, seed)
    assert sess.describe()["nodes"][0]["kernel"] == expected_conv_kernel(c, m, *k, s, pads, d, 1, got[0].shape[3])
    assert_close(got[0], want[0], what="Conv")


@pytest.mark.arm
@given(c=st.integers(1, 6), mult=st.sampled_from([1, 1, 2]), k=st.sampled_from([3, 5]), s=st.sampled_from([1, 2]),
       h=st.integers(1, 40), w=st.integers(1, 40), pads=st.lists(st.integers(0, 4), min_size=4, max_size=4),
       act=st.sampled_from(ACTS), seed=st.integers(0, 2**31 - 1))
def test_depthwise_direct_and_grid_match_reference(c, mult, k, s, h, w, pads, act, seed):
    """3x3/5x5 depthwise at stride 1 and 2 over plane sizes on both sides of the grid/row choice
    (row tails, planes smaller than a vector, asymmetric pads larger than the kernel's reach)."""
    pads = [min(p, k - 1) for p in pads]
    assume(c > 1 or mult == 1)  # one channel to two is a plain convolution
    assume(conv_output_size(h, k, s, pads[0], pads[2], 1) >= 1 and conv_output_size(w, k, s, pads[1], pads[3], 1) >= 1)
    attrs = {"strides": [s, s], "pads": pads, "group": c, **act_attrs(act)}
    got, want, sess = run_conv("Conv", (1, c, h, w), (c * mult, 1, k, k), attrs, seed)
    assert sess.describe()["nodes"][0]["kernel"] == dw_kernel(mult == 1, s, *got[0].shape[2:])
    assert_close(got[0], want[0], what="depthwise")


@pytest.mark.arm
@given(n=st.integers(1, 2), c=st.sampled_from([1, 3, 16, 33]), m=st.sampled_from(EDGE_SIZES + [NR, 2 * NR + 3]),
       h=st.integers(1, 9), w=st.integers(1, 9), act=st.sampled_from(ACTS), bias=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_transposed_pointwise_matches_reference(n, c, m, h, w, act, bias, seed):
    """The transposed 1x1 GEMM forced on every shape: pixel counts around the tile rows (single-row
    tiles below 4, partial 8-row tiles), channel counts around the panel width, batches."""
    assume(c > 1 or m > 1)  # one channel in and out is a depthwise convolution
    assume(n > 1 or h * w > 1)  # a 1x1 input is a matrix-vector product
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv_op, "TRANSPOSED_GAIN", 0.0)
        got, want, sess = run_conv("Conv", (n, c, h, w), (m, c, 1, 1), act_attrs(act), seed, bias)
    assert sess.describe()["nodes"][0]["kernel"] == "f32_gemm_t"
    assert_close(got[0], want[0], what="f32_gemm_t")


@pytest.mark.parametrize("x_shape,w_shape", [((1, 320, 7, 7), (1280, 320, 1, 1)), ((2, 64, 5, 5), (400, 64, 1, 1))])
def test_transposed_pointwise_two_threads(x_shape, w_shape):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv_op, "TRANSPOSED_GAIN", 0.0)
        got, want, sess = run_conv("Conv", x_shape, w_shape, act_attrs("clip"), 3, threads=2)
    assert sess.describe()["nodes"][0]["kernel"] == "f32_gemm_t_mt"
    assert_close(got[0], want[0], what="f32_gemm_t_mt")


def run_conv_residual(x_shape, w_shape, attrs, seed, bias=True, threads=1, b_const=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    N, _, H, W = x_shape
    OH = conv_output_size(H, w_shape[2], attrs.get("strides", [1, 1])[0], *attrs.get("pads", [0] * 4)[0::2], 1)
    OW = conv_output_size(W, w_shape[3], attrs.get("strides", [1, 1])[1], *attrs.get("pads", [0] * 4)[1::2], 1)
    r = rng.standard_normal((N, w_shape[0], OH, OW)).astype(np.float32)
    inputs = [("x", x), ("w", w), ("b", b) if bias else ("", None), ("r", r)]
    return run_both("Conv", inputs, attrs, consts={"w"} | ({"b"} if b_const else set()), threads=threads)


@pytest.mark.arm
@given(n=st.integers(1, 2), c=st.sampled_from([1, 5, 16]), m=st.sampled_from(EDGE_SIZES + [2 * NR + 3]),
       h=st.integers(1, 9), w=st.integers(1, 2 * NR + 3), act=st.sampled_from(ACTS), bias=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_conv_with_fused_residual_matches_reference(n, c, m, h, w, act, bias, seed):
    """Conv(X, W, B?, R) = ACT(conv + B + R): 1x1 convs add R per GEMM work item (f32_gemm_rows_res),
    except on planes small enough for the transposed GEMM (then a pass adds R)."""
    assume(n > 1 or h * w > 1)
    got, want, sess = run_conv_residual((n, c, h, w), (m, c, 1, 1), act_attrs(act), seed, bias)
    assert sess.describe()["nodes"][0]["kernel"] == ("f32_gemm_t+f32_add_act" if transposed_better(h * w, m)
                                                      else "f32_gemm_rows_res")
    assert_close(got[0], want[0], what="Conv+R")


@pytest.mark.parametrize("x_shape,w_shape,attrs,kernel,b_const", [
    ((1, 4, 9, 7), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}, "f32_dwconv_grid+f32_add_act", True),
    ((1, 3, 9, 64), (5, 3, 3, 3), {"pads": [1, 1, 1, 1]}, "f32_conv_rows+f32_add_act", True),
    ((1, 6, 5, 5), (4, 6, 1, 1), {}, "f32_gemm_rows+f32_add_act", False),  # bias computed by the graph
    ((1, 7, 1, 1), (9, 7, 1, 1), {}, "f32_gemv+f32_add_act", True),
])
@pytest.mark.parametrize("act", ["none", "relu", "hardswish"])
def test_conv_with_residual_on_other_paths(x_shape, w_shape, attrs, kernel, b_const, act):
    got, want, sess = run_conv_residual(x_shape, w_shape, {**attrs, **act_attrs(act)}, 5, b_const=b_const)
    assert sess.describe()["nodes"][0]["kernel"] == kernel
    assert_close(got[0], want[0], what=kernel)


@pytest.mark.parametrize("x_shape,w_shape", [((1, 96, 28, 28), (32, 96, 1, 1)), ((2, 24, 33, 19), (40, 24, 1, 1))])
def test_conv_with_fused_residual_two_threads(x_shape, w_shape):
    got, want, sess = run_conv_residual(x_shape, w_shape, act_attrs("clip"), 6, threads=2)
    assert sess.describe()["nodes"][0]["kernel"] == "f32_gemm_rows_res_mt"
    assert_close(got[0], want[0], what="f32_gemm_rows_res_mt")


# Every path prepare can choose, explicitly: (x shape, w shape, attrs, kernel).
PATHS = [
    ((1, 16, 9, 11), (24, 16, 1, 1), {}, "f32_gemm_rows"),
    ((1, 16, 3, 3), (64, 16, 1, 1), {}, "f32_gemm_t"),  # 9 pixels: under half a panel on every CPU
    ((1, 8, 5, 5), (64, 8, 1, 1), {}, "f32_gemm_t"),
    ((2, 6, 7, 5), (9, 2, 1, 1), {"group": 3}, "f32_gemm_rows"),
    # Rows at least two vectors wide (32 on AVX-512) at stride 1: the row kernel on every CPU ...
    ((1, 8, 17, 40), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}, "f32_dwconv_direct"),
    ((2, 5, 13, 35), (5, 1, 5, 5), {"group": 5, "pads": [2, 2, 2, 2]}, "f32_dwconv_direct"),
    # ... stride 2, or rows narrower than two vectors on every CPU (under 8): the flat grid.
    ((1, 8, 17, 16), (8, 1, 3, 3), {"group": 8, "pads": [0, 1, 1, 0], "strides": [2, 2]}, "f32_dwconv_grid"),
    ((1, 4, 15, 18), (8, 1, 5, 5), {"group": 4, "pads": [1, 2, 2, 1], "strides": [2, 2]}, "f32_dwconv_grid"),
    ((1, 3, 40, 45), (3, 1, 5, 5), {"group": 3, "pads": [2, 1, 0, 2], "strides": [2, 2]}, "f32_dwconv_grid"),
    ((2, 5, 13, 7), (5, 1, 5, 5), {"group": 5, "pads": [2, 2, 2, 2]}, "f32_dwconv_grid"),
    ((1, 6, 7, 6), (12, 1, 3, 3), {"group": 6, "pads": [1, 0, 2, 1]}, "f32_dwconv_grid"),
    ((1, 2, 1, 1), (2, 1, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}, "f32_dwconv_cvec"),
    # Stride 1 on planes of at most 49 pixels: channels in the vector lanes (tails of any VW).
    ((2, 21, 7, 7), (21, 1, 5, 5), {"group": 21, "pads": [2, 2, 2, 2]}, "f32_dwconv_cvec"),
    ((1, 5, 6, 8), (5, 1, 3, 3), {"group": 5, "pads": [0, 1, 2, 0]}, "f32_dwconv_cvec"),
    ((1, 3, 4, 3), (3, 1, 5, 5), {"group": 3, "pads": [4, 0, 1, 3]}, "f32_dwconv_cvec"),
    ((1, 4, 12, 12), (4, 1, 3, 3), {"group": 4, "pads": [2, 2, 2, 2], "dilations": [2, 2]}, "f32_dwconv_generic"),
    ((1, 3, 12, 12), (3, 1, 7, 7), {"group": 3, "pads": [3, 3, 3, 3]}, "f32_dwconv_generic"),
    ((1, 3, 12, 12), (3, 1, 3, 3), {"group": 3, "strides": [1, 2]}, "f32_dwconv_generic"),
    ((1, 3, 31, 33), (32, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, "f32_gemm_im2col"),
    # OW = 9 wastes over 40% of the last panel for every panel width (NR = 8, 16 or 32): im2col on all CPUs.
    ((2, 16, 9, 10), (4, 8, 3, 3), {"group": 2, "pads": [1, 0, 2, 1], "dilations": [2, 1]}, "f32_gemm_im2col"),
    ((1, 5, 8, 8), (7, 5, 1, 1), {"strides": [2, 2]}, "f32_gemm_im2col"),
    ((1, 3, 37, 64), (13, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 0, 1]}, "f32_conv_rows"),
    ((2, 4, 9, NR), (10, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}, "f32_conv_rows"),
    ((1, 2, 11, NR), (5, 2, 3, 5), {"pads": [0, 2, 3, 2], "dilations": [2, 1]}, "f32_conv_rows"),
    ((1, 64, 6, NR), (20, 64, 3, 3), {"pads": [1, 1, 1, 1]}, "f32_conv_rows"),  # K = 576
    ((1, 3, 9, 2 * NR), (24, 3, 5, 5), {"strides": [2, 2], "pads": [1, 1, 2, 2]}, "f32_conv_rows"),  # BlazeFace stem
    ((1, 260, 5, NR), (3, 260, 3, 3), {"pads": [1, 1, 1, 1]}, "f32_gemm_im2col"),  # K = 2340 > ROWS_MAX_K
    ((1, 24, 2, 2), (213, 24, 2, 2), {}, "f32_gemv"),  # iris_landmark's head: kernel == input
    ((1, 7, 3, 5), (5, 7, 3, 5), {}, "f32_gemv"),
    ((1, 9, 1, 1), (4, 9, 1, 1), {}, "f32_gemv"),
]


@pytest.mark.arm
@pytest.mark.parametrize("x_shape,w_shape,attrs,kernel", PATHS)
@pytest.mark.parametrize("act", ["none", "clip", "hardswish"])
def test_every_conv_path(x_shape, w_shape, attrs, kernel, act):
    got, want, sess = run_conv("Conv", x_shape, w_shape, {**attrs, **act_attrs(act)}, 1)
    assert sess.describe()["nodes"][0]["kernel"] == kernel
    assert_close(got[0], want[0], what=kernel)


@pytest.mark.parametrize("x_shape,w_shape,attrs,kernel", [
    ((1, 32, 32, 32), (48, 32, 1, 1), {}, "f32_gemm_rows_mt"),
    ((2, 16, 24, 17), (32, 8, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}, "f32_gemm_im2col_mt"),
    ((1, 3, 128, 128), (16, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, "f32_conv_rows_mt"),
    ((1, 96, 96, 96), (96, 1, 3, 3), {"group": 96, "pads": [1, 1, 1, 1], "strides": [2, 2]}, "f32_dwconv_grid_mt"),
    ((1, 300, 7, 7), (300, 1, 3, 3), {"group": 300, "pads": [1, 1, 1, 1]}, "f32_dwconv_cvec_mt"),
    ((1, 300, 14, 14), (300, 1, 3, 3), {"group": 300, "pads": [1, 1, 1, 1], "strides": [2, 2]}, "f32_dwconv_grid_mt"),
    ((1, 64, 48, 48), (64, 1, 3, 3), {"group": 64, "pads": [1, 1, 1, 1]}, "f32_dwconv_direct_mt"),
    ((1, 64, 48, 48), (64, 1, 3, 3), {"group": 64, "pads": [2, 2, 2, 2], "dilations": [2, 2]},
     "f32_dwconv_generic_mt"),
    ((1, 256, 4, 4), (512, 256, 4, 4), {}, "f32_gemv_mt"),
])
def test_threaded_conv_paths(x_shape, w_shape, attrs, kernel):
    got, want, sess = run_conv("Conv", x_shape, w_shape, {**attrs, **act_attrs("relu")}, 2, threads=2)
    assert sess.describe()["nodes"][0]["kernel"] == kernel
    assert_close(got[0], want[0], what=kernel)


@pytest.mark.arm
@settings(max_examples=15, deadline=None)
@given(planes=st.integers(1, 40), hw=st.sampled_from([(7, 7), (14, 14), (9, 20), (30, 30)]), k=st.sampled_from([3, 5]),
       s=st.sampled_from([1, 2]), mode=st.sampled_from(["grid", "direct", "generic"]), workers=st.integers(2, 3),
       seed=st.integers(0, 99))
def test_dwconv_mt_bands_are_the_serial_kernel(planes, hw, k, s, mode, workers, seed):
    """Chunks of planes taken from the bands by more workers than threads: every plane exactly once,
    each worker with its own scratch row, bitwise the serial kernel's output."""
    from edgert.kernels import dwconv as KD
    from edgert.kernels.work import work_counter
    H, W = hw
    pad = k // 2
    OH, OW = (H + 2 * pad - k) // s + 1, (W + 2 * pad - k) // s + 1
    g = KD.geometry(planes, 1, H, W, OH, OW, k, k, s, s, pad, pad, 1, 1)
    per = {"grid": KD.grid_layout(OH, OW, k, s)[3], "direct": KD.rows_scratch_floats(OH, OW, k, s),
           "generic": KD.scratch_floats(g)}[mode]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(planes * H * W).astype(np.float32)
    w = rng.standard_normal(planes * k * k).astype(np.float32)
    b = rng.standard_normal(planes).astype(np.float32)
    want = np.empty(planes * OH * OW, np.float32)
    getattr(KD, f"f32_dwconv_{mode}")(x, w, b, want, g, np.zeros((1, per), np.float32), 1, 0.0, 0.0)
    got = np.full_like(want, 7.0)
    getattr(KD, f"f32_dwconv_{mode}_mt")(x, w, b, got, g, np.zeros((workers, per), np.float32), 1, 0.0, 0.0,
                                         work_counter(workers))
    np.testing.assert_array_equal(got, want)


def test_depthwise_and_pointwise_keep_nan_and_inf():
    x = np.zeros((1, 2, 5, 5), np.float32)
    x[0, 0, 2, 2], x[0, 1, 0, 0] = np.nan, np.inf
    w = np.ones((2, 1, 3, 3), np.float32)
    got, want, _ = run_both("Conv", [("x", x), ("w", w)], {"group": 2, "pads": [1, 1, 1, 1], "activation": "relu"},
                            consts={"w"})
    np.testing.assert_array_equal(got[0], want[0])


@st.composite
def convt_case(draw):
    n, group = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    c, mg = group * draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = [draw(st.integers(1, 4)) for _ in range(2)]
    s = [draw(st.integers(1, 3)) for _ in range(2)]
    d = [draw(st.integers(1, 2)) for _ in range(2)]
    op = [draw(st.integers(0, max(s[i], d[i]) - 1)) for i in range(2)]
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    for i, size in enumerate((h, w)):
        assume(s[i] * (size - 1) + op[i] + d[i] * (k[i] - 1) + 1 - pads[i] - pads[i + 2] >= 1)
    attrs = {"strides": s, "pads": pads, "dilations": d, "group": group, "output_padding": op}
    return (n, c, h, w), (c, mg, *k), attrs


@pytest.mark.arm
@given(case=convt_case(), act=st.sampled_from(ACTS), bias=st.booleans(), fp16=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_convtranspose_matches_reference(case, act, bias, fp16, seed):
    x_shape, w_shape, attrs = case
    got, want, sess = run_conv("ConvTranspose", x_shape, w_shape, {**attrs, **act_attrs(act)}, seed, bias, fp16)
    k, s = list(w_shape[2:]), attrs["strides"]
    blocks = (k == s and attrs["group"] == 1 and not any(attrs["pads"]) and attrs["dilations"] == [1, 1]
              and not any(attrs["output_padding"]) and w_shape[1] * k[0] * k[1] <= MR)
    assert sess.describe()["nodes"][0]["kernel"] == ("f32_convtranspose_blocks" if blocks else "f32_convtranspose_col2im")
    assert_close(got[0], want[0], what="ConvTranspose")


@pytest.mark.arm
@given(n=st.integers(1, 2), c=st.integers(1, 20), m=st.integers(1, 2), k=st.sampled_from([[1, 1], [2, 2], [2, 3], [3, 2]]),
       h=st.integers(1, 6), w=st.integers(1, 40), act=st.sampled_from(ACTS), bias=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_convtranspose_blocks_matches_reference(n, c, m, k, h, w, act, bias, seed):
    """Kernel == stride with few output rows per pixel (an upsampling mask head): the per-block kernel,
    including its vectorised sigmoid over logits from -40 to 40."""
    assume(m * k[0] * k[1] <= MR)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c, h, w)) * 3).astype(np.float32)
    wt = rng.standard_normal((c, m, *k)).astype(np.float32)
    inputs = [("x", x), ("w", wt)] + ([("b", rng.standard_normal(m).astype(np.float32))] if bias else [])
    got, want, sess = run_both("ConvTranspose", inputs, {"strides": k, **act_attrs(act)}, consts={"w", "b"})
    assert sess.describe()["nodes"][0]["kernel"] == "f32_convtranspose_blocks"
    assert_close(got[0], want[0], what="f32_convtranspose_blocks")


def test_convtranspose_blocks_sigmoid_extremes_and_threads():
    x = np.array([-200, -88, -87, -30, -1e-3, 0, 1e-3, 30, 87, 88, 200, np.inf, -np.inf, np.nan],
                 np.float32).reshape(1, 1, 1, 14)
    got, want, _ = run_both("ConvTranspose", [("x", x), ("w", np.ones((1, 1, 1, 1), np.float32))],
                            {"strides": [1, 1], "activation": "sigmoid"}, consts={"w"})
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-7)
    got, want, sess = run_conv("ConvTranspose", (1, 16, 128, 128), (16, 1, 2, 2),
                               {"strides": [2, 2], **act_attrs("sigmoid")}, 4, threads=2)
    assert sess.describe()["nodes"][0]["kernel"] == "f32_convtranspose_blocks_mt"
    assert_close(got[0], want[0], what="f32_convtranspose_blocks_mt")


def test_convtranspose_selfie_upsampler_and_threads():
    # MediaPipe's Convolution2DTransposeBias: 2x2 and 4x4 kernels at stride 2 with a bias.
    for k, pads in ((2, [0, 0, 0, 0]), (4, [1, 1, 1, 1])):
        got, want, sess = run_conv("ConvTranspose", (1, 32, 32, 32), (32, 16, k, k),
                                   {"strides": [2, 2], "pads": pads}, 3, threads=2)
        assert sess.describe()["nodes"][0]["kernel"] == "f32_convtranspose_col2im_mt"
        assert got[0].shape == (1, 16, 64, 64)
        assert_close(got[0], want[0], what="ConvTranspose")


def test_computed_convtranspose_weights_fall_back_to_numpy():
    got, want, sess = run_conv("ConvTranspose", (1, 2, 3, 3), (2, 3, 2, 2), {"strides": [2, 2]}, 0, w_const=False)
    assert sess.describe()["nodes"][0]["kernel"] == "np_convtranspose"
    assert_close(got[0], want[0])


ONNX_CONV = [
    ((2, 4, 9, 8), (6, 2, 3, 2), {"strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2], "group": 2}),
    ((1, 3, 7, 7), (3, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 3}),
    ((1, 3, 6, 5), (5, 3, 1, 1), {}),
    ((1, 2, 5, 5), (4, 2, 5, 5), {"pads": [4, 4, 4, 4], "strides": [3, 3]}),
]
ONNX_CONVT = [
    ((1, 4, 3, 4), (4, 2, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    ((2, 4, 3, 3), (4, 3, 2, 3), {"strides": [3, 2], "pads": [0, 1, 2, 0], "dilations": [2, 1], "group": 2}),
    ((1, 2, 4, 4), (2, 5, 4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
]


@pytest.mark.parametrize("op,case", [("Conv", c) for c in ONNX_CONV] + [("ConvTranspose", c) for c in ONNX_CONVT])
def test_reference_agrees_with_onnx_evaluator(op, case):
    pytest.importorskip("onnx")
    x_shape, w_shape, attrs = case
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal(w_shape).astype(np.float32)
    m = w_shape[0] if op == "Conv" else w_shape[1] * attrs.get("group", 1)
    b = rng.standard_normal(m).astype(np.float32)
    full = REGISTRY[op].resolve_attrs(type("N", (), {"attrs": attrs, "name": "n", "op": op})())
    onnx_attrs = {**attrs, "kernel_shape": list(w_shape[2:])}
    group = attrs.get("group", 1)
    if op == "ConvTranspose" and group > 1:
        # onnx's evaluator slices grouped ConvTranspose weights by output channel (a bug); compose the
        # groups from single-group calls instead.
        cg, mg = x_shape[1] // group, w_shape[1]
        theirs = np.concatenate([onnx_reference(op, [x[:, g * cg:(g + 1) * cg], w[g * cg:(g + 1) * cg],
                                                     b[g * mg:(g + 1) * mg]], {**onnx_attrs, "group": 1})[0]
                                 for g in range(group)], axis=1)
    else:
        theirs = onnx_reference(op, [x, w, b], onnx_attrs)[0]
    np.testing.assert_allclose(REGISTRY[op].reference(full, x, w, b)[0], theirs, rtol=1e-5, atol=1e-5)


BAD = [
    ("Conv", (1, 4, 5, 5), (2, 3, 3, 3), {}, "input channels"),
    ("Conv", (1, 4, 5, 5), (3, 2, 3, 3), {"group": 3}, "does not divide"),
    ("Conv", (1, 4, 5, 5), (4, 1, 3, 3), {"group": 2}, "input channels"),
    ("Conv", (1, 3, 2, 2), (4, 3, 3, 3), {}, "empty"),
    ("Conv", (1, 3, 5, 5), (4, 3, 3, 3), {"pads": [1, 1, 1]}, "pads"),
    ("Conv", (1, 3, 5, 5), (4, 3, 3, 3), {"strides": [0, 1]}, "strides"),
    ("Conv", (1, 3, 5, 5), (4, 3, 3, 3), {"activation": "swish"}, "activation"),
    ("ConvTranspose", (1, 4, 5, 5), (3, 2, 3, 3), {}, "input channels"),
    ("ConvTranspose", (1, 4, 5, 5), (4, 2, 3, 3), {"strides": [2, 2], "output_padding": [2, 0]}, "output_padding"),
    ("ConvTranspose", (1, 4, 1, 1), (4, 2, 1, 1), {"pads": [1, 0, 0, 0]}, "empty"),
    ("ConvTranspose", (1, 3, 5, 5), (3, 2, 3, 3), {"group": 2}, "does not divide"),
]


@pytest.mark.parametrize("op,x_shape,w_shape,attrs,message", BAD)
def test_bad_shapes_and_attributes_are_shape_errors(op, x_shape, w_shape, attrs, message):
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    with pytest.raises(ShapeError, match=message) as info:
        single_op_graph(op, [("x", x), ("w", w)], attrs, consts={"w"})
    assert info.value.node == f"the_{op.lower()}"


@pytest.mark.parametrize("layout", ["nchw", "blocked"])
def test_weights_from_a_loaded_file(tmp_path, layout):
    """Constants of a loaded .ert are read-only memory maps: every path must take them as they come."""
    from converters.builder import GraphBuilder
    from edgert.ir.format import write_ert
    from edgert.runtime.reference import run_reference
    from edgert.runtime.session import load
    rng = np.random.default_rng(4)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)
    gb = GraphBuilder()
    x = gb.add_input("x", (1, 3, 12, NR))
    layers = [("Conv", (8, 3, 3, 3), {"pads": [1, 1, 1, 1]}), ("Conv", (8, 8, 1, 1), {}),
              ("Conv", (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}), ("Conv", (6, 8, 3, 3), {"strides": [2, 2]}),
              ("ConvTranspose", (6, 3, 2, 2), {"strides": [2, 2]})]
    for i, (op, w_shape, attrs) in enumerate(layers):
        m = w_shape[0] if op == "Conv" else w_shape[1]
        w, b = gb.add_const(f"w{i}", r(*w_shape)), gb.add_const(f"b{i}", r(m))
        gb.add_node(op, [x, w, b], [f"y{i}"], {**attrs, "activation": "relu"}, name=f"layer{i}")
        x = f"y{i}"
    gb.add_output(x)
    graph = gb.finish()
    write_ert(graph, tmp_path / "m.ert")
    sess = load(tmp_path / "m.ert", threads=1, options={"layout": layout})
    feeds = {"x": r(1, 3, 12, NR)}
    kernels = [n["kernel"] for n in sess.describe()["nodes"]]
    if layout == "nchw":
        assert kernels == ["f32_conv_rows", "f32_gemm_rows", "f32_dwconv_direct", "f32_gemm_im2col",
                           "f32_convtranspose_col2im"]
    else:
        assert kernels == ["f32_blocked_conv", "f32_blocked_conv1x1", "f32_blocked_dwconv", "f32_blocked_conv",
                           "f32_from_blocked", "f32_convtranspose_col2im"]
    assert_close(sess.run(feeds)[x], run_reference(graph, feeds)[x])
