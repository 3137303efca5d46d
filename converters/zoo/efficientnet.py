"""EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" variant for mobile accelerators) with seeded weights.

Lite drops squeeze-excite, swaps Swish for ReLU6 and keeps the stem and head at fixed width,
which makes it a pure Conv/BatchNorm/Clip/Add network like MobileNetV2 but with 5x5 depthwise
convolutions.
"""

from __future__ import annotations

import onnx

from .common import NetBuilder
from .mobilenet import inverted_residual

# EfficientNet-B0 stages: expansion, output channels, repeats, first stride, depthwise kernel.
EFFICIENTNET_B0_STAGES = ((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3),
                          (6, 112, 3, 1, 5), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3))


def efficientnet_lite0(size: int = 224, num_classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    """EfficientNet-Lite0 exported PyTorch-style (Conv -> BatchNormalization -> Clip), seeded weights.

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
        Opset 13, IR version 8, about 4.7 M parameters.
    """
    net = NetBuilder("efficientnet_lite0", seed)
    x = net.input("input", [1, 3, size, size])
    x = net.conv_bn_act(x, "stem", 32, 3, stride=2)
    block = 0
    for t, c, n, s, k in EFFICIENTNET_B0_STAGES:
        for i in range(n):
            x = inverted_residual(net, x, f"block{block}", t, c, k, s if i == 0 else 1)
            block += 1
    x = net.conv_bn_act(x, "head", 1280, 1)
    x = net.flatten(net.global_avg_pool(x, "head/pool"), "classifier/flatten")
    logits = net.gemm(x, "classifier/gemm", num_classes, output="logits")
    return net.build([(logits, [1, num_classes])],
                     doc=f"EfficientNet-Lite0, {size}x{size}, seeded random weights (seed {seed})")
