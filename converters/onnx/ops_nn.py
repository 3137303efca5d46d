"""ONNX builders for the compute ops: convolution, normalisation, pooling, matmul, softmax, reductions.

IR convolution and pooling are 2-D over NCHW; ONNX's 1-D forms ([N, C, L]) run as 2-D with H = 1
between two Reshapes. ``auto_pad`` is always resolved to explicit pads here.
"""

from __future__ import annotations

import math

import numpy as np

from edgert.ir.graph import TensorInfo

from .context import Unsupported


# --- shared geometry ---------------------------------------------------------------------------
def spatial_attrs(ctx, in_spatial, kernel):
    """(strides, dilations, pads) for ONNX conv/pool attributes over ``in_spatial`` dims; pads in
    ONNX order [begin..., end...] with auto_pad resolved as ONNX defines it."""
    n = len(in_spatial)
    strides = list(ctx.attr("strides", [1] * n))
    dilations = list(ctx.attr("dilations", [1] * n))
    auto = ctx.attr("auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        pads = list(ctx.attr("pads", [0] * 2 * n))
    elif auto == "VALID":
        pads = [0] * 2 * n
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(in_spatial, kernel, strides, dilations):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            begins.append(small if auto == "SAME_UPPER" else big)
            ends.append(big if auto == "SAME_UPPER" else small)
        pads = begins + ends
    else:
        raise Unsupported(f"auto_pad {auto!r}")
    if len(strides) != n or len(dilations) != n or len(pads) != 2 * n:
        ctx.fail(f"strides/dilations/pads {strides}/{dilations}/{pads} do not match {n} spatial dims")
    if min(pads) < 0:
        raise Unsupported(f"negative pads {pads}")
    return strides, dilations, pads


def as_2d(values, fill):
    """Lift 1-D spatial attributes to 2-D with a unit H dim ([k] -> [fill, k])."""
    return [fill] + list(values)


def pads_2d(pads):
    """ONNX pads [b..., e...] of 1 or 2 spatial dims as IR [top, left, bottom, right]."""
    if len(pads) == 2:
        return [0, pads[0], 0, pads[1]]
    return list(pads)


def to_4d(ctx, x, suffix="as_2d"):
    """An [N, C, L] runtime tensor viewed as [N, C, 1, L] (a free IR Reshape)."""
    n, c, length = ctx.shape(x)
    return ctx.emit("Reshape", [ctx.tensor(x)], None, {"shape": [n, c, 1, length]}, suffix=suffix)[0]


def from_4d(ctx, ir_name, out, suffix="as_1d"):
    n, c, _, length = ctx.graph.tensors[ir_name].shape
    ctx.emit("Reshape", [ir_name], [out], {"shape": [n, c, length]}, suffix=suffix)


def _spatial_rank(ctx, x, what):
    rank = ctx.rank(x)
    if rank not in (3, 4):
        raise Unsupported(f"{rank - 2}-D {what} (edgert runs 1-D and 2-D)")
    return rank - 2


def _weight(ctx, w, lift):
    """IR name of a conv weight, reshaped to 4-D for 1-D convs (a constant stays a constant)."""
    if not lift:
        return ctx.tensor(w)
    if ctx.is_const(w):
        v = ctx.const(w)
        name = f"{w}#2d"
        ctx.set_const(name, v.reshape(v.shape[:2] + (1,) + v.shape[2:]), half=w in ctx.half)
        return ctx.tensor(name)
    s = ctx.shape(w)
    return ctx.emit("Reshape", [ctx.tensor(w)], None, {"shape": [s[0], s[1], 1, s[2]]}, suffix="weight_2d")[0]


# --- convolution ---------------------------------------------------------------------------------
def Conv(ctx, node):
    x, w, b = ctx.inp(0), ctx.inp(1), ctx.inp(2)
    nsp = _spatial_rank(ctx, x, "convolution")
    kernel = list(ctx.shape(w)[2:])
    if ctx.attr("kernel_shape") not in (None, kernel):
        ctx.fail(f"kernel_shape {ctx.attr('kernel_shape')} does not match the weight shape {kernel}")
    strides, dilations, pads = spatial_attrs(ctx, ctx.shape(x)[2:], kernel)
    lift = nsp == 1
    attrs = {"strides": as_2d(strides, 1) if lift else strides, "pads": pads_2d(pads),
             "dilations": as_2d(dilations, 1) if lift else dilations, "group": int(ctx.attr("group", 1))}
    inputs = [to_4d(ctx, x) if lift else ctx.tensor(x), _weight(ctx, w, lift)] + ([ctx.tensor(b)] if b else [])
    if lift:
        y = ctx.emit("Conv", inputs, None, attrs)[0]
        from_4d(ctx, y, ctx.out(0))
    else:
        ctx.emit("Conv", inputs, [ctx.out(0)], attrs)


def ConvTranspose(ctx, node):
    x, w, b = ctx.inp(0), ctx.inp(1), ctx.inp(2)
    nsp = _spatial_rank(ctx, x, "transposed convolution")
    in_spatial, kernel = ctx.shape(x)[2:], list(ctx.shape(w)[2:])
    strides = list(ctx.attr("strides", [1] * nsp))
    dilations = list(ctx.attr("dilations", [1] * nsp))
    out_pad = list(ctx.attr("output_padding", [0] * nsp))
    output_shape = ctx.attr("output_shape")
    auto = ctx.attr("auto_pad", "NOTSET") or "NOTSET"
    if output_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        # ONNX derives the pads from the wanted output size; output_shape overrides explicit pads.
        if output_shape is None:
            output_shape = [n * s for n, s in zip(in_spatial, strides)]
        output_shape = list(output_shape)[-nsp:]
        begins, ends = [], []
        for i in range(nsp):
            total = strides[i] * (in_spatial[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1 \
                - output_shape[i]
            if total < 0:
                raise Unsupported(f"output_shape {output_shape} is larger than the full transposed convolution")
            first, second = total // 2, total - total // 2
            begins.append(first if auto == "SAME_UPPER" else second)
            ends.append(second if auto == "SAME_UPPER" else first)
        pads = begins + ends
    elif auto == "VALID":
        pads = [0] * 2 * nsp
    else:
        pads = list(ctx.attr("pads", [0] * 2 * nsp))
    lift = nsp == 1
    attrs = {"strides": as_2d(strides, 1) if lift else strides, "pads": pads_2d(pads),
             "dilations": as_2d(dilations, 1) if lift else dilations, "group": int(ctx.attr("group", 1)),
             "output_padding": as_2d(out_pad, 0) if lift else out_pad}
    inputs = [to_4d(ctx, x) if lift else ctx.tensor(x), _weight(ctx, w, lift)] + ([ctx.tensor(b)] if b else [])
    if lift:
        y = ctx.emit("ConvTranspose", inputs, None, attrs)[0]
        from_4d(ctx, y, ctx.out(0))
    else:
        ctx.emit("ConvTranspose", inputs, [ctx.out(0)], attrs)


# --- batch normalisation -------------------------------------------------------------------------
def BatchNormalization(ctx, node):
    if ctx.attr("training_mode", 0) or ctx.attr("spatial", 1) != 1:
        raise Unsupported("training mode or spatial=0 batch normalisation")
    if any(ctx.out(i) and (ctx.uses.get(ctx.out(i)) or ctx.out(i) in ctx.graph_outputs) for i in range(1, 5)):
        raise Unsupported("batch normalisation's running statistics outputs (training only)")
    x = ctx.inp(0)
    gamma, beta, mean, var = (np.asarray(ctx.const(ctx.inp(i), n), dtype=np.float64).reshape(-1)
                              for i, n in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")))
    shape = ctx.shape(x)
    if len(shape) < 2 or not all(len(v) == shape[1] for v in (gamma, beta, mean, var)):
        ctx.fail(f"parameters do not have one value per channel of the input {list(shape)}")
    scale = gamma / np.sqrt(var + float(ctx.attr("epsilon", 1e-5)))
    shift = beta - mean * scale
    if _fold_into_producer(ctx, x, scale, shift):
        return
    per_channel = (shape[1],) + (1,) * (len(shape) - 2)
    s = ctx.add_const(f"{ctx.node_name}/scale", scale.astype(np.float32).reshape(per_channel))
    t = ctx.add_const(f"{ctx.node_name}/shift", shift.astype(np.float32).reshape(per_channel))
    y = ctx.emit("Mul", [ctx.tensor(x), s], None, suffix="scale")[0]
    ctx.emit("Add", [y, t], [ctx.out(0)], suffix="shift")


def _fold_into_producer(ctx, x, scale, shift) -> bool:
    """Fold y = x * scale + shift into the Conv/ConvTranspose producing ``x`` (in float64) when x
    feeds nothing else. Returns False (nothing changed) when that is not possible."""
    ir_x = ctx.ir.get(x)
    conv = ctx.producer(ir_x) if ir_x else None
    if (conv is None or conv.op not in ("Conv", "ConvTranspose") or conv.attrs.get("activation", "none") != "none"
            or ctx.uses.get(x, 0) != 1 or x in ctx.graph_outputs or list(ctx.ir.values()).count(ir_x) != 1):
        return False
    consts = ctx.graph.consts
    w_name, b_name = conv.inputs[1], conv.inputs[2] if len(conv.inputs) > 2 else ""
    if w_name not in consts or (b_name and b_name not in consts):
        return False
    w = ctx.graph.const_value(w_name).astype(np.float64)
    if conv.op == "Conv":
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    else:  # [C_in, M / group, kh, kw]: output channel m = g * (M / group) + j
        g = int(conv.attrs.get("group", 1))
        shaped = w.reshape((g, w.shape[0] // g, w.shape[1]) + w.shape[2:])
        w = (shaped * scale.reshape((g, 1, -1) + (1,) * (w.ndim - 2))).reshape(w.shape)
    bias = ctx.graph.const_value(b_name).astype(np.float64) if b_name else np.zeros_like(scale)
    half = consts[w_name].dtype == np.float16
    conv.inputs[1] = ctx.add_const(f"{conv.name}/weight", w.astype(np.float32), half=half)
    b_ir = ctx.add_const(f"{conv.name}/bias", (bias * scale + shift).astype(np.float32), half=half)
    conv.inputs[2:] = [b_ir]
    info = ctx.graph.tensors.pop(ir_x)
    new = ctx._output_name(ctx.out(0))
    conv.outputs[0] = new
    ctx.graph.tensors[new] = TensorInfo(new, info.shape, info.dtype)
    ctx._producer[new] = conv
    del ctx.ir[x]
    ctx.ir[ctx.out(0)] = new
    return True


# --- pooling ---------------------------------------------------------------------------------------
def _pool(ctx, ir_op):
    x = ctx.inp(0)
    nsp = _spatial_rank(ctx, x, "pooling")
    kernel = list(ctx.attr("kernel_shape"))
    strides, dilations, pads = spatial_attrs(ctx, ctx.shape(x)[2:], kernel)
    lift = nsp == 1
    attrs = {"kernel": as_2d(kernel, 1) if lift else kernel, "strides": as_2d(strides, 1) if lift else strides,
             "pads": pads_2d(pads), "ceil_mode": int(ctx.attr("ceil_mode", 0))}
    if ir_op == "MaxPool":
        attrs["dilations"] = as_2d(dilations, 1) if lift else dilations
    elif any(d != 1 for d in dilations):
        raise Unsupported("dilated AveragePool")
    else:
        attrs["count_include_pad"] = int(ctx.attr("count_include_pad", 0))
    if lift:
        y = ctx.emit(ir_op, [to_4d(ctx, x)], None, attrs)[0]
        from_4d(ctx, y, ctx.out(0))
    else:
        ctx.emit(ir_op, [ctx.tensor(x)], [ctx.out(0)], attrs)


def check_maxpool_outputs(ctx):
    """What edgert's MaxPool (2-D and 3-D) does not produce: column-major indices, or any indices in use."""
    if ctx.attr("storage_order", 0) != 0:
        raise Unsupported("MaxPool with storage_order=1")
    if ctx.out(1) and (ctx.uses.get(ctx.out(1)) or ctx.out(1) in ctx.graph_outputs):
        raise Unsupported("MaxPool's Indices output")


def MaxPool(ctx, node):
    check_maxpool_outputs(ctx)
    _pool(ctx, "MaxPool")


def AveragePool(ctx, node):
    _pool(ctx, "AveragePool")


def GlobalAveragePool(ctx, node):
    ctx.emit("GlobalAveragePool", [ctx.tensor(ctx.inp(0))], [ctx.out(0)])


def GlobalMaxPool(ctx, node):
    rank = ctx.rank(ctx.inp(0))
    ctx.emit("ReduceMax", [ctx.tensor(ctx.inp(0))], [ctx.out(0)], {"axes": list(range(2, rank)), "keepdims": 1})


def LRN(ctx, node):
    """y = x / (bias + alpha / size * sum of x^2 over a channel window) ^ beta, with the window sum as
    an AveragePool (count_include_pad) over a [N, 1, C, H*W] view."""
    x = ctx.inp(0)
    if ctx.rank(x) != 4:
        raise Unsupported(f"LRN over a rank-{ctx.rank(x)} input")
    n, c, h, w = ctx.shape(x)
    size = int(ctx.attr("size"))
    alpha, beta, bias = (float(ctx.attr(k, d)) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    xi = ctx.tensor(x)
    sq = ctx.emit("Mul", [xi, xi], None, suffix="square")[0]
    flat = ctx.emit("Reshape", [sq], None, {"shape": [n, 1, c, h * w]}, suffix="channels_as_rows")[0]
    avg = ctx.emit("AveragePool", [flat], None, {"kernel": [size, 1], "pads": [(size - 1) // 2, 0, size // 2, 0],
                                               "count_include_pad": 1}, suffix="window_mean")[0]
    back = ctx.emit("Reshape", [avg], None, {"shape": [n, c, h, w]}, suffix="window_nchw")[0]
    scaled = ctx.emit("Mul", [back, ctx.add_const(f"{ctx.node_name}/alpha", np.float32(alpha))], None,
                      suffix="alpha")[0]
    base = ctx.emit("Add", [scaled, ctx.add_const(f"{ctx.node_name}/bias", np.float32(bias))], None,
                    suffix="bias")[0]
    den = ctx.emit("Pow", [base, ctx.add_const(f"{ctx.node_name}/beta", np.float32(beta))], None, suffix="pow")[0]
    ctx.emit("Div", [xi, den], [ctx.out(0)])


# --- matrix products -------------------------------------------------------------------------------
def Gemm(ctx, node):
    a, b, c = ctx.inp(0), ctx.inp(1), ctx.inp(2)
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    trans_a, trans_b = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    if ctx.rank(a) != 2 or ctx.rank(b) != 2:
        ctx.fail(f"Gemm takes 2-D operands, got {list(ctx.shape(a))} and {list(ctx.shape(b))}")
    xa = ctx.tensor(a)
    if trans_a:
        xa = ctx.emit("Transpose", [xa], None, {"perm": [1, 0]}, suffix="transpose_a")[0]
    if not ctx.is_const(b):
        xb = ctx.tensor(b)
        if trans_b:
            xb = ctx.emit("Transpose", [xb], None, {"perm": [1, 0]}, suffix="transpose_b")[0]
        y = ctx.emit("MatMul", [xa, xb], None if (alpha != 1.0 or c) else [ctx.out(0)])[0]
        if alpha != 1.0:
            y = ctx.emit("Mul", [y, ctx.add_const(f"{ctx.node_name}/alpha", np.float32(alpha))],
                         None if c else [ctx.out(0)], suffix="alpha")[0]
        if c:
            ctx.emit("Add", [y, _scaled(ctx, c, beta)], [ctx.out(0)], suffix="add_c")
        return
    bv = ctx.const(b)
    weight = bv if trans_b else bv.T  # [N, K]
    half = ctx.const(b).dtype == np.float16 or b in ctx.half
    if alpha != 1.0:
        weight, half = weight.astype(np.float64) * alpha, False
    n_out = weight.shape[0]
    inputs = [xa, ctx.add_const(f"{ctx.node_name}/weight", np.ascontiguousarray(weight), half=half)]
    bias_in_fc = c and ctx.is_const(c) and _is_row_vector(ctx.const(c).shape, n_out)
    if bias_in_fc:
        bias = np.broadcast_to(np.asarray(ctx.const(c), dtype=np.float64).reshape(-1), (n_out,)) * beta
        inputs.append(ctx.add_const(f"{ctx.node_name}/bias", bias.astype(np.float32)))
    last = not c or bias_in_fc
    y = ctx.emit("FullyConnected", inputs, [ctx.out(0)] if last else None, suffix=None)[0]
    if not last:
        ctx.emit("Add", [y, _scaled(ctx, c, beta)], [ctx.out(0)], suffix="add_c")


def _is_row_vector(shape, n):
    return len(shape) <= 2 and int(np.prod(shape)) in (1, n) and (len(shape) < 2 or shape[0] == 1)


def _scaled(ctx, c, beta):
    """IR name of beta * C (folded when C is a constant)."""
    if beta == 1.0:
        return ctx.tensor(c)
    if ctx.is_const(c):
        return ctx.add_const(f"{ctx.node_name}/c_scaled", np.asarray(ctx.const(c), dtype=np.float64) * beta)
    return ctx.emit("Mul", [ctx.tensor(c), ctx.add_const(f"{ctx.node_name}/beta", np.float32(beta))], None,
                    suffix="beta")[0]


def MatMul(ctx, node):
    a, b = ctx.inp(0), ctx.inp(1)
    sa = ctx.shape(a)
    if ctx.is_const(b) and ctx.rank(b) == 2 and len(sa) >= 2 and ctx.dtype(a) == "f32":
        # A constant right operand is a FullyConnected weight ([K, N] -> [N, K]) over the rows of A.
        bv = ctx.const(b)
        w = ctx.add_const(f"{ctx.node_name}/weight", np.ascontiguousarray(bv.T),
                          half=bv.dtype == np.float16 or b in ctx.half)
        if len(sa) == 2:
            ctx.emit("FullyConnected", [ctx.tensor(a), w], [ctx.out(0)])
            return
        rows = int(np.prod(sa[:-1]))
        x2 = ctx.emit("Reshape", [ctx.tensor(a)], None, {"shape": [rows, sa[-1]]}, suffix="rows")[0]
        y2 = ctx.emit("FullyConnected", [x2, w], None, suffix=None)[0]
        ctx.emit("Reshape", [y2], [ctx.out(0)], {"shape": list(sa[:-1]) + [bv.shape[1]]}, suffix="unflatten")
        return
    ctx.emit("MatMul", [ctx.tensor(a), ctx.tensor(b)], [ctx.out(0)])


# --- softmax and reductions ------------------------------------------------------------------------
def Softmax(ctx, node):
    x = ctx.inp(0)
    shape = ctx.shape(x)
    rank = len(shape)
    axis = int(ctx.attr("axis", -1 if ctx.opset >= 13 else 1))
    if not -rank <= axis < rank:
        ctx.fail(f"axis {axis} is out of range for rank {rank}")
    axis %= rank
    if ctx.opset >= 13 or axis == rank - 1:
        ctx.emit("Softmax", [ctx.tensor(x)], [ctx.out(0)], {"axis": axis})
        return
    # Before opset 13 Softmax works on the input coerced to 2-D: [prod(dims < axis), prod(dims >= axis)].
    rows, cols = math.prod(shape[:axis]), math.prod(shape[axis:])
    flat = ctx.emit("Reshape", [ctx.tensor(x)], None, {"shape": [rows, cols]}, suffix="as_2d")[0]
    y = ctx.emit("Softmax", [flat], None, {"axis": 1}, suffix=None)[0]
    ctx.emit("Reshape", [y], [ctx.out(0)], {"shape": list(shape)}, suffix="unflatten")


def _reduce(ctx, ir_op, axes_input_from):
    x = ctx.inp(0)
    rank = ctx.rank(x)
    if ctx.opset >= axes_input_from:
        axes = ctx.const_ints(ctx.inp(1), "axes") if ctx.inp(1) else []
    else:
        axes = list(ctx.attr("axes", []))
    if not axes and ctx.attr("noop_with_empty_axes", 0):
        ctx.alias(ctx.out(0), ctx.tensor(x))
        return
    if any(not -rank <= a < rank for a in axes):
        ctx.fail(f"axes {axes} are out of range for rank {rank}")
    _require_f32(ctx, x)
    axes = sorted({a % rank for a in axes})
    ctx.emit(ir_op, [ctx.tensor(x)], [ctx.out(0)], {"axes": axes, "keepdims": int(ctx.attr("keepdims", 1))})


def _require_f32(ctx, name):
    if ctx.dtype(name) != "f32":
        raise Unsupported(f"takes {ctx.dtype(name)} input; edgert computes this op in f32 only")


def ReduceMean(ctx, node):
    _reduce(ctx, "ReduceMean", 18)


def ReduceSum(ctx, node):
    _reduce(ctx, "ReduceSum", 13)


def ReduceMax(ctx, node):
    _reduce(ctx, "ReduceMax", 18)


BUILDERS = (Conv, ConvTranspose, BatchNormalization, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, LRN,
            Gemm, MatMul, Softmax, ReduceMean, ReduceSum, ReduceMax)
