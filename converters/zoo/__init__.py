"""Model zoo: deterministic ONNX model builders (seeded weights) and fetchers for real models.

``MODELS`` maps a name to a builder returning an ``onnx.ModelProto``; ``converters.zoo.fetch``
downloads real models (RapidOCR's PaddleOCR ONNX files, MediaPipe's TFLite files) into a cache.
"""

from __future__ import annotations

from .common import count_parameters
from .efficientnet import efficientnet_lite0
from .mobilenet import mobilenet_v2, mobilenet_v3_small
from .tiny import tiny_convnet

MODELS = {
    "mobilenet_v2": mobilenet_v2,
    "efficientnet_lite0": efficientnet_lite0,
    "mobilenet_v3_small": mobilenet_v3_small,
    "tiny_convnet": tiny_convnet,
}

__all__ = ["MODELS", "count_parameters", "efficientnet_lite0", "mobilenet_v2", "mobilenet_v3_small",
           "tiny_convnet"]
