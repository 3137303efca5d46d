"""Build the reversible-MBConv 3-D U-Net (Pendse et al., "Memory Efficient 3D U-Net with Reversible
Mobile Inverted Bottlenecks") as ONNX with seeded weights, and convert it to .ert.

The graph is written node by node with onnx.helper in the op pattern ``torch.onnx.export`` gives a
RevNet-style reversible block (Split on channels, F(x2), Add, G(y1), Add, Concat), so the converter
sees what a PyTorch export would hand it. The paper's per-layer details are not public; the
architecture here is the usual one (see ../shared/notes/memory-and-boards.md section 2.4):

* stem: 3x3x3 conv (4 -> base) + InstanceNormalization + ReLU;
* each level: ``blocks`` reversible blocks whose F and G are MBConv on C/2 channels (1x1x1 expand by
  ``expansion`` + InstanceNormalization + ReLU, depthwise 3x3x3 + ReLU, 1x1x1 project);
* down: MaxPool 2x2x2 then a 1x1x1 conv doubling the channels;
* up: ConvTranspose 2x2x2 stride 2 halving the channels, Concat with the skip, 1x1x1 conv;
* head: 1x1x1 conv to ``classes`` and Softmax over channels.

Spatial dims are symbolic (D, H, W: multiples of 2^(levels-1)); ``--shape`` fixes them at conversion.

    python tools/build_unet3d.py --config small --out build/unet3d_small
    python tools/build_unet3d.py --config brats --out build/unet3d_brats   # 4 x 160 x 240 x 240
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CONFIGS = {
    "small": {"base": 8, "levels": 3, "blocks": 1, "expansion": 4, "classes": 3, "shape": (1, 4, 16, 16, 16)},
    # BraTS: 240 x 240 x 155 with depth padded to 160 (a multiple of the network's stride 8).
    "brats": {"base": 16, "levels": 4, "blocks": 2, "expansion": 4, "classes": 4, "shape": (1, 4, 160, 240, 240)},
}
OPSET = 13
# He initialisation assumes a ReLU after the layer; layers without one get the variance-preserving
# 1/fan_in instead, so activations (and the logits) of the random network stay O(1) at any depth.
LINEAR = float(np.sqrt(0.5))
INPUT, OUTPUT = "volume", "probabilities"


class _Writer:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, base, value):
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), n))
        return n

    def node(self, op, inputs, n_out=1, **attrs):
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name(op), **attrs))
        return outs if n_out > 1 else outs[0]

    def conv(self, x, cin, cout, k=1, group=1, bias=True, gain=1.0):
        fan_in = cin // group * k ** 3
        w = self.rng.standard_normal((cout, cin // group, k, k, k)) * gain * np.sqrt(2.0 / fan_in)
        ins = [x, self.const("w", w.astype(np.float32))]
        if bias:
            ins.append(self.const("b", (0.1 * self.rng.standard_normal(cout)).astype(np.float32)))
        return self.node("Conv", ins, kernel_shape=[k] * 3, pads=[k // 2] * 6, group=group)

    def instance_norm(self, x, c):
        scale = (1.0 + 0.1 * self.rng.standard_normal(c)).astype(np.float32)
        shift = (0.1 * self.rng.standard_normal(c)).astype(np.float32)
        return self.node("InstanceNormalization", [x, self.const("s", scale), self.const("beta", shift)],
                         epsilon=1e-5)

    def mbconv(self, x, c, expansion):
        """1x1x1 expand + InstanceNorm + ReLU, depthwise 3x3x3 + ReLU, 1x1x1 project (small gain, so
        a residual stack keeps its scale)."""
        e = c * expansion
        h = self.node("Relu", [self.instance_norm(self.conv(x, c, e, bias=False), e)])
        h = self.node("Relu", [self.conv(h, e, e, k=3, group=e)])
        return self.conv(h, e, c, gain=0.3)

    def reversible(self, x, c, expansion):
        half = c // 2
        x1, x2 = self.node("Split", [x, self.const("split", np.array([half, half], np.int64))], n_out=2, axis=1)
        y1 = self.node("Add", [x1, self.mbconv(x2, half, expansion)])
        y2 = self.node("Add", [x2, self.mbconv(y1, half, expansion)])
        return self.node("Concat", [y1, y2], axis=1)


def build_unet3d(base=8, levels=3, blocks=1, expansion=4, classes=3, seed=0, in_channels=4, **_):
    """The ONNX model (spatial dims symbolic)."""
    w = _Writer(seed)
    widths = [base * 2 ** k for k in range(levels)]
    h = w.node("Relu", [w.instance_norm(w.conv(INPUT, in_channels, base, k=3), base)])
    skips = []
    for level, c in enumerate(widths):
        for _ in range(blocks):
            h = w.reversible(h, c, expansion)
        if level < levels - 1:
            skips.append(h)
            h = w.node("MaxPool", [h], kernel_shape=[2, 2, 2], strides=[2, 2, 2])
            h = w.conv(h, c, widths[level + 1], gain=LINEAR)
    for level in range(levels - 2, -1, -1):
        c = widths[level]
        up_w = w.rng.standard_normal((2 * c, c, 2, 2, 2)) * np.sqrt(1.0 / (2 * c))
        h = w.node("ConvTranspose", [h, w.const("wt", up_w.astype(np.float32)),
                                     w.const("bt", np.zeros(c, np.float32))], kernel_shape=[2, 2, 2], strides=[2, 2, 2])
        h = w.conv(w.node("Concat", [h, skips[level]], axis=1), 2 * c, c, gain=LINEAR)
        for _ in range(blocks):
            h = w.reversible(h, c, expansion)
    logits = w.conv(h, base, classes, gain=0.15)
    w.nodes.append(helper.make_node("Softmax", [logits], [OUTPUT], name="softmax", axis=1))
    graph = helper.make_graph(
        w.nodes, "reversible_mbconv_unet3d",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, in_channels, "D", "H", "W"])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [1, classes, "D", "H", "W"])], w.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgert.tools")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="small")
    ap.add_argument("--out", type=Path, required=True, help="path without suffix: writes .onnx and .ert")
    ap.add_argument("--shape", help="input shape N,C,D,H,W for the .ert (default: the config's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ert", action="store_true", help="write only the ONNX model")
    args = ap.parse_args(argv)
    cfg = CONFIGS[args.config]
    shape = tuple(int(v) for v in args.shape.split(",")) if args.shape else cfg["shape"]
    model = build_unet3d(seed=args.seed, **cfg)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out.with_suffix(".onnx")
    from edgert.fileio import atomic_write
    with atomic_write(onnx_path) as f:
        f.write(model.SerializeToString())
    print(f"wrote {onnx_path} ({len(model.graph.node)} nodes)")
    if not args.no_ert:
        from converters.convert import convert
        report = convert(onnx_path, args.out.with_suffix(".ert"), input_shapes={INPUT: shape})
        print(f"wrote {args.out.with_suffix('.ert')} for input {list(shape)}: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
