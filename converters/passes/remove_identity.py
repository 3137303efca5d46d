"""Remove nodes that do not change their input: Identity, a Reshape to the same shape, a Transpose
with the identity perm; merge a Reshape into the Reshape after it, and compose consecutive
Transposes (dropping both when they cancel)."""

from __future__ import annotations

from .rewrite import bypass, is_private, uses


def remove_identity(graph) -> int:
    changed = 0
    for node in list(graph.nodes):
        if node not in graph.nodes:
            continue
        x = node.inputs[0] if node.inputs else ""
        if node.op == "Identity" or (node.op == "Reshape" and graph.tensors[x].shape == graph.tensors[node.outputs[0]].shape) \
                or (node.op == "Transpose" and list(node.attrs["perm"]) == list(range(len(node.attrs["perm"])))):
            changed += bypass(graph, node)
        elif node.op in ("Reshape", "Transpose"):
            changed += _merge_with_producer(graph, node)
    return changed


def _merge_with_producer(graph, node) -> int:
    x = node.inputs[0]
    first = next((n for n in graph.nodes if x in n.outputs), None)
    if first is None or first.op != node.op or not is_private(graph, x, uses(graph)):
        return 0
    if node.op == "Transpose":
        outer, inner = node.attrs["perm"], first.attrs["perm"]
        node.attrs = dict(node.attrs, perm=[inner[p] for p in outer])
    node.inputs[0] = first.inputs[0]
    graph.nodes.remove(first)
    graph.tensors.pop(x, None)
    return 1
