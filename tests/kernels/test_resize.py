"""Resize kernels against the reference; the reference against onnx's evaluator and onnx's own node-test
cases (onnx.backend.test.case.node.resize); validation of bad attributes."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgert.errors import ShapeError
from edgert.ops import REGISTRY
from edgert.ops.resize import COORDINATE_MODES, NEAREST_MODES
from tests.helpers import assert_close, onnx_reference, run_both, single_op_graph

ONNX_COORDINATE_MODES = [m for m in COORDINATE_MODES if m != "tf_half_pixel_for_nn"]  # gone from onnx's evaluator
SCALES = [0.5, 0.6, 1.0, 4 / 3, 1.5, 2.0, 3.0]


@st.composite
def resize_case(draw, big=False):
    n, c = (1, 16) if big else (draw(st.integers(1, 2)), draw(st.integers(1, 3)))
    h, w = (draw(st.integers(1, 9)) for _ in range(2))
    if big:
        h, w = h + 24, w + 24
    attrs = {"mode": draw(st.sampled_from(["nearest", "linear"])),
             "coordinate_transformation_mode": draw(st.sampled_from(COORDINATE_MODES)),
             "nearest_mode": draw(st.sampled_from(NEAREST_MODES))}
    if draw(st.booleans()):
        scales = [1.0, 1.0, draw(st.sampled_from(SCALES)), draw(st.sampled_from(SCALES))]
        if all(int(s * d) >= 1 for s, d in zip(scales[2:], (h, w))):
            attrs["scales"] = scales
    if "scales" not in attrs or draw(st.booleans()):
        attrs["sizes"] = [n, c, draw(st.integers(1, 2 * h + 2)), draw(st.integers(1, 2 * w + 2))]
    return (n, c, h, w), attrs


@pytest.mark.arm
@given(case=resize_case(), seed=st.integers(0, 2**31 - 1))
def test_resize_matches_reference(case, seed):
    shape, attrs = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    got, want, sess = run_both("Resize", [("x", x)], attrs)
    assert sess.describe()["nodes"][0]["kernel"] == f"f32_resize_{attrs['mode']}"
    assert_close(got[0], want[0], what=str(attrs))


@settings(max_examples=8)
@given(case=resize_case(big=True), seed=st.integers(0, 2**31 - 1))
def test_threaded_resize_matches_reference(case, seed):
    shape, attrs = case
    attrs["sizes"] = [1, 16, 2 * shape[2], 2 * shape[3]]  # enough work for the threaded kernel
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    got, want, sess = run_both("Resize", [("x", x)], attrs, threads=2)
    assert sess.describe()["nodes"][0]["kernel"] == f"f32_resize_{attrs['mode']}_mt"
    assert_close(got[0], want[0], what=str(attrs))


def _onnx_resize(x, attrs):
    onnx_attrs = {"mode": attrs["mode"], "coordinate_transformation_mode": attrs["coordinate_transformation_mode"],
                  "nearest_mode": attrs["nearest_mode"]}
    if attrs.get("sizes"):
        inputs = [x, None, None, np.array(attrs["sizes"], dtype=np.int64)]
    else:
        inputs = [x, None, np.array(attrs["scales"], dtype=np.float32)]
    return onnx_reference("Resize", inputs, onnx_attrs, opset=19)[0]


@pytest.mark.parametrize("mode,ctm,nearest", [("linear", c, "round_prefer_floor") for c in ONNX_COORDINATE_MODES]
                         + [("nearest", c, n) for c, n in itertools.product(ONNX_COORDINATE_MODES, NEAREST_MODES)])
def test_reference_agrees_with_onnx_evaluator(mode, ctm, nearest):
    pytest.importorskip("onnx")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 7)).astype(np.float32)
    base = {"mode": mode, "coordinate_transformation_mode": ctm, "nearest_mode": nearest}
    variants = [{"scales": [1.0, 1.0, sh, sw]} for sh, sw in [(2.0, 3.0), (0.6, 0.5), (1.5, 4 / 3), (1.0, 0.25)]]
    variants += [{"sizes": [1, 2, oh, ow]} for oh, ow in [(10, 14), (3, 4), (8, 9), (1, 1), (5, 13)]]
    for v in variants:
        attrs = {**base, "scales": [], "sizes": [], **v}
        # the onnx input is float32, so our float attribute must hold the same value
        if attrs["scales"]:
            attrs["scales"] = [float(np.float32(s)) for s in attrs["scales"]]
        ours = REGISTRY["Resize"].reference(attrs, x)[0]
        np.testing.assert_allclose(ours, _onnx_resize(x, attrs), rtol=1e-6, atol=1e-6, err_msg=str(attrs))


def _onnx_node_cases():
    """onnx's own Resize node tests that fall inside the IR (4-d, nearest/linear, no antialias,
    no tf_crop_and_resize, stretch), translated as a converter would: (name, x, attrs, expected)."""
    pytest.importorskip("onnx")
    from onnx import helper
    from onnx.backend.test.case.node import resize as cases_module
    captured = []
    saved = cases_module.expect
    cases_module.expect = lambda node, inputs, outputs, name, **kw: captured.append((node, inputs, outputs, name))
    try:
        for name in dir(cases_module.Resize):
            if name.startswith("export"):
                getattr(cases_module.Resize, name)()
    finally:
        cases_module.expect = saved
    out = []
    for node, inputs, outputs, name in captured:
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        a = {k: v.decode() if isinstance(v, bytes) else v for k, v in a.items()}
        ctm = a.get("coordinate_transformation_mode", "half_pixel")
        if (a.get("mode", "nearest") not in ("nearest", "linear") or a.get("antialias") or a.get("exclude_outside")
                or a.get("keep_aspect_ratio_policy", "stretch") != "stretch" or ctm not in COORDINATE_MODES):
            continue
        values = dict(zip([n for n in node.input if n], inputs))
        x = values["X"]
        axes = a.get("axes", list(range(x.ndim)))
        scales, sizes = [], []
        if "scales" in values:
            scales = [1.0] * x.ndim
            for ax, s in zip(axes, values["scales"]):
                scales[ax] = float(s)
        if "sizes" in values:
            sizes = list(x.shape)
            for ax, s in zip(axes, values["sizes"]):
                sizes[ax] = int(s)
        attrs = {"mode": a.get("mode", "nearest"), "coordinate_transformation_mode": ctm,
                 "nearest_mode": a.get("nearest_mode", "round_prefer_floor"), "scales": scales, "sizes": sizes}
        out.append((name, x, attrs, outputs[0]))
    return out


def test_onnx_node_test_cases():
    cases = _onnx_node_cases()
    assert len(cases) >= 12
    for name, x, attrs, expected in cases:
        got, want, _ = run_both("Resize", [("x", x)], attrs)
        np.testing.assert_allclose(want[0], expected, rtol=1e-6, atol=1e-6, err_msg=f"reference, {name}")
        np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-5, err_msg=f"kernel, {name}")


@pytest.mark.parametrize("width,out,expected", [
    # x_original = (x + 0.5) / scale. 4 -> 8: sources 0.25, 0.75, ..., 3.75 (no ties; 4 clamps to 3).
    (4, 8, {"floor": [0, 0, 1, 1, 2, 2, 3, 3], "round_prefer_floor": [0, 1, 1, 2, 2, 3, 3, 3],
            "round_prefer_ceil": [0, 1, 1, 2, 2, 3, 3, 3], "ceil": [1, 1, 2, 2, 3, 3, 3, 3]}),
    # 9 -> 3: sources 1.5, 4.5, 7.5, all ties.
    (9, 3, {"floor": [1, 4, 7], "round_prefer_floor": [1, 4, 7], "round_prefer_ceil": [2, 5, 8], "ceil": [2, 5, 8]}),
])
def test_tf_half_pixel_for_nn(width, out, expected):
    x = np.arange(width, dtype=np.float32).reshape(1, 1, 1, width)
    base = {"mode": "nearest", "coordinate_transformation_mode": "tf_half_pixel_for_nn", "sizes": [1, 1, 1, out]}
    for mode, want in expected.items():
        got, ref, _ = run_both("Resize", [("x", x)], {**base, "nearest_mode": mode})
        np.testing.assert_array_equal(got[0].reshape(-1), want, err_msg=mode)
        np.testing.assert_array_equal(ref[0].reshape(-1), want, err_msg=mode)


@pytest.mark.parametrize("attrs,message", [
    ({"scales": [1.0, 2.0, 2.0, 2.0]}, "N and C must keep scale 1"),
    ({"sizes": [2, 3, 8, 8]}, "N and C must keep scale 1"),
    ({"mode": "cubic", "scales": [1.0, 1.0, 2.0, 2.0]}, "'mode'"),
    ({"coordinate_transformation_mode": "tf_crop_and_resize", "scales": [1.0, 1.0, 2.0, 2.0]},
     "coordinate_transformation_mode"),
    ({"nearest_mode": "nearest", "scales": [1.0, 1.0, 2.0, 2.0]}, "nearest_mode"),
    ({}, "needs 'scales' or 'sizes'"),
    ({"scales": [1.0, 2.0]}, "4 positive finite numbers"),
    ({"scales": [1.0, 1.0, 0.0, 2.0]}, "4 positive finite numbers"),
    ({"sizes": [1, 2, 4]}, "needs 'scales' or 'sizes' of 4"),
    ({"scales": [1.0, 1.0, 0.1, 1.0]}, "empty dim"),
    ({"antialias": 1, "scales": [1.0, 1.0, 2.0, 2.0]}, "unknown attribute"),
])
def test_bad_attributes_are_shape_errors_naming_the_node(attrs, message):
    with pytest.raises(ShapeError, match=message) as info:
        single_op_graph("Resize", [("x", np.zeros((1, 2, 4, 4), np.float32))], attrs)
    assert info.value.node == "the_resize"


def test_resize_takes_only_4d():
    with pytest.raises(ShapeError, match="4-d NCHW"):
        single_op_graph("Resize", [("x", np.zeros((2, 4, 4), np.float32))], {"scales": [1.0, 2.0, 2.0]})


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_threaded_kernels_with_any_chunk_count(mode):
    """Row chunks of uneven size, and more chunks than rows: the row caches restart at each chunk."""
    from edgert.kernels import resize as K
    from edgert.ops.registry import PrepareContext
    x = np.random.default_rng(0).standard_normal((3, 2, 7, 9)).astype(np.float32)
    attrs = {"mode": mode, "nearest_mode": "round_prefer_ceil", "scales": [1.0, 1.0, 2.5, 1.5]}
    graph = single_op_graph("Resize", [("x", x)], attrs)
    op, node = REGISTRY["Resize"], graph.nodes[0]
    full = op.resolve_attrs(node)
    want = op.reference(full, x)[0]
    prepared = op.prepare(node, full, [graph.tensors["x"]], [graph.tensors["out0"]], PrepareContext(graph))
    for chunks in (1, 2, 3, 5, 200):
        out = np.zeros(want.shape, np.float32)
        if mode == "nearest":
            args = prepared.bind([x], [out], [])[:-1] + (chunks,)
        else:
            (shape, _), = prepared.scratch
            args = prepared.bind([x], [out], [np.zeros((chunks, *shape[1:]), np.float32)])
        getattr(K, prepared.kernel + "_mt")(*args)
        assert_close(out, want, what=f"{mode} chunks={chunks}")
