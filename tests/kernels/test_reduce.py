"""Reduction and softmax kernels against their references, and the references against onnx's evaluator."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from edgert.errors import ShapeError
from edgert.ops import REGISTRY
from edgert.ops.reduce import reduce_groups
from tests.helpers import assert_close, onnx_reference, run_both, single_op_graph

REDUCE = ["ReduceMean", "ReduceSum", "ReduceMax"]
EXPECTED_KERNEL = {"": "f32_reduce_rows", "K": "f32_reduce_rows", "R": "f32_reduce_rows", "KR": "f32_reduce_rows",
                   "RK": "f32_reduce_mid", "KRK": "f32_reduce_mid"}


@st.composite
def shape_and_axes(draw):
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=5))
    axes = sorted(draw(st.sets(st.integers(0, len(shape) - 1))))
    return shape, axes


def _check(op, x, attrs, kernel=None):
    got, want, sess = run_both(op, [("x", x)], attrs)
    if kernel:
        assert sess.describe()["nodes"][0]["kernel"] == kernel
    assert_close(got[0], want[0], what=f"{op} {attrs}")


@pytest.mark.arm
@given(op=st.sampled_from(REDUCE), case=shape_and_axes(), keepdims=st.integers(0, 1), seed=st.integers(0, 2**31 - 1))
def test_reduce_matches_reference_for_any_axes(op, case, keepdims, seed):
    shape, axes = case
    x = (np.random.default_rng(seed).standard_normal(shape) + 1).astype(np.float32)
    kinds, _ = reduce_groups(shape, axes or range(len(shape)))
    _check(op, x, {"axes": axes, "keepdims": keepdims}, EXPECTED_KERNEL.get(kinds, "f32_reduce_tables"))


@pytest.mark.arm
@pytest.mark.parametrize("op", REDUCE)
@pytest.mark.parametrize("shape,axes,kernel", [
    ((2, 32, 7, 7), [2, 3], "f32_reduce_rows"),     # mean over H, W of NCHW
    ((3, 5, 33), [2], "f32_reduce_rows"),           # last axis
    ((1, 64, 56, 56), [2, 3], "f32_reduce_rows"),   # long rows: float64 accumulation matters
    ((2, 8, 9, 10), [1], "f32_reduce_mid"),         # channels of NCHW
    ((4, 3, 5), [0], "f32_reduce_mid"),
    ((2, 3, 4, 5), [0, 2], "f32_reduce_tables"),
    ((2, 3, 4, 5), [1, 3], "f32_reduce_tables"),
    ((2, 1, 4, 5), [1], "f32_reduce_rows"),         # only a size-1 dim reduced: a copy
])
def test_reduce_paths(op, shape, axes, kernel):
    x = (np.random.default_rng(1).standard_normal(shape) + 2).astype(np.float32)
    _check(op, x, {"axes": axes, "keepdims": 1}, kernel)


@pytest.mark.arm
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=5), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_softmax_matches_reference(shape, data, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = (np.random.default_rng(seed).standard_normal(shape) * 5).astype(np.float32)
    inner = int(np.prod(shape[axis % len(shape) + 1:]))
    _check("Softmax", x, {"axis": axis}, "f32_softmax_rows" if inner == 1 else "f32_softmax_mid")


@pytest.mark.parametrize("axis", [1, -1])
def test_softmax_is_numerically_stable(axis):
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1001.0, -1002.0]], dtype=np.float32)
    got, want, _ = run_both("Softmax", [("x", x)], {"axis": axis})
    assert np.all(np.isfinite(got[0]))
    assert_close(got[0], want[0])
    np.testing.assert_allclose(got[0].sum(axis=axis), 1.0, rtol=1e-6)


@pytest.mark.parametrize("op", REDUCE)
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([0, 2], 0), ([2, 3], 1), ([], 1), ([0, 1, 2, 3], 0)])
def test_reduce_reference_agrees_with_onnx_evaluator(op, axes, keepdims):
    pytest.importorskip("onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    ours = REGISTRY[op].reference({"axes": axes, "keepdims": keepdims}, x)[0]
    inputs = [x, np.array(axes, dtype=np.int64)] if axes else [x]
    theirs = onnx_reference(op, inputs, {"keepdims": keepdims})[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_softmax_reference_agrees_with_onnx_evaluator(axis):
    pytest.importorskip("onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    theirs = onnx_reference("Softmax", [x], {"axis": axis}, opset=13)[0]
    np.testing.assert_allclose(REGISTRY["Softmax"].reference({"axis": axis}, x)[0], theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("op,attrs,message", [
    ("ReduceMean", {"axes": [2, 1]}, "sorted"),
    ("ReduceMean", {"axes": [1, 1]}, "unique"),
    ("ReduceSum", {"axes": [4]}, r"in \[0, 4\)"),
    ("ReduceSum", {"axes": [-1]}, ">= 0"),
    ("ReduceMax", {"axes": [1], "keepdims": 2}, "keepdims"),
    ("ReduceMax", {}, "missing required attribute 'axes'"),
    ("ReduceMean", {"axes": "1"}, "list of integers"),
    ("Softmax", {"axis": 4}, "axis"),
    ("Softmax", {"axis": -5}, "axis"),
])
def test_bad_attributes_are_shape_errors_naming_the_node(op, attrs, message):
    with pytest.raises(ShapeError, match=message) as info:
        single_op_graph(op, [("x", np.zeros((2, 3, 4, 5), np.float32))], attrs)
    assert info.value.node == f"the_{op.lower()}"


def test_integer_input_is_rejected():
    with pytest.raises(ShapeError, match="takes f32"):
        single_op_graph("ReduceSum", [("x", np.zeros((2, 3), np.int32))], {"axes": [1]})
