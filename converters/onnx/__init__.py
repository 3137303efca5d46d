"""The ONNX frontend: ``load_onnx`` reads and checks a file, ``onnx_to_graph`` translates it to IR."""

from .loader import check_model, fixed_inputs, load_onnx, onnx_to_graph
from .ops import OPS

__all__ = ["OPS", "check_model", "fixed_inputs", "load_onnx", "onnx_to_graph"]
