"""The reversible-MBConv 3-D U-Net end to end: edgert against onnxruntime, and the memory reducers
(in-place reversible blocks, depth-slab MBConv) change the plan but not the answer."""

import numpy as np
import pytest

from converters.passes import PASSES, fold_concat_conv, fuse_mbconv, fuse_reversible, run_passes
from edgert.runtime.session import Session
from tests.helpers import assert_close
from tests.onnx_helpers import ort_run
from tools.build_unet3d import CONFIGS, INPUT, OUTPUT, build_unet3d

SHAPE = (1, 4, 16, 16, 16)


@pytest.fixture(scope="module")
def model():
    return build_unet3d(**CONFIGS["small"])


@pytest.fixture(scope="module")
def volume():
    return np.random.default_rng(3).standard_normal(SHAPE).astype(np.float32)


def _convert(model, passes=PASSES):
    """The converter's graph with only ``passes`` applied (convert_graph applies all of them)."""
    from converters.onnx import onnx_to_graph
    graph, _ = onnx_to_graph(model, {INPUT: SHAPE}, False, None)
    run_passes(graph, passes=passes)
    return graph


def test_whole_network_matches_onnxruntime(model, volume):
    graph = _convert(model)
    ops = {n.op for n in graph.nodes}
    assert "MBConv3DCouple" in ops and "Split" not in ops and "Concat" not in ops  # the reducers fired
    got = Session(graph, threads=1).run({INPUT: volume})[OUTPUT]
    want = ort_run(model, {INPUT: volume})[OUTPUT]
    err = float(np.max(np.abs(got.astype(np.float64) - want)) / np.max(np.abs(want)))
    assert err <= 1e-4, f"relative error {err:.3g}"


def test_reducers_keep_the_answer_and_shrink_the_arena(model, volume):
    plain = tuple(p for p in PASSES if p not in (fuse_reversible, fuse_mbconv, fold_concat_conv))
    rev_only = tuple(p for p in PASSES if p not in (fuse_mbconv, fold_concat_conv))
    sessions = {name: Session(_convert(model, passes), threads=1)
                for name, passes in (("plain", plain), ("reversible", rev_only), ("all", PASSES))}
    assert not any(n.op == "CouplingAdd" for n in sessions["plain"].graph.nodes)
    assert any(n.op == "CouplingAdd" for n in sessions["reversible"].graph.nodes)
    outs = {name: s.run({INPUT: volume})[OUTPUT] for name, s in sessions.items()}
    np.testing.assert_array_equal(outs["reversible"], outs["plain"])  # the same arithmetic, in place
    assert_close(outs["all"], outs["plain"], rtol=1e-5, atol=1e-5, what="depth-slab MBConv")
    arena = {name: s.plan.arena_bytes for name, s in sessions.items()}
    assert arena["all"] < arena["plain"], arena
    assert arena["reversible"] <= arena["plain"], arena
    # inspect reports the in-place nodes and what each reducer saved at conversion
    desc = sessions["all"].describe()
    in_place = [n for n in desc["nodes"] if n.get("in_place_bytes")]
    assert sum(n["op"] == "MBConv3DCouple" for n in in_place) == 10
    reducers = desc["metadata"]["memory_reducers"]
    assert reducers["reversible_in_place"]["blocks"] == 5
    assert reducers["mbconv_depth_slabs"]["saved_bytes"] > 0
    assert reducers["concat_into_conv"]["blocks"] == 2 and reducers["concat_into_conv"]["saved_bytes"] > 0
    assert not any(n["op"] == "Concat" for n in desc["nodes"])


@pytest.mark.arm
def test_mbconv_couple_matches_reference():
    from tests.helpers import run_both
    rng = np.random.default_rng(0)
    C, E = 8, 16
    x = rng.standard_normal((2, C, 5, 6, 7)).astype(np.float32) + 3.0
    ins = [("x", x), ("we", rng.standard_normal((E, 4, 1, 1, 1)).astype(np.float32)),
           ("be", rng.standard_normal(E).astype(np.float32)), ("gs", rng.standard_normal(E).astype(np.float32)),
           ("gb", rng.standard_normal(E).astype(np.float32)), ("wd", rng.standard_normal((E, 1, 3, 3, 3)).astype(np.float32)),
           ("bd", rng.standard_normal(E).astype(np.float32)), ("wp", rng.standard_normal((4, E, 1, 1, 1)).astype(np.float32)),
           ("bp", rng.standard_normal(4).astype(np.float32))]
    consts = [n for n, _ in ins[1:]]
    for groups in (0, 4, E):
        for i0, o0 in ((4, 0), (0, 4)):
            attrs = {"in_offset": i0, "out_offset": o0, "norm_groups": groups, "act1": "relu", "act2": "clip",
                     "act2_a": 0.0, "act2_b": 6.0}
            got, want, _ = run_both("MBConv3DCouple", ins, attrs, consts=consts)
            assert_close(got[0], want[0], rtol=1e-5, atol=1e-5, what=f"MBConv groups={groups} {i0}->{o0}")
