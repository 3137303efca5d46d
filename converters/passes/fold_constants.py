"""Evaluate every node whose inputs are all constants (with the op's numpy ``reference``) and store
its outputs as constants. Frontends fold what they can too; this catches what only appears after
other passes, and graphs from any frontend."""

from __future__ import annotations

import numpy as np

from edgert.dtypes import DTYPES
from edgert.ops import get_op

from .rewrite import store_like


def fold_constants(graph) -> int:
    folded = 0
    for node in list(graph.nodes):
        names = [n for n in node.inputs if n]
        if not names or not all(n in graph.consts for n in names):
            continue
        opdef = get_op(node.op)
        attrs = opdef.resolve_attrs(node)
        values = [graph.const_value(n) if n else None for n in node.inputs]
        results = opdef.reference(attrs, *values)
        # Moving fp16 weights around keeps them fp16; arithmetic results are stored in f32.
        sources = names if opdef.family == "shape" else []
        for name, value in zip(node.outputs, results):
            value = np.asarray(value).astype(DTYPES[graph.tensors[name].dtype].newbyteorder("="), copy=False)
            graph.consts[name] = store_like(graph, sources, value)
        graph.nodes.remove(node)
        folded += 1
    return folded
