"""Codebook interventions, exactly as the notes define them (codebook-and-kv-bottleneck.md §1.5, §1.8).

The expected outputs come from the notes' oracles: ``codebook_apply_ids_ref`` for an edited id
tensor (-1 = a blocked slot: zero vector, still counted in /k) and a -inf score mask for disabled
codes. Data is drawn with a clear margin between scores so ids compare exactly.
"""

import numpy as np
import pytest

import edgert.ops.codebook  # noqa: F401
from edgert import interventions as iv
from edgert.errors import InputError
from edgert.runtime.session import Session
from tests.helpers import assert_close, single_op_graph

G, K, DG, k = 2, 40, 6, 4
LEAD = (2, 3)


def codebook_features_ref(x, C, gamma, beta, k, eps=1e-5, mask=None, rows=None):
    """The notes' oracle (inner product) with an optional disable mask [G, K] for some token rows."""
    v = x.reshape(-1, G, DG).astype(np.float64)
    h = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + eps) * gamma + beta
    s = np.einsum("ngd,gkd->ngk", h, C) / np.linalg.norm(C, axis=-1)[None]
    if mask is not None:
        sel = np.zeros(s.shape[0], bool)
        sel[rows if rows is not None else slice(None)] = True
        s[sel] = np.where(mask[None].astype(bool), -np.inf, s[sel])
    return np.argsort(-s, axis=-1, kind="stable")[..., :k]


def codebook_apply_ids_ref(ids, C):
    g = np.arange(G).reshape((1,) * (ids.ndim - 2) + (G, 1))
    vec = np.where((ids >= 0)[..., None], C[g, np.maximum(ids, 0)], 0.0)
    return vec.mean(axis=-2).reshape(*ids.shape[:-2], -1)


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    for _ in range(100):  # a draw whose ranking has a margin everywhere (ids compare exactly)
        C = rng.standard_normal((G, K, DG)).astype(np.float32)
        x = rng.standard_normal(LEAD + (G * DG,)).astype(np.float32)
        gamma, beta = rng.uniform(0.5, 2, (G, DG)).astype(np.float32), rng.standard_normal((G, DG)).astype(np.float32)
        v = x.reshape(-1, G, DG).astype(np.float64)
        h = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + 1e-5) * gamma + beta
        s = np.sort(np.einsum("ngd,gkd->ngk", h, C) / np.linalg.norm(C, axis=-1)[None], -1)
        if np.diff(s, axis=-1).min() > 1e-4:
            break
    graph = single_op_graph("CodebookSnap", [("x", x), ("cb", C), ("gamma", gamma), ("beta", beta)], {"k": k},
                            consts={"cb", "gamma", "beta"}, n_outputs=2)
    return Session(graph, threads=1), x, C.astype(np.float64), gamma, beta


def run(sess, x):
    out = sess.run({"x": x})
    return out["out0"], out["out1"]


@pytest.fixture
def sess(model):
    s, x, C, gamma, beta = model
    iv.clear_interventions(s)
    yield s, x, C, codebook_features_ref(x, C, gamma, beta, k).reshape(LEAD + (G, k)), (gamma, beta)
    iv.clear_interventions(s)


def test_no_intervention_is_the_plain_layer(sess):
    s, x, C, ids, _ = sess
    y, got = run(s, x)
    np.testing.assert_array_equal(got, ids)
    assert_close(y, codebook_apply_ids_ref(ids, C).astype(np.float32))
    np.testing.assert_array_equal(iv.codes(s, 0), ids)
    assert iv.interventions(s) == {}


def test_force_overwrites_a_slot_and_the_output_is_again_the_mean(sess):
    s, x, C, ids, _ = sess
    iv.set_codebook_intervention(s, "the_codebooksnap", force=[(1, -1, 17), (0, 0, 3)])
    y, got = run(s, x)
    want = ids.copy()
    want[..., 1, -1] = 17
    want[..., 0, 0] = 3
    np.testing.assert_array_equal(got, want)
    assert_close(y, codebook_apply_ids_ref(want, C).astype(np.float32))
    assert iv.interventions(s)["the_codebooksnap"]["forced_slots"] == 2 * np.prod(LEAD)


def test_block_slot_zero_gives_the_sum_of_the_rest_over_k(sess):
    s, x, C, ids, _ = sess
    iv.set_codebook_intervention(s, 0, block=[0])
    y, got = run(s, x)
    want = ids.copy()
    want[..., 0] = -1
    np.testing.assert_array_equal(got, want)
    rest = C[np.arange(G)[None, None, :, None], ids[..., 1:]].sum(-2) / k  # sum(rest) / k, not a mean of k-1
    assert_close(y, rest.reshape(y.shape).astype(np.float32))


def test_blocking_every_slot_gives_zero(sess):
    s, x, _, _, _ = sess
    iv.set_codebook_intervention(s, 0, block=[(g, slot) for g in range(G) for slot in range(k)])
    y, got = run(s, x)
    assert (got == -1).all() and (y == 0).all()


def test_disable_with_keep_k_removes_codes_from_the_ranking(sess):
    s, x, C, ids, (gamma, beta) = sess
    disabled = sorted(set(ids[..., 0, :2].reshape(-1).tolist()))  # codes that were chosen in group 0
    iv.set_codebook_intervention(s, 0, disable=[(0, c) for c in disabled] + [17])
    mask = np.zeros((G, K), np.uint8)
    mask[0, disabled] = 1
    mask[:, 17] = 1
    want = codebook_features_ref(x, C, gamma, beta, k, mask=mask).reshape(ids.shape)
    y, got = run(s, x)
    np.testing.assert_array_equal(got, want)
    assert not np.isin(got[..., 0, :], disabled).any()
    assert (got >= 0).all()  # still k real codes
    assert_close(y, codebook_apply_ids_ref(want, C).astype(np.float32))


def test_disable_without_keep_k_blocks_the_chosen_slots(sess):
    s, x, C, ids, _ = sess
    disabled = [int(ids[0, 0, 1, 2]), int(ids[1, 2, 0, 0])]
    iv.set_codebook_intervention(s, 0, disable=disabled, keep_k=False)
    want = np.where(np.isin(ids, disabled), -1, ids)
    y, got = run(s, x)
    np.testing.assert_array_equal(got, want)
    assert_close(y, codebook_apply_ids_ref(want, C).astype(np.float32))


def test_positions_restrict_force_block_and_disable_to_some_tokens(sess):
    s, x, C, ids, (gamma, beta) = sess
    rows = [1, 4]
    code = int(ids.reshape(-1, G, k)[1, 1, 0])
    iv.set_codebook_intervention(s, 0, force=[(None, 1, 5)], block=[(0, -1)], disable=[(1, code)], positions=rows)
    mask = np.zeros((G, K), np.uint8)
    mask[1, code] = 1
    want = codebook_features_ref(x, C, gamma, beta, k, mask=mask, rows=rows)
    want[rows, :, 1] = 5
    want[rows, 0, -1] = -1
    y, got = run(s, x)
    np.testing.assert_array_equal(got.reshape(-1, G, k), want)
    untouched = [r for r in range(np.prod(LEAD)) if r not in rows]
    np.testing.assert_array_equal(got.reshape(-1, G, k)[untouched], ids.reshape(-1, G, k)[untouched])
    assert_close(y, codebook_apply_ids_ref(want, C).reshape(y.shape).astype(np.float32))


def test_disable_then_force_order_and_clear(sess):
    s, x, _, ids, _ = sess
    first = int(ids[0, 0, 0, 0])
    iv.set_codebook_intervention(s, 0, disable=[(0, first)], keep_k=False, force=[(0, 0, first)])
    _, got = run(s, x)
    assert (got[0, 0, 0, 0] == first)  # the force (the hook) comes after the disable settings
    iv.clear_interventions(s)
    _, got = run(s, x)
    np.testing.assert_array_equal(got, ids)


def test_bypass_is_the_identity_and_emits_no_codes(sess):
    s, x, _, _, _ = sess
    iv.set_codebook_intervention(s, 0, bypass=True)
    y, got = run(s, x)
    np.testing.assert_array_equal(y, x)
    assert (got == -1).all() and (iv.codes(s, 0) == -1).all()


def test_codes_are_emitted_without_an_ids_output_and_run_with_codes():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    C = rng.standard_normal((1, 12, 8)).astype(np.float32)
    keys, vals = rng.standard_normal((2, 9, 4)).astype(np.float32), rng.standard_normal((2, 9, 3)).astype(np.float32)
    from converters.builder import GraphBuilder
    b = GraphBuilder()
    b.add_input("x", x.shape)
    b.add_const("cb", C)
    b.add_const("keys", keys)
    b.add_const("vals", vals)
    b.add_node("CodebookSnap", ["x", "cb"], ["y"], {"k": 2}, name="snap")
    b.add_node("KeyValueLookup", ["y", "keys", "vals"], ["v"], {"split": "chunk", "combine": "vote"}, name="kv")
    b.add_output("v")
    s = Session(b.finish(), threads=1)
    assert iv.codebook_layers(s) == ["snap"] and iv.kv_layers(s) == ["kv"]
    _, codes = iv.run_with_codes(s, {"x": x})
    assert codes["snap"].shape == (3, 1, 2) and codes["kv"].shape == (3, 2, 1)
    assert (codes["snap"] >= 0).all() and (codes["kv"] >= 0).all()
    np.testing.assert_array_equal(iv.codes(s, "kv"), codes["kv"])


@pytest.mark.parametrize("kwargs,message", [
    ({"force": [(0, 0, K)]}, r"code 40 must be an integer in \[0, 40\)"),
    ({"force": [(2, 0, 1)]}, "group 2"),
    ({"block": [k]}, "slot 4"),
    ({"block": [-k - 1]}, "slot -5"),
    ({"disable": [-1]}, "code -1"),
    ({"positions": [6]}, "position 6"),
    ({"positions": []}, "positions is empty"),
])
def test_bad_interventions_are_input_errors(sess, kwargs, message):
    s = sess[0]
    with pytest.raises(InputError, match=message):
        iv.set_codebook_intervention(s, 0, **kwargs)
    with pytest.raises(InputError, match="no CodebookSnap layer named"):
        iv.set_codebook_intervention(s, "nope")
    with pytest.raises(InputError, match="out of range"):
        iv.set_codebook_intervention(s, 3)


def test_the_threaded_kernel_applies_the_same_interventions():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 16)).astype(np.float32)
    C = rng.standard_normal((2, 700, 8)).astype(np.float32)
    graph = single_op_graph("CodebookSnap", [("x", x), ("cb", C)], {"k": 3}, consts={"cb"}, n_outputs=2)
    serial, threaded = Session(graph, threads=1), Session(graph, threads=2)
    assert threaded.describe()["nodes"][0]["kernel"] == "f32_codebook_snap_mt"
    plain = serial.run({"x": x})["out1"]
    for keep_k in (True, False):
        for s in (serial, threaded):
            iv.set_codebook_intervention(s, 0, force=[(1, 0, 650)], block=[(0, 2)], keep_k=keep_k,
                                         disable=[(0, int(c)) for c in np.unique(plain[:, 0, 0])[:5]],
                                         positions=range(0, 64, 3))
        a, b = serial.run({"x": x}), threaded.run({"x": x})
        np.testing.assert_array_equal(a["out1"], b["out1"])
        np.testing.assert_array_equal(a["out0"], b["out0"])
        assert (a["out1"][::3, 1, 0] == 650).all() and (a["out1"][::3, 0, 2] == -1).all()
