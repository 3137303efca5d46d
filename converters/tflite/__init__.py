"""TFLite frontend: flatbuffer reader, sparse-tensor decoder, and one builder per TFLite operator.

``converters.tflite_entry.convert_tflite`` is the entry point; this package never runs the TFLite
interpreter (the file is parsed with the ``tflite`` package's generated flatbuffer classes).
"""

from .frontend import build_graph, supported_ops
from .reader import read_model

__all__ = ["build_graph", "read_model", "supported_ops"]
