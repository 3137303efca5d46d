"""3-D kernels (Conv3D, ConvTranspose3D, pooling, Resize3D, CouplingAdd) against their op references,
and the references against onnx's evaluator (the peer oracle for ONNX semantics)."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgert.ops import REGISTRY
from edgert.ops.conv import conv_output_size
from edgert.ops.pool import pool_output_size
from tests.helpers import assert_close, onnx_reference, run_both


def ort_node(op, x, attrs, inits=None):
    """One ONNX node on input x run by onnxruntime (onnx's evaluator mishandles several 3-D cases:
    grouped ConvTranspose weights, dilated output_padding, pooling windows over padding)."""
    from onnx import helper

    from tests.onnx_helpers import make_model, ort_run
    inits = inits or {}
    node = helper.make_node(op, ["x", *inits], ["y"], **attrs)
    return ort_run(make_model([node], [("x", np.float32, list(x.shape))], ["y"], inits=inits), {"x": x})["y"]


@st.composite
def conv3d_case(draw):
    """(x, w, b, attrs): dense, grouped or depthwise, any stride/pad/dilation with an output."""
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise", "pointwise"]))
    group = 1 if kind in ("dense", "pointwise") else draw(st.integers(2, 3))
    cg = 1 if kind == "depthwise" else draw(st.integers(1, 3))
    mg = draw(st.integers(1, 3))
    C, M = cg * group, mg * group
    n = draw(st.integers(1, 2))
    spatial = [draw(st.integers(1, 7)) for _ in range(3)]
    if kind == "pointwise":
        k, s, d, pads = [1, 1, 1], [1, 1, 1], [1, 1, 1], [0] * 6
    else:
        k = [draw(st.integers(1, 3)) for _ in range(3)]
        s = [draw(st.integers(1, 2)) for _ in range(3)]
        d = [draw(st.integers(1, 2)) for _ in range(3)]
        pads = [draw(st.integers(0, 2)) for _ in range(6)]
    out = [conv_output_size(spatial[i], k[i], s[i], pads[i], pads[i + 3], d[i]) for i in range(3)]
    assume(min(out) >= 1)
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.standard_normal((n, C, *spatial)).astype(np.float32)
    w = rng.standard_normal((M, cg, *k)).astype(np.float32)
    b = rng.standard_normal(M).astype(np.float32)
    act = draw(st.sampled_from(["none", "relu"]))
    return x, w, b, {"strides": s, "pads": pads, "dilations": d, "group": group, "activation": act}


@pytest.mark.arm
@given(case=conv3d_case())
def test_conv3d_matches_reference(case):
    x, w, b, attrs = case
    got, want, sess = run_both("Conv3D", [("x", x), ("w", w), ("b", b)], attrs, consts=("w", "b"))
    kernel = sess.describe()["nodes"][0]["kernel"]
    pointwise = w.shape[2:] == (1, 1, 1) and attrs["strides"] == [1, 1, 1] and not any(attrs["pads"])
    assert kernel.startswith(("f32_gemm_rows", "f32_gemm_t")) if (pointwise and attrs["group"] == 1 and x[0, 0].size > 1) \
        else kernel == "f32_conv3d_direct"
    assert_close(got[0], want[0], rtol=1e-5, atol=1e-5, what="Conv3D")


@pytest.mark.arm
@given(pointwise=st.booleans(), offset=st.sampled_from([0, 3]), seed=st.integers(0, 2**31 - 1))
def test_conv3d_reads_a_channel_window(pointwise, offset, seed):
    """in_offset: the convolution reads channels [c0, c0 + Cin) of a wider buffer (a reversible half)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 6, 3, 4, 5)).astype(np.float32)
    k = 1 if pointwise else 3
    w = rng.standard_normal((4, 3, k, k, k)).astype(np.float32)
    attrs = {"in_offset": offset, "in_channels": 3, "pads": [k // 2] * 6}
    got, want, _ = run_both("Conv3D", [("x", x), ("w", w)], attrs, consts=("w",))
    assert_close(got[0], want[0], what="Conv3D window")
    direct = REGISTRY["Conv3D"].reference({**REGISTRY["Conv3D"].attrs, **attrs, "in_offset": 0},
                                          np.ascontiguousarray(x[:, offset:offset + 3]), w)[0]
    assert_close(got[0], direct, what="Conv3D window vs sliced input")


@settings(max_examples=30)
@given(case=conv3d_case())
def test_conv3d_reference_matches_onnx(case):
    x, w, b, attrs = case
    want = REGISTRY["Conv3D"].reference({**REGISTRY["Conv3D"].attrs, **attrs, "activation": "none"}, x, w, b)[0]
    peer = onnx_reference("Conv", [x, w, b], {"strides": attrs["strides"], "pads": attrs["pads"],
                                              "dilations": attrs["dilations"], "group": attrs["group"]})[0]
    assert_close(want, peer, what="Conv3D reference vs onnx")


@st.composite
def convtranspose3d_case(draw):
    group = draw(st.integers(1, 2))
    cg, mg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    C = cg * group
    spatial = [draw(st.integers(1, 5)) for _ in range(3)]
    k = [draw(st.integers(1, 3)) for _ in range(3)]
    s = [draw(st.integers(1, 3)) for _ in range(3)]
    d = [draw(st.integers(1, 2)) for _ in range(3)]
    op = [draw(st.integers(0, s[i] - 1)) for i in range(3)]  # onnxruntime wants output_padding < stride
    pads = [draw(st.integers(0, 2)) for _ in range(6)]
    full = [s[i] * (spatial[i] - 1) + op[i] + d[i] * (k[i] - 1) + 1 for i in range(3)]
    assume(all(full[i] - pads[i] - pads[i + 3] >= 1 for i in range(3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.standard_normal((draw(st.integers(1, 2)), C, *spatial)).astype(np.float32)
    w = rng.standard_normal((C, mg, *k)).astype(np.float32)
    b = rng.standard_normal(mg * group).astype(np.float32)
    return x, w, b, {"strides": s, "pads": pads, "dilations": d, "group": group, "output_padding": op}


@pytest.mark.arm
@given(case=convtranspose3d_case())
def test_convtranspose3d_matches_reference(case):
    x, w, b, attrs = case
    got, want, _ = run_both("ConvTranspose3D", [("x", x), ("w", w), ("b", b)], attrs, consts=("w", "b"))
    assert_close(got[0], want[0], what="ConvTranspose3D")


@settings(max_examples=30)
@given(case=convtranspose3d_case())
def test_convtranspose3d_reference_matches_onnx(case):
    x, w, b, attrs = case
    want = REGISTRY["ConvTranspose3D"].reference({**REGISTRY["ConvTranspose3D"].attrs, **attrs}, x, w, b)[0]
    peer = ort_node("ConvTranspose", x, attrs, {"w": w, "b": b})
    assert_close(want, peer, what="ConvTranspose3D vs onnx")


@st.composite
def pool3d_case(draw):
    spatial = [draw(st.integers(1, 7)) for _ in range(3)]
    k = [draw(st.integers(1, 3)) for _ in range(3)]
    s = [draw(st.integers(1, 3)) for _ in range(3)]
    pads = [draw(st.integers(0, k[i % 3] - 1)) for i in range(6)]
    ceil = draw(st.integers(0, 1))
    out = [pool_output_size(spatial[i], k[i], s[i], pads[i], pads[i + 3], 1, ceil) for i in range(3)]
    assume(min(out) >= 1)
    x = np.random.default_rng(draw(st.integers(0, 2**31 - 1))).standard_normal(
        (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *spatial)).astype(np.float32)
    return x, {"kernel": k, "strides": s, "pads": pads, "ceil_mode": ceil}


@pytest.mark.arm
@given(case=pool3d_case(), cip=st.integers(0, 1))
def test_pool3d_matches_reference(case, cip):
    x, attrs = case
    got, want, _ = run_both("MaxPool3D", [("x", x)], attrs)
    np.testing.assert_array_equal(got[0], want[0])
    got, want, _ = run_both("AveragePool3D", [("x", x)], {**attrs, "count_include_pad": cip})
    assert_close(got[0], want[0], what="AveragePool3D")


@settings(max_examples=30)
@given(case=pool3d_case(), cip=st.integers(0, 1))
def test_pool3d_reference_matches_onnx(case, cip):
    x, attrs = case
    onnx_attrs = {"kernel_shape": attrs["kernel"], "strides": attrs["strides"], "pads": attrs["pads"],
                  "ceil_mode": attrs["ceil_mode"]}
    mx = REGISTRY["MaxPool3D"].reference({**REGISTRY["MaxPool3D"].attrs, **attrs}, x)[0]
    np.testing.assert_array_equal(mx, ort_node("MaxPool", x, onnx_attrs))
    av = REGISTRY["AveragePool3D"].reference({**REGISTRY["AveragePool3D"].attrs, **attrs, "count_include_pad": cip},
                                             x)[0]
    assert_close(av, ort_node("AveragePool", x, {**onnx_attrs, "count_include_pad": cip}),
                 what="AveragePool3D vs onnx")


@st.composite
def resize3d_case(draw):
    mode = draw(st.sampled_from(["nearest", "linear"]))
    ctm = draw(st.sampled_from(["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]))
    scales = [1.0, 1.0] + [draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0])) for _ in range(3)]
    spatial = [draw(st.integers(1, 6)) for _ in range(3)]
    assume(all(int(s * n) >= 1 for s, n in zip(scales[2:], spatial)))
    x = np.random.default_rng(draw(st.integers(0, 2**31 - 1))).standard_normal((1, 2, *spatial)).astype(np.float32)
    return x, {"mode": mode, "coordinate_transformation_mode": ctm, "scales": scales}


@pytest.mark.arm
@given(case=resize3d_case())
def test_resize3d_matches_reference_and_onnx(case):
    x, attrs = case
    got, want, _ = run_both("Resize3D", [("x", x)], attrs)
    assert_close(got[0], want[0], what="Resize3D")
    peer_attrs = {"mode": attrs["mode"], "coordinate_transformation_mode": attrs["coordinate_transformation_mode"]}
    peer = onnx_reference("Resize", [x, None, np.array(attrs["scales"], np.float32)], peer_attrs)[0]
    assert_close(want[0], peer, what="Resize3D reference vs onnx")


@pytest.mark.arm
@given(offset=st.integers(0, 3), seed=st.integers(0, 2**31 - 1))
def test_coupling_add(offset, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 6, 2, 3, 4)).astype(np.float32)
    f = rng.standard_normal((2, 3, 2, 3, 4)).astype(np.float32)
    got, want, _ = run_both("CouplingAdd", [("x", x), ("f", f)], {"offset": offset})
    expect = x.copy()
    expect[:, offset:offset + 3] += f
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[0], expect)
