"""FullyConnected and MatMul kernels against their references; the references against onnx's evaluator."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from edgert.errors import ShapeError
from edgert.kernels.act import CODES
from edgert.kernels.gemm import MR
from edgert.kernels.im2col import NR
from edgert.ops import REGISTRY
from edgert.ops.linear import GEMV_MAX_ROWS
from tests.helpers import assert_close, onnx_reference, run_both, single_op_graph

ACTS = sorted(CODES)
# Sizes around the GEMV cut-off, the GEMM tile (MR rows, NR columns) and the vector width.
EDGE = sorted({1, 2, GEMV_MAX_ROWS, GEMV_MAX_ROWS + 1, MR - 1, MR, MR + 1, NR // 2 + 1, NR - 1, NR, NR + 1, 37})


def act_attrs(act):
    return {"activation": act, "act_a": -0.5 if act == "clip" else 0.2, "act_b": 1.5 if act == "clip" else 0.5}


@pytest.mark.arm
@given(n=st.sampled_from(EDGE), k=st.integers(1, 40), m=st.sampled_from(EDGE), bias=st.booleans(),
       act=st.sampled_from(ACTS), fp16=st.booleans(), w_const=st.sampled_from([True, True, True, False]),
       seed=st.integers(0, 2**31 - 1))
def test_fully_connected_matches_reference(n, k, m, bias, act, fp16, w_const, seed):
    rng = np.random.default_rng(seed)
    inputs = [("x", rng.standard_normal((n, k)).astype(np.float32)),
              ("w", rng.standard_normal((m, k)).astype(np.float32))]
    if bias:
        inputs.append(("b", rng.standard_normal(m).astype(np.float32)))
    consts = {"b"} | ({"w"} if w_const else set())
    got, want, sess = run_both("FullyConnected", inputs, act_attrs(act), consts=consts, fp16_consts=fp16)
    gemv = n <= GEMV_MAX_ROWS or not w_const
    assert sess.describe()["nodes"][0]["kernel"] == ("f32_gemv" if gemv else "f32_gemm_prepacked")
    assert_close(got[0], want[0], what="FullyConnected")


@st.composite
def matmul_shapes(draw):
    """Shapes of A and B for numpy matmul, with 1-d operands and broadcast batch dims."""
    m, k, n = draw(st.sampled_from(EDGE)), draw(st.integers(1, 20)), draw(st.sampled_from(EDGE))
    batch = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    def operand(core):
        rank = draw(st.integers(0, len(batch)))
        own = [1 if draw(st.booleans()) else d for d in batch[len(batch) - rank:]]
        return tuple(own) + core
    a = (k,) if draw(st.integers(0, 5)) == 0 else operand((m, k))
    b = (k,) if draw(st.integers(0, 5)) == 0 else operand((k, n))
    return a, b


@pytest.mark.arm
@given(shapes=matmul_shapes(), const=st.sampled_from(["none", "a", "b"]), fp16=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_matmul_matches_reference(shapes, const, fp16, seed):
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in shapes)
    got, want, sess = run_both("MatMul", [("a", a), ("b", b)], consts={const} - {"none"}, fp16_consts=fp16)
    kernel = sess.describe()["nodes"][0]["kernel"]
    assert kernel == ("f32_gemm_prepacked" if const == "b" else "f32_gemm_rows"), kernel
    assert_close(got[0], want[0], what="MatMul")


def test_matmul_with_three_unmergeable_batch_dims_uses_numpy():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 1, 3, 4, 5)).astype(np.float32)
    b = rng.standard_normal((1, 3, 1, 5, 6)).astype(np.float32)
    got, want, sess = run_both("MatMul", [("a", a), ("b", b)])
    node = sess.describe()["nodes"][0]
    assert node["kernel"] == "np_matmul" and "two levels" in node["reason"]
    assert_close(got[0], want[0])


@pytest.mark.parametrize("op,inputs,consts,kernel", [
    ("FullyConnected", [(1, 1000), (1200, 1000), (1200,)], {"w", "b"}, "f32_gemv_mt"),
    ("FullyConnected", [(40, 200), (300, 200), (300,)], {"w", "b"}, "f32_gemm_prepacked_mt"),
    ("MatMul", [(3, 64, 70), (70, 90)], set(), "f32_gemm_rows_mt"),
    ("MatMul", [(3, 64, 70), (70, 90)], {"b"}, "f32_gemm_prepacked_mt"),
])
def test_threaded_linear_paths(op, inputs, consts, kernel):
    rng = np.random.default_rng(1)
    named = [(n, rng.standard_normal(s).astype(np.float32)) for n, s in zip("xwb" if op != "MatMul" else "ab", inputs)]
    got, want, sess = run_both(op, named, act_attrs("relu") if op != "MatMul" else {}, consts=consts, threads=2)
    assert sess.describe()["nodes"][0]["kernel"] == kernel
    assert_close(got[0], want[0], what=kernel)


@pytest.mark.parametrize("n,bias", [(1, True), (3, False), (9, True)])
def test_fully_connected_reference_agrees_with_onnx_gemm(n, bias):
    pytest.importorskip("onnx")
    rng = np.random.default_rng(n)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((n, 6), (5, 6), (5,)))
    attrs = REGISTRY["FullyConnected"].resolve_attrs(type("N", (), {"attrs": {}, "name": "n", "op": "x"})())
    ours = REGISTRY["FullyConnected"].reference(attrs, x, w, b if bias else None)[0]
    theirs = onnx_reference("Gemm", [x, w, b] if bias else [x, w], {"transB": 1})[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("a_shape,b_shape", [((3, 4), (4, 5)), ((4,), (2, 4, 3)), ((2, 1, 3, 4), (5, 4, 2)),
                                             ((3, 4), (4,)), ((4,), (4,))])
def test_matmul_reference_agrees_with_onnx(a_shape, b_shape):
    pytest.importorskip("onnx")
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(a_shape).astype(np.float32), rng.standard_normal(b_shape).astype(np.float32)
    ours = REGISTRY["MatMul"].reference({}, a, b)[0]
    np.testing.assert_allclose(ours, onnx_reference("MatMul", [a, b])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op,shapes,attrs,message", [
    ("FullyConnected", [(2, 5), (3, 4)], {}, "features"),
    ("FullyConnected", [(2, 5), (3, 5), (4,)], {}, "bias"),
    ("FullyConnected", [(2, 3, 5), (3, 5)], {}, "takes X"),
    ("FullyConnected", [(2, 5), (3, 5)], {"activation": "gelu"}, "activation"),
    ("MatMul", [(2, 5), (4, 3)], {}, "inner dims"),
    ("MatMul", [(2, 3, 5), (4, 5, 3)], {}, "broadcast"),
])
def test_bad_shapes_and_attributes_are_shape_errors(op, shapes, attrs, message):
    names = "xwb" if op == "FullyConnected" else "ab"
    inputs = [(n, np.zeros(s, np.float32)) for n, s in zip(names, shapes)]
    with pytest.raises(ShapeError, match=message) as info:
        single_op_graph(op, inputs, attrs)
    assert info.value.node == f"the_{op.lower()}"


def test_weights_from_a_loaded_file(tmp_path):
    """Constants of a loaded .ert are read-only memory maps: every path must take them as they come."""
    from converters.builder import GraphBuilder
    from edgert.ir.format import write_ert
    from edgert.runtime.reference import run_reference
    from edgert.runtime.session import load
    rng = np.random.default_rng(4)
    gb = GraphBuilder()
    gb.add_input("x", (2, 40))
    for name, shape in (("w0", (50, 40)), ("b0", (50,)), ("m1", (50, 30)), ("w2", (7, 30))):
        gb.add_const(name, rng.standard_normal(shape).astype(np.float32))
    gb.add_node("FullyConnected", ["x", "w0", "b0"], ["h"], {"activation": "relu"}, name="fc")
    gb.add_node("MatMul", ["h", "m1"], ["g"], name="mm")
    gb.add_node("FullyConnected", ["g", "w2"], ["y"], name="fc2")
    gb.add_output("y")
    graph = gb.finish()
    write_ert(graph, tmp_path / "m.ert")
    sess = load(tmp_path / "m.ert", threads=1)
    assert [n["kernel"] for n in sess.describe()["nodes"]] == ["f32_gemv", "f32_gemm_prepacked", "f32_gemv"]
    feeds = {"x": rng.standard_normal((2, 40)).astype(np.float32)}
    assert_close(sess.run(feeds)["y"], run_reference(graph, feeds)["y"])
