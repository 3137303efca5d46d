"""The shared graph passes: each one on a small IR graph, checking what it rewrote (node counts and
ops before/after) and that the graph still computes the same thing (``run_reference`` on random
inputs, before vs after)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from converters.builder import GraphBuilder
from converters.passes import (
    eliminate_dead,
    fold_batchnorm,
    fold_constants,
    fuse_activation,
    fuse_add_prelu,
    fuse_conv_add,
    fuse_hardswish,
    fuse_pad,
    remove_identity,
    run_passes,
    validate,
)
from edgert.runtime.reference import run_reference

RNG = np.random.default_rng(7)


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def apply(graph, *passes, rounds=True):
    """Run ``passes`` on a copy; return (new graph, rewrite count). Checks numerical equivalence."""
    before = copy.deepcopy(graph)
    after = copy.deepcopy(graph)
    if rounds:
        counts = run_passes(after, passes=passes)
        n = sum(counts.values())
    else:
        n = sum(p(after) for p in passes)
        validate(after)
    feeds = {name: rand(*graph.tensors[name].shape) for name in graph.inputs}
    want, got = run_reference(before, feeds), run_reference(after, feeds)
    assert list(got) == list(want)
    for name in want:
        # assert_allclose treats equal infinities as equal (a pool window can cover only -inf padding).
        finite = np.abs(want[name][np.isfinite(want[name])])
        scale = max(1.0, float(finite.max())) if finite.size else 1.0
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5 * scale, err_msg=name)
    return after, n


def ops(graph):
    return [n.op for n in graph.nodes]


def conv_graph(tail, conv_op="Conv", group=1, bias=True):
    """x -> conv -> tail ops; ``tail`` is [(op, const value or None, attrs)] applied in sequence."""
    b = GraphBuilder()
    b.add_input("x", (1, 4, 6, 6))
    c_out = 6
    wshape = (c_out, 4 // group, 3, 3) if conv_op == "Conv" else (4, c_out // group, 3, 3)
    inputs = ["x", b.add_const("W", rand(*wshape))] + ([b.add_const("B", rand(c_out))] if bias else [])
    b.add_node(conv_op, inputs, ["t0"], {"pads": [1, 1, 1, 1], "group": group}, name="conv")
    for k, (op, value, attrs) in enumerate(tail):
        extra = [b.add_const(f"c{k}", value)] if value is not None else []
        b.add_node(op, [f"t{k}"] + extra, [f"t{k + 1}"], attrs or {}, name=f"tail{k}")
    b.add_output(f"t{len(tail)}")
    return b.finish()


# --- fold_constants -----------------------------------------------------------------------------
def test_fold_constants_evaluates_constant_subgraphs():
    b = GraphBuilder()
    b.add_input("x", (2, 3))
    wt = b.add_const("wt", rand(3, 2))
    b.add_node("Transpose", [wt], ["w"], {"perm": [1, 0]})
    b.add_node("Add", ["w", b.add_const("one", np.float32(1))], ["w1"])
    b.add_node("Mul", ["x", "w1"], ["y"])
    b.add_output("y")
    graph, n = apply(b.finish(), fold_constants, eliminate_dead)
    assert ops(graph) == ["Mul"] and n >= 2
    assert set(graph.consts) == {"w1"}


def test_fold_constants_keeps_fp16_storage_for_data_movement():
    b = GraphBuilder()
    b.add_input("x", (3, 2))
    wt = b.add_const("wt", rand(2, 3), dtype="f16")
    b.add_node("Transpose", [wt], ["w"], {"perm": [1, 0]})
    b.add_node("Add", ["x", "w"], ["y"])
    b.add_output("y")
    graph, _ = apply(b.finish(), fold_constants, eliminate_dead)
    assert graph.consts["w"].dtype == np.float16 and graph.tensors["w"].dtype == "f32"


# --- fold_batchnorm -------------------------------------------------------------------------------
def _bn_tail(c=6):
    return [("Mul", rand(c, 1, 1) + 2, None), ("Add", rand(1, c, 1, 1), None)]


@pytest.mark.parametrize(("conv_op", "group", "bias"), [("Conv", 1, True), ("Conv", 2, False),
                                                        ("ConvTranspose", 1, True), ("ConvTranspose", 2, True)])
def test_fold_batchnorm_into_conv(conv_op, group, bias):
    graph, n = apply(conv_graph(_bn_tail(), conv_op, group, bias), fold_batchnorm, eliminate_dead)
    assert ops(graph) == [conv_op] and n >= 2
    assert graph.nodes[0].outputs == ["t2"]


def test_fold_batchnorm_sub_div_and_scalar():
    tail = [("Div", np.float32(4.0), None), ("Sub", rand(6, 1, 1), None)]
    graph, _ = apply(conv_graph(tail), fold_batchnorm)
    assert ops(graph) == ["Conv"]


def test_fold_batchnorm_into_fully_connected():
    b = GraphBuilder()
    b.add_input("x", (3, 5))
    b.add_node("FullyConnected", ["x", b.add_const("W", rand(4, 5))], ["f"], name="fc")
    b.add_node("Mul", ["f", b.add_const("s", rand(4))], ["g"])
    b.add_node("Add", [b.add_const("t", rand(1, 4)), "g"], ["y"], {"activation": "relu"})
    b.add_output("y")
    graph, _ = apply(b.finish(), fold_batchnorm)
    assert ops(graph) == ["FullyConnected"] and graph.nodes[0].attrs["activation"] == "relu"


@pytest.mark.parametrize("case", ["varies_along_w", "broadcasts_up", "shared_output", "has_activation",
                                  "const_on_left_of_sub"])
def test_fold_batchnorm_leaves_non_per_channel_ops(case):
    if case == "varies_along_w":
        graph = conv_graph([("Mul", rand(1, 6), None)])
    elif case == "broadcasts_up":
        graph = conv_graph([("Add", rand(2, 6, 1, 1), None)])
    elif case == "has_activation":
        graph = conv_graph([("Mul", rand(6, 1, 1), None)])
        graph.nodes[0].attrs["activation"] = "relu"
    elif case == "const_on_left_of_sub":
        graph = conv_graph([])
        graph.consts["c"] = rand(6, 1, 1)
        from edgert.ir.graph import Node, TensorInfo
        graph.tensors["c"] = TensorInfo("c", (6, 1, 1), "f32")
        graph.tensors["y"] = TensorInfo("y", (1, 6, 6, 6), "f32")
        graph.nodes.append(Node("sub", "Sub", ["c", "t0"], ["y"]))
        graph.outputs = ["y"]
    else:
        graph = conv_graph([("Mul", rand(6, 1, 1), None)])
        graph.outputs.append("t0")
    after, n = apply(graph, fold_batchnorm)
    assert n == 0 and ops(after) == ops(graph)


# --- fuse_activation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("op", "attrs", "expect"), [
    ("Relu", {}, ("relu", 0.0, 0.0)), ("Clip", {"min": 0.0, "max": 6.0}, ("clip", 0.0, 6.0)),
    ("HardSwish", {}, ("hardswish", 0.0, 0.0)), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, ("hardsigmoid", .3, .4)),
    ("LeakyRelu", {"alpha": 0.1}, ("leakyrelu", 0.1, 0.0)), ("Sigmoid", {}, ("sigmoid", 0.0, 0.0)),
    ("Tanh", {}, ("tanh", 0.0, 0.0))])
def test_fuse_activation_into_conv(op, attrs, expect):
    graph, n = apply(conv_graph([(op, None, attrs)]), fuse_activation)
    assert ops(graph) == ["Conv"] and n == 1
    a = graph.nodes[0].attrs
    assert (a["activation"], a["act_a"], a["act_b"]) == pytest.approx(expect)


def test_fuse_activation_into_add_and_clip_defaults():
    b = GraphBuilder()
    b.add_input("x", (2, 3))
    b.add_node("Add", ["x", b.add_const("c", rand(3))], ["s"])
    b.add_node("Clip", ["s"], ["y"], {"min": -0.5})
    b.add_output("y")
    graph, _ = apply(b.finish(), fuse_activation)
    a = graph.nodes[0].attrs
    assert ops(graph) == ["Add"] and a["activation"] == "clip" and a["act_b"] == math.inf


@pytest.mark.parametrize("case", ["two_readers", "graph_output", "already_fused", "not_a_producer"])
def test_fuse_activation_leaves_shared_outputs(case):
    if case == "two_readers":
        graph = conv_graph([("Relu", None, {})])
        graph.nodes.append(graph.nodes[-1].__class__("other", "Sigmoid", ["t0"], ["z"]))
        from edgert.ir.graph import TensorInfo
        graph.tensors["z"] = TensorInfo("z", (1, 6, 6, 6), "f32")
        graph.outputs.append("z")
    elif case == "graph_output":
        graph = conv_graph([("Relu", None, {})])
        graph.outputs.append("t0")
    elif case == "already_fused":
        graph = conv_graph([("Relu", None, {})])
        graph.nodes[0].attrs.update(activation="sigmoid")
    else:
        graph = conv_graph([("MaxPool", None, {"kernel": [2, 2]}), ("Relu", None, {})])
    after, n = apply(graph, fuse_activation)
    assert n == 0 and ops(after) == ops(graph)


# --- fuse_add_prelu ----------------------------------------------------------------------------------
def _add_prelu_graph(case="plain"):
    """x -> conv -> Add(x', conv) -> PRelu (BlazePalm's residual block end)."""
    b = GraphBuilder()
    b.add_input("x", (1, 4, 6, 6))
    b.add_node("Conv", ["x", b.add_const("W", rand(4, 4, 3, 3))], ["c"], {"pads": [1, 1, 1, 1]}, name="conv")
    other = "x"
    if case == "broadcast":
        other = b.add_const("bias", rand(4, 1, 1))
    b.add_node("Add", [other, "c"], ["s"], {"activation": "relu"} if case == "activation" else {}, name="add")
    b.add_node("PRelu", ["s", b.add_const("slope", rand(4, 1, 1))], ["y"], name="prelu")
    b.add_output("y")
    if case == "two_readers":
        b.add_output("s")
    return b.finish()


def test_fuse_add_prelu():
    graph, n = apply(_add_prelu_graph(), fuse_add_prelu)
    assert ops(graph) == ["Conv", "PRelu"] and n == 1
    assert graph.nodes[1].inputs == ["x", "slope", "c"] and "s" not in graph.tensors


@pytest.mark.parametrize("case", ["two_readers", "activation", "broadcast"])
def test_fuse_add_prelu_leaves_other_adds(case):
    graph = _add_prelu_graph(case)
    after, n = apply(graph, fuse_add_prelu)
    assert n == 0 and ops(after) == ops(graph)


# --- fuse_conv_add -----------------------------------------------------------------------------------
def _conv_add_graph(case="plain"):
    """x -> conv1x1 -> Add(x, conv) [-> Relu]: an inverted-residual block's projection."""
    b = GraphBuilder()
    b.add_input("x", (1, 4, 5, 5))
    k = 3 if case == "3x3" else 1
    attrs = {"pads": [1, 1, 1, 1]} if k == 3 else {}
    b.add_node("Conv", ["x", b.add_const("W", rand(4, 4, k, k)), b.add_const("B", rand(4))], ["c"], attrs, name="conv")
    b.add_node("Add", ["c", "x"], ["s"], name="add")
    b.add_node("Relu", ["s"], ["y"], name="relu")
    if case == "bn_after":
        b.add_node("Mul", ["y", b.add_const("scale", rand(4, 1, 1))], ["z"], name="scale")
        b.add_output("z")
    else:
        b.add_output("y")
    if case == "two_readers":
        b.add_output("c")
    return b.finish()


def test_fuse_conv_add_takes_the_residual_and_activation():
    graph, n = apply(_conv_add_graph(), fuse_activation, fuse_conv_add)
    assert ops(graph) == ["Conv"] and n == 2
    conv = graph.nodes[0]
    assert conv.inputs == ["x", "W", "B", "x"] and conv.attrs["activation"] == "relu"


def test_fuse_conv_add_moves_the_conv_after_the_other_operand():
    """BlazeFace: conv, then the shortcut's channel padding, then the Add."""
    b = GraphBuilder()
    b.add_input("x", (1, 4, 5, 5))
    b.add_node("Conv", ["x", b.add_const("W", rand(6, 4, 1, 1))], ["c"], name="conv")
    b.add_node("Pad", ["x"], ["p"], {"pads": [0, 0, 0, 0, 0, 2, 0, 0]}, name="pad")
    b.add_node("Add", ["p", "c"], ["y"], {"activation": "relu"}, name="add")
    b.add_output("y")
    graph, n = apply(b.finish(), fuse_conv_add)
    assert ops(graph) == ["Pad", "Conv"] and n == 1
    assert graph.nodes[1].inputs == ["x", "W", "", "p"] and graph.nodes[1].attrs["activation"] == "relu"


def test_fuse_conv_add_then_no_batchnorm_fold_into_it():
    graph, _ = apply(_conv_add_graph("bn_after"), fold_batchnorm, fuse_conv_add)
    assert ops(graph) == ["Conv", "Relu", "Mul"]  # the Mul cannot be folded into W, B and R
    graph, _ = apply(_conv_add_graph("bn_after"), fuse_conv_add, fold_batchnorm)
    assert ops(graph) == ["Conv", "Relu", "Mul"]


@pytest.mark.parametrize("case", ["two_readers", "3x3"])
def test_fuse_conv_add_leaves_other_convs(case):
    graph = _conv_add_graph(case)
    after, n = apply(graph, fuse_conv_add)
    assert n == 0 and ops(after) == ops(graph)


# --- fuse_hardswish ---------------------------------------------------------------------------------
def _hardswish_graph(fused_clip, last="Div", swap=False, three=3.0, extra_reader=False):
    """conv -> x * clip(x + 3, 0, 6) / 6 written out as arithmetic."""
    b = GraphBuilder()
    b.add_input("x", (1, 4, 6, 6))
    b.add_node("Conv", ["x", b.add_const("W", rand(6, 4, 3, 3))], ["c"], {"pads": [1, 1, 1, 1]}, name="conv")
    clip = {"activation": "clip", "act_a": 0.0, "act_b": 6.0}
    if fused_clip:
        b.add_node("Add", ["c", b.add_const("three", np.float32(three))], ["r"], clip)
    else:
        b.add_node("Add", ["c", b.add_const("three", np.float32(three))], ["a"])
        b.add_node("Clip", ["a"], ["r"], {"min": 0.0, "max": 6.0})
    b.add_node("Mul", ["r", "c"] if swap else ["c", "r"], ["m"])
    if last == "Div":
        b.add_node("Div", ["m", b.add_const("six", np.float32(6.0))], ["y"], name="hs")
    else:
        b.add_node("Mul", [b.add_const("sixth", np.float32(1 / 6)), "m"], ["y"], name="hs")
    b.add_output("y")
    if extra_reader:
        b.add_node("Sigmoid", ["r"], ["z"])
        b.add_output("z")
    return b.finish()


@pytest.mark.parametrize(("fused_clip", "last", "swap"), [(True, "Div", False), (False, "Div", True),
                                                          (True, "Mul", True), (False, "Mul", False)])
def test_fuse_hardswish_then_into_conv(fused_clip, last, swap):
    graph, _ = apply(_hardswish_graph(fused_clip, last, swap), fuse_hardswish, fuse_activation, eliminate_dead)
    assert ops(graph) == ["Conv"] and graph.nodes[0].attrs["activation"] == "hardswish"
    assert graph.nodes[0].outputs == ["y"]


@pytest.mark.parametrize("case", ["not_three", "shared_intermediate"])
def test_fuse_hardswish_needs_the_exact_pattern(case):
    graph = _hardswish_graph(True, three=2.5) if case == "not_three" else _hardswish_graph(True, extra_reader=True)
    after, n = apply(graph, fuse_hardswish)
    assert n == 0 and ops(after) == ops(graph)


# --- fuse_pad -------------------------------------------------------------------------------------------
def _pad_graph(reader, value, pads, reader_attrs):
    b = GraphBuilder()
    b.add_input("x", (1, 3, 7, 7))
    b.add_node("Pad", ["x"], ["p"], {"pads": pads, "value": value})
    inputs = ["p"] + ([b.add_const("W", rand(4, 3, 3, 3))] if reader == "Conv" else [])
    b.add_node(reader, inputs, ["y"], reader_attrs, name="reader")
    b.add_output("y")
    return b.finish()


def test_fuse_pad_into_conv():
    graph, n = apply(_pad_graph("Conv", 0.0, [0, 0, 1, 2, 0, 0, 2, 0], {"pads": [1, 1, 1, 1]}), fuse_pad)
    assert ops(graph) == ["Conv"] and graph.nodes[0].attrs["pads"] == [2, 3, 3, 1] and n == 1


def test_fuse_pad_shared_by_two_convs():
    b = GraphBuilder()
    b.add_input("x", (1, 3, 7, 7))
    b.add_node("Pad", ["x"], ["p"], {"pads": [0, 0, 0, 0, 0, 0, 1, 1], "value": 0.0})
    b.add_node("Conv", ["p", b.add_const("W1", rand(3, 1, 3, 3))], ["y1"], {"group": 3, "strides": [2, 2]})
    b.add_node("Conv", ["p", b.add_const("W2", rand(4, 3, 1, 1))], ["y2"], {"pads": [1, 0, 0, 0]})
    b.add_output("y1")
    b.add_output("y2")
    graph, n = apply(b.finish(), fuse_pad)
    assert ops(graph) == ["Conv", "Conv"] and n == 1
    assert [c.attrs["pads"] for c in graph.nodes] == [[0, 0, 1, 1], [1, 0, 1, 1]]
    # One reader that cannot absorb it (a MaxPool after a zero pad) keeps the Pad for all of them.
    b = GraphBuilder()
    b.add_input("x", (1, 3, 7, 7))
    b.add_node("Pad", ["x"], ["p"], {"pads": [0, 0, 1, 1, 0, 0, 1, 1], "value": 0.0})
    b.add_node("Conv", ["p", b.add_const("W", rand(4, 3, 1, 1))], ["y1"])
    b.add_node("MaxPool", ["p"], ["y2"], {"kernel": [3, 3]})
    b.add_output("y1")
    b.add_output("y2")
    graph, n = apply(b.finish(), fuse_pad)
    assert n == 0 and ops(graph) == ["Pad", "Conv", "MaxPool"]


def test_fuse_minus_inf_pad_into_maxpool():
    graph, _ = apply(_pad_graph("MaxPool", -math.inf, [0, 0, 1, 1, 0, 0, 1, 1], {"kernel": [3, 3], "strides": [2, 2]}),
                     fuse_pad)
    assert ops(graph) == ["MaxPool"] and graph.nodes[0].attrs["pads"] == [1, 1, 1, 1]


@pytest.mark.parametrize(("reader", "value", "pads", "attrs"), [
    ("Conv", 1.0, [0, 0, 1, 1, 0, 0, 1, 1], {}),  # non-zero value
    ("Conv", 0.0, [0, 1, 0, 0, 0, 1, 0, 0], {}),  # pads channels
    ("MaxPool", 0.0, [0, 0, 1, 1, 0, 0, 1, 1], {"kernel": [3, 3]}),  # zero is not -inf for a max
    ("MaxPool", -math.inf, [0, 0, 3, 3, 0, 0, 3, 3], {"kernel": [3, 3]}),  # pads would exceed the window
    ("MaxPool", -math.inf, [0, 0, 1, 1, 0, 0, 1, 1], {"kernel": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
])
def test_fuse_pad_leaves_inequivalent_pads(reader, value, pads, attrs):
    if reader == "Conv" and pads[1]:
        attrs = {}
    graph = _pad_graph(reader, value, pads, attrs) if not (reader == "Conv" and pads[1]) else None
    if graph is None:  # a channel pad needs a weight for 5 input channels
        b = GraphBuilder()
        b.add_input("x", (1, 3, 7, 7))
        b.add_node("Pad", ["x"], ["p"], {"pads": pads, "value": value})
        b.add_node("Conv", ["p", b.add_const("W", rand(4, 5, 3, 3))], ["y"])
        b.add_output("y")
        graph = b.finish()
    after, n = apply(graph, fuse_pad)
    assert n == 0 and ops(after) == ops(graph)


# --- remove_identity ---------------------------------------------------------------------------------
def test_remove_identity_family():
    b = GraphBuilder()
    b.add_input("x", (2, 3, 4))
    b.add_node("Identity", ["x"], ["a"])
    b.add_node("Relu", ["a"], ["r"])
    b.add_node("Reshape", ["r"], ["b"], {"shape": [2, 3, 4]})
    b.add_node("Transpose", ["b"], ["c"], {"perm": [0, 1, 2]})
    b.add_node("Reshape", ["c"], ["d"], {"shape": [6, 4]})
    b.add_node("Reshape", ["d"], ["e"], {"shape": [24]})
    b.add_node("Transpose", ["r"], ["t1"], {"perm": [2, 0, 1]})
    b.add_node("Transpose", ["t1"], ["t2"], {"perm": [1, 2, 0]})  # cancels t1
    b.add_node("Transpose", ["r"], ["u1"], {"perm": [1, 0, 2]})
    b.add_node("Transpose", ["u1"], ["u2"], {"perm": [0, 2, 1]})  # composes to one
    b.add_node("Identity", ["t2"], ["out2"])
    for o in ("e", "out2", "u2"):
        b.add_output(o)
    graph, _ = apply(b.finish(), remove_identity, eliminate_dead)
    assert sorted(ops(graph)) == ["Relu", "Reshape", "Transpose"]
    # the graph output 'out2' is an alias of the Relu's output: the Relu now produces it under that name
    relu = next(n for n in graph.nodes if n.op == "Relu")
    assert relu.outputs == ["out2"]


def test_identity_of_a_graph_input_as_output_stays():
    b = GraphBuilder()
    b.add_input("x", (2, 3))
    b.add_node("Identity", ["x"], ["y"])
    b.add_output("y")
    graph, n = apply(b.finish(), remove_identity)
    assert ops(graph) == ["Identity"] and n == 0


# --- eliminate_dead and the driver -------------------------------------------------------------------
def test_eliminate_dead_drops_unused_branches_and_constants():
    b = GraphBuilder()
    b.add_input("x", (2, 3))
    b.add_input("unused_input", (1,))
    b.add_node("Relu", ["x"], ["y"])
    b.add_node("Mul", ["x", b.add_const("c", rand(3))], ["dead1"])
    b.add_node("Sigmoid", ["dead1"], ["dead2"])
    b.add_const("orphan", rand(5))
    b.add_output("y")
    graph, n = apply(b.finish(), eliminate_dead)
    assert ops(graph) == ["Relu"] and not graph.consts and n == 4
    assert graph.inputs == ["x", "unused_input"] and "dead2" not in graph.tensors


def test_run_passes_reaches_a_fixpoint():
    """Pad -> Conv -> Mul -> Add -> Identity -> Relu becomes one Conv with pads and a relu."""
    b = GraphBuilder()
    b.add_input("x", (1, 4, 6, 6))
    b.add_node("Pad", ["x"], ["p"], {"pads": [0, 0, 1, 1, 0, 0, 1, 1]})
    b.add_node("Conv", ["p", b.add_const("W", rand(6, 4, 3, 3))], ["c"], name="conv")
    b.add_node("Mul", ["c", b.add_const("s", rand(6, 1, 1))], ["m"])
    b.add_node("Add", ["m", b.add_const("t", rand(6, 1, 1))], ["a"])
    b.add_node("Identity", ["a"], ["i"])
    b.add_node("Relu", ["i"], ["y"])
    b.add_output("y")
    graph, _ = apply(b.finish(), fold_constants, remove_identity, fold_batchnorm, fuse_pad, fuse_activation,
                     eliminate_dead)
    assert ops(graph) == ["Conv"]
    conv = graph.nodes[0]
    assert conv.attrs["pads"] == [1, 1, 1, 1] and conv.attrs["activation"] == "relu" and conv.outputs == ["y"]
    assert set(graph.consts) == set(conv.inputs[1:])
