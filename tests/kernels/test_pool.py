"""Pool kernels against their references; the references against onnxruntime and onnx's evaluator."""

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from edgert.errors import ShapeError
from edgert.kernels import pool as K
from edgert.ops import REGISTRY
from edgert.ops.pool import pool_output_size
from tests.helpers import assert_close, onnx_reference, run_both, single_op_graph


@st.composite
def pool_case(draw, dilated=True, big=False):
    """(input shape, attrs) with pads below the kernel extent and at least one output pixel."""
    n, c = (1, 64) if big else (draw(st.integers(1, 2)), draw(st.integers(1, 3)))
    h, w = (draw(st.integers(24, 40)), draw(st.integers(24, 40))) if big else \
        (draw(st.integers(1, 13)), draw(st.integers(1, 13)))
    k = [draw(st.integers(2 if big else 1, 4)) for _ in range(2)]
    d = [draw(st.integers(1, 3)) for _ in range(2)] if dilated else [1, 1]
    ext = [(k[i] - 1) * d[i] + 1 for i in range(2)]
    pads = [draw(st.integers(0, ext[i % 2] - 1)) for i in range(4)]
    attrs = {"kernel": k, "strides": [draw(st.integers(1, 2 if big else 3)) for _ in range(2)], "pads": pads,
             "ceil_mode": draw(st.integers(0, 1))}
    if dilated:
        attrs["dilations"] = d
    sizes = [pool_output_size(s, k[i], attrs["strides"][i], pads[i], pads[i + 2], d[i], attrs["ceil_mode"])
             for i, s in enumerate((h, w))]
    assume(min(sizes) >= 1)
    return (n, c, h, w), attrs


def expected_maxpool(shape, attrs, threaded=False):
    """The kernel prepare must pick: the one-pass 2x2 stride-2 kernel where it applies, else separable rows."""
    h, w = shape[2:]
    two = (attrs["kernel"] == [2, 2] and attrs["strides"] == [2, 2] and attrs.get("dilations", [1, 1]) == [1, 1]
           and not any(attrs["pads"]) and (h // 2, w // 2) == tuple(
               pool_output_size(n, 2, 2, 0, 0, 1, attrs.get("ceil_mode", 0)) for n in (h, w)))
    return ("f32_maxpool_2x2s2" if two else "f32_maxpool_rows") + ("_mt" if threaded else "")


def _run(op, shape, attrs, seed, threads=1):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    try:
        return run_both(op, [("x", x)], attrs, threads=threads)
    except ShapeError as exc:
        assume("covers only padding" not in str(exc))  # dilation stepping over the whole input
        raise


@pytest.mark.arm
@given(case=pool_case(), seed=st.integers(0, 2**31 - 1))
def test_maxpool_matches_reference(case, seed):
    got, want, sess = _run("MaxPool", *case, seed)
    assert sess.describe()["nodes"][0]["kernel"] == expected_maxpool(*case)
    np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.arm
@pytest.mark.parametrize("shape,threads", [((1, 3, 8, 8), 1), ((2, 5, 7, 9), 1), ((1, 1, 2, 3), 1),
                                           ((1, 64, 33, 32), 2)])
@pytest.mark.parametrize("ceil", [0, 1])
def test_maxpool_2x2_stride_2(shape, threads, ceil):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x.flat[::7] = np.nan
    x.flat[3::11] = -np.inf
    attrs = {"kernel": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0], "ceil_mode": ceil}
    got, want, sess = run_both("MaxPool", [("x", x)], attrs, threads=threads)
    assert sess.describe()["nodes"][0]["kernel"] == expected_maxpool(shape, attrs, threaded=threads > 1)
    np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.arm
@given(case=pool_case(dilated=False), cip=st.integers(0, 1), seed=st.integers(0, 2**31 - 1))
def test_avgpool_matches_reference(case, cip, seed):
    shape, attrs = case
    got, want, sess = _run("AveragePool", shape, {**attrs, "count_include_pad": cip}, seed)
    assert sess.describe()["nodes"][0]["kernel"] == "f32_avgpool_rows"
    assert_close(got[0], want[0], what="AveragePool")


@settings(max_examples=6)
@given(case=pool_case(big=True), seed=st.integers(0, 2**31 - 1))
def test_threaded_maxpool_matches_reference(case, seed):
    got, want, sess = _run("MaxPool", *case, seed, threads=2)
    assert sess.describe()["nodes"][0]["kernel"] == expected_maxpool(*case, threaded=True)
    np.testing.assert_array_equal(got[0], want[0])


@settings(max_examples=6)
@given(case=pool_case(dilated=False, big=True), cip=st.integers(0, 1), seed=st.integers(0, 2**31 - 1))
def test_threaded_avgpool_matches_reference(case, cip, seed):
    shape, attrs = case
    got, want, sess = _run("AveragePool", shape, {**attrs, "count_include_pad": cip}, seed, threads=2)
    assert sess.describe()["nodes"][0]["kernel"] == "f32_avgpool_rows_mt"
    assert_close(got[0], want[0], what="AveragePool")


@pytest.mark.arm
@given(shape=st.lists(st.integers(1, 17), min_size=3, max_size=5), seed=st.integers(0, 2**31 - 1))
def test_global_average_pool_matches_reference(shape, seed):
    x = (np.random.default_rng(seed).standard_normal(shape) + 3).astype(np.float32)
    got, want, sess = run_both("GlobalAveragePool", [("x", x)])
    assert sess.describe()["nodes"][0]["kernel"] == "f32_reduce_rows"
    assert_close(got[0], want[0], what="GlobalAveragePool")


def test_maxpool_padding_never_wins():
    x = -np.ones((1, 1, 3, 3), dtype=np.float32) * 5
    got, want, _ = run_both("MaxPool", [("x", x)], {"kernel": [3, 3], "pads": [2, 2, 2, 2], "ceil_mode": 1})
    assert np.all(got[0] == -5) and np.all(want[0] == -5)


def _onnx_attrs(attrs):
    return {("kernel_shape" if k == "kernel" else k): v for k, v in attrs.items()}


# onnx's evaluator mis-sizes some ceil_mode outputs (it spreads the ceil overhang over both sides),
# so it is checked on this fixed list and the random configurations go against onnxruntime below.
ONNX_CASES = [
    ("MaxPool", {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0], "ceil_mode": 1}),
    ("MaxPool", {"kernel": [3, 2], "strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [2, 2]}),
    ("MaxPool", {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1, "dilations": [1, 2]}),
    ("AveragePool", {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}),
    ("AveragePool", {"kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1], "ceil_mode": 1}),
    ("AveragePool", {"kernel": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1], "ceil_mode": 1,
                     "count_include_pad": 1}),
    ("AveragePool", {"kernel": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0]}),
]


@pytest.mark.parametrize("op,attrs", ONNX_CASES)
def test_reference_agrees_with_onnx_evaluator(op, attrs):
    pytest.importorskip("onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 8)).astype(np.float32)
    full = REGISTRY[op].resolve_attrs(type("N", (), {"attrs": attrs, "name": "n", "op": op})())
    theirs = onnx_reference(op, [x], _onnx_attrs(attrs))[0]
    np.testing.assert_allclose(REGISTRY[op].reference(full, x)[0], theirs, rtol=1e-6, atol=1e-6)


def test_reference_agrees_with_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    rng = np.random.default_rng(7)
    checked = 0
    while checked < 60:
        op = ("MaxPool", "AveragePool")[checked % 2]
        k = [int(v) for v in rng.integers(1, 4, 2)]
        d = [int(v) for v in rng.integers(1, 3, 2)] if op == "MaxPool" else [1, 1]
        attrs = {"kernel": k, "strides": [int(v) for v in rng.integers(1, 4, 2)],
                 "pads": [int(rng.integers(0, k[i % 2])) for i in range(4)],  # onnxruntime wants pads < kernel
                 "ceil_mode": int(rng.integers(0, 2))}
        attrs.update(dilations=d) if op == "MaxPool" else attrs.update(count_include_pad=int(rng.integers(0, 2)))
        x = rng.standard_normal((1, 2, *rng.integers(1, 9, 2))).astype(np.float32)
        try:
            graph = single_op_graph(op, [("x", x)], attrs)  # runs our validation
        except ShapeError:
            continue
        node = helper.make_node(op, ["x"], ["y"], **_onnx_attrs(attrs))
        model = helper.make_model(helper.make_graph(
            [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 8
        theirs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        ours = REGISTRY[op].reference(REGISTRY[op].resolve_attrs(graph.nodes[0]), x)[0]
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6, err_msg=f"{op} {attrs} {x.shape}")
        checked += 1


@pytest.mark.parametrize("op,attrs,shape,message", [
    ("MaxPool", {"kernel": [3]}, (1, 1, 5, 5), "'kernel' must have 2 values"),
    ("MaxPool", {"kernel": [3, 3], "pads": [3, 0, 0, 0]}, (1, 1, 5, 5), "smaller than the kernel extent"),
    ("MaxPool", {"kernel": [2, 2], "strides": [0, 1]}, (1, 1, 5, 5), "'strides' values must be >= 1"),
    ("MaxPool", {"kernel": [2, 1], "dilations": [2, 1], "pads": [1, 0, 2, 0]}, (1, 1, 1, 3), "covers only padding"),
    ("MaxPool", {"kernel": [6, 6]}, (1, 1, 5, 5), "does not fit"),
    ("MaxPool", {"kernel": [2, 2], "ceil_mode": 2}, (1, 1, 5, 5), "ceil_mode"),
    ("MaxPool", {"kernel": [2, 2]}, (1, 5, 5), "4-d NCHW"),
    ("AveragePool", {"kernel": [2, 2], "count_include_pad": 3}, (1, 1, 5, 5), "count_include_pad"),
    ("AveragePool", {"kernel": [2, 2], "dilations": [2, 2]}, (1, 1, 5, 5), "unknown attribute"),
    ("AveragePool", {"strides": [1, 1]}, (1, 1, 5, 5), "missing required attribute 'kernel'"),
    ("GlobalAveragePool", {}, (4, 5), "spatial"),
])
def test_bad_attributes_are_shape_errors_naming_the_node(op, attrs, shape, message):
    with pytest.raises(ShapeError, match=message) as info:
        single_op_graph(op, [("x", np.zeros(shape, np.float32))], attrs)
    assert info.value.node == f"the_{op.lower()}"


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_threaded_kernels_with_any_chunk_count(op):
    """Row chunks of uneven size, and more chunks than rows (threads > rows)."""
    from edgert.ops.registry import PrepareContext
    x = np.random.default_rng(0).standard_normal((3, 2, 7, 9)).astype(np.float32)
    attrs = {"kernel": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1], "ceil_mode": 1}
    attrs.update(dilations=[1, 2]) if op == "MaxPool" else attrs.update(count_include_pad=1)
    graph = single_op_graph(op, [("x", x)], attrs)
    node = graph.nodes[0]
    want = REGISTRY[op].reference(REGISTRY[op].resolve_attrs(node), x)[0]
    prepared = REGISTRY[op].prepare(node, REGISTRY[op].resolve_attrs(node), [graph.tensors["x"]],
                                    [graph.tensors["out0"]], PrepareContext(graph, threads=1))
    (shape, _), = prepared.scratch
    kernel = getattr(K, prepared.kernel + "_mt")
    for chunks in (1, 2, 3, 5, 64):  # the kernel takes its chunk count from the scratch's first dim
        out = np.zeros(want.shape, np.float32)
        kernel(*prepared.bind([x], [out], [np.zeros((chunks, *shape[1:]), np.float32)]))
        assert_close(out, want, what=f"{op} chunks={chunks}")


@pytest.mark.arm
@pytest.mark.parametrize("attrs", [{"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
                                   {"kernel": [2, 3], "strides": [1, 2], "pads": [0, 1, 1, 0]}])
def test_separable_maxpool_propagates_nan_like_the_reference(attrs):
    x = np.random.default_rng(1).standard_normal((1, 4, 9, 10)).astype(np.float32)
    x.flat[::5] = np.nan
    got, want, sess = run_both("MaxPool", [("x", x)], attrs)
    assert sess.describe()["nodes"][0]["kernel"] == "f32_maxpool_rows"
    assert np.isnan(want[0]).any()
    np.testing.assert_array_equal(got[0], want[0])
