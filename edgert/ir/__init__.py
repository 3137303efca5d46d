"""edgert's intermediate representation: a graph of typed tensors and ops, and its .ert file format."""

from .graph import Graph, Node, TensorInfo
from .format import FORMAT_VERSION, MAGIC, read_ert, write_ert

__all__ = ["Graph", "Node", "TensorInfo", "read_ert", "write_ert", "FORMAT_VERSION", "MAGIC"]
