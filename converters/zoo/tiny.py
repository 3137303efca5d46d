"""``tiny_convnet``: the small built-in model behind ``edgert demo`` (about 1.4 MB, builds in ms).

It is meant to touch, in one small graph, the op patterns real mobile convnets use: strided
and depthwise convs with BatchNorm and ReLU6, an inverted-residual Add, a conv with bias and
Relu, padded MaxPool, AveragePool, GlobalAveragePool, Gemm and Softmax.
"""

from __future__ import annotations

import onnx

from .common import NetBuilder
from .mobilenet import inverted_residual

INPUT_SIZE = 96
NUM_CLASSES = 10


def tiny_convnet(seed: int = 0) -> onnx.ModelProto:
    """A small seeded convnet: ``input`` [1, 3, 96, 96] -> ``probs`` [1, 10] (softmax).

    Parameters
    ----------
    seed : int
        Weight seed; the same seed gives a byte-identical model.

    Returns
    -------
    onnx.ModelProto
        Opset 13, IR version 8, about 0.35 M parameters.
    """
    net = NetBuilder("tiny_convnet", seed)
    x = net.input("input", [1, 3, INPUT_SIZE, INPUT_SIZE])
    x = net.conv_bn_act(x, "stem", 16, 3, stride=2)                                   # 48x48
    x = net.conv_bn_act(x, "block0/depthwise", 16, 3, groups=16)
    x = net.conv_bn_act(x, "block0/pointwise", 32, 1)
    x = net.max_pool(x, "block0/max_pool", kernel=3, stride=2, pad=1)                 # 24x24
    x = inverted_residual(net, x, "block1", 3, 32, 3, 1)                               # residual Add
    x = net.conv_bn_act(x, "block2", 64, 3, stride=2)                                  # 12x12
    x = net.avg_pool(x, "block2/avg_pool", kernel=2, stride=2)                          # 6x6
    x = net.conv_bn_act(x, "block3", 128, 3)
    x = net.conv_bn_act(x, "block4", 192, 3)
    x = net.relu(net.conv(x, "block5/conv", 256, 1, bias=True), "block5/relu")
    x = net.flatten(net.global_avg_pool(x, "head/pool"), "classifier/flatten")
    x = net.gemm(x, "classifier/gemm", NUM_CLASSES)
    probs = net.softmax(x, "classifier/softmax", output="probs")
    return net.build([(probs, [1, NUM_CLASSES])], doc=f"edgert demo convnet, seeded random weights (seed {seed})")
