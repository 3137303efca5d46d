"""Builders for TFLite's shape and axis-carrying operators (named after their ``BuiltinOperator``).

Axis-carrying ops run in whatever layout their input is held in, with the axes rewritten (a
TFLite axis ``a`` of a tensor held as ``perm`` is IR axis ``perm.index(a)``), so no Transpose is
needed. Ops whose meaning depends on the memory order (RESHAPE, FULLY_CONNECTED's flattening,
STRIDED_SLICE's shrink/new-axis reshape) take the TFLite-order form.
"""

from __future__ import annotations

import numpy as np

from .context import Unsupported
from .layout import NCHW, identity, inverse, ir_axis, permute
from .ops import common_layout, finish_with_activation, options


def _axis(ctx, axis, rank):
    if not -rank <= axis < max(rank, 1):
        ctx.fail(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def RESHAPE(ctx, op):
    x, out = op.inputs[0], op.outputs[0]
    shape = ctx.shape(x)
    size = int(np.prod(shape, dtype=np.int64))
    if len(op.inputs) > 1 and op.inputs[1] >= 0 and ctx.is_const(op.inputs[1]):
        target = ctx.const_ints(op.inputs[1], "new shape")
    elif options(ctx, op, "ReshapeOptions")["NewShape"]:
        target = list(options(ctx, op, "ReshapeOptions")["NewShape"])
    elif len(op.inputs) > 1 and op.inputs[1] >= 0:
        raise Unsupported("RESHAPE to a computed shape")
    else:
        target = list(ctx.tensor(out).shape)
    target = _resolve_shape(ctx, target, size, shape)
    if ctx.is_const(x):
        ctx.set_const(out, ctx.const(x).reshape(target))
        return
    if tuple(target) == tuple(shape):
        ctx.alias(out, ctx.value(x, ctx.held(x)), ctx.held(x))
        return
    ctx.emit("Reshape", [ctx.value(x)], {"shape": target}, out=out)


def _resolve_shape(ctx, target, size, shape):
    if target.count(-1) > 1 or any(d < -1 for d in target):
        ctx.fail(f"new shape {target} is invalid")
    known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
    if -1 in target:
        if known == 0 or size % known:
            ctx.fail(f"cannot reshape {list(shape)} to {target}")
        target = [size // known if d == -1 else d for d in target]
    if int(np.prod(target, dtype=np.int64)) != size:
        ctx.fail(f"cannot reshape {list(shape)} ({size} elements) to {target}"
                 + (" (the model's reshape targets are fixed for its original input size)" if not ctx.check_shapes
                    else ""))
    return [int(d) for d in target]


def TRANSPOSE(ctx, op):
    x, out = op.inputs[0], op.outputs[0]
    rank = ctx.rank(x)
    perm = ctx.const_ints(op.inputs[1], "perm")
    if sorted(perm) != list(range(rank)):
        ctx.fail(f"perm {perm} is not a permutation of {rank} dims")
    if ctx.is_const(x):
        ctx.set_const(out, np.transpose(ctx.const(x), perm))
        return
    # No data moves: the output is the same IR tensor, held in a different order relative to TFLite.
    held = ctx.held(x)
    inv = inverse(perm)
    ctx.alias(out, ctx.value(x, held), tuple(inv[h] for h in held))


def CONCATENATION(ctx, op):
    o = options(ctx, op, "ConcatenationOptions")
    ins = list(op.inputs)
    rank, perm = common_layout(ctx, ins)
    if any(ctx.rank(t) != rank for t in ins):
        ctx.fail("inputs have different ranks: " + ", ".join(str(list(ctx.shape(t))) for t in ins))
    axis = ir_axis(perm, _axis(ctx, o["Axis"], rank))
    finish_with_activation(ctx, "Concat", [ctx.value(t, perm) for t in ins], {"axis": axis},
                           o["FusedActivationFunction"], op.outputs[0], perm)


def _pad(ctx, op, mode, value=0.0):
    x = op.inputs[0]
    rank = ctx.rank(x)
    pads = ctx.const(op.inputs[1])
    if pads.dtype.kind not in "iu" or pads.shape != (rank, 2) or (pads < 0).any():
        ctx.fail(f"paddings must be a non-negative integer [{rank}, 2] constant, got {pads.dtype} {list(pads.shape)}")
    _, perm = common_layout(ctx, [x], op.outputs[0])
    ir_pads = [int(pads[p, 0]) for p in perm] + [int(pads[p, 1]) for p in perm]
    ctx.emit("Pad", [ctx.value(x, perm)], {"pads": ir_pads, "mode": mode, "value": float(value)},
             out=op.outputs[0], perm=perm)


def PAD(ctx, op):
    _pad(ctx, op, "constant")


def PADV2(ctx, op):
    """PAD with a constant fill value (a scalar third input)."""
    value = ctx.const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else np.zeros(1, np.float32)
    if value.size != 1 or value.dtype.kind != "f":
        ctx.fail(f"constant_values must be one float, got {value.dtype} {list(value.shape)}")
    _pad(ctx, op, "constant", float(value.reshape(-1)[0]))


def MIRROR_PAD(ctx, op):
    """REFLECT mirrors without repeating the edge (numpy 'reflect'); SYMMETRIC repeats it (not in the IR)."""
    mode = options(ctx, op, "MirrorPadOptions")["Mode"]
    if mode != 0:
        raise Unsupported("MIRROR_PAD in SYMMETRIC mode (edgert's Pad has constant, reflect and edge modes)")
    _pad(ctx, op, "reflect")


def MEAN(ctx, op):
    x = op.inputs[0]
    rank = ctx.rank(x)
    axes = sorted({_axis(ctx, a, rank) for a in ctx.const_ints(op.inputs[1], "axes")})
    keep = bool(options(ctx, op, "ReducerOptions")["KeepDims"])
    perm = ctx.held(x)
    ir_axes = sorted(ir_axis(perm, a) for a in axes)
    if not axes:
        ctx.alias(op.outputs[0], ctx.value(x, perm), perm)
        return
    if keep:
        out_perm = perm
    else:
        # The kept TFLite dims, in the order the IR result holds them, renumbered 0..r-1.
        kept_ir_order = [p for p in perm if p not in axes]
        rank_of = {d: i for i, d in enumerate(sorted(kept_ir_order))}
        out_perm = tuple(rank_of[d] for d in kept_ir_order)
    ctx.emit("ReduceMean", [ctx.value(x, perm)], {"axes": ir_axes, "keepdims": int(keep)},
             out=op.outputs[0], perm=out_perm)


def SOFTMAX(ctx, op):
    x = op.inputs[0]
    beta = float(options(ctx, op, "SoftmaxOptions")["Beta"])
    perm = ctx.held(x)
    src = ctx.value(x, perm)
    if beta != 1.0:
        src = ctx.emit("Mul", [src, ctx.b.add_const(ctx.b.unique(f"op{op.index}:beta"), np.float32(beta))])
    ctx.emit("Softmax", [src], {"axis": ir_axis(perm, ctx.rank(x) - 1)}, out=op.outputs[0], perm=perm)


def DEPTH_TO_SPACE(ctx, op):
    block = options(ctx, op, "DepthToSpaceOptions")["BlockSize"]
    if not isinstance(block, int) or not 1 <= block <= 1 << 12:
        ctx.fail(f"block size {block} is invalid")
    # TFLite's channel order (i * b + j) * C_out + c is ONNX's DCR mode.
    ctx.emit("DepthToSpace", [ctx.nchw(op.inputs[0])], {"blocksize": block, "mode": "DCR"},
             out=op.outputs[0], perm=NCHW)


def _resize(ctx, op, options_type, mode):
    o = options(ctx, op, options_type)
    x = op.inputs[0]
    size = ctx.const_ints(op.inputs[1], "size")
    if len(size) != 2 or min(size) < 1:
        ctx.fail(f"size must be two positive ints, got {size}")
    align, half = bool(o["AlignCorners"]), bool(o["HalfPixelCenters"])
    if align and half:
        ctx.fail("align_corners and half_pixel_centers cannot both be set")
    if ctx.rank(x) != 4:
        ctx.fail(f"expects a 4-D NHWC input, got shape {list(ctx.shape(x))}")
    N, _, _, C = ctx.shape(x)
    attrs = {"mode": mode, "sizes": [N, C, size[0], size[1]]}
    if mode == "linear":
        # TFLite samples (o + 0.5) * in / out - 0.5 with half pixels and clamps the taps, as ONNX does.
        attrs["coordinate_transformation_mode"] = "align_corners" if align else "half_pixel" if half else "asymmetric"
    elif align:
        attrs.update(coordinate_transformation_mode="align_corners", nearest_mode="round_prefer_ceil")
    elif half:
        # TFLite: floor((o + 0.5) * in / out), which is ONNX's tf_half_pixel_for_nn with floor.
        attrs.update(coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode="floor")
    else:
        attrs.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    ctx.emit("Resize", [ctx.nchw(x)], attrs, out=op.outputs[0], perm=NCHW)


def RESIZE_BILINEAR(ctx, op):
    _resize(ctx, op, "ResizeBilinearOptions", "linear")


def RESIZE_NEAREST_NEIGHBOR(ctx, op):
    _resize(ctx, op, "ResizeNearestNeighborOptions", "nearest")


# --- STRIDED_SLICE ---------------------------------------------------------------------------------
def strided_slice_spec(shape, begin, end, strides, o):
    """TFLite's STRIDED_SLICE semantics reduced to one (start, stop, step) per input dim plus the
    final shape. Follows ``BuildStridedSliceParams`` (ellipsis expansion, new axes) and
    ``StridedSliceStartForAxis``/``EndForAxis`` (negative indices, clamping, masks, offset)."""
    rank, count = len(shape), len(begin)
    bit = lambda mask, i: bool(mask >> i & 1)
    ellipsis, new_axis = o["EllipsisMask"], o["NewAxisMask"]
    n_add = sum(1 for i in range(count) if not bit(ellipsis, i) and bit(new_axis, i))
    eff = rank + n_add
    # Expand the ellipsis over the dims the spec does not name.
    kinds, src = [], []  # per effective dim: "ellipsis" | "new" | "rest" | "spec"; spec index
    i = expanded = 0
    while i < eff:
        if bit(ellipsis, i - expanded) and all(k != "ellipsis" for k in kinds):
            start = i
            stop = max(i + 1, min(i + 1 + n_add + rank - count, eff))
            expanded = stop - start - 1
            kinds += ["ellipsis"] * (stop - start)
            src += [None] * (stop - start)
            i = stop
            continue
        if bit(new_axis, i - expanded):
            kinds.append("new")
        elif i >= count + expanded:
            kinds.append("rest")
        else:
            kinds.append("spec")
        src.append(i - expanded)
        i += 1
    dims, out_shape, in_dim = [], [], 0
    for kind, k in zip(kinds, src):
        if kind == "new":
            out_shape.append(1)
            continue
        n = shape[in_dim]
        in_dim += 1
        if kind in ("ellipsis", "rest"):
            dims.append((0, n, 1))
            out_shape.append(n)
            continue
        stride = strides[k]
        if stride == 0:
            raise ValueError("stride 0")
        start = begin[k] + n if begin[k] < 0 else begin[k]
        start = min(max(start, 0), n) if stride > 0 else min(max(start, -1), n - 1)
        if bit(o["BeginMask"], k):
            start = 0 if stride > 0 else n - 1
        if bit(o["ShrinkAxisMask"], k):
            if not 0 <= start < n:
                raise ValueError(f"shrink index {begin[k]} is outside a dim of size {n}")
            dims.append((start, start + 1, 1))
            continue
        stop = end[k] + start if o["Offset"] else end[k]
        stop = stop + n if stop < 0 else stop
        stop = min(max(stop, 0), n) if stride > 0 else min(max(stop, -1), n - 1)
        if bit(o["EndMask"], k):
            stop = n if stride > 0 else -1
        length = max(0, -(-(stop - start) // stride))
        dims.append((start, stop, stride))
        out_shape.append(length)
    return dims, out_shape


def STRIDED_SLICE(ctx, op):
    o = options(ctx, op, "StridedSliceOptions")
    x, out = op.inputs[0], op.outputs[0]
    shape = ctx.shape(x)
    begin, end, strides = (ctx.const_ints(op.inputs[k], n) for k, n in ((1, "begin"), (2, "end"), (3, "strides")))
    if not len(begin) == len(end) == len(strides):
        ctx.fail(f"begin/end/strides have different lengths {len(begin)}, {len(end)}, {len(strides)}")
    try:
        dims, out_shape = strided_slice_spec(shape, begin, end, strides, o)
    except ValueError as exc:
        ctx.fail(str(exc))
    if len(dims) != len(shape):
        ctx.fail(f"the slice spec does not cover the input's {len(shape)} dims")
    lengths = [len(range(*d)) for d in dims]
    if 0 in lengths:
        raise Unsupported("a STRIDED_SLICE with an empty result")
    if ctx.is_const(x):
        value = ctx.const(x)[tuple(slice(a, b if b >= 0 else None, s) for a, b, s in dims)]
        ctx.set_const(out, value.reshape(out_shape))
        return
    perm = ctx.held(x)
    src = ctx.value(x, perm)
    same_rank = out_shape == lengths
    if any(d != (0, n, 1) for d, n in zip(dims, shape)):
        starts, stops, steps = zip(*permute(dims, perm))
        src = ctx.emit("Slice", [src], {"starts": list(starts), "ends": list(stops), "steps": list(steps)},
                       out=out if same_rank else None, perm=perm)
    if same_rank:
        ctx.alias(out, src, perm)
        return
    # Shrunk or new axes change the rank: reshape the TFLite-order form.
    if perm != identity(len(shape)):
        rel = [inverse(perm)[d] for d in range(len(shape))]
        src = ctx.emit("Transpose", [src], {"perm": rel})
    ctx.emit("Reshape", [src], {"shape": out_shape}, out=out)


BUILDERS = {name: fn for name, fn in list(globals().items()) if name.isupper() and callable(fn)}
