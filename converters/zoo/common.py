"""Shared machinery for the zoo builders: an ONNX graph writer with seeded, self-calibrating weights.

The models are exported the way ``torch.onnx.export`` writes an eval-mode network without constant
folding: Conv (no bias) -> BatchNormalization -> activation, Clip with min/max as inputs for ReLU6,
Gemm with ``transB=1`` for the classifier. Nothing is fused, so a converter sees the real thing.

Random weights alone make activations explode or vanish over 50+ layers, and random BatchNorm
statistics make it worse. So the writer tracks rough per-channel moments (mean, variance) of
every tensor for the input it expects (uniform[0, 1) pixels) and sets each BatchNorm's running
mean/variance near the moments of the conv output it normalises, like a network whose statistics
were collected on such inputs. Its output is then about ``gamma * N(0, 1) + beta`` everywhere.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 8  # onnxruntime 1.32 reads up to IR 10; 8 is what opset 13/14 exporters write
PRODUCER = "edgert.zoo"

# Gauss-Hermite nodes/weights for E[f(X)], X ~ N(mu, sigma^2): moments through nonlinearities.
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(48)
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()

_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "hard_sigmoid": lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "hard_swish": lambda x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0),
}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never dropping more than 10%.

    This is the rounding the MobileNet papers' reference code uses for width multipliers.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class Moments:
    """Per-channel mean and variance of a tensor (float64 vectors of length C)."""

    def __init__(self, mean, var):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.var = np.maximum(np.asarray(var, dtype=np.float64), 1e-8)

    @property
    def channels(self) -> int:
        return self.mean.shape[0]

    def through(self, fn) -> Moments:
        """Moments of ``fn(X)`` per channel, X Gaussian with these moments (quadrature)."""
        x = self.mean[:, None] + np.sqrt(self.var)[:, None] * _GH_NODES[None, :]
        fx = fn(x)
        mean = fx @ _GH_WEIGHTS
        return Moments(mean, (fx * fx) @ _GH_WEIGHTS - mean * mean)


class NetBuilder:
    """Accumulates nodes and initializers for one model; every method returns its output tensor name.

    Node names are the ``name`` arguments (``block3/expand/conv``); output tensors are
    ``<node name>_out``; weights are ``<node name>.weight`` and so on, PyTorch-style.

    Parameters
    ----------
    name : str
        Graph name.
    seed : int
        Seed for ``np.random.default_rng``; every random draw happens in build order, so the same
        seed gives the same bytes.
    opset : int
        Default-domain opset version to declare.
    """

    def __init__(self, name: str, seed: int, opset: int = OPSET):
        self.name = name
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self._nodes: list[onnx.NodeProto] = []
        self._initializers: list[onnx.TensorProto] = []
        self._inputs: list[onnx.ValueInfoProto] = []
        self._used_names: set[str] = set()
        self._moments: dict[str, Moments] = {}

    # ----------------------------------------------------------------- plumbing

    def channels(self, x: str) -> int:
        return self._moments[x].channels

    def input(self, name: str, shape) -> str:
        """Declare a float input of ``shape`` [N, C, H, W], expected to hold uniform[0, 1) values."""
        self._inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        c = shape[1]
        self._moments[name] = Moments(np.full(c, 0.5), np.full(c, 1.0 / 12.0))
        return name

    def _claim(self, name: str) -> str:
        if name in self._used_names:
            raise ValueError(f"duplicate name {name!r} in {self.name}")
        self._used_names.add(name)
        return name

    def const(self, name: str, array) -> str:
        """Add an initializer (float32 unless ``array`` already has another dtype)."""
        array = np.asarray(array)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        self._initializers.append(numpy_helper.from_array(array, self._claim(name)))
        return name

    def node(self, op: str, name: str, inputs, moments: Moments | None, output: str | None = None,
             **attrs) -> str:
        """Append one node; ``moments`` are the estimated statistics of its output."""
        out = output or f"{name}_out"
        self._nodes.append(helper.make_node(op, list(inputs), [out], name=self._claim(name), **attrs))
        if moments is not None:
            self._moments[out] = moments
        return out

    def build(self, outputs, doc: str = "") -> onnx.ModelProto:
        """Finish the model. ``outputs``: list of (tensor name, shape)."""
        graph = helper.make_graph(
            self._nodes, self.name, self._inputs,
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in outputs],
            initializer=self._initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name=PRODUCER, producer_version="1", ir_version=IR_VERSION,
                                  doc_string=doc)
        return model

    # ----------------------------------------------------------------- layers

    def conv(self, x: str, name: str, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
             bias: bool = False) -> str:
        """Square Conv with "same"-style symmetric padding ``kernel // 2`` and He-normal weights."""
        stats = self._moments[x]
        in_per_group = stats.channels // groups
        fan_in = in_per_group * kernel * kernel
        w = self.rng.standard_normal((out_channels, in_per_group, kernel, kernel)) * np.sqrt(2.0 / fan_in)
        inputs = [x, self.const(f"{name}.weight", w)]
        b = np.zeros(out_channels)
        if bias:
            b = self.rng.normal(0.0, 0.1, out_channels)
            inputs.append(self.const(f"{name}.bias", b))
        # Output channel c reads input channels [g*in_per_group, (g+1)*in_per_group) of its group g.
        group_of = np.arange(out_channels) // (out_channels // groups)
        in_idx = group_of[:, None] * in_per_group + np.arange(in_per_group)[None, :]
        taps = w.reshape(out_channels, in_per_group, -1)
        mean = np.einsum("oik,oi->o", taps, stats.mean[in_idx]) + b
        var = np.einsum("oik,oi->o", taps * taps, stats.var[in_idx])
        pad = kernel // 2
        return self.node("Conv", name, inputs, Moments(mean, var), dilations=[1, 1], group=groups,
                         kernel_shape=[kernel, kernel], pads=[pad] * 4, strides=[stride, stride])

    def batch_norm(self, x: str, name: str, epsilon: float = 1e-5) -> str:
        """BatchNormalization whose running statistics sit near the input's estimated moments."""
        stats = self._moments[x]
        c = stats.channels
        # Wide enough that a few channels reach ReLU6's upper clip too, as in trained networks.
        gamma = self.rng.uniform(0.5, 2.5, c)
        beta = self.rng.normal(0.1, 0.3, c)
        # Off by a little, as statistics collected on real data would be for any one input.
        running_mean = stats.mean + self.rng.normal(0.0, 0.1, c) * np.sqrt(stats.var)
        running_var = stats.var * np.exp(self.rng.normal(0.0, 0.15, c))
        inputs = [x] + [self.const(f"{name}.{k}", v) for k, v in
                        (("weight", gamma), ("bias", beta), ("running_mean", running_mean),
                         ("running_var", running_var))]
        scale = gamma / np.sqrt(running_var + epsilon)
        moments = Moments(beta + scale * (stats.mean - running_mean), scale * scale * stats.var)
        return self.node("BatchNormalization", name, inputs, moments, epsilon=epsilon, momentum=0.9)

    def relu6(self, x: str, name: str) -> str:
        """ReLU6 as PyTorch exports it since opset 11: Clip with min/max given as inputs."""
        if "relu6.min" not in self._used_names:
            self.const("relu6.min", np.array(0.0, np.float32))
            self.const("relu6.max", np.array(6.0, np.float32))
        return self.node("Clip", name, [x, "relu6.min", "relu6.max"], self._moments[x].through(_ACTIVATIONS["relu6"]))

    def relu(self, x: str, name: str) -> str:
        return self.node("Relu", name, [x], self._moments[x].through(_ACTIVATIONS["relu"]))

    def hard_swish(self, x: str, name: str) -> str:
        """HardSwish (ONNX opset 14+): x * clip(x/6 + 1/2, 0, 1)."""
        return self.node("HardSwish", name, [x], self._moments[x].through(_ACTIVATIONS["hard_swish"]))

    def hard_sigmoid(self, x: str, name: str) -> str:
        """HardSigmoid with PyTorch's slope 1/6 (ONNX's default alpha is 0.2)."""
        return self.node("HardSigmoid", name, [x], self._moments[x].through(_ACTIVATIONS["hard_sigmoid"]),
                         alpha=1.0 / 6.0, beta=0.5)

    def activation(self, x: str, name: str, kind: str) -> str:
        """Dispatch on ``kind`` in {"relu", "relu6", "hard_swish"}."""
        return {"relu": self.relu, "relu6": self.relu6, "hard_swish": self.hard_swish}[kind](x, name)

    def conv_bn_act(self, x: str, prefix: str, out_channels: int, kernel: int, stride: int = 1,
                    groups: int = 1, act: str | None = "relu6", epsilon: float = 1e-5) -> str:
        """Conv -> BatchNormalization -> optional activation, named ``prefix/conv``, ``prefix/bn``..."""
        y = self.conv(x, f"{prefix}/conv", out_channels, kernel, stride, groups)
        y = self.batch_norm(y, f"{prefix}/bn", epsilon)
        return self.activation(y, f"{prefix}/{act}", act) if act else y

    def add(self, a: str, b: str, name: str) -> str:
        ma, mb = self._moments[a], self._moments[b]
        return self.node("Add", name, [a, b], Moments(ma.mean + mb.mean, ma.var + mb.var))

    def mul(self, a: str, b: str, name: str) -> str:
        """Elementwise product of independent tensors (e.g. features times a broadcast gate)."""
        ma, mb = self._moments[a], self._moments[b]
        mean = ma.mean * mb.mean
        second = (ma.var + ma.mean ** 2) * (mb.var + mb.mean ** 2)
        return self.node("Mul", name, [a, b], Moments(mean, second - mean ** 2))

    def global_avg_pool(self, x: str, name: str) -> str:
        # Averaging over the whole image removes almost all the spatial spread.
        m = self._moments[x]
        return self.node("GlobalAveragePool", name, [x], Moments(m.mean, m.var * 0.01))

    def max_pool(self, x: str, name: str, kernel: int, stride: int, pad: int = 0) -> str:
        # Max of n roughly Gaussian values: shifted up by about sqrt(2 ln n) sigmas, narrower.
        m = self._moments[x]
        shift = np.sqrt(2.0 * np.log(kernel * kernel))
        return self.node("MaxPool", name, [x], Moments(m.mean + shift * np.sqrt(m.var), m.var * 0.3),
                         kernel_shape=[kernel, kernel], pads=[pad] * 4, strides=[stride, stride])

    def avg_pool(self, x: str, name: str, kernel: int, stride: int) -> str:
        m = self._moments[x]
        return self.node("AveragePool", name, [x], Moments(m.mean, m.var / (kernel * kernel)),
                         kernel_shape=[kernel, kernel], strides=[stride, stride])

    def flatten(self, x: str, name: str) -> str:
        return self.node("Flatten", name, [x], self._moments[x], axis=1)

    def gemm(self, x: str, name: str, out_features: int, output: str | None = None) -> str:
        """Fully connected layer as PyTorch's nn.Linear exports it: Gemm with [out, in] weights, transB=1."""
        m = self._moments[x]
        w = self.rng.standard_normal((out_features, m.channels)) / np.sqrt(m.channels)
        b = self.rng.normal(0.0, 0.01, out_features)
        inputs = [x, self.const(f"{name}.weight", w), self.const(f"{name}.bias", b)]
        return self.node("Gemm", name, inputs, Moments(w @ m.mean + b, (w * w) @ m.var), output=output,
                         alpha=1.0, beta=1.0, transB=1)

    def softmax(self, x: str, name: str, output: str | None = None) -> str:
        return self.node("Softmax", name, [x], None, output=output, axis=-1)

    def squeeze_excite(self, x: str, prefix: str, squeeze_channels: int) -> str:
        """MobileNetV3 squeeze-excite: GAP -> 1x1 conv -> Relu -> 1x1 conv -> HardSigmoid -> Mul."""
        c = self.channels(x)
        s = self.global_avg_pool(x, f"{prefix}/pool")
        s = self.relu(self.conv(s, f"{prefix}/fc1", squeeze_channels, 1, bias=True), f"{prefix}/relu")
        s = self.conv(s, f"{prefix}/fc2", c, 1, bias=True)
        gate = self.hard_sigmoid(s, f"{prefix}/hard_sigmoid")
        return self.mul(x, gate, f"{prefix}/scale")


def count_parameters(model: onnx.ModelProto) -> int:
    """Number of scalar values stored in the model's initializers."""
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer)
