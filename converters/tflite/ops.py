"""One builder per TFLite operator, named exactly after its ``BuiltinOperator`` (or custom code).

A builder reads the operator's inputs from the context (``ctx.value(t, layout)`` for activations,
``ctx.const``/``ctx.weight`` for constants), emits IR nodes with ``ctx.emit`` and says which TFLite
tensor each produces and in which layout. Spatial ops (convolutions, pools, resize, depth-to-space)
work in NCHW; elementwise ops keep whatever layout their inputs are held in. Shape and axis ops are in
``ops_shape.py``. A variant the IR cannot express raises ``Unsupported``.
"""

from __future__ import annotations

import struct

import numpy as np

from .context import Unsupported
from .layout import NCHW, identity, only_moves_unit_dims, relayout, tf_padding, transpose_conv_pads

PADDING = {0: "SAME", 1: "VALID"}
# TFLite ActivationFunctionType -> IR fused activation (name, act_a, act_b)
ACTIVATIONS = {0: ("none", 0.0, 0.0), 1: ("relu", 0.0, 0.0), 2: ("clip", -1.0, 1.0), 3: ("clip", 0.0, 6.0),
               4: ("tanh", 0.0, 0.0)}
ACTIVATION_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
# Options tables that may be absent (TFLite then uses these values).
DEFAULT_OPTIONS = {"AddOptions": {"FusedActivationFunction": 0}, "SubOptions": {"FusedActivationFunction": 0},
                   "MulOptions": {"FusedActivationFunction": 0}, "ReducerOptions": {"KeepDims": False},
                   "FullyConnectedOptions": {"FusedActivationFunction": 0, "WeightsFormat": 0, "KeepNumDims": False},
                   "ConcatenationOptions": {"Axis": 0, "FusedActivationFunction": 0},
                   "ResizeBilinearOptions": {"AlignCorners": False, "HalfPixelCenters": False},
                   "ResizeNearestNeighborOptions": {"AlignCorners": False, "HalfPixelCenters": False},
                   "SoftmaxOptions": {"Beta": 1.0}, "ReshapeOptions": {"NewShape": []},
                   "MirrorPadOptions": {"Mode": 0},
                   "StridedSliceOptions": {"BeginMask": 0, "EndMask": 0, "EllipsisMask": 0, "NewAxisMask": 0,
                                           "ShrinkAxisMask": 0, "Offset": False}}


# --- helpers shared by the builders ---------------------------------------------------------------
def options(ctx, op, type_name) -> dict:
    if op.options_type == type_name:
        return op.options
    if op.options_type == "NONE" and type_name in DEFAULT_OPTIONS:
        return DEFAULT_OPTIONS[type_name]
    ctx.fail(f"expects {type_name}, the file has {op.options_type}")


def arg(op, k) -> int:
    """Input ``k`` of ``op``, or -1 when omitted."""
    return op.inputs[k] if k < len(op.inputs) else -1


def fused(ctx, code) -> dict:
    if code not in ACTIVATIONS:
        raise Unsupported(f"fused activation {ACTIVATION_NAMES.get(code, code)} has no IR equivalent")
    name, a, b = ACTIVATIONS[code]
    return {"activation": name, "act_a": a, "act_b": b}


def finish_with_activation(ctx, op_name, inputs, attrs, code, out, perm):
    """Emit an op without fused-activation attributes, then the activation as its own node."""
    act = fused(ctx, code)
    if act["activation"] == "none":
        return ctx.emit(op_name, inputs, attrs, out=out, perm=perm)
    mid = ctx.emit(op_name, inputs, attrs)
    if act["activation"] == "clip":
        return ctx.emit("Clip", [mid], {"min": act["act_a"], "max": act["act_b"]}, out=out, perm=perm)
    return ctx.emit({"relu": "Relu", "tanh": "Tanh"}[act["activation"]], [mid], {}, out=out, perm=perm)


def positive(ctx, what, *values):
    for v in values:
        if not isinstance(v, int) or not 1 <= v <= 1 << 16:
            ctx.fail(f"{what} must be between 1 and 65536, got {v}")


def spatial_pads(ctx, padding_code, hw, khw, strides, dilations=(1, 1)):
    """IR pads [top, left, bottom, right] for TFLite SAME/VALID padding."""
    if padding_code not in PADDING:
        ctx.fail(f"unknown padding type {padding_code}")
    try:
        _, pt, pb = tf_padding(PADDING[padding_code], hw[0], khw[0], strides[0], dilations[0])
        _, pl, pr = tf_padding(PADDING[padding_code], hw[1], khw[1], strides[1], dilations[1])
    except ValueError as exc:
        ctx.fail(str(exc))
    return [pt, pl, pb, pr]


def float_weights(ctx, t, rank, what):
    w = ctx.const(t)
    if w.dtype.kind != "f":
        raise Unsupported(f"{what} '{ctx.tensor(t).name}' is {w.dtype} (quantized weights are not supported)")
    if w.ndim != rank:
        ctx.fail(f"{what} must be {rank}-D, got shape {list(w.shape)}")
    return w


def bias_input(ctx, t, n_out):
    if t < 0:
        return []
    b = float_weights(ctx, t, 1, "bias")
    if b.shape[0] != n_out:
        ctx.fail(f"bias has {b.shape[0]} values for {n_out} output channels")
    return [ctx.weight(t)]


# --- convolutions ----------------------------------------------------------------------------------
def CONV_2D(ctx, op):
    o = options(ctx, op, "Conv2DOptions")
    x, w = op.inputs[0], op.inputs[1]
    W = float_weights(ctx, w, 4, "filter")  # [O, kH, kW, I]
    _, H, Wd, C = _nhwc(ctx, x)
    strides, dil = (o["StrideH"], o["StrideW"]), (o["DilationHFactor"], o["DilationWFactor"])
    positive(ctx, "strides and dilations", *strides, *dil)
    if C % W.shape[3] or W.shape[0] % (C // W.shape[3]):
        ctx.fail(f"filter {list(W.shape)} does not fit {C} input channels")
    attrs = {"strides": list(strides), "dilations": list(dil), "group": C // W.shape[3],
             "pads": spatial_pads(ctx, o["Padding"], (H, Wd), W.shape[1:3], strides, dil),
             **fused(ctx, o["FusedActivationFunction"])}
    ins = [ctx.nchw(x), ctx.weight(w, perm=(0, 3, 1, 2))] + bias_input(ctx, arg(op, 2), W.shape[0])
    ctx.emit("Conv", ins, attrs, out=op.outputs[0], perm=NCHW)


def DEPTHWISE_CONV_2D(ctx, op):
    o = options(ctx, op, "DepthwiseConv2DOptions")
    x, w = op.inputs[0], op.inputs[1]
    W = float_weights(ctx, w, 4, "filter")  # [1, kH, kW, C * multiplier]
    _, H, Wd, C = _nhwc(ctx, x)
    if W.shape[0] != 1 or W.shape[3] % C:
        ctx.fail(f"depthwise filter {list(W.shape)} does not fit {C} input channels")
    multiplier = W.shape[3] // C
    if o["DepthMultiplier"] not in (0, multiplier):
        ctx.fail(f"depth_multiplier {o['DepthMultiplier']} disagrees with filter {list(W.shape)} on {C} channels")
    strides, dil = (o["StrideH"], o["StrideW"]), (o["DilationHFactor"], o["DilationWFactor"])
    positive(ctx, "strides and dilations", *strides, *dil)
    # Output channel c * multiplier + m reads input channel c: ONNX grouping with group = C.
    attrs = {"strides": list(strides), "dilations": list(dil), "group": C,
             "pads": spatial_pads(ctx, o["Padding"], (H, Wd), W.shape[1:3], strides, dil),
             **fused(ctx, o["FusedActivationFunction"])}
    ins = [ctx.nchw(x), ctx.weight(w, perm=(3, 0, 1, 2))] + bias_input(ctx, arg(op, 2), W.shape[3])
    ctx.emit("Conv", ins, attrs, out=op.outputs[0], perm=NCHW)


def _transpose_conv(ctx, op, x, w, bias, padding, strides, act, out_hw):
    W = float_weights(ctx, w, 4, "filter")  # [O, kH, kW, I]
    _, H, Wd, C = _nhwc(ctx, x)
    if W.shape[3] != C:
        ctx.fail(f"filter {list(W.shape)} does not fit {C} input channels")
    positive(ctx, "strides", *strides)
    try:
        pt, pb, oph = transpose_conv_pads(padding, H, out_hw[0], W.shape[1], strides[0])
        pl, pr, opw = transpose_conv_pads(padding, Wd, out_hw[1], W.shape[2], strides[1])
    except ValueError as exc:
        ctx.fail(str(exc))
    attrs = {"strides": list(strides), "pads": [pt, pl, pb, pr], "output_padding": [oph, opw], **act}
    # IR ConvTranspose weights are [C_in, C_out / group, kH, kW].
    ins = [ctx.nchw(x), ctx.weight(w, perm=(3, 0, 1, 2))] + bias_input(ctx, bias, W.shape[0])
    ctx.emit("ConvTranspose", ins, attrs, out=op.outputs[0], perm=NCHW)


def TRANSPOSE_CONV(ctx, op):
    o = options(ctx, op, "TransposeConvOptions")
    out_shape = ctx.const_ints(op.inputs[0], "output_shape")
    if len(out_shape) != 4:
        ctx.fail(f"output_shape must have 4 values, got {out_shape}")
    _transpose_conv(ctx, op, op.inputs[2], op.inputs[1], arg(op, 3), PADDING.get(o["Padding"], "?"),
                    (o["StrideH"], o["StrideW"]), fused(ctx, o.get("FusedActivationFunction", 0)), out_shape[1:3])


def Convolution2DTransposeBias(ctx, op):
    """MediaPipe's transposed conv + bias. Its custom options are the C struct
    ``TfLiteTransposeConvParams`` as raw little-endian int32s: padding (1 SAME, 2 VALID),
    stride_width, stride_height, then optionally an activation and a bias type that must be 0."""
    raw = op.custom_options
    if len(raw) < 12 or len(raw) % 4 or len(raw) > 20:
        ctx.fail(f"custom options must be 12 to 20 bytes of int32 (padding, stride_w, stride_h), got {len(raw)}")
    fields = struct.unpack(f"<{len(raw) // 4}i", raw)
    padding = {1: "SAME", 2: "VALID"}.get(fields[0])
    if padding is None:
        ctx.fail(f"custom options give padding {fields[0]}; expected 1 (SAME) or 2 (VALID)")
    stride_w, stride_h = fields[1], fields[2]
    positive(ctx, "strides", stride_h, stride_w)
    if any(fields[3:]):
        ctx.fail(f"custom options carry unsupported extra fields {list(fields[3:])}")
    if len(op.inputs) != 3:
        ctx.fail(f"takes (input, weights, bias), got {len(op.inputs)} inputs")
    x, w, bias = op.inputs
    _, H, Wd, _ = _nhwc(ctx, x)
    W = float_weights(ctx, w, 4, "filter")
    computed = [(n - 1) * s + k if padding == "VALID" else n * s
                for n, s, k in zip((H, Wd), (stride_h, stride_w), W.shape[1:3])]
    declared = list(ctx.tensor(op.outputs[0]).shape[1:3])
    if ctx.check_shapes and declared != computed:
        ctx.fail(f"declared output size {declared} differs from the {padding} result {computed}")
    _transpose_conv(ctx, op, x, w, bias, padding, (stride_h, stride_w), fused(ctx, 0), computed)


def _nhwc(ctx, x):
    shape = ctx.shape(x)
    if len(shape) != 4:
        ctx.fail(f"expects a 4-D NHWC input, got shape {list(shape)}")
    return shape


# --- pooling ---------------------------------------------------------------------------------------
def _pool(ctx, op, ir_op, extra):
    o = options(ctx, op, "Pool2DOptions")
    x = op.inputs[0]
    _, H, W, _ = _nhwc(ctx, x)
    k, s = (o["FilterHeight"], o["FilterWidth"]), (o["StrideH"], o["StrideW"])
    positive(ctx, "filter size and strides", *k, *s)
    attrs = {"kernel": list(k), "strides": list(s), "pads": spatial_pads(ctx, o["Padding"], (H, W), k, s), **extra}
    finish_with_activation(ctx, ir_op, [ctx.nchw(x)], attrs, o["FusedActivationFunction"], op.outputs[0], NCHW)


def MAX_POOL_2D(ctx, op):
    _pool(ctx, op, "MaxPool", {})


def AVERAGE_POOL_2D(ctx, op):
    # TFLite divides by the number of real (unpadded) pixels under the window.
    _pool(ctx, op, "AveragePool", {"count_include_pad": 0})


# --- elementwise -----------------------------------------------------------------------------------
def common_layout(ctx, tensors, out=None):
    """(rank, layout) for an elementwise result: the layout of a full-rank computed input held in
    another order than TFLite's (NCHW), else NCHW if every reader of ``out`` wants it, else TFLite's."""
    rank = max(ctx.rank(t) for t in tensors)
    for t in tensors:
        if not ctx.is_const(t) and ctx.rank(t) == rank and ctx.held(t) != identity(rank):
            return rank, ctx.held(t)
    if rank == 4 and out is not None and ctx.wants_nchw(out):
        return rank, NCHW
    return rank, identity(rank)


def operand(ctx, t, rank, perm):
    """``t`` ready to broadcast against a ``rank``-D result held as ``perm``."""
    shape = ctx.shape(t)
    if len(shape) == rank:
        return ctx.value(t, perm)
    padded = (1,) * (rank - len(shape)) + tuple(shape)
    if ctx.is_const(t):
        if perm == identity(rank):
            return ctx.weight(t)  # numpy broadcasting pads leading dims itself
        return ctx.weight(t, perm=perm, pre_shape=padded)
    name = ctx.value(t)
    if perm == identity(rank):
        return name
    name = ctx.emit("Reshape", [name], {"shape": list(padded)})
    rel = relayout(identity(rank), perm)
    if only_moves_unit_dims(padded, rel):
        return ctx.emit("Reshape", [name], {"shape": [padded[p] for p in perm]})
    return ctx.emit("Transpose", [name], {"perm": list(rel)})


_NUMPY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}


def _binary(ctx, op, ir_op, options_type):
    o = options(ctx, op, options_type)
    act = fused(ctx, o["FusedActivationFunction"])
    a, b = op.inputs[0], op.inputs[1]
    if ctx.is_const(a) and ctx.is_const(b) and act["activation"] == "none":
        ctx.set_const(op.outputs[0], _NUMPY[ir_op](ctx.const(a).astype(np.float32), ctx.const(b).astype(np.float32)))
        return
    rank, perm = common_layout(ctx, (a, b), op.outputs[0])
    ctx.emit(ir_op, [operand(ctx, a, rank, perm), operand(ctx, b, rank, perm)], act, out=op.outputs[0], perm=perm)


def ADD(ctx, op):
    _binary(ctx, op, "Add", "AddOptions")


def SUB(ctx, op):
    _binary(ctx, op, "Sub", "SubOptions")


def MUL(ctx, op):
    _binary(ctx, op, "Mul", "MulOptions")


def _elementwise_pair(ctx, op, ir_op):
    """Binary ops without options (MAXIMUM, MINIMUM): broadcasting like ADD, no fused activation."""
    a, b = op.inputs[0], op.inputs[1]
    rank, perm = common_layout(ctx, (a, b), op.outputs[0])
    ctx.emit(ir_op, [operand(ctx, a, rank, perm), operand(ctx, b, rank, perm)], {}, out=op.outputs[0], perm=perm)


def MAXIMUM(ctx, op):
    _elementwise_pair(ctx, op, "Max")


def MINIMUM(ctx, op):
    _elementwise_pair(ctx, op, "Min")


def _unary(ctx, op, ir_op, attrs=None):
    x = op.inputs[0]
    _, perm = common_layout(ctx, [x], op.outputs[0])
    ctx.emit(ir_op, [ctx.value(x, perm)], attrs or {}, out=op.outputs[0], perm=perm)


def RELU(ctx, op):
    _unary(ctx, op, "Relu")


def RELU6(ctx, op):
    _unary(ctx, op, "Clip", {"min": 0.0, "max": 6.0})


def RELU_N1_TO_1(ctx, op):
    _unary(ctx, op, "Clip", {"min": -1.0, "max": 1.0})


def LOGISTIC(ctx, op):
    _unary(ctx, op, "Sigmoid")


def TANH(ctx, op):
    _unary(ctx, op, "Tanh")


def HARD_SWISH(ctx, op):
    _unary(ctx, op, "HardSwish")


def PRELU(ctx, op):
    x, alpha = op.inputs[0], op.inputs[1]
    rank, perm = common_layout(ctx, [x], op.outputs[0])
    if ctx.rank(alpha) > rank:
        ctx.fail(f"alpha {list(ctx.shape(alpha))} has a higher rank than the input {list(ctx.shape(x))}")
    ctx.emit("PRelu", [ctx.value(x, perm), operand(ctx, alpha, rank, perm)], {}, out=op.outputs[0], perm=perm)


# --- dense layers ----------------------------------------------------------------------------------
def FULLY_CONNECTED(ctx, op):
    o = options(ctx, op, "FullyConnectedOptions")
    if o["WeightsFormat"] != 0:
        raise Unsupported("shuffled (int8) FULLY_CONNECTED weights")
    x, w = op.inputs[0], op.inputs[1]
    W = float_weights(ctx, w, 2, "weights")  # [M, K]
    M, K = W.shape
    shape = ctx.shape(x)
    size = int(np.prod(shape, dtype=np.int64))
    if K == 0 or size % K:
        ctx.fail(f"input {list(shape)} cannot be flattened into rows of {K}")
    rows = size // K
    flat = ctx.value(x)
    if list(shape) != [rows, K]:
        flat = ctx.emit("Reshape", [flat], {"shape": [rows, K]})
    ins = [flat, ctx.weight(w)] + bias_input(ctx, arg(op, 2), M)
    act = fused(ctx, o["FusedActivationFunction"])
    out_shape = [rows, M]
    if o["KeepNumDims"]:
        if shape[-1] != K:
            ctx.fail(f"keep_num_dims needs the input's last dim {shape[-1]} to equal K = {K}")
        out_shape = list(shape[:-1]) + [M]
    if out_shape == [rows, M]:
        ctx.emit("FullyConnected", ins, act, out=op.outputs[0])
    else:
        y = ctx.emit("FullyConnected", ins, act)
        ctx.emit("Reshape", [y], {"shape": out_shape}, out=op.outputs[0])


# --- constants as shipped --------------------------------------------------------------------------
def DEQUANTIZE(ctx, op):
    """fp16 weights stay fp16 in the IR (computed in f32); int8/uint8 constants are dequantized here."""
    x = op.inputs[0]
    if not ctx.is_const(x):
        raise Unsupported("DEQUANTIZE of a computed tensor (quantized activations)")
    value = ctx.const(x)
    sparse = ctx.consts[x].sparse
    if value.dtype == np.float16:
        ctx.set_const(op.outputs[0], value, sparse)
        return
    q = ctx.tensor(x).quant
    if value.dtype.kind not in "iu" or q is None:
        raise Unsupported(f"DEQUANTIZE of {value.dtype} without quantization parameters")
    scale, zero = q.scale, q.zero_point
    if scale.size > 1:
        axis = q.quantized_dimension
        if not 0 <= axis < value.ndim or value.shape[axis] != scale.size or zero.size not in (1, scale.size):
            ctx.fail(f"per-channel quantization over dim {axis} does not fit shape {list(value.shape)}")
        bshape = [1] * value.ndim
        bshape[axis] = scale.size
        scale, zero = scale.reshape(bshape), zero.reshape(bshape) if zero.size > 1 else zero
    elif scale.size == 0:
        ctx.fail("quantization parameters have no scale")
    deq = ((value.astype(np.float64) - zero.astype(np.float64)) * scale).astype(np.float32)
    ctx.set_const(op.outputs[0], deq, sparse)


def DENSIFY(ctx, op):
    x = op.inputs[0]
    if not ctx.is_const(x) or ctx.tensor(x).sparsity is None:
        ctx.fail(f"DENSIFY needs a constant sparse input; '{ctx.tensor(x).name}' is not one")
    ctx.set_const(op.outputs[0], ctx.const(x), ctx.consts[x].sparse)


CUSTOM_BUILDERS = {"Convolution2DTransposeBias": Convolution2DTransposeBias}
