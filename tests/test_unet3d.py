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


def _block_model(f_starts_with_conv=True, reuse_input=False):
    """One reversible block on a 6-channel volume, exported the PyTorch way (Split, F, Add, G, Add,
    Concat). F starts with a Relu instead of a conv when asked (the half then needs a Slice); with
    ``reuse_input`` the block's input is also read after the block (it cannot be overwritten)."""
    from onnx import helper

    from tests.onnx_helpers import make_model
    rng = np.random.default_rng(7)
    inits = {"split": np.array([3, 3], np.int64),
             "wf": rng.standard_normal((3, 3, 3, 3, 3)).astype(np.float32) * 0.2,
             "wg": rng.standard_normal((3, 3, 1, 1, 1)).astype(np.float32),
             "bg": rng.standard_normal(3).astype(np.float32)}
    nodes = [helper.make_node("Split", ["x", "split"], ["x1", "x2"], axis=1)]
    if f_starts_with_conv:
        nodes.append(helper.make_node("Conv", ["x2", "wf"], ["f"], pads=[1] * 6))
    else:
        nodes += [helper.make_node("Relu", ["x2"], ["r"]), helper.make_node("Conv", ["r", "wf"], ["f"], pads=[1] * 6)]
    nodes += [helper.make_node("Add", ["x1", "f"], ["y1"]),
              helper.make_node("Conv", ["y1", "wg", "bg"], ["g"]),
              helper.make_node("Add", ["x2", "g"], ["y2"]),
              helper.make_node("Concat", ["y1", "y2"], ["y"], axis=1)]
    outputs = ["y"]
    if reuse_input:
        nodes.append(helper.make_node("Mul", ["x", "y"], ["z"]))
        outputs = ["z"]
    return make_model(nodes, [("x", np.float32, [1, 6, 4, 5, 6])], outputs, inits=inits)


@pytest.mark.parametrize("f_starts_with_conv", [True, False])
@pytest.mark.parametrize("reuse_input", [False, True])
def test_reversible_block_variants_match_onnxruntime(f_starts_with_conv, reuse_input):
    from tests.onnx_helpers import check_against_ort
    graph, _ = check_against_ort(_block_model(f_starts_with_conv, reuse_input))
    ops = [n.op for n in graph.nodes]
    assert ops.count("CouplingAdd") == 2 and "Split" not in ops and "Concat" not in ops
    assert ("Slice" in ops) == (not f_starts_with_conv)  # a non-conv reader of x2 gets a copy of the half
    sess = Session(graph, threads=1)
    in_place = [n for n in sess.describe()["nodes"] if n["op"] == "CouplingAdd" and n.get("in_place_bytes")]
    # x is still read after the block: the first half-update must not overwrite it
    assert len(in_place) == (1 if reuse_input else 2)


@pytest.mark.arm
def test_mbconv_couple_copies_when_its_input_lives_on():
    """The input is read again after the node: the planner cannot overwrite it, so the kernel writes a
    copy with the coupled half updated (and leaves the input intact)."""
    from converters.builder import GraphBuilder
    from edgert.runtime.reference import run_reference
    rng = np.random.default_rng(1)
    E = 8
    b = GraphBuilder()
    x = b.add_input("x", (1, 4, 3, 4, 5))
    params = [b.add_const(n, v) for n, v in (
        ("we", rng.standard_normal((E, 2, 1, 1, 1)).astype(np.float32)), ("be", np.zeros(E, np.float32)),
        ("gs", np.ones(E, np.float32)), ("gb", np.zeros(E, np.float32)),
        ("wd", rng.standard_normal((E, 1, 3, 3, 3)).astype(np.float32)), ("bd", np.zeros(E, np.float32)),
        ("wp", rng.standard_normal((2, E, 1, 1, 1)).astype(np.float32)), ("bp", np.zeros(2, np.float32)))]
    b.add_node("Relu", [x], ["r"], {}, name="relu")
    b.add_node("MBConv3DCouple", ["r", *params], ["y"], {"in_offset": 2, "out_offset": 0, "norm_groups": 2,
                                                          "act1": "relu"}, name="mb")
    b.add_node("Add", ["r", "y"], ["z"], {}, name="add")
    b.add_output("z")
    graph = b.finish()
    feeds = {"x": rng.standard_normal((1, 4, 3, 4, 5)).astype(np.float32)}
    sess = Session(graph, threads=1)
    assert not any(n.get("in_place_bytes") for n in sess.describe()["nodes"] if n["op"] == "MBConv3DCouple")
    assert_close(sess.run(feeds)["z"], run_reference(graph, feeds)["z"], what="MBConv copy path")


def test_coupling_add_custom_domain_op():
    """An exporter may write the half update itself as ai.edgert.CouplingAdd (in place when x dies)."""
    import onnx
    from onnx import helper

    from converters.convert import convert_graph
    from edgert.runtime.reference import run_reference
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Slice", ["r", "s", "e", "a"], ["h"]),
             helper.make_node("Sigmoid", ["h"], ["f"]),
             helper.make_node("CouplingAdd", ["r", "f"], ["y"], domain="ai.edgert", offset=0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 2, 3, 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 2, 3, 3])],
                              [onnx.numpy_helper.from_array(np.array(v, np.int64), n)
                               for n, v in (("s", [2]), ("e", [4]), ("a", [1]))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.edgert", 1)])
    g, _ = convert_graph(model)
    x = np.random.default_rng(0).standard_normal((1, 4, 2, 3, 3)).astype(np.float32)
    sess = Session(g, threads=1)
    got = sess.run({"x": x})["y"]
    r = np.maximum(x, 0)
    want = r.copy()
    want[:, :2] += 1 / (1 + np.exp(-r[:, 2:]))
    assert_close(got, want, what="CouplingAdd custom op")
    assert_close(got, run_reference(g, {"x": x})["y"], what="vs reference")
    assert any(n["op"] == "CouplingAdd" and n.get("in_place_bytes") for n in sess.describe()["nodes"])


def test_brats_config_matches_onnxruntime_on_a_small_volume():
    """The BraTS-size architecture (base 16, 4 levels, 2 blocks) on a 16x32x32 volume."""
    model = build_unet3d(**CONFIGS["brats"])
    x = np.random.default_rng(5).standard_normal((1, 4, 16, 32, 32)).astype(np.float32)
    from converters.convert import convert_graph
    graph, _ = convert_graph(model, input_shapes={INPUT: x.shape})
    got = Session(graph, threads=1).run({INPUT: x})[OUTPUT]
    want = ort_run(model, {INPUT: x})[OUTPUT]
    err = float(np.max(np.abs(got.astype(np.float64) - want)) / np.max(np.abs(want)))
    assert err <= 1e-4, f"relative error {err:.3g}"
