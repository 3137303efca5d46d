"""The in-memory IR graph.

Tensors are named. A tensor is a graph input, a constant (its value is in ``Graph.consts``, possibly
stored in fp16 while its logical dtype is f32), or the output of exactly one node. Nodes are kept
in topological order; ``validate`` checks all of that and raises ``GraphError`` naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..dtypes import DTYPES
from ..errors import GraphError


@dataclass
class TensorInfo:
    name: str
    shape: tuple
    dtype: str = "f32"

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * DTYPES[self.dtype].itemsize


@dataclass
class Node:
    name: str
    op: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)


@dataclass
class Graph:
    """A model: typed tensors, constants, nodes in topological order, and graph inputs/outputs."""

    tensors: dict = field(default_factory=dict)  # name -> TensorInfo
    consts: dict = field(default_factory=dict)  # name -> np.ndarray (stored value)
    nodes: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def producers(self) -> dict:
        return {out: node for node in self.nodes for out in node.outputs}

    def consumers(self) -> dict:
        users: dict = {}
        for node in self.nodes:
            for name in node.inputs:
                if name:
                    users.setdefault(name, []).append(node)
        return users

    def const_value(self, name: str, dtype=np.float32):
        """A constant as the logical compute dtype (fp16 storage is widened here)."""
        value = self.consts[name]
        if value.dtype == np.float16 and np.dtype(dtype) == np.float32:
            return value.astype(np.float32)
        return value

    def validate(self, file=None) -> None:
        """Check references, single producers, topological order, and dtype names."""
        for name, info in self.tensors.items():
            if info.dtype not in DTYPES:
                raise GraphError(f"tensor '{name}' has unknown dtype {info.dtype!r}", file=file)
            if not all(isinstance(d, int) and d >= 0 for d in info.shape):
                raise GraphError(f"tensor '{name}' has an invalid shape {list(info.shape)}", file=file)
        defined = set()
        for name in self.inputs:
            if name not in self.tensors:
                raise GraphError(f"graph input '{name}' has no tensor entry", file=file)
            if name in self.consts:
                raise GraphError(f"graph input '{name}' is also a constant", file=file)
            defined.add(name)
        for name in self.consts:
            if name not in self.tensors:
                raise GraphError(f"constant '{name}' has no tensor entry", file=file)
            defined.add(name)
        seen_nodes = set()
        for node in self.nodes:
            if node.name in seen_nodes:
                raise GraphError("duplicate node name", file=file, node=node.name, op=node.op)
            seen_nodes.add(node.name)
            for name in node.inputs:
                if not name:
                    continue  # an omitted optional input
                if name not in self.tensors:
                    raise GraphError(f"input '{name}' is not a known tensor", file=file, node=node.name, op=node.op)
                if name not in defined:
                    raise GraphError(
                        f"input '{name}' is used before it is produced (graph not in topological order or cyclic)",
                        file=file, node=node.name, op=node.op)
            for name in node.outputs:
                if name not in self.tensors:
                    raise GraphError(f"output '{name}' is not a known tensor", file=file, node=node.name, op=node.op)
                if name in defined:
                    raise GraphError(f"output '{name}' already has a producer", file=file, node=node.name, op=node.op)
                defined.add(name)
        for name in self.outputs:
            if name not in defined:
                raise GraphError(f"graph output '{name}' is never produced", file=file)
