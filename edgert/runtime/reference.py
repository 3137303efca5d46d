"""Run a whole graph through the ops' numpy references: the slow, obviously-correct oracle."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from .prepare import infer_graph


def run_reference(graph: Graph, feeds: dict, keep_all: bool = False) -> dict:
    """Evaluate ``graph`` with every op's ``reference``. Returns outputs (or every tensor)."""
    values = {name: graph.const_value(name) for name in graph.consts}
    values.update({k: np.asarray(v) for k, v in feeds.items()})
    for node, opdef, attrs, _ins in infer_graph(graph):
        args = [values[n] if n else None for n in node.inputs]
        results = opdef.reference(attrs, *args)
        for name, value in zip(node.outputs, results):
            values[name] = np.asarray(value)
    if keep_all:
        return values
    return {name: values[name] for name in graph.outputs}
