"""Fuse a residual Add into the PRelu that reads it: PRelu(Add(a, b), slope) -> PRelu(a, slope, b).

MediaPipe's BlazePalm/BlazeFace-style blocks end in conv -> Add(residual) -> PRelu; run separately
the Add writes a tensor the PRelu reads straight back (two passes over memory, 16% of
palm_detection_lite). The PRelu's optional third input is added first, in the same loop. Only
same-shape f32 Adds without a fused activation whose output nothing else reads are fused.
"""

from __future__ import annotations

from .rewrite import is_private, uses


def fuse_add_prelu(graph) -> int:
    fused = 0
    use_count = uses(graph)
    for node in list(graph.nodes):
        if node.op != "PRelu" or len(node.inputs) != 2:
            continue
        x = node.inputs[0]
        add = next((n for n in graph.nodes if x in n.outputs), None)
        if (add is None or add.op != "Add" or add.attrs.get("activation", "none") != "none"
                or not is_private(graph, x, use_count)):
            continue
        a, b = add.inputs
        shape = tuple(graph.tensors[x].shape)
        if any(tuple(graph.tensors[t].shape) != shape or graph.tensors[t].dtype != "f32" for t in (a, b, x)):
            continue
        node.inputs = [a, node.inputs[1], b]
        graph.nodes.remove(add)
        graph.tensors.pop(x, None)
        use_count = uses(graph)
        fused += 1
    return fused
