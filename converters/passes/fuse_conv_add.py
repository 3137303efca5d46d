"""Fuse a residual Add into the 1x1 convolution producing one of its operands.

Conv (1x1, stride 1, no pads, group 1, constant weights, no activation yet) whose output only feeds a
same-shape Add: the Add's other operand becomes the Conv's fourth input R and the Add's activation
the Conv's, so Y = ACT(W X + B + R) is computed while each GEMM work item's output is still in cache
(an inverted-residual block's projection; BlazeFace's residual Add + ReLU) instead of in a separate
pass over memory. When the other operand is computed after the Conv, the Conv moves down to just
before the Add.
"""

from __future__ import annotations

from .rewrite import is_private, take_over_output, uses


def _pointwise(graph, conv) -> bool:
    a = conv.attrs
    w = conv.inputs[1]
    if w not in graph.consts or len(graph.tensors[w].shape) != 4 or tuple(graph.tensors[w].shape[2:]) != (1, 1):
        return False
    return (list(a.get("strides", [1, 1])) == [1, 1] and not any(a.get("pads", [0, 0, 0, 0]))
            and a.get("group", 1) == 1 and (len(conv.inputs) < 3 or not conv.inputs[2] or conv.inputs[2] in graph.consts))


def fuse_conv_add(graph) -> int:
    fused = 0
    use_count = uses(graph)
    for conv in list(graph.nodes):
        if (conv.op != "Conv" or len(conv.inputs) > 3 or conv.attrs.get("activation", "none") != "none"
                or not _pointwise(graph, conv) or not is_private(graph, conv.outputs[0], use_count)):
            continue
        y = conv.outputs[0]
        add = next((n for n in graph.nodes if n.op == "Add" and y in n.inputs), None)
        if add is None or add.inputs[0] == add.inputs[1]:
            continue
        other = add.inputs[1] if add.inputs[0] == y else add.inputs[0]
        shape = tuple(graph.tensors[y].shape)
        if (tuple(graph.tensors[other].shape) != shape or tuple(graph.tensors[add.outputs[0]].shape) != shape
                or graph.tensors[other].dtype != "f32"):
            continue
        producers = {o: k for k, n in enumerate(graph.nodes) for o in n.outputs}
        if producers.get(other, -1) > graph.nodes.index(conv):
            # Computed after the conv (BlazeFace pads the shortcut's channels between the conv and the
            # Add): the conv moves down to just before the Add. Its inputs exist earlier still, and the
            # Add is its only reader.
            graph.nodes.remove(conv)
            graph.nodes.insert(graph.nodes.index(add), conv)
        conv.inputs = conv.inputs[:2] + [conv.inputs[2] if len(conv.inputs) > 2 else "", other]
        conv.attrs.update({k: add.attrs[k] for k in ("activation", "act_a", "act_b") if k in add.attrs})
        take_over_output(graph, conv, 0, add)
        use_count = uses(graph)
        fused += 1
    return fused
