"""The channel-blocked layout: which nodes prepare runs blocked, where it reorders, and that a whole
network gives the same outputs blocked as in NCHW and as the ops' numpy references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from converters.builder import GraphBuilder
from edgert.errors import GraphError
from edgert.kernels.simd import VW
from edgert.runtime.layout import plan_layout
from edgert.runtime.prepare import infer_graph
from edgert.runtime.reference import run_reference
from edgert.runtime.session import Session
from tests.helpers import assert_close

RELU6 = {"activation": "clip", "act_a": 0.0, "act_b": 6.0}


def _w(rng, *shape):
    return (rng.standard_normal(shape) * (2.0 / np.prod(shape[1:])) ** 0.5).astype(np.float32)


def _conv(b, rng, x, cin, cout, k=1, stride=1, pad=None, group=1, act=RELU6, residual=None, name=None):
    pad = k // 2 if pad is None else pad
    w = b.add_const(b.unique("w"), _w(rng, cout, cin // group, k, k))
    bias = b.add_const(b.unique("b"), rng.standard_normal(cout).astype(np.float32) * 0.1)
    out = b.unique(name or "conv")
    ins = [x, w, bias] + ([residual] if residual else [])
    b.add_node("Conv", ins, [out], {"strides": [stride, stride], "pads": [pad] * 4, "group": group, **act})
    return out


def mobile_net(C0=3, C1=VW + 3, C2=2 * VW, H=19, seed=0, head="gap"):
    """stem -> depthwise -> 1x1 -> (expand, depthwise s2, project + residual) -> maxpool -> channel pad
    -> PRelu -> squeeze-excite Mul -> Add -> a head (global average pool + reshape, or NHWC transpose)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.add_input("image", (1, C0, H, H))
    t = _conv(b, rng, x, C0, C1, k=3, stride=2)
    t = _conv(b, rng, t, C1, C1, k=3, group=C1)
    t = _conv(b, rng, t, C1, C2, act={"activation": "none", "act_a": 0.0, "act_b": 0.0})
    e = _conv(b, rng, t, C2, 3 * C2)
    e = _conv(b, rng, e, 3 * C2, 3 * C2, k=5, group=3 * C2)
    t = _conv(b, rng, e, 3 * C2, C2, act={"activation": "relu", "act_a": 0.0, "act_b": 0.0}, residual=t)
    p = b.unique("pool")
    b.add_node("MaxPool", [t], [p], {"kernel": [2, 2], "strides": [2, 2]})
    q = b.unique("padded")
    b.add_node("Pad", [p], [q], {"pads": [0, 0, 0, 0, 0, 5, 0, 0]})
    C3 = C2 + 5
    slope = b.add_const(b.unique("slope"), rng.uniform(0.05, 0.3, (C3, 1, 1)).astype(np.float32))
    r = b.unique("prelu")
    b.add_node("PRelu", [q, slope], [r])
    s = b.unique("squeeze")
    b.add_node("GlobalAveragePool", [r], [s])
    s = _conv(b, rng, s, C3, C3, act={"activation": "sigmoid", "act_a": 0.0, "act_b": 0.0})
    m = b.unique("excite")
    b.add_node("Mul", [r, s], [m], {"activation": "none", "act_a": 0.0, "act_b": 0.0})
    a = b.unique("sum")
    b.add_node("Add", [m, r], [a], {"activation": "relu", "act_a": 0.0, "act_b": 0.0})
    up = b.unique("up")
    b.add_node("Resize", [a], [up], {"mode": "linear", "scales": [1.0, 1.0, 2.0, 2.0]})
    a = b.unique("near")
    b.add_node("Resize", [up], [a], {"mode": "nearest", "scales": [1.0, 1.0, 0.75, 0.75],
                                     "coordinate_transformation_mode": "asymmetric"})
    if head == "gap":
        g = b.unique("gap")
        b.add_node("GlobalAveragePool", [a], [g])
        b.add_node("Reshape", [g], ["logits"], {"shape": [1, C3]})
        b.add_output("logits")
    else:
        b.add_node("Transpose", [a], ["nhwc"], {"perm": [0, 2, 3, 1]})
        b.add_output("nhwc")
    b.add_output(t)  # a middle tensor read by the caller too: needs its plain copy
    return b.finish()


def _feeds(graph, seed=1):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(graph.tensors[n].shape).astype(np.float32) for n in graph.inputs}


def _layout(graph, mode):
    return plan_layout(graph, infer_graph(graph), mode, VW)


@pytest.mark.arm
def test_plan_blocks_the_network_and_reorders_only_at_its_borders():
    graph = mobile_net()
    plan = _layout(graph, "auto")
    ops = {n.name: n.op for n in graph.nodes}
    blocked_ops = sorted(ops[name] for name in plan.kinds)
    # Everything but the Reshape runs blocked: 6 convs + the gate conv, pool, pad, PRelu, 2 means, Mul, Add.
    assert blocked_ops.count("Conv") == 7 and "Reshape" not in blocked_ops
    for op in ("MaxPool", "Pad", "PRelu", "Mul", "Add", "GlobalAveragePool", "Resize"):
        assert op in blocked_ops
    reorders = [n.op for n, *_ in plan.steps if n.op in ("ToBlocked", "FromBlocked")]
    # No ToBlocked: the stem reads the plain image; FromBlocked for the residual tensor the caller
    # reads and for the head's mean (the Reshape is plain).
    assert reorders == ["FromBlocked", "FromBlocked"]
    assert plan.reorders == 2
    # Blocked tensors have the physical 5-D shape that sizes their buffers.
    stem_out = next(n for n, *_ in plan.steps if n.op == "Conv").outputs[0]
    assert stem_out.endswith("#blocked") and plan.tensors[stem_out].shape[-1] == VW
    assert plan.tensors[stem_out].shape[1] == -(-(VW + 3) // VW)


def test_nchw_mode_and_lone_nodes_stay_plain():
    graph = mobile_net()
    assert not _layout(graph, "nchw").kinds
    b = GraphBuilder()
    x = b.add_input("x", (1, 8, 9, 9))
    rng = np.random.default_rng(0)
    y = _conv(b, rng, x, 8, 8, k=3, group=8)
    b.add_node("Softmax", [y], ["out"], {"axis": 1})
    b.add_output("out")
    g = b.finish()
    plan = _layout(g, "auto")
    assert not plan.kinds and plan.reorders == 0  # one blockable node alone would only add reorders
    assert "no neighbour" in plan.why_plain[g.nodes[0].name]
    assert "no neighbour" in Session(g).describe()["nodes"][0]["reason"]  # what inspect prints
    forced = _layout(g, "blocked")
    assert list(forced.kinds) == [g.nodes[0].name] and forced.reorders == 2


def test_a_region_that_needs_too_many_reorders_stays_nchw():
    """Two blockable nodes between plain ones (a Softmax feeds both: one ToBlocked, one FromBlocked)."""
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    x = b.add_input("x", (1, 8, 9, 9))
    s = b.unique("soft")
    b.add_node("Softmax", [x], [s], {"axis": 1})
    y = _conv(b, rng, s, 8, 8, k=3, group=8)
    z = b.unique("sum")
    b.add_node("Add", [y, s], [z], {"activation": "none", "act_a": 0.0, "act_b": 0.0})
    b.add_node("Softmax", [z], ["out"], {"axis": 1})
    b.add_output("out")
    g = b.finish()
    plan = _layout(g, "auto")
    assert not plan.kinds
    assert all("would need 2 reorders" in plan.why_plain[n.name] for n in g.nodes if n.op in ("Conv", "Add"))
    assert len(_layout(g, "blocked").kinds) == 2


def test_unknown_layout_is_a_clear_error():
    graph = mobile_net()
    with pytest.raises(GraphError, match="unknown layout 'nhwc'"):
        Session(graph, options={"layout": "nhwc"})


@pytest.mark.arm
@pytest.mark.parametrize("head", ["gap", "nhwc"])
@pytest.mark.parametrize("threads", [1, 2])
def test_blocked_network_matches_nchw_and_reference(head, threads):
    graph = mobile_net(head=head)
    feeds = _feeds(graph)
    want = run_reference(graph, feeds)
    blocked = Session(graph, threads=threads, options={"layout": "auto"})
    plain = Session(graph, threads=threads, options={"layout": "nchw"})
    assert blocked.layout_summary()["blocked_nodes"] > 10 and plain.layout_summary()["blocked_nodes"] == 0
    got_b, got_p = blocked.run(feeds), plain.run(feeds)
    for name in graph.outputs:
        assert_close(got_b[name], want[name], rtol=1e-4, atol=1e-5, what=f"blocked {name}")
        assert_close(got_p[name], want[name], rtol=1e-4, atol=1e-5, what=f"nchw {name}")
    # What inspect shows: the layout per node, and the totals.
    d = blocked.describe()
    assert d["layout"]["blocked_nodes"] == len(blocked.plan.layout.kinds)
    assert {n["layout"] for n in d["nodes"]} == {"blocked", "nchw"}
    assert any(n["kernel"].startswith("f32_blocked_conv1x1") for n in d["nodes"])


@pytest.mark.arm
@settings(max_examples=8, deadline=None)
@given(C1=st.integers(1, 2 * VW + 3), C2=st.integers(1, 2 * VW + 1), H=st.integers(4, 23), seed=st.integers(0, 99))
def test_blocked_network_any_channel_count(C1, C2, H, seed):
    graph = mobile_net(C1=C1, C2=C2, H=H, seed=seed)
    feeds = _feeds(graph, seed)
    want = run_reference(graph, feeds)
    got = Session(graph, options={"layout": "blocked"}).run(feeds)
    for name in graph.outputs:
        assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, what=name)


@pytest.mark.arm
def test_stale_arena_bytes_do_not_matter():
    """Kernels write every lane they later read (pad lanes included): poison the arena with large
    finite garbage (0x4b bytes = 1.3e7) and the outputs must not change."""
    graph = mobile_net(C1=VW + 1, C2=VW - 1 if VW > 2 else 3, head="nhwc")
    feeds = _feeds(graph)
    sess = Session(graph, options={"layout": "blocked"})
    sess._arena[:] = 0x4B
    got, want = sess.run(feeds), run_reference(graph, feeds)
    for name in graph.outputs:
        assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, what=name)


@pytest.mark.arm
def test_reorder_ops_match_their_references():
    rng = np.random.default_rng(3)
    for C in (1, VW - 1 if VW > 1 else 1, VW, VW + 1, 3 * VW + 2):
        b = GraphBuilder()
        x = b.add_input("x", (2, C, 5, 7))
        b.add_node("ToBlocked", [x], ["blk"], {"block": VW})
        b.add_node("FromBlocked", ["blk"], ["back"], {"channels": C})
        b.add_output("blk")
        b.add_output("back")
        g = b.finish()
        feeds = {"x": rng.standard_normal((2, C, 5, 7)).astype(np.float32)}
        got, want = Session(g, options={"layout": "nchw"}).run(feeds), run_reference(g, feeds)
        np.testing.assert_array_equal(got["blk"], want["blk"])
        np.testing.assert_array_equal(got["back"], feeds["x"])
        assert got["blk"].shape == (2, -(-C // VW), 5, 7, VW)
        assert not got["blk"][:, -1, ..., C - (-(-C // VW) - 1) * VW:].any()  # pad lanes are zero


def test_from_blocked_validates_its_channels():
    b = GraphBuilder()
    x = b.add_input("x", (1, 2, 3, 3, VW))
    b.add_node("FromBlocked", [x], ["y"], {"channels": 3 * VW})
    b.add_output("y")
    with pytest.raises(Exception, match="do not fill 2 blocks"):
        b.finish()
