"""Small graph-editing helpers shared by the passes: use lists, removing and bypassing nodes."""

from __future__ import annotations

import numpy as np


def uses(graph) -> dict:
    """Tensor name -> number of node inputs reading it (graph outputs count as a use too)."""
    count: dict = {}
    for node in graph.nodes:
        for name in node.inputs:
            if name:
                count[name] = count.get(name, 0) + 1
    for name in graph.outputs:
        count[name] = count.get(name, 0) + 1
    return count


def replace_input(graph, old, new) -> None:
    for node in graph.nodes:
        node.inputs = [new if n == old else n for n in node.inputs]


def is_private(graph, name, use_count) -> bool:
    """Read by exactly one node and not a graph output: a producer may take it over."""
    return use_count.get(name, 0) == 1 and name not in graph.outputs


def take_over_output(graph, producer, k, node) -> None:
    """``producer`` now computes what ``node`` computed: its output ``k`` gets ``node``'s output name
    and ``node`` leaves the graph (the old output must have had ``node`` as its only reader)."""
    old, new = producer.outputs[k], node.outputs[0]
    graph.nodes.remove(node)
    producer.outputs[k] = new
    graph.tensors.pop(old, None)


def bypass(graph, node) -> bool:
    """Remove a node whose output equals its input 0 (same shape, same values).

    Readers of the output read the input instead. When the output is a graph output, the producer
    of the input is renamed instead (outputs keep their names); that is impossible when the input is
    a graph input, a constant or another graph output, and then nothing changes (returns False).
    """
    x, y = node.inputs[0], node.outputs[0]
    if y not in graph.outputs:
        graph.nodes.remove(node)
        replace_input(graph, y, x)
        graph.tensors.pop(y, None)
        return True
    if x in graph.inputs or x in graph.consts or x in graph.outputs:
        return False
    producer = next(n for n in graph.nodes if x in n.outputs)
    graph.nodes.remove(node)
    producer.outputs[producer.outputs.index(x)] = y
    replace_input(graph, x, y)
    graph.tensors.pop(x, None)
    return True


def store_like(graph, reference_names, value) -> np.ndarray:
    """A new float constant stored in fp16 when the constants it derives from were (lossless for data
    movement; for arithmetic it keeps the user's choice of fp16 weights)."""
    value = np.asarray(value)
    if value.dtype == np.float64:
        value = value.astype(np.float32)
    if value.dtype == np.float32 and any(n and n in graph.consts and graph.consts[n].dtype == np.float16
                                         for n in reference_names) and bool(np.all(np.abs(value) <= 65504.0)):
        value = value.astype(np.float16)
    return value if value.flags.c_contiguous else np.ascontiguousarray(value)


def new_const(graph, base, value) -> str:
    """Add a constant under a fresh name derived from ``base``."""
    from edgert.dtypes import from_numpy
    from edgert.ir.graph import TensorInfo
    name, k = base, 1
    while name in graph.tensors:
        name, k = f"{base}_{k}", k + 1
    graph.consts[name] = value
    logical = "f32" if value.dtype == np.float16 else from_numpy(value.dtype)
    graph.tensors[name] = TensorInfo(name, tuple(value.shape), logical)
    return name


ACT_KEYS = ("activation", "act_a", "act_b")


def residual_add(graph, node):
    """(Add, other operand) when ``node``'s output feeds an Add of the same shape as the other operand
    and the result (a residual connection a producer can absorb), else None."""
    y = node.outputs[0]
    add = next((n for n in graph.nodes if n.op == "Add" and y in n.inputs), None)
    if add is None or add.inputs[0] == add.inputs[1]:
        return None
    other = add.inputs[1] if add.inputs[0] == y else add.inputs[0]
    shape = tuple(graph.tensors[y].shape)
    if tuple(graph.tensors[other].shape) != shape or tuple(graph.tensors[add.outputs[0]].shape) != shape:
        return None
    return add, other


def computed_after(graph, name, node) -> bool:
    """Is tensor ``name`` produced by a node that runs after ``node``?"""
    producers = {o: k for k, n in enumerate(graph.nodes) for o in n.outputs}
    return producers.get(name, -1) > graph.nodes.index(node)


def absorb_add(graph, node, add, r_index, other) -> None:
    """``node`` takes the Add's other operand as its input ``r_index`` and the Add's activation, and
    computes the Add's output; the Add leaves the graph."""
    inputs = list(node.inputs) + [""] * (r_index - len(node.inputs))
    node.inputs = inputs[:r_index] + [other]
    node.attrs.update({k: add.attrs[k] for k in ACT_KEYS if k in add.attrs})
    take_over_output(graph, node, 0, add)
