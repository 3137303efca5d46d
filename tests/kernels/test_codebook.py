"""CodebookSnap and LayerNorm kernels against their references and the notes' numpy oracle.

Ids must match exactly wherever the reference ranking has a margin; where two float64 scores sit
within rounding of each other, the kernel's choice must still be a valid top-k (and its output the
mean of exactly the codes it chose). Exact ties (duplicate codes) must go to the lower index.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import edgert.ops.codebook
from edgert.errors import ShapeError
from edgert.ops import REGISTRY
from tests.helpers import assert_close, onnx_reference, run_both, single_op_graph

TOL = 2e-5  # relative: f32 scoring vs the float64 oracle


def oracle(x, C, gamma, beta, k, metric="inner_product", eps=1e-5, pre_norm=True):
    """The notes' codebook_features_ref (plus metric 'dot' and no-LN), returning ranking keys too.

    Keys are a monotone map of the reference scores: cosine scores, -|h-c|^2/2, or dots.
    """
    G, _, dg = C.shape
    v = x.reshape(-1, G, dg).astype(np.float64)
    C = C.astype(np.float64)
    h = v
    if pre_norm:
        h = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + eps) * gamma + beta
    dots = np.einsum("ngd,gkd->ngk", h, C)
    if metric == "inner_product":
        with np.errstate(divide="ignore", invalid="ignore"):
            key = dots / np.linalg.norm(C, axis=-1)[None]
        scale = np.linalg.norm(h, axis=-1, keepdims=True) + 1e-30
    elif metric == "euclidean":
        key = -0.5 * ((h[:, :, None, :] - C[None]) ** 2).sum(-1)
        scale = (h ** 2).sum(-1, keepdims=True) + (C ** 2).sum(-1).max() + 1e-30
    else:
        key = dots
        scale = np.linalg.norm(h, axis=-1, keepdims=True) * np.linalg.norm(C, axis=-1).max() + 1e-30
    key = np.where(np.isnan(key), -np.inf, key)
    ids = np.argsort(-key, axis=-1, kind="stable")[..., :k]
    return ids, key, scale


def check_snap(y, ids, x, C, gamma, beta, attrs):
    k, metric = attrs["k"], attrs.get("metric", "inner_product")
    pre = attrs.get("pre_norm", "layernorm") == "layernorm"
    G, K, _ = C.shape
    want_ids, key, scale = oracle(x, C, gamma, beta, k, metric, pre_norm=pre)
    got = ids.reshape(-1, G, k)
    assert got.dtype == np.int64 and got.shape == want_ids.shape
    for n, g in zip(*np.nonzero((got != want_ids).any(-1))):
        tol = TOL * scale[n, g, 0]
        chosen, row = got[n, g], key[n, g]
        assert len(set(chosen.tolist())) == k and chosen.min() >= 0 and chosen.max() < K, chosen
        kth = row[want_ids[n, g, -1]]
        assert np.all(row[chosen] >= kth - tol), f"token {n} group {g}: {chosen} is not a top-{k} of {want_ids[n, g]}"
        assert np.all(np.diff(row[chosen]) <= tol), f"token {n} group {g}: slots out of order {chosen}"
    expect = C.astype(np.float64)[np.arange(G)[None, :, None], got].sum(-2)
    expect /= k if attrs.get("reduce", "mean") == "mean" else 1
    assert_close(y, expect.reshape(x.shape).astype(np.float32), what=f"snap {attrs}")


def run_snap(x, C, attrs, gamma=None, beta=None, threads=1, fp16=False):
    inputs = [("x", x), ("cb", C)]
    if gamma is not None:
        inputs += [("gamma", gamma), ("beta", beta)]
    got, want, sess = run_both("CodebookSnap", inputs, attrs, consts={"cb", "gamma", "beta"}, n_outputs=2,
                               threads=threads, fp16_consts=fp16)
    C = C.astype(np.float16).astype(np.float32) if fp16 else C
    g = np.ones(C.shape[::2], np.float32) if gamma is None else (gamma.astype(np.float16).astype(np.float32) if fp16 else gamma)
    b = np.zeros(C.shape[::2], np.float32) if beta is None else (beta.astype(np.float16).astype(np.float32) if fp16 else beta)
    check_snap(got[0], got[1], x, C, g, b, attrs)      # the kernel
    check_snap(want[0], want[1], x, C, g, b, attrs)    # the op's reference
    return got, sess


@st.composite
def snap_case(draw, max_codes=70):
    G = draw(st.integers(1, 3))
    K = draw(st.integers(1, max_codes))
    dg = draw(st.sampled_from([1, 2, 3, 5, 8, 16, 17]))
    k = draw(st.integers(1, K))
    lead = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(lead + [G * dg]) * draw(st.sampled_from([0.1, 1.0, 30.0]))).astype(np.float32)
    C = rng.standard_normal((G, K, dg)).astype(np.float32)
    dups = draw(st.lists(st.tuples(st.integers(0, K - 1), st.integers(0, K - 1)), max_size=4))
    for src, dst in dups:  # duplicate codes: exact ties
        C[:, dst] = C[:, src]
    affine = draw(st.booleans())
    gamma = rng.uniform(0.5, 2, (G, dg)).astype(np.float32) if affine else None
    beta = rng.standard_normal((G, dg)).astype(np.float32) if affine else None
    attrs = {"k": k, "metric": draw(st.sampled_from(["inner_product", "euclidean", "dot"])),
             "pre_norm": "layernorm" if affine or draw(st.booleans()) else "none",
             "reduce": draw(st.sampled_from(["mean", "sum"]))}
    return x, C, gamma, beta, attrs


@pytest.mark.arm
@given(case=snap_case(), fp16=st.booleans())
@example(case=(np.ones((1, 4), np.float32), np.ones((1, 1, 4), np.float32), None, None, {"k": 1}), fp16=False)
def test_snap_matches_reference(case, fp16):
    x, C, gamma, beta, attrs = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(edgert.ops.codebook, "TILE_BYTES", 1)  # tiles of 4 codes: ties and top-k across tiles
        _, sess = run_snap(x, C, attrs, gamma, beta, fp16=fp16)
    assert sess.describe()["nodes"][0]["kernel"] == ("f32_codebook_snap_f16" if fp16 else "f32_codebook_snap")


@settings(max_examples=12)
@given(case=snap_case(max_codes=700), fp16=st.booleans())
def test_snap_over_threads_matches_reference(case, fp16):
    x, C, gamma, beta, attrs = case
    x = np.concatenate([x.reshape(-1, x.shape[-1])] * 8)  # enough work for the threaded kernel
    _, sess = run_snap(x, C, attrs, gamma, beta, threads=2, fp16=fp16)
    node = sess.describe()["nodes"][0]
    if x.size * C.shape[1] >= 1 << 18:
        assert node["kernel"].endswith("_mt"), node


@pytest.mark.arm
@pytest.mark.parametrize("fp16", [False, True])
@pytest.mark.parametrize("metric", ["inner_product", "euclidean", "dot"])
@pytest.mark.parametrize("threads", [1, 2])
def test_exact_ties_go_to_the_lower_index_in_slot_order(metric, fp16, threads):
    rng = np.random.default_rng(5)
    K, dg = 1200, 8
    C = (rng.standard_normal((1, K, dg)) * 0.1).astype(np.float32)
    x = np.zeros((40, dg), np.float32)
    x[:, 0] = 5.0  # every token normalises to the same h
    h = (x[0] - x[0].mean()) / np.sqrt(x[0].var() + 1e-5)
    places = [1100, 7, 650, 3, 599, 600]  # across tiles (256 codes) and code ranges (300 with 2 threads)
    for p in places:
        C[0, p] = h  # copies of the best code under every metric
    got, _ = run_snap(x, C, {"k": 5, "metric": metric}, threads=threads, fp16=fp16)
    np.testing.assert_array_equal(got[1].reshape(-1, 5), np.tile([3, 7, 599, 600, 650], (40, 1)))


@pytest.mark.arm
@pytest.mark.parametrize("k", [1, 9])
def test_k_of_one_and_k_equal_to_the_codebook_size(k):
    rng = np.random.default_rng(k)
    C = rng.standard_normal((2, 9, 4)).astype(np.float32)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    got, _ = run_snap(x, C, {"k": k, "metric": "euclidean"})
    if k == 9:  # every code is selected: the mean of the whole codebook, ids a permutation
        assert_close(got[0], np.tile(C.mean(1).reshape(1, 8), (3, 1)))
        assert (np.sort(got[1], -1) == np.arange(9)).all()


@pytest.mark.arm
def test_zero_codes_never_rank_in_inner_product():
    rng = np.random.default_rng(2)
    C = rng.standard_normal((1, 20, 6)).astype(np.float32)
    C[0, [0, 4]] = 0.0
    x = rng.standard_normal((7, 6)).astype(np.float32)
    got, _ = run_snap(x, C, {"k": 18})
    assert not np.isin(got[1], [0, 4]).any()
    got, _ = run_snap(x, C, {"k": 20})  # they fill the last slots, lower index first
    np.testing.assert_array_equal(got[1][..., -2:].reshape(-1, 2), np.tile([0, 4], (7, 1)))


@pytest.mark.arm
def test_fp16_codebook_with_subnormals_decodes_exactly_and_inf_falls_back_to_f32():
    rng = np.random.default_rng(3)
    C = rng.standard_normal((2, 40, 8)).astype(np.float16)
    C[0, 3, :4] = np.array([6e-8, -6e-8, 3e-5, 0.0], np.float16)  # subnormal halves and a zero
    C[1, 5] = 65504.0
    x = rng.standard_normal((5, 16)).astype(np.float32)
    _, sess = run_snap(x, C.astype(np.float32), {"k": 3, "metric": "dot"}, fp16=True)
    assert sess.describe()["nodes"][0]["kernel"] == "f32_codebook_snap_f16"
    C[1, 6, 0] = np.inf
    got, want, sess = run_both("CodebookSnap", [("x", x), ("cb", C.astype(np.float32))], {"k": 3, "metric": "dot"},
                               consts={"cb"}, n_outputs=2, fp16_consts=True)
    node = sess.describe()["nodes"][0]
    assert node["kernel"] == "f32_codebook_snap" and "widened" in node["reason"]
    np.testing.assert_array_equal(got[1], want[1])


def test_reference_matches_the_notes_oracle_for_groups():
    rng = np.random.default_rng(4)
    G, K, dg, k = 4, 30, 8, 5
    x = rng.standard_normal((2, 3, G * dg)).astype(np.float32)
    C = rng.standard_normal((G, K, dg)).astype(np.float32)
    gamma, beta = rng.standard_normal((2, G, dg)).astype(np.float32)
    op = REGISTRY["CodebookSnap"]
    for metric in ("inner_product", "euclidean"):
        attrs = op.resolve_attrs(type("N", (), {"attrs": {"k": k, "metric": metric}, "name": "n", "op": "CodebookSnap"})())
        y, ids = op.reference(attrs, x, C, gamma, beta)
        want_ids, _, _ = oracle(x, C, gamma, beta, k, metric)
        np.testing.assert_array_equal(ids.reshape(-1, G, k), want_ids)
        want_y = C.astype(np.float64)[np.arange(G)[None, :, None], want_ids].mean(-2).reshape(x.shape)
        np.testing.assert_allclose(y, want_y, rtol=1e-6, atol=1e-6)


@pytest.mark.arm
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_layernorm_matches_reference(shape, data, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    inner = shape[axis % len(shape):]
    inputs = [("x", x)]
    if data.draw(st.booleans()):
        inputs += [("s", rng.standard_normal(inner).astype(np.float32)), ("b", rng.standard_normal(inner).astype(np.float32))]
    got, want, _ = run_both("LayerNorm", inputs, {"axis": axis, "epsilon": 1e-3}, consts={"s", "b"})
    assert_close(got[0], want[0], what=f"LayerNorm axis {axis}")


def test_layernorm_reference_agrees_with_onnx_evaluator():
    pytest.importorskip("onnx")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    s, b = rng.standard_normal((2, 4, 5)).astype(np.float32)
    ours = REGISTRY["LayerNorm"].reference({"axis": 2, "epsilon": 1e-4}, x, s, b)[0]
    theirs = onnx_reference("LayerNormalization", [x, s, b], {"axis": 2, "epsilon": 1e-4}, opset=17)[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


GOOD = {"x": np.zeros((2, 12), np.float32), "cb": np.ones((3, 10, 4), np.float32)}


@pytest.mark.parametrize("attrs,extra,message", [
    ({"k": 0}, {}, r"'k' = 0 is outside \[1, 10\]"),
    ({"k": 11}, {}, r"'k' = 11 is outside"),
    ({"k": 2.5}, {}, "must be an integer"),
    ({"k": 2, "metric": "cosine"}, {}, "metric"),
    ({"k": 2, "num_groups": 2}, {}, "num_groups = 2 but the codebook has 3 groups"),
    ({"k": 2, "pre_norm": "rms"}, {}, "pre_norm"),
    ({"k": 2, "reduce": "max"}, {}, "reduce"),
    ({"k": 2, "tie": "torch"}, {}, "tie"),
    ({"k": 2, "ln_epsilon": 0.0}, {}, "positive"),
    ({"k": 2}, {"x": np.zeros((2, 13), np.float32)}, "must be groups\\*dim"),
    ({"k": 2}, {"cb": np.ones((10, 4), np.float32)}, r"\[groups, codes, dim\]"),
    ({"k": 2}, {"gamma": np.ones((3, 5), np.float32)}, r"ln_scale must be f32 \[3, 4\]"),
    ({"k": 2, "pre_norm": "none"}, {"gamma": np.ones((3, 4), np.float32)}, "pre_norm is 'none'"),
    ({"k": 2}, {"nonconst": True}, "must be a constant"),
])
def test_bad_snap_attributes_and_shapes_are_shape_errors_naming_the_node(attrs, extra, message):
    arrays = dict(GOOD, **{k: v for k, v in extra.items() if k != "nonconst"})
    inputs = [("x", arrays["x"]), ("cb", arrays["cb"])]
    if "gamma" in arrays:
        inputs += [("gamma", arrays["gamma"])]
    consts = () if extra.get("nonconst") else ("cb", "gamma")
    with pytest.raises(ShapeError, match=message) as info:
        single_op_graph("CodebookSnap", inputs, attrs, consts=consts, n_outputs=2)
    assert info.value.node == "the_codebooksnap"


def test_bad_layernorm_attributes_are_shape_errors():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ShapeError, match="axis"):
        single_op_graph("LayerNorm", [("x", x)], {"axis": 3})
    with pytest.raises(ShapeError, match="normalised shape"):
        single_op_graph("LayerNorm", [("x", x), ("s", np.ones(3, np.float32))], {"axis": -1}, consts={"s"})
    with pytest.raises(ShapeError, match="epsilon"):
        single_op_graph("LayerNorm", [("x", x)], {"epsilon": -1.0})
