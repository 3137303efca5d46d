"""ONNX builders for volumes (5-D NCDHW inputs) and the normalisations 3-D networks use.

Conv, ConvTranspose, MaxPool, AveragePool and Resize keep their 1-D/2-D builders in ``ops_nn`` and
``ops_tensor``; ``volume_forms`` wraps each so a 5-D input goes to the IR's 3-D op instead.
InstanceNormalization and GroupNormalization become the IR's rank-generic GroupNorm.
"""

from __future__ import annotations

import functools

import numpy as np

from .context import Unsupported
from .ops_nn import check_maxpool_outputs, spatial_attrs
from .ops_tensor import resize_attrs


def _conv_attrs(ctx, x, w):
    kernel = list(ctx.shape(w)[2:])
    if ctx.attr("kernel_shape") not in (None, kernel):
        ctx.fail(f"kernel_shape {ctx.attr('kernel_shape')} does not match the weight shape {kernel}")
    strides, dilations, pads = spatial_attrs(ctx, ctx.shape(x)[2:], kernel)
    return {"strides": strides, "pads": pads, "dilations": dilations, "group": int(ctx.attr("group", 1))}


def conv3d(ctx, node):
    x, w, b = ctx.inp(0), ctx.inp(1), ctx.inp(2)
    ctx.emit("Conv3D", [ctx.tensor(x), ctx.tensor(w)] + ([ctx.tensor(b)] if b else []), [ctx.out(0)],
             _conv_attrs(ctx, x, w))


def convtranspose3d(ctx, node):
    x, w, b = ctx.inp(0), ctx.inp(1), ctx.inp(2)
    in_spatial, kernel = ctx.shape(x)[2:], list(ctx.shape(w)[2:])
    strides = list(ctx.attr("strides", [1] * 3))
    dilations = list(ctx.attr("dilations", [1] * 3))
    out_pad = list(ctx.attr("output_padding", [0] * 3))
    auto = ctx.attr("auto_pad", "NOTSET") or "NOTSET"
    output_shape = ctx.attr("output_shape")
    if output_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        # ONNX derives the pads from the wanted output size (as the 2-D builder does).
        if output_shape is None:
            output_shape = [n * s for n, s in zip(in_spatial, strides)]
        output_shape = list(output_shape)[-3:]
        begins, ends = [], []
        for i in range(3):
            total = strides[i] * (in_spatial[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1 \
                - output_shape[i]
            if total < 0:
                raise Unsupported(f"output_shape {output_shape} is larger than the full transposed convolution")
            first, second = total // 2, total - total // 2
            begins.append(first if auto == "SAME_UPPER" else second)
            ends.append(second if auto == "SAME_UPPER" else first)
        pads = begins + ends
    elif auto == "VALID":
        pads = [0] * 6
    else:
        pads = list(ctx.attr("pads", [0] * 6))
    attrs = {"strides": strides, "pads": pads, "dilations": dilations, "group": int(ctx.attr("group", 1)),
             "output_padding": out_pad}
    ctx.emit("ConvTranspose3D", [ctx.tensor(x), ctx.tensor(w)] + ([ctx.tensor(b)] if b else []), [ctx.out(0)], attrs)


def _pool3d(ctx, ir_op):
    x = ctx.inp(0)
    kernel = list(ctx.attr("kernel_shape"))
    strides, dilations, pads = spatial_attrs(ctx, ctx.shape(x)[2:], kernel)
    attrs = {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dilations,
             "ceil_mode": int(ctx.attr("ceil_mode", 0))}
    if ir_op == "AveragePool3D":
        attrs["count_include_pad"] = int(ctx.attr("count_include_pad", 0))
    ctx.emit(ir_op, [ctx.tensor(x)], [ctx.out(0)], attrs)


def maxpool3d(ctx, node):
    check_maxpool_outputs(ctx)
    _pool3d(ctx, "MaxPool3D")


def averagepool3d(ctx, node):
    _pool3d(ctx, "AveragePool3D")


def resize3d(ctx, node):
    """Opset 11+ Resize of a 5-D input: the same attributes as the 2-D builder, over D, H and W."""
    if ctx.opset < 11:
        raise Unsupported("Upsample/opset-10 Resize of a 5-d input")
    x = ctx.inp(0)
    ctx.emit("Resize3D", [ctx.tensor(x)], [ctx.out(0)], resize_attrs(ctx, x))


# --- normalisation ---------------------------------------------------------------------------------
def _norm(ctx, groups, scale, bias):
    x = ctx.inp(0)
    C = ctx.shape(x)[1]
    s = ctx.add_const(f"{ctx.node_name}/scale", np.asarray(scale, np.float32).reshape(C))
    b = ctx.add_const(f"{ctx.node_name}/bias", np.asarray(bias, np.float32).reshape(C))
    ctx.emit("GroupNorm", [ctx.tensor(x), s, b], [ctx.out(0)],
             {"groups": int(groups), "epsilon": float(ctx.attr("epsilon", 1e-5))})


def InstanceNormalization(ctx, node):
    x = ctx.inp(0)
    if ctx.rank(x) < 3:
        ctx.fail(f"takes an [N, C, spatial...] input, got {list(ctx.shape(x))}")
    C = ctx.shape(x)[1]
    scale, bias = ctx.const(ctx.inp(1), "scale"), ctx.const(ctx.inp(2), "B")
    if scale.size != C or bias.size != C:
        ctx.fail(f"scale and B must have {C} values, got {scale.size} and {bias.size}")
    _norm(ctx, C, scale, bias)


def GroupNormalization(ctx, node):
    """Opset 18 gives scale and bias per group, opset 21 per channel; both become per channel."""
    x = ctx.inp(0)
    if ctx.rank(x) < 3:
        ctx.fail(f"takes an [N, C, spatial...] input, got {list(ctx.shape(x))}")
    C, G = ctx.shape(x)[1], int(ctx.attr("num_groups"))
    if G < 1 or C % G:
        ctx.fail(f"num_groups {G} does not divide the {C} channels")
    scale = np.asarray(ctx.const(ctx.inp(1), "scale"), np.float32).reshape(-1)
    bias = np.asarray(ctx.const(ctx.inp(2), "bias"), np.float32).reshape(-1)
    if scale.size == G and bias.size == G and (ctx.opset < 21 or G == C):
        scale, bias = np.repeat(scale, C // G), np.repeat(bias, C // G)
    if scale.size != C or bias.size != C:
        ctx.fail(f"scale and bias must have {C} values (or {G} per group before opset 21)")
    _norm(ctx, G, scale, bias)


# --- custom-domain op ---------------------------------------------------------------------------------
def coupling_add(ctx, node):
    """``ai.edgert.CouplingAdd(x, f, offset=k)``: x with channels [k, k + C_f) increased by f, the half
    update of a reversible block written explicitly by an exporter (in place when x dies there)."""
    ctx.emit("CouplingAdd", [ctx.tensor(ctx.inp(0)), ctx.tensor(ctx.inp(1))], [ctx.out(0)],
             {"offset": int(ctx.attr("offset", 0))})


VOLUME_FORMS = {"Conv": conv3d, "ConvTranspose": convtranspose3d, "MaxPool": maxpool3d,
                "AveragePool": averagepool3d, "Resize": resize3d}
BUILDERS = (InstanceNormalization, GroupNormalization)


def volume_forms(ops: dict) -> None:
    """Route 5-D inputs of the ops in VOLUME_FORMS to their 3-D builders; add the norm builders."""
    for name, fn3d in VOLUME_FORMS.items():
        fn2d = ops[name]

        @functools.wraps(fn2d)
        def by_rank(ctx, node, fn2d=fn2d, fn3d=fn3d):
            return fn3d(ctx, node) if ctx.rank(ctx.inp(0)) == 5 else fn2d(ctx, node)

        ops[name] = by_rank
    for fn in BUILDERS:
        ops.setdefault(fn.__name__, fn)
    from ..onnx_codebook import CUSTOM_OPS
    CUSTOM_OPS.setdefault("CouplingAdd", coupling_add)
