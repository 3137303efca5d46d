"""``GraphBuilder``: the one way frontends and passes assemble an edgert IR graph.

Frontends add inputs, constants and nodes in topological order; ``finish`` runs edgert's own shape
inference over the whole graph (so the converter and the runtime can never disagree on shapes) and
returns a validated ``Graph``.
"""

from __future__ import annotations

import numpy as np

from edgert.dtypes import from_numpy
from edgert.ir.graph import Graph, Node, TensorInfo
from edgert.runtime.prepare import infer_graph


class GraphBuilder:
    def __init__(self, metadata=None):
        self.graph = Graph(metadata=dict(metadata or {}))
        self._names = set()

    def unique(self, base: str) -> str:
        """A tensor/node name not used yet, derived from ``base``."""
        name, k = base, 1
        while name in self._names or name in self.graph.tensors:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def add_input(self, name: str, shape, dtype="f32") -> str:
        self.graph.tensors[name] = TensorInfo(name, tuple(int(d) for d in shape), dtype)
        self.graph.inputs.append(name)
        self._names.add(name)
        return name

    def add_const(self, name: str, value, dtype: str | None = None) -> str:
        """Add a constant. ``dtype='f16'`` stores a float tensor in half precision (computed in f32)."""
        value = np.asarray(value)
        logical = from_numpy(value.dtype)
        if dtype == "f16" and logical in ("f32", "f16"):
            value, logical = value.astype(np.float16), "f32"
        elif logical == "f64":
            value, logical = value.astype(np.float32), "f32"
        # np.ascontiguousarray would turn a 0-d scalar into shape (1,): keep the rank.
        self.graph.consts[name] = value if value.flags.c_contiguous else value.copy(order="C")
        self.graph.tensors[name] = TensorInfo(name, tuple(value.shape), logical)
        self._names.add(name)
        return name

    def add_node(self, op: str, inputs, outputs, attrs=None, name=None) -> Node:
        node = Node(name or self.unique(f"{op}"), op, list(inputs), list(outputs), dict(attrs or {}))
        self._names.update(node.outputs)
        self._names.add(node.name)
        self.graph.nodes.append(node)
        return node

    def add_output(self, name: str) -> None:
        self.graph.outputs.append(name)

    def finish(self, file=None) -> Graph:
        for node in self.graph.nodes:
            for name in node.outputs:
                self.graph.tensors.pop(name, None)
        infer_graph(self.graph, file=file, check_declared=False)
        self.graph.validate(file=file)
        return self.graph
