"""Recognise hard-swish written out as arithmetic and replace it with one HardSwish node.

Exporters (Paddle2ONNX, older PyTorch) emit ``x * clip(x + 3, 0, 6) / 6`` as Add, Clip, Mul, Div (or
a final Mul by 1/6). One HardSwish is a third of the memory traffic, and fuse_activation can then
fold it into the layer producing ``x``. The intermediate tensors must feed nothing else.
"""

from __future__ import annotations

import math

import numpy as np

from .rewrite import is_private, uses


def fuse_hardswish(graph) -> int:
    fused = 0
    for node in list(graph.nodes):
        if node in graph.nodes and node.op in ("Div", "Mul"):
            fused += _match(graph, node)
    return fused


def _scalar(graph, name):
    if name not in graph.consts or graph.consts[name].size != 1:
        return None
    return float(np.asarray(graph.const_value(name)).reshape(-1)[0])


def _plain(node):
    return node.attrs.get("activation", "none") == "none"


def _match(graph, last) -> int:
    """``last`` is Div(m, 6) or Mul(m, 1/6) (either operand order for Mul)."""
    producers = {o: n for n in graph.nodes for o in n.outputs}
    count = uses(graph)
    order = (0, 1) if last.op == "Mul" else (0,)
    for k in order:
        m_name, c = last.inputs[k], last.inputs[1 - k]
        value = _scalar(graph, c)
        want = 6.0 if last.op == "Div" else 1.0 / 6.0
        mul = producers.get(m_name)
        if value is None or not math.isclose(value, want, rel_tol=1e-6) or not _plain(last) or mul is None \
                or mul.op != "Mul" or not _plain(mul) or not is_private(graph, m_name, count):
            continue
        for j in (0, 1):
            x, clipped = mul.inputs[j], mul.inputs[1 - j]
            chain = _relu6_of_x_plus_3(graph, producers, count, clipped, x)
            if chain is None:
                continue
            for n in chain + [mul]:
                graph.nodes.remove(n)
                for o in n.outputs:
                    graph.tensors.pop(o, None)
            last.op, last.inputs, last.attrs = "HardSwish", [x], {}
            return 1
    return 0


def _relu6_of_x_plus_3(graph, producers, count, name, x):
    """The nodes computing clip(x + 3, 0, 6) into ``name`` (an Add with a fused clip, or Add then
    Clip), each output private; None if ``name`` is not that."""
    node = producers.get(name)
    if node is None or not is_private(graph, name, count):
        return None
    if node.op == "Clip":
        lo, hi = node.attrs.get("min", -math.inf), node.attrs.get("max", math.inf)
        add = producers.get(node.inputs[0])
        if lo != 0.0 or hi != 6.0 or add is None or not is_private(graph, node.inputs[0], count) \
                or not _plain(add):
            return None
        chain = [add, node]
    elif node.op == "Add" and node.attrs.get("activation") == "clip":
        if node.attrs.get("act_a") != 0.0 or node.attrs.get("act_b") != 6.0:
            return None
        add, chain = node, [node]
    else:
        return None
    if add.op != "Add" or x not in add.inputs:
        return None
    three = add.inputs[1] if add.inputs[0] == x else add.inputs[0]
    value = _scalar(graph, three)
    return chain if value is not None and value == 3.0 else None
