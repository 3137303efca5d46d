"""Drop nodes and constants that no graph output depends on (graph inputs always stay)."""

from __future__ import annotations


def eliminate_dead(graph) -> int:
    live = set(graph.outputs)
    keep = []
    for node in reversed(graph.nodes):
        if any(o in live for o in node.outputs):
            keep.append(node)
            live.update(n for n in node.inputs if n)
    removed = len(graph.nodes) - len(keep)
    kept = {id(n) for n in keep}
    dead_nodes = [n for n in graph.nodes if id(n) not in kept]
    graph.nodes = keep[::-1]
    for node in dead_nodes:
        for name in node.outputs:
            graph.tensors.pop(name, None)
    dead_consts = [name for name in graph.consts if name not in live]
    for name in dead_consts:
        del graph.consts[name]
        graph.tensors.pop(name, None)
    return removed + len(dead_consts)
