"""Elementwise kernels against their numpy references, and the references against ONNX's evaluator."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from edgert.kernels.act import CODES
from edgert.ops import REGISTRY
from tests.helpers import assert_close, onnx_reference, run_both

BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min"]


@st.composite
def broadcast_pair(draw):
    rank = draw(st.integers(1, 5))
    out = draw(st.lists(st.integers(1, 7), min_size=rank, max_size=rank))
    def operand():
        drop = draw(st.integers(0, rank))
        dims = [1 if draw(st.booleans()) else d for d in out[drop:]]
        return tuple(dims)
    return operand(), operand()


@pytest.mark.arm
@given(op=st.sampled_from(BINARY), shapes=broadcast_pair(), act=st.sampled_from(sorted(CODES)),
       seed=st.integers(0, 2**31 - 1), const_b=st.booleans())
def test_binary_matches_reference(op, shapes, act, seed, const_b):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shapes[0]).astype(np.float32)
    b = rng.standard_normal(shapes[1]).astype(np.float32)
    if op == "Div":
        b = np.where(np.abs(b) < 0.1, 0.5, b).astype(np.float32)
    attrs = {"activation": act, "act_a": -1.0 if act == "clip" else 0.1, "act_b": 2.0 if act == "clip" else 0.5}
    got, want, _ = run_both(op, [("a", a), ("b", b)], attrs, consts={"b"} if const_b else ())
    assert_close(got[0], want[0], what=op)


@pytest.mark.arm
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), slope_kind=st.sampled_from(["channel", "scalar", "full"]),
       const=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_prelu_with_fused_addend_matches_reference(shape, slope_kind, const, seed):
    """PRelu(X, slope, R) = PRelu(X + R): per-channel (the NCHW case), scalar and full slopes, row
    lengths around the vector width."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    r = rng.standard_normal(shape).astype(np.float32)
    sshape = {"scalar": (1,), "full": tuple(shape),
              "channel": (shape[1],) + (1,) * (len(shape) - 2) if len(shape) > 1 else (1,)}[slope_kind]
    slope = rng.uniform(-0.5, 0.5, sshape).astype(np.float32)
    got, want, sess = run_both("PRelu", [("x", x), ("s", slope), ("r", r)], consts={"s"} if const else ())
    assert sess.describe()["nodes"][0]["kernel"] == "f32_add_prelu_strided4"
    np.testing.assert_allclose(want[0], np.where(x + r >= 0, x + r, (x + r) * slope), rtol=1e-6, atol=1e-6)
    assert_close(got[0], want[0], what="PRelu+R")


@pytest.mark.arm
@given(op=st.sampled_from(BINARY), act=st.sampled_from(["none", "relu", "clip", "sigmoid"]),
       n=st.integers(1, 5000), workers=st.integers(2, 3), seed=st.integers(0, 2**31 - 1))
def test_binary_same_mt_is_the_serial_loop(op, act, n, workers, seed):
    """Contiguous chunks taken by more workers than threads: every element exactly once, bitwise the
    serial kernel's, also writing over an operand (out is a)."""
    from edgert.kernels import elementwise as K
    from edgert.kernels.act import CODES as C
    from edgert.kernels.work import work_counter
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(n).astype(np.float32), rng.uniform(0.5, 2.0, n).astype(np.float32)
    want = np.empty_like(a)
    K.f32_binary_same(a, b, want, K.BINARY_CODES[op], C[act], -1.0, 1.0)
    got = np.full_like(a, 7.0)
    K.f32_binary_same_mt(a, b, got, K.BINARY_CODES[op], C[act], -1.0, 1.0, work_counter(workers))
    np.testing.assert_array_equal(got, want)
    K.f32_binary_same_mt(a, b, a, K.BINARY_CODES[op], C[act], -1.0, 1.0, work_counter(workers))
    np.testing.assert_array_equal(a, want)


@pytest.mark.parametrize("shape", [(1, 96, 28, 28), (2, 3, 101, 103)])
def test_binary_same_two_threads(shape):
    rng = np.random.default_rng(4)
    inputs = [("a", rng.standard_normal(shape).astype(np.float32)), ("b", rng.standard_normal(shape).astype(np.float32))]
    got, want, sess = run_both("Add", inputs, {"activation": "relu", "act_a": 0.0, "act_b": 0.0}, threads=2)
    assert sess.describe()["nodes"][0]["kernel"] == "f32_binary_same_mt"
    assert_close(got[0], want[0], what="Add _mt")
    small, _, sess = run_both("Add", [(k, v[..., :4, :4]) for k, v in inputs], threads=2)
    assert sess.describe()["nodes"][0]["kernel"] == "f32_binary_same"  # too small to start the threads


@pytest.mark.parametrize("addend", [False, True])
@pytest.mark.parametrize("shape,slope_shape", [((1, 32, 96, 96), (32, 1, 1)), ((2, 5, 130, 103), (5, 1, 1)),
                                               ((1, 3, 211, 212), (3, 1, 212))])
def test_prelu_two_threads(shape, slope_shape, addend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    slope = rng.uniform(-0.5, 0.5, slope_shape).astype(np.float32)
    inputs = [("x", x), ("s", slope)] + ([("r", rng.standard_normal(shape).astype(np.float32))] if addend else [])
    got, want, sess = run_both("PRelu", inputs, consts={"s"}, threads=2)
    assert sess.describe()["nodes"][0]["kernel"] == ("f32_add_prelu_strided4_mt" if addend else "f32_prelu_strided4_mt")
    assert_close(got[0], want[0], what="PRelu _mt")


@pytest.mark.arm
@given(op=st.sampled_from(["Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "LeakyRelu", "Clip"]),
       shape=st.lists(st.integers(1, 9), min_size=0, max_size=4), seed=st.integers(0, 2**31 - 1))
def test_unary_matches_reference(op, shape, seed):
    x = (np.random.default_rng(seed).standard_normal(shape) * 4).astype(np.float32)
    attrs = {"Clip": {"min": -1.5, "max": 2.5}, "LeakyRelu": {"alpha": 0.2}}.get(op, {})
    got, want, _ = run_both(op, [("x", x)], attrs)
    assert_close(got[0], want[0], what=op)


def test_nan_and_inf_propagate_through_relu_and_add():
    x = np.array([np.nan, np.inf, -np.inf, -1.0, 2.0], dtype=np.float32)
    got, want, _ = run_both("Relu", [("x", x)])
    np.testing.assert_array_equal(got[0], want[0])
    got, want, _ = run_both("Add", [("a", x), ("b", x)])
    np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "LeakyRelu", "PRelu",
                                "Add", "Sub", "Mul", "Div", "Max", "Min", "Clip"])
def test_reference_agrees_with_onnx_evaluator(op):
    pytest.importorskip("onnx")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    y = rng.standard_normal((3, 1)).astype(np.float32) + 3.0
    opdef = REGISTRY[op]
    attrs = opdef.resolve_attrs(type("N", (), {"attrs": {}, "name": "n", "op": op})())
    if op in ("Max", "Min"):
        onnx_op, args, onnx_attrs = op, (x, y), {}
    elif op == "Clip":
        attrs.update(min=-0.5, max=0.7)
        onnx_op, args, onnx_attrs = op, (x, np.float32(-0.5), np.float32(0.7)), {}
    elif op == "PRelu":
        onnx_op, args, onnx_attrs = op, (x, y), {}
    elif op in BINARY:
        onnx_op, args, onnx_attrs = op, (x, y), {}
    else:
        onnx_op, args, onnx_attrs = op, (x,), {}
    ours = opdef.reference(attrs, *[a for a in args if np.ndim(a) > 0] if op == "Clip" else args)[0]
    theirs = onnx_reference(onnx_op, [np.asarray(a) for a in args], onnx_attrs)[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
