"""Fuse a residual Add into the 1x1 convolution producing one of its operands.

Conv (1x1, stride 1, no pads, group 1, constant weights, no activation yet) whose output only feeds a
same-shape Add: the Add's other operand becomes the Conv's fourth input R and the Add's activation
the Conv's, so Y = ACT(W X + B + R) is computed while each GEMM work item's output is still in cache
(an inverted-residual block's projection; BlazeFace's residual Add + ReLU) instead of in a separate
pass over memory. When the other operand is computed after the Conv, the Conv moves down to just
before the Add.
"""

from __future__ import annotations

from .rewrite import absorb_add, computed_after, is_private, residual_add, uses


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
        found = residual_add(graph, conv)
        if found is None or graph.tensors[found[1]].dtype != "f32":
            continue
        add, other = found
        if computed_after(graph, other, conv):
            # Computed after the conv (BlazeFace pads the shortcut's channels between the conv and the
            # Add): the conv moves down to just before the Add. Its inputs exist earlier still, and the
            # Add is its only reader.
            graph.nodes.remove(conv)
            graph.nodes.insert(graph.nodes.index(add), conv)
        absorb_add(graph, conv, add, 3, other)
        use_count = uses(graph)
        fused += 1
    return fused
