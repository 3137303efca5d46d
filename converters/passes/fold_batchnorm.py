"""Fold per-channel affine ops into the convolution or fully connected layer before them.

A Conv / ConvTranspose / FullyConnected (no fused activation, constant weights) followed by a Mul,
Div, Add or Sub with a per-output-channel (or scalar) constant, where the layer's output feeds
nothing else, becomes one layer: W' = W * s and b' = b * s for a scale s; b' = b + t for a shift t.
That is a standalone BatchNormalization (Mul + Add) or an exporter's explicit scale/shift. The
arithmetic is float64, rounded once to the stored dtype.
"""

from __future__ import annotations

import numpy as np

from .rewrite import is_private, new_const, store_like, take_over_output, uses

LAYERS = ("Conv", "ConvTranspose", "FullyConnected")


def fold_batchnorm(graph) -> int:
    folded = 0
    for node in list(graph.nodes):
        if node.op in ("Mul", "Div", "Add", "Sub") and node in graph.nodes:
            folded += _fold(graph, node)
    return folded


def _fold(graph, node) -> int:
    producers = {o: n for n in graph.nodes for o in n.outputs}
    count = uses(graph)
    for k in ((0, 1) if node.op in ("Mul", "Add") else (0,)):
        x, c = node.inputs[k], node.inputs[1 - k]
        layer = producers.get(x)
        if (c not in graph.consts or layer is None or layer.op not in LAYERS
                or layer.attrs.get("activation", "none") != "none" or not is_private(graph, x, count)
                or (len(layer.inputs) > 3 and layer.inputs[3])):  # a fused residual is not scaled
            continue
        w_name = layer.inputs[1]
        b_name = layer.inputs[2] if len(layer.inputs) > 2 else ""
        if w_name not in graph.consts or (b_name and b_name not in graph.consts):
            continue
        channels = _per_channel(graph.tensors[x].shape, graph.const_value(c))
        if channels is None:
            continue
        w = graph.const_value(w_name).astype(np.float64)
        b = graph.const_value(b_name).astype(np.float64) if b_name else np.zeros(graph.tensors[x].shape[1])
        if node.op in ("Mul", "Div"):
            scale = channels if node.op == "Mul" else 1.0 / channels
            w, b = _scale_weight(layer, w, scale), b * scale
        else:
            b = b + channels if node.op == "Add" else b - channels
        layer.inputs[1] = new_const(graph, f"{layer.name}/weight", store_like(graph, [w_name], w))
        bias = new_const(graph, f"{layer.name}/bias", store_like(graph, [w_name], b))
        layer.inputs[2:] = [bias]
        for key in ("activation", "act_a", "act_b"):
            if key in node.attrs:
                layer.attrs[key] = node.attrs[key]
        take_over_output(graph, layer, 0, node)
        return 1
    return 0


def _per_channel(out_shape, c):
    """The constant as one value per output channel (dim 1), or None if it varies along other dims
    or would broadcast the layer's output to a bigger shape."""
    c = np.asarray(c, dtype=np.float64)
    rank = len(out_shape)
    if c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + c.shape
    if any(n != 1 for d, n in enumerate(shape) if d != 1) or shape[1] not in (1, out_shape[1]):
        return None
    return np.broadcast_to(c.reshape(-1), (out_shape[1],)).copy()


def _scale_weight(layer, w, scale):
    if layer.op != "ConvTranspose":  # output channels lead: [M, ...]
        return w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    g = int(layer.attrs.get("group", 1))  # [C_in, M / group, kh, kw]
    shaped = w.reshape((g, w.shape[0] // g, w.shape[1]) + w.shape[2:])
    return (shaped * scale.reshape((g, 1, -1) + (1,) * (w.ndim - 2))).reshape(w.shape)
