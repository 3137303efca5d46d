"""Entry point of the TFLite converter: ``convert_tflite(src) -> Graph``.

Graph inputs and outputs keep the shapes the .tflite file declares (NHWC images); inside, the graph
is NCHW for convolutions and pools, with Transposes only where a tensor's layout must change.
fp16 weights (behind DEQUANTIZE) stay fp16 and sparse weights (behind DENSIFY) are decoded exactly;
``graph.metadata["tflite_sparse"]`` records each sparse weight's density and block shape.
"""

from __future__ import annotations

from edgert.ir.graph import Graph


def convert_tflite(src, input_shapes=None, fp16=False, progress=None) -> Graph:
    """Convert a .tflite model to an edgert IR graph (nothing is written).

    Parameters
    ----------
    src : path-like or bytes
        The .tflite file (or its bytes).
    input_shapes : dict, optional
        {input name: shape} overriding the file's input shapes (TFLite order, e.g. NHWC).
    fp16 : bool
        Store every float weight in half precision (weights shipped as fp16 always stay fp16).
    progress : callable, optional
        Called as ``progress(stage, done, total)``.

    Raises
    ------
    ConversionError
        The file is malformed or inconsistent (names the file and, where known, the operator).
    UnsupportedOpError
        Some operators have no IR equivalent; ``ops`` lists every one of them.
    """
    from converters.tflite import build_graph, read_model

    if progress:
        progress("read", 0, 1)
    model = read_model(src)
    if progress:
        progress("read", 1, 1)
    return build_graph(model, input_shapes=input_shapes, fp16=fp16, progress=progress)
