"""MobileNetV2 (Sandler et al., 2018) and MobileNetV3-Small (Howard et al., 2019) with seeded weights."""

from __future__ import annotations

import onnx

from .common import NetBuilder, make_divisible

# MobileNetV2 inverted-residual stages: expansion t, output channels c, repeats n, first stride s.
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

# MobileNetV3-Small bottlenecks: kernel, expanded channels, output channels, squeeze-excite,
# activation, stride (paper, table 2).
MOBILENET_V3_SMALL_BLOCKS = (
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hard_swish", 2),
    (5, 240, 40, True, "hard_swish", 1),
    (5, 240, 40, True, "hard_swish", 1),
    (5, 120, 48, True, "hard_swish", 1),
    (5, 144, 48, True, "hard_swish", 1),
    (5, 288, 96, True, "hard_swish", 2),
    (5, 576, 96, True, "hard_swish", 1),
    (5, 576, 96, True, "hard_swish", 1),
)


def inverted_residual(net: NetBuilder, x: str, prefix: str, expand_ratio: float, out_channels: int,
                      kernel: int, stride: int, act: str = "relu6", se_channels: int = 0,
                      expanded: int | None = None, bn_epsilon: float = 1e-5) -> str:
    """One MBConv / inverted-residual block: [expand 1x1] -> depthwise kxk -> [SE] -> project 1x1.

    The projection is linear (no activation). A residual Add joins input and output when the
    shapes match (stride 1, same channel count). ``expanded`` overrides ``round(in * expand_ratio)``.
    """
    in_channels = net.channels(x)
    hidden = expanded if expanded is not None else round(in_channels * expand_ratio)
    y = x
    if hidden != in_channels:
        y = net.conv_bn_act(y, f"{prefix}/expand", hidden, 1, act=act, epsilon=bn_epsilon)
    y = net.conv_bn_act(y, f"{prefix}/depthwise", hidden, kernel, stride, groups=hidden, act=act,
                        epsilon=bn_epsilon)
    if se_channels:
        y = net.squeeze_excite(y, f"{prefix}/se", se_channels)
    y = net.conv_bn_act(y, f"{prefix}/project", out_channels, 1, act=None, epsilon=bn_epsilon)
    if stride == 1 and in_channels == out_channels:
        y = net.add(x, y, f"{prefix}/add")
    return y


def mobilenet_v2(size: int = 224, width: float = 1.0, num_classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    """MobileNetV2 exported PyTorch-style (Conv -> BatchNormalization -> Clip), seeded weights.

    Parameters
    ----------
    size : int
        Input height and width; the input is ``input`` [1, 3, size, size].
    width : float
        Width multiplier; channel counts are rounded to multiples of 8.
    num_classes : int
        Length of the ``logits`` output [1, num_classes].
    seed : int
        Weight seed; the same arguments give a byte-identical model.

    Returns
    -------
    onnx.ModelProto
        Opset 13, IR version 8, about 3.5 M parameters at width 1.0.
    """
    net = NetBuilder("mobilenet_v2", seed)
    x = net.input("input", [1, 3, size, size])
    x = net.conv_bn_act(x, "stem", make_divisible(32 * width), 3, stride=2)
    block = 0
    for t, c, n, s in MOBILENET_V2_STAGES:
        for i in range(n):
            x = inverted_residual(net, x, f"block{block}", t, make_divisible(c * width), 3, s if i == 0 else 1)
            block += 1
    x = net.conv_bn_act(x, "head", make_divisible(1280 * max(1.0, width)), 1)
    x = net.flatten(net.global_avg_pool(x, "head/pool"), "classifier/flatten")
    logits = net.gemm(x, "classifier/gemm", num_classes, output="logits")
    return net.build([(logits, [1, num_classes])],
                     doc=f"MobileNetV2 width {width}, {size}x{size}, seeded random weights (seed {seed})")


def mobilenet_v3_small(size: int = 224, num_classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    """MobileNetV3-Small with HardSwish, HardSigmoid and squeeze-excite, seeded weights.

    Parameters
    ----------
    size : int
        Input height and width; the input is ``input`` [1, 3, size, size].
    num_classes : int
        Length of the ``logits`` output [1, num_classes].
    seed : int
        Weight seed; the same arguments give a byte-identical model.

    Returns
    -------
    onnx.ModelProto
        Opset 14 (the first with HardSwish), IR version 8, about 2.5 M parameters.
    """
    eps = 1e-3  # MobileNetV3 trains its BatchNorms with epsilon 0.001
    net = NetBuilder("mobilenet_v3_small", seed, opset=14)
    x = net.input("input", [1, 3, size, size])
    x = net.conv_bn_act(x, "stem", 16, 3, stride=2, act="hard_swish", epsilon=eps)
    for i, (k, expanded, out, se, act, stride) in enumerate(MOBILENET_V3_SMALL_BLOCKS):
        se_channels = make_divisible(expanded // 4) if se else 0
        x = inverted_residual(net, x, f"block{i}", 0, out, k, stride, act=act, se_channels=se_channels,
                              expanded=expanded, bn_epsilon=eps)
    x = net.conv_bn_act(x, "head", 576, 1, act="hard_swish", epsilon=eps)
    x = net.flatten(net.global_avg_pool(x, "head/pool"), "classifier/flatten")
    x = net.hard_swish(net.gemm(x, "classifier/fc1", 1024), "classifier/hard_swish")
    logits = net.gemm(x, "classifier/fc2", num_classes, output="logits")
    return net.build([(logits, [1, num_classes])],
                     doc=f"MobileNetV3-Small, {size}x{size}, seeded random weights (seed {seed})")
