"""Data-movement kernels against their references, the references against onnx's evaluator, and
validation of bad attributes."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgert.errors import InputError, ShapeError
from edgert.kernels.work import PARALLEL_MIN_FLOATS
from edgert.ops import REGISTRY
from edgert.runtime.session import Session
from tests.helpers import onnx_reference, run_both, single_op_graph

SEEDS = st.integers(0, 2**31 - 1)


def _rand(shape, seed, dtype=np.float32):
    return (np.random.default_rng(seed).standard_normal(shape) * 10).astype(dtype)


def _kernel(sess):
    return sess.describe()["nodes"][0]["kernel"]


def _same(got, want):
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


# --- Reshape ----------------------------------------------------------------------------------------
@pytest.mark.arm
@pytest.mark.parametrize("const", [False, True])
def test_reshape_is_a_view_or_a_constant_copy(const):
    x = _rand((2, 3, 4), 0)
    got, want, sess = run_both("Reshape", [("x", x)], {"shape": [4, 6]}, consts={"x"} if const else ())
    assert _kernel(sess) == ("copy" if const else "view")
    _same(got, want)


@pytest.mark.parametrize("shape,message", [([-1, 6], ">= 1"), ([0, 24], ">= 1"), ([5, 5], "cannot reshape"),
                                           ([4, 6.0], "list of integers")])
def test_reshape_rejects_non_static_or_wrong_shapes(shape, message):
    with pytest.raises(ShapeError, match=message) as info:
        single_op_graph("Reshape", [("x", np.zeros((2, 3, 4), np.float32))], {"shape": shape})
    assert info.value.node == "the_reshape"


# --- Transpose --------------------------------------------------------------------------------------
@pytest.mark.arm
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=6), data=st.data(), seed=SEEDS)
def test_transpose_matches_reference(shape, data, seed):
    perm = data.draw(st.permutations(range(len(shape))))
    got, want, sess = run_both("Transpose", [("x", _rand(shape, seed))], {"perm": list(perm)})
    assert _kernel(sess) in ("copy", "f32_transpose_2d", "f32_copy_strided6")
    _same(got, want)


@pytest.mark.arm
@pytest.mark.parametrize("shape,perm,kernel", [
    ((1, 3, 40, 33), [0, 2, 3, 1], "f32_transpose_2d"),   # NCHW -> NHWC
    ((2, 5, 7, 3), [0, 2, 3, 1], "f32_transpose_2d"),
    ((1, 40, 33, 3), [0, 3, 1, 2], "f32_transpose_2d"),   # NHWC -> NCHW
    ((3, 6, 7, 5), [0, 3, 1, 2], "f32_transpose_2d"),
    ((33, 65), [1, 0], "f32_transpose_2d"),
    ((2, 3, 4, 5), [3, 1, 0, 2], "f32_copy_strided6"),
    ((1, 5, 1, 7), [2, 0, 1, 3], "copy"),                 # only size-1 dims move
    ((2,) * 7, [6, 5, 4, 3, 2, 1, 0], "np_transpose"),    # 7 dims survive coalescing
])
def test_transpose_paths(shape, perm, kernel):
    got, want, sess = run_both("Transpose", [("x", _rand(shape, 3))], {"perm": perm})
    assert _kernel(sess) == kernel
    _same(got, want)


@pytest.mark.arm
@pytest.mark.parametrize("shape,perm", [
    ((1, 130, 131, 3), [0, 3, 1, 2]),   # NHWC -> NCHW at a model's input: few columns
    ((2, 40, 33, 24), [0, 3, 1, 2]),
    ((1, 24, 30, 31), [0, 2, 3, 1]),    # NCHW -> NHWC: 24 rows, one row tile
    ((3, 200, 97), [0, 2, 1]),
])
def test_transpose_over_threads(shape, perm):
    got, want, sess = run_both("Transpose", [("x", _rand(shape, 5))], {"perm": perm}, threads=2)
    rows = shape[1] * shape[2] if perm == [0, 3, 1, 2] else shape[1]
    parallel = np.prod(shape) >= PARALLEL_MIN_FLOATS and shape[0] * -(-rows // 32) > 1
    assert _kernel(sess) == ("f32_transpose_2d_mt" if parallel else "f32_transpose_2d")
    assert parallel or shape[1] == 24  # the others are large enough
    _same(got, want)


def test_transpose_of_int64_uses_numpy():
    x = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    got, want, sess = run_both("Transpose", [("x", x)], {"perm": [2, 0, 1]})
    assert _kernel(sess) == "np_transpose"
    _same(got, want)


# --- Concat / Split ---------------------------------------------------------------------------------
@pytest.mark.arm
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), data=st.data(), seed=SEEDS)
def test_concat_matches_reference(shape, data, seed):
    axis = data.draw(st.integers(0, len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(0, 4), min_size=1, max_size=4))
    consts = data.draw(st.sets(st.integers(0, len(sizes) - 1)))
    inputs = [(f"x{k}", _rand(shape[:axis] + [n] + shape[axis + 1:], seed + k)) for k, n in enumerate(sizes)]
    got, want, sess = run_both("Concat", inputs, {"axis": axis}, consts={f"x{k}" for k in consts})
    assert _kernel(sess) == "f32_concat_blocks"
    _same(got, want)


@pytest.mark.arm
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), data=st.data(), seed=SEEDS)
def test_split_matches_reference(shape, data, seed):
    axis = data.draw(st.integers(0, len(shape) - 1))
    cuts = sorted(data.draw(st.lists(st.integers(0, shape[axis]), min_size=0, max_size=3)))
    split = list(np.diff([0] + cuts + [shape[axis]]))
    got, want, sess = run_both("Split", [("x", _rand(shape, seed))], {"axis": axis, "split": [int(v) for v in split]},
                               n_outputs=len(split))
    assert _kernel(sess) == "f32_split_blocks"
    _same(got, want)


def test_concat_and_split_of_int64_use_numpy():
    a, b = np.arange(6, dtype=np.int64).reshape(2, 3), np.arange(4, dtype=np.int64).reshape(2, 2)
    got, want, sess = run_both("Concat", [("a", a), ("b", b)], {"axis": 1})
    assert _kernel(sess) == "np_concat"
    _same(got, want)
    got, want, sess = run_both("Split", [("a", a)], {"axis": 1, "split": [1, 2]}, n_outputs=2)
    assert _kernel(sess) == "np_split"
    _same(got, want)


# --- Slice ------------------------------------------------------------------------------------------
@st.composite
def slice_case(draw):
    """A shape and normalised (start, end, step) per dim: no wrap-around, end -1 = before index 0."""
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=6))
    starts, ends, steps = [], [], []
    for n in shape:
        step = draw(st.sampled_from([1, 1, 2, 3, -1, -2]))
        if step > 0:
            start, end = draw(st.integers(0, n)), draw(st.integers(0, n))
        else:
            start, end = draw(st.integers(0, n - 1)), draw(st.integers(-1, n - 1))
        starts.append(start), ends.append(end), steps.append(step)
    return shape, {"starts": starts, "ends": ends, "steps": steps}


@pytest.mark.arm
@given(case=slice_case(), seed=SEEDS)
def test_slice_matches_reference(case, seed):
    shape, attrs = case
    x = _rand(shape, seed)
    got, want, sess = run_both("Slice", [("x", x)], attrs)
    assert _kernel(sess) == "f32_copy_strided6"
    _same(got, want)
    expected = x[tuple(slice(s, e if e >= 0 else None, st) for s, e, st in
                       zip(attrs["starts"], attrs["ends"], attrs["steps"]))]
    if all(len(range(*r)) for r in zip(attrs["starts"], attrs["ends"], attrs["steps"])):
        _same(got, [expected])


def test_slice_of_int64_uses_numpy():
    x = np.arange(24, dtype=np.int64).reshape(4, 6)
    got, want, sess = run_both("Slice", [("x", x)], {"starts": [3, 1], "ends": [-1, 6], "steps": [-2, 2]})
    assert _kernel(sess) == "np_slice"
    _same(got, want)


# --- Pad --------------------------------------------------------------------------------------------
@st.composite
def pad_case(draw):
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=5))
    mode = draw(st.sampled_from(["constant", "reflect", "edge"]))
    cap = (lambda n: n - 1) if mode == "reflect" else (lambda n: 3)
    pads = [draw(st.integers(0, cap(n))) if draw(st.booleans()) else 0 for n in shape * 2]
    return shape, {"pads": pads, "mode": mode, "value": draw(st.sampled_from([0.0, -1.5, 7.0]))}


@pytest.mark.arm
@given(case=pad_case(), seed=SEEDS)
def test_pad_matches_reference(case, seed):
    shape, attrs = case
    got, want, sess = run_both("Pad", [("x", _rand(shape, seed))], attrs)
    assert _kernel(sess) == ("f32_pad_rows6" if any(attrs["pads"]) else "copy")
    _same(got, want)


def test_pad_over_seven_dims_and_int64_use_numpy():
    x = _rand((2,) * 7, 0)
    got, want, sess = run_both("Pad", [("x", x)], {"pads": [1] * 14, "mode": "edge"})
    assert _kernel(sess) == "np_pad"
    _same(got, want)
    got, want, sess = run_both("Pad", [("x", np.arange(6).reshape(2, 3))], {"pads": [0, 1, 1, 0], "value": 9})
    assert _kernel(sess) == "np_pad"
    _same(got, want)


# --- Gather -----------------------------------------------------------------------------------------
@pytest.mark.arm
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), data=st.data(), seed=SEEDS,
       const=st.booleans(), dtype=st.sampled_from([np.int64, np.int32]))
def test_gather_matches_reference(shape, data, seed, const, dtype):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    # NOTE: a 0-d constant comes back from GraphBuilder.add_const as shape (1,) (np.ascontiguousarray),
    # so scalar indices are drawn only as runtime inputs until the builder keeps 0-d constants.
    ishape = data.draw(st.lists(st.integers(0, 3), min_size=1 if const else 0, max_size=2))
    idx = np.random.default_rng(seed).integers(-n, n, size=ishape).astype(dtype)
    got, want, sess = run_both("Gather", [("x", _rand(shape, seed)), ("i", idx)], {"axis": axis},
                               consts={"i"} if const else ())
    assert _kernel(sess) == ("f32_gather_rows" if const else "f32_gather_rows_checked")
    _same(got, want)


@pytest.mark.parametrize("bad", [5, -6])
def test_gather_runtime_index_out_of_range_is_an_error_and_reads_nothing(bad):
    x = _rand((3, 5), 0)
    graph = single_op_graph("Gather", [("x", x), ("i", np.zeros(3, np.int64))], {"axis": 1})
    sess = Session(graph)
    with pytest.raises(InputError, match=f"index {bad} is out of range for axis 1 of size 5") as info:
        sess.run({"x": x, "i": np.array([0, bad, 1], np.int64)})
    assert info.value.node == "the_gather"
    out = sess.run({"x": x, "i": np.array([4, -5, 1], np.int64)})["out0"]  # the session still works
    np.testing.assert_array_equal(out, x[:, [4, 0, 1]])


def test_gather_constant_index_out_of_range_is_a_shape_error():
    with pytest.raises(ShapeError, match="index 7 is out of range") as info:
        single_op_graph("Gather", [("x", np.zeros((3, 5), np.float32)), ("i", np.array([1, 7]))], {"axis": 1},
                        consts={"i"})
    assert info.value.node == "the_gather"


def test_gather_of_int64_data_uses_numpy():
    x = np.arange(12, dtype=np.int64).reshape(3, 4)
    for consts in ((), {"i"}):
        got, want, sess = run_both("Gather", [("x", x), ("i", np.array([2, -1]))], {"axis": 0}, consts=consts)
        assert _kernel(sess) == "np_take"
        _same(got, want)
    sess = Session(single_op_graph("Gather", [("x", x), ("i", np.array([0]))], {"axis": 0}))
    with pytest.raises(InputError, match="index 3 is out of range"):
        sess.run({"x": x, "i": np.array([3])})


# --- DepthToSpace -----------------------------------------------------------------------------------
@pytest.mark.arm
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(1, 5), b=st.integers(1, 3),
       mode=st.sampled_from(["DCR", "CRD"]), seed=SEEDS)
def test_depth_to_space_matches_reference(n, c, h, w, b, mode, seed):
    got, want, sess = run_both("DepthToSpace", [("x", _rand((n, c * b * b, h, w), seed))], {"blocksize": b, "mode": mode})
    assert _kernel(sess) == "f32_depth_to_space"
    _same(got, want)


@pytest.mark.arm
@settings(max_examples=6, deadline=None)
@given(c=st.integers(2, 40), b=st.integers(1, 3), mode=st.sampled_from(["DCR", "CRD"]), seed=SEEDS)
def test_depth_to_space_over_threads(c, b, mode, seed):
    """From PARALLEL_MIN_FLOATS outputs the planes go to the threads (bands first, then stealing)."""
    h = w = 64 // b
    got, want, sess = run_both("DepthToSpace", [("x", _rand((1, c * b * b, h, w), seed))], {"blocksize": b, "mode": mode},
                               threads=2)
    assert _kernel(sess) == ("f32_depth_to_space_mt" if c * (h * b) * (w * b) >= PARALLEL_MIN_FLOATS
                             else "f32_depth_to_space")
    _same(got, want)


# --- constants --------------------------------------------------------------------------------------
@pytest.mark.arm
@pytest.mark.parametrize("op,attrs,n_outputs", [
    ("Transpose", {"perm": [0, 2, 3, 1]}, 1), ("Transpose", {"perm": [3, 1, 0, 2]}, 1),
    ("Slice", {"starts": [0, 3, 0, 4], "ends": [2, -1, 3, 0], "steps": [1, -1, 2, -2]}, 1),
    ("Pad", {"pads": [0, 1, 1, 0, 0, 0, 1, 2], "mode": "edge"}, 1), ("DepthToSpace", {"blocksize": 2}, 1),
    ("Split", {"axis": 1, "split": [1, 3]}, 2), ("Concat", {"axis": 1}, 1), ("Reshape", {"shape": [8, 15]}, 1),
])
def test_read_only_constant_inputs(op, attrs, n_outputs):
    """Constants reach ``bind`` as they are stored: possibly read-only memory maps of the model file."""
    x = _rand((2, 4, 3, 5), 0)
    graph = single_op_graph(op, [("x", x)], attrs, consts={"x"}, n_outputs=n_outputs)
    graph.consts["x"].setflags(write=False)
    got = Session(graph).run({})
    _same([got[f"out{k}"] for k in range(n_outputs)], REGISTRY[op].reference(REGISTRY[op].resolve_attrs(graph.nodes[0]), x))


# --- references against onnx's evaluator -----------------------------------------------------------
def _ref(op, attrs, *inputs):
    return REGISTRY[op].reference(attrs, *inputs)


def test_references_agree_with_onnx_evaluator():
    pytest.importorskip("onnx")
    x = _rand((2, 4, 3, 5), 0)

    def i64(v):
        return np.array(v, dtype=np.int64)

    cases = [
        ("Transpose", {"perm": [0, 2, 3, 1]}, [x], {"perm": [0, 2, 3, 1]}, [x]),
        ("Concat", {"axis": 1}, [x, x[:, :2]], {"axis": 1}, [x, x[:, :2]]),
        ("Split", {"axis": 3, "split": [1, 4]}, [x], {"axis": 3}, [x, i64([1, 4])]),
        # IR's end -1 (before index 0 for a negative step) is ONNX's "past the start", e.g. INT64_MIN.
        ("Slice", {"starts": [1, 3, 0, 4], "ends": [2, -1, 3, 0], "steps": [1, -2, 2, -3]}, [x], {},
         [x, i64([1, 3, 0, 4]), i64([2, -2**63, 3, 0]), i64([0, 1, 2, 3]), i64([1, -2, 2, -3])]),
        ("Gather", {"axis": 2}, [x, i64([[2, -1], [0, 1]])], {"axis": 2}, [x, i64([[2, -1], [0, 1]])]),
        ("DepthToSpace", {"blocksize": 2, "mode": "DCR"}, [x], {"blocksize": 2, "mode": "DCR"}, [x]),
        ("DepthToSpace", {"blocksize": 2, "mode": "CRD"}, [x], {"blocksize": 2, "mode": "CRD"}, [x]),
    ]
    for mode in ("constant", "reflect", "edge"):
        pads = [0, 1, 2, 1, 1, 0, 2, 3]
        cases.append(("Pad", {"pads": pads, "mode": mode, "value": 2.5}, [x], {"mode": mode},
                      [x, i64(pads), np.float32(2.5 if mode == "constant" else 0)]))
    for op, attrs, inputs, onnx_attrs, onnx_inputs in cases:
        ours = _ref(op, attrs, *inputs)
        theirs = onnx_reference(op, onnx_inputs, onnx_attrs, n_outputs=len(ours))
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b, err_msg=op)


# --- validation -------------------------------------------------------------------------------------
@pytest.mark.parametrize("op,attrs,message", [
    ("Transpose", {"perm": [0, 1, 1, 2]}, "not a permutation"),
    ("Transpose", {}, "missing required attribute 'perm'"),
    ("Split", {"axis": 1, "split": [1, 2]}, "sums to 3"),
    ("Split", {"axis": 4, "split": [4]}, "outside"),
    ("Slice", {"starts": [0, 0, 0], "ends": [1, 1, 1]}, "must have 4 values"),
    ("Slice", {"starts": [0, 0, 0, 0], "ends": [1, 1, 1, 1], "steps": [1, 0, 1, 1]}, "step of dim 1 is 0"),
    ("Slice", {"starts": [0, -2, 0, 0], "ends": [1, 1, 1, 1]}, "wrap around"),
    ("Slice", {"starts": [0, 0, 0, 0], "ends": [1, 5, 1, 1]}, "wrap around"),
    ("Slice", {"starts": [0, -1, 0, 0], "ends": [1, 2, 1, 1]}, "reads outside"),
    ("Pad", {"pads": [0, 1, 0, 0, 0, 0, 0]}, "must have 8 values"),
    ("Pad", {"pads": [0, -1, 0, 0, 0, 0, 0, 0]}, ">= 0"),
    ("Pad", {"pads": [0, 0, 4, 0, 0, 0, 0, 0], "mode": "reflect"}, "smaller than its size 4"),
    ("Pad", {"pads": [0] * 8, "mode": "wrap"}, "'mode'"),
    ("DepthToSpace", {"blocksize": 3}, "not a multiple"),
    ("DepthToSpace", {"blocksize": 2, "mode": "XYZ"}, "'mode'"),
    ("DepthToSpace", {"blocksize": 0}, "blocksize"),
])
def test_bad_attributes_are_shape_errors_naming_the_node(op, attrs, message):
    with pytest.raises(ShapeError, match=message) as info:
        single_op_graph(op, [("x", np.zeros((2, 4, 4, 5), np.float32))], attrs, n_outputs=len(attrs.get("split", [0])))
    assert info.value.node == f"the_{op.lower()}"


def test_concat_rejects_mismatched_inputs():
    for b, message in ((np.zeros((2, 4), np.float32), "does not match"), (np.zeros((2, 3), np.int32), "is i32")):
        with pytest.raises(ShapeError, match=message):
            single_op_graph("Concat", [("a", np.zeros((3, 3), np.float32)), ("b", b)], {"axis": 1})


def test_gather_rejects_float_indices():
    with pytest.raises(ShapeError, match="indices must be i64 or i32"):
        single_op_graph("Gather", [("x", np.zeros((3, 5), np.float32)), ("i", np.zeros(2, np.float32))])
