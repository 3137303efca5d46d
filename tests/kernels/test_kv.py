"""KeyValueLookup kernels against the reference and the notes' DKVB oracle.

Ids must match wherever the float64 distances have a margin; inside rounding the kernel's key
must still be one of the nearest (and the values are checked against the keys it chose). Exact
ties (duplicate keys) go to the lower key index.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import edgert.ops.codebook
from edgert.errors import ShapeError
from edgert.ops import REGISTRY
from tests.helpers import assert_close, run_both, single_op_graph

TOL = 2e-5


def dkvb_ref(z, P, K, V, topk=1):
    """The notes' oracle (float64): voting logits (B, dv) and ids (B, C, topk)."""
    q = np.einsum("bd,cdk->bck", z, P)
    d2 = (q ** 2).sum(-1)[..., None] - 2 * np.einsum("bck,cmk->bcm", q, K) + (K ** 2).sum(-1)[None]
    ids = np.argsort(d2, axis=-1, kind="stable")[..., :topk]
    vals = V[np.arange(K.shape[0])[None, :, None], ids]
    return vals.sum(axis=2).mean(axis=1), ids


def queries(attrs, z, P, C, dk):
    return REGISTRY["KeyValueLookup"].queries({"split": "projection", **attrs}, z, P, C, dk)


def check_kv(outs, z, K, V, P, attrs):
    """Check (values, ids, dist) of one run against float64 distances."""
    C, _, dk = K.shape
    topk, metric = attrs.get("topk", 1), attrs.get("metric", "sqeuclidean")
    q = queries(attrs, z, P, C, dk)
    Kd = K.astype(np.float64)
    dots = np.einsum("nck,cmk->ncm", q, Kd)
    rank = -dots if metric == "dot" else (q ** 2).sum(-1)[..., None] - 2 * dots + (Kd ** 2).sum(-1)[None]
    scale = (np.abs(q).sum(-1, keepdims=True) + np.abs(Kd).sum(-1).max()) ** 2 + 1e-30
    want = np.argsort(rank, axis=-1, kind="stable")[..., :topk]
    got = outs[1].reshape(-1, C, topk)
    for n, c in zip(*np.nonzero((got != want).any(-1))):
        tol = TOL * scale[n, c, 0]
        row, chosen = rank[n, c], got[n, c]
        assert len(set(chosen.tolist())) == topk
        assert np.all(row[chosen] <= row[want[n, c, -1]] + tol), f"sample {n} head {c}: {chosen} vs {want[n, c]}"
        assert np.all(np.diff(row[chosen]) >= -tol)
    vals = V.astype(np.float64)[np.arange(C)[None, :, None], got]
    combine = attrs.get("combine", "none")
    if combine == "vote":
        vals = vals.sum(2).mean(1)
    elif combine == "mean_codebooks":
        vals = vals.mean((1, 2))
    assert_close(outs[0].reshape(vals.shape), vals.astype(np.float32), what=f"values {attrs}")
    if len(outs) > 2:
        picked = np.take_along_axis(rank, got, -1)
        qn = (q ** 2).sum(-1)[..., None]
        dist = -picked if metric == "dot" else np.maximum(picked, 0)
        dist = np.sqrt(dist) if metric == "euclidean" else dist
        err = np.abs(outs[2].reshape(dist.shape) - dist)
        assert np.all(err <= 1e-4 * (qn + np.abs(dist) + 1)), f"dist off by {err.max()}"


def run_kv(z, K, V, P, attrs, threads=1, fp16=False, n_outputs=3):
    inputs = [("z", z), ("keys", K), ("values", V)] + ([("proj", P)] if P is not None else [])
    got, want, sess = run_both("KeyValueLookup", inputs, attrs, consts={"keys", "values", "proj"},
                               n_outputs=n_outputs, threads=threads, fp16_consts=fp16)
    if fp16:
        K, V = K.astype(np.float16).astype(np.float32), V.astype(np.float16).astype(np.float32)
        P = None if P is None else P.astype(np.float16).astype(np.float32)
    check_kv(got, z, K, V, P, attrs)
    check_kv(want, z, K, V, P, attrs)
    return got, sess


@st.composite
def kv_case(draw, max_keys=60):
    C = draw(st.integers(1, 5))
    M = draw(st.integers(1, max_keys))
    dk = draw(st.sampled_from([1, 2, 3, 7, 14, 17]))
    dv = draw(st.integers(1, 6))
    split = draw(st.sampled_from(["projection", "chunk", "chunk_interleaved"]))
    D = draw(st.integers(1, 20)) if split == "projection" else C * dk
    lead = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    z = rng.standard_normal(lead + [D]).astype(np.float32)
    K = rng.standard_normal((C, M, dk)).astype(np.float32)
    for src, dst in draw(st.lists(st.tuples(st.integers(0, M - 1), st.integers(0, M - 1)), max_size=3)):
        K[:, dst] = K[:, src]
    V = rng.standard_normal((C, M, dv)).astype(np.float32)
    P = None
    if split == "projection":
        P = rng.standard_normal((C, D, dk)).astype(np.float32)
        P /= np.linalg.norm(P, axis=1, keepdims=True)
    attrs = {"topk": draw(st.integers(1, M)), "metric": draw(st.sampled_from(["sqeuclidean", "euclidean", "dot"])),
             "split": split, "combine": draw(st.sampled_from(["none", "vote", "mean_codebooks"]))}
    return z, K, V, P, attrs


@pytest.mark.arm
@given(case=kv_case(), fp16=st.booleans(), n_outputs=st.integers(1, 3))
@example(case=(np.ones((1, 2), np.float32), np.ones((1, 1, 2), np.float32), np.ones((1, 1, 1), np.float32), None,
               {"split": "chunk"}), fp16=False, n_outputs=1)
def test_kv_matches_reference(case, fp16, n_outputs):
    z, K, V, P, attrs = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(edgert.ops.codebook, "KEY_TILE_BYTES", 1)  # tiles of 16 keys: ties and top-k across tiles
        run_kv(z, K, V, P, attrs, fp16=fp16, n_outputs=max(n_outputs, 2))


@settings(max_examples=12)
@given(case=kv_case(max_keys=400))
def test_kv_over_threads_matches_reference(case):
    z, K, V, P, attrs = case
    z = np.concatenate([z.reshape(-1, z.shape[-1])] * 40)
    _, sess = run_kv(z, K, V, P, attrs, threads=2)
    if z.shape[0] * K.size >= 1 << 18:
        assert sess.describe()["nodes"][0]["kernel"] == "f32_kv_lookup_mt"


@pytest.mark.arm
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("topk", [1, 3])
def test_duplicate_keys_resolve_to_the_lower_index(threads, topk):
    rng = np.random.default_rng(1)
    C, M, dk = 8, 600, 14
    K = rng.standard_normal((C, M, dk)).astype(np.float32) + 10.0  # far from the queries
    z = rng.standard_normal((64, C * dk)).astype(np.float32)
    for p in (513, 2, 77, 500):
        K[:, p] = 0.0  # every query is nearest to the copies of the origin
    got, _ = run_kv(z, K, rng.standard_normal((C, M, 3)).astype(np.float32), None,
                    {"split": "chunk", "topk": topk}, threads=threads)
    np.testing.assert_array_equal(got[1], np.broadcast_to(np.array([2, 77, 500][:topk]), got[1].shape))


def test_voting_decoder_matches_the_notes_oracle():
    rng = np.random.default_rng(2)
    C, M, dk, dv, D = 16, 64, 14, 10, 48
    P = rng.standard_normal((C, D, dk))
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    K, V = rng.standard_normal((C, M, dk)), rng.standard_normal((C, M, dv))
    z = rng.standard_normal((5, D))
    for topk in (1, 4):
        logits, ids = dkvb_ref(z, P, K, V, topk)
        f32 = [a.astype(np.float32) for a in (z, K, V, P)]
        got, _ = run_kv(*f32, {"topk": topk, "combine": "vote"})
        np.testing.assert_array_equal(got[1], ids)
        assert_close(got[0], logits.astype(np.float32))


GOOD = {"z": np.zeros((2, 6), np.float32), "keys": np.ones((2, 5, 3), np.float32),
        "values": np.ones((2, 5, 4), np.float32), "proj": np.ones((2, 6, 3), np.float32)}


@pytest.mark.parametrize("attrs,change,message", [
    ({"topk": 0}, {}, r"'topk' = 0 is outside \[1, 5\]"),
    ({"topk": 6}, {}, "outside"),
    ({"metric": "cosine"}, {}, "metric"),
    ({"combine": "sum"}, {}, "combine"),
    ({"split": "learned"}, {}, "split"),
    ({"split": "projection"}, {"proj": None}, "needs proj"),
    ({"split": "projection"}, {"proj": np.ones((2, 5, 3), np.float32)}, "needs proj"),
    ({"split": "chunk"}, {}, "takes no projection"),
    ({"split": "chunk"}, {"proj": None, "z": np.zeros((2, 7), np.float32)}, "heads\\*dk"),
    ({}, {"values": np.ones((3, 5, 4), np.float32)}, "must start with keys"),
    ({}, {"keys": np.ones((5, 3), np.float32)}, "3-d"),
    ({}, {"nonconst": True}, "must be a constant"),
])
def test_bad_kv_attributes_and_shapes_are_shape_errors_naming_the_node(attrs, change, message):
    arrays = dict(GOOD, **{k: v for k, v in change.items() if k != "nonconst"})
    inputs = [("z", arrays["z"]), ("keys", arrays["keys"]), ("values", arrays["values"])]
    if arrays["proj"] is not None:
        inputs.append(("proj", arrays["proj"]))
    consts = ("values", "proj") if change.get("nonconst") else ("keys", "values", "proj")
    with pytest.raises(ShapeError, match=message) as info:
        single_op_graph("KeyValueLookup", inputs, attrs, consts=consts, n_outputs=2)
    assert info.value.node == "the_keyvaluelookup"
