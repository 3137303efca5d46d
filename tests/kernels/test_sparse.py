"""SparseConv1x1 (CSR weights x CHW activations) against its numpy reference and against dense W @ X.

Both kernels the op can choose are checked: the CSR kernel (sparse forced) and the densified GEMM
(dense forced), at sparsity 0 / 0.5 / 0.9 / 1.0, with empty rows, a single channel, odd pixel counts
around the vector width and the register tile, blocks, fp16 values, batches and fused activations.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from converters.builder import GraphBuilder
from edgert.errors import ShapeError
from edgert.kernels import spmm as KS
from edgert.kernels.act import CODES
from edgert.kernels.simd import VW
from edgert.kernels.spmm import TILE
from edgert.kernels.work import work_counter
from edgert.ops.sparse import BLOCKS, densify, to_csr
from edgert.runtime.reference import run_reference
from edgert.runtime.session import Session
from tests.helpers import assert_close

PIXELS = sorted({1, 2, 3, VW - 1, VW, VW + 1, TILE - 1, TILE, TILE + 1, TILE + VW + 3, 2 * TILE + 5, 49})


def act_attrs(act):
    return {"activation": act, "act_a": -0.5 if act == "clip" else 0.2, "act_b": 1.5 if act == "clip" else 0.5}


def pruned(rng, m, k, sparsity, block=(1, 1), empty_rows=False):
    """W [m, k] with about ``sparsity`` of its bm x bk blocks zero (and some all-zero rows if asked)."""
    bm, bk = block
    w = rng.standard_normal((m, k)).astype(np.float32)
    keep = rng.random((m // bm, k // bk)) >= sparsity
    w *= np.kron(keep, np.ones(block)).astype(np.float32)
    if empty_rows:
        w[rng.random(m) < 0.3] = 0
    return w


def sparse_graph(x_shape, w, bias, attrs, block=(1, 1), fp16=False, residual=False):
    b = GraphBuilder()
    values, cols, rowptr = to_csr(w, block)
    ins = [b.add_input("x", x_shape), b.add_const("values", values, dtype="f16" if fp16 else None),
           b.add_const("cols", cols), b.add_const("rowptr", rowptr)]
    ins.append(b.add_const("bias", bias) if bias is not None else "")
    if residual:
        ins.append(b.add_input("r", (x_shape[0], w.shape[0]) + tuple(x_shape[2:])))
    b.add_node("SparseConv1x1", ins, ["y"], {**attrs, "block": list(block)}, name="sp")
    b.add_output("y")
    return b.finish()


def run(graph, x, mode, threads=1, r=None):
    sess = Session(graph, threads=threads, options={"sparse": mode})
    return sess.run({"x": x} | ({"r": r} if r is not None else {}))["y"], sess.describe()["nodes"][0]


def dense_answer(x, w, bias, act, attrs, r=None):
    """W @ X + b through plain numpy in float64, then the activation (an oracle apart from the op's own)."""
    from edgert.kernels.act import reference_act
    xs = x.astype(np.float64)
    y = np.einsum("mk,nk...->nm...", w.astype(np.float64), xs)
    if bias is not None:
        y = y + bias.astype(np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))
    if r is not None:
        y = y + r
    return reference_act(y, act, attrs["act_a"], attrs["act_b"]).astype(np.float32)


@pytest.mark.arm
@given(m=st.sampled_from([1, 2, 3, 8, 17, 33]), k=st.sampled_from([1, 2, 5, 16, 40]),
       pixels=st.sampled_from(PIXELS), sparsity=st.sampled_from([0.0, 0.5, 0.9, 1.0]),
       empty_rows=st.booleans(), bias=st.booleans(), act=st.sampled_from(sorted(CODES)),
       nimg=st.sampled_from([1, 1, 2]), fp16=st.booleans(), mode=st.sampled_from(["always", "never"]),
       residual=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_conv1x1_matches_reference_and_dense(m, k, pixels, sparsity, empty_rows, bias, act, nimg, fp16, mode,
                                             residual, seed):
    rng = np.random.default_rng(seed)
    w = pruned(rng, m, k, sparsity, empty_rows=empty_rows)
    if fp16:
        w = w.astype(np.float16).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    h = 1 if pixels % 2 else 2
    x = rng.standard_normal((nimg, k, h, pixels // h)).astype(np.float32)
    attrs = act_attrs(act)
    graph = sparse_graph(x.shape, w, b, attrs, fp16=fp16, residual=residual)
    r = rng.standard_normal((nimg, m) + x.shape[2:]).astype(np.float32) if residual else None
    got, node = run(graph, x, mode, r=r)
    assert node["kernel"].startswith("f32_spmm_rows") == (mode == "always"), node
    assert_close(got, run_reference(graph, {"x": x} | ({"r": r} if residual else {}))["y"], what="vs reference")
    assert_close(got, dense_answer(x, w, b, act, attrs, r), what="vs dense numpy")


@pytest.mark.arm
@given(n=st.sampled_from([1, 2, 5]), m=st.sampled_from([1, 7, 33]), k=st.sampled_from([1, 9, 64]),
       sparsity=st.sampled_from([0.0, 0.5, 0.9, 1.0]), act=st.sampled_from(["none", "relu", "sigmoid"]),
       mode=st.sampled_from(["always", "never"]), residual=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_fully_connected_matches_reference(n, m, k, sparsity, act, mode, residual, seed):
    rng = np.random.default_rng(seed)
    w = pruned(rng, m, k, sparsity)
    b = rng.standard_normal(m).astype(np.float32)
    x = rng.standard_normal((n, k)).astype(np.float32)
    attrs = act_attrs(act)
    graph = sparse_graph(x.shape, w, b, attrs, residual=residual)
    r = rng.standard_normal((n, m)).astype(np.float32) if residual else None
    got, node = run(graph, x, mode, r=r)
    assert node["kernel"].startswith("f32_spmm_rows") == (mode == "always")
    assert_close(got, dense_answer(x, w, b, act, attrs, r), what="FC vs dense numpy")


@pytest.mark.arm
@given(block=st.sampled_from(BLOCKS), mb=st.integers(1, 6), kb=st.integers(1, 6),
       pixels=st.sampled_from(PIXELS), sparsity=st.sampled_from([0.0, 0.5, 0.9, 1.0]),
       seed=st.integers(0, 2**31 - 1))
def test_blocks_round_trip_and_run(block, mb, kb, pixels, sparsity, seed):
    rng = np.random.default_rng(seed)
    m, k = mb * block[0], kb * block[1]
    w = pruned(rng, m, k, sparsity, block)
    values, cols, rowptr = to_csr(w, block)
    assert len(values) == len(cols) * block[0] * block[1]
    np.testing.assert_array_equal(densify(values, cols, rowptr, m, k, block), w)
    x = rng.standard_normal((1, k, 1, pixels)).astype(np.float32)
    graph = sparse_graph(x.shape, w, None, act_attrs("none"), block=block)
    got, _ = run(graph, x, "always")
    assert_close(got, dense_answer(x, w, None, "none", act_attrs("none")), what=f"block {block}")


@pytest.mark.arm
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("m,k,pixels", [(24, 96, 3136), (960, 160, 49), (16, 32, 12544), (1001, 1280, 1)])
def test_mobilenet_shapes_threads(m, k, pixels, threads):
    rng = np.random.default_rng(m + k)
    w = pruned(rng, m, k, 0.9)
    b = rng.standard_normal(m).astype(np.float32)
    shape = (1, k) if pixels == 1 else (1, k, pixels // 7 if pixels % 7 == 0 else 1, 7 if pixels % 7 == 0 else pixels)
    x = rng.standard_normal(shape).astype(np.float32)
    graph = sparse_graph(x.shape, w, b, act_attrs("clip"))
    got, node = run(graph, x, "always", threads)
    assert_close(got, dense_answer(x, w, b, "clip", act_attrs("clip")), what=str(node))


def test_auto_choice_follows_the_cost_model():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 96, 56, 56)).astype(np.float32)
    for sparsity, kernel in ((0.3, "f32_gemm_rows"), (0.95, "f32_spmm_rows")):
        graph = sparse_graph(x.shape, pruned(rng, 24, 96, sparsity), None, act_attrs("none"))
        _, node = run(graph, x, "auto")
        assert node["kernel"] == kernel, node
        assert "sparsity" in node["reason"] and "est. dense" in node["reason"]


def test_per_node_override_and_bad_mode():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 16, 4, 4)).astype(np.float32)
    graph = sparse_graph(x.shape, pruned(rng, 8, 16, 0.99), None, act_attrs("none"))
    sess = Session(graph, threads=1, options={"sparse": "always", "sparse_nodes": {"sp": "off"}})
    assert sess.describe()["nodes"][0]["kernel"] == "f32_gemm_rows"
    from edgert.errors import InputError
    with pytest.raises(InputError, match="sparse mode"):
        Session(graph, threads=1, options={"sparse": "sometimes"})


def test_damaged_csr_is_a_clear_error():
    b = GraphBuilder()
    ins = [b.add_input("x", (1, 4, 2, 2)), b.add_const("values", np.ones(2, np.float32)),
           b.add_const("cols", np.array([1, 9], np.uint16)), b.add_const("rowptr", np.array([0, 1, 2], np.int32))]
    b.add_node("SparseConv1x1", ins, ["y"], {}, name="bad")
    b.add_output("y")
    with pytest.raises(ShapeError, match="cols must be") as err:
        Session(b.finish(), threads=1)
    assert err.value.node == "bad"


def test_board_profile_throughputs_drive_the_choice():
    """With a board, its [sparse] throughputs replace the host calibration (and show in the reason)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 96, 28, 28)).astype(np.float32)
    graph = sparse_graph(x.shape, pruned(rng, 32, 96, 0.8), None, act_attrs("none"))
    node = Session(graph, threads=1, board="x86-64-host").describe()["nodes"][0]
    assert "board x86-64-host" in node["reason"]
    # x86-64-host measured onnxruntime's dense 1x1 (240 GFLOP/s vs 36 sparse): dense wins at 80%
    assert node["kernel"] == "f32_gemm_rows", node


@pytest.mark.arm
@settings(max_examples=10, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 40), pixels=st.sampled_from([1, 49, 196, 784, 3 * KS.TILE + 5]),
       nimg=st.integers(1, 2), workers=st.integers(2, 3), residual=st.booleans(), pixel_bands=st.booleans(),
       seed=st.integers(0, 99))
def test_spmm_rows_mt_matches_serial(m, k, pixels, nimg, workers, residual, pixel_bands, seed):
    """Items taken from the shared counter by more workers than threads: each item exactly once,
    so the result is bitwise the serial kernel's (a fused residual read before it is written), with
    bands of output channels or of pixels (partial tiles of 2, 3 and 4 vectors at a band's end)."""
    rng = np.random.default_rng(seed)
    values, cols, rowptr = to_csr(pruned(rng, m, k, 0.7), (1, 1))
    offs = cols.astype(np.int64) * pixels
    x = rng.standard_normal(nimg * k * pixels).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    res = rng.standard_normal(nimg * m * pixels).astype(np.float32)
    want = np.zeros(nimg * m * pixels, np.float32)
    KS.f32_spmm_rows(x, values, offs, rowptr, bias, res, residual, want, nimg, m, k, pixels, 1, 0.0, 0.0)
    pc, mc = KS.chunks(pixels, m, workers, pixel_bands)
    got = np.full_like(want, 7.0)
    KS.f32_spmm_rows_mt(x, values, offs, rowptr, bias, res, residual, got, nimg, m, k, pixels, 1, 0.0, 0.0, pc, mc,
                        pixel_bands, work_counter(workers))
    np.testing.assert_array_equal(got, want)
