"""ONNX builders for shape and data-movement ops, and for Resize/Upsample.

Everything that decides a shape (Reshape targets, Slice bounds, Pad amounts, Resize scales) must be
known at conversion time; the IR records only static, normalised attributes.
"""

from __future__ import annotations

import math

import numpy as np

from .context import Unsupported

INT64_MAX = np.iinfo(np.int64).max


def _axis(ctx, axis, rank):
    if not -rank <= axis < rank:
        ctx.fail(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def _reshape(ctx, x, target, out):
    """Reshape runtime tensor ``x`` to a static shape; the same shape is no node at all."""
    if tuple(target) == ctx.shape(x):
        ctx.alias(out, ctx.tensor(x))
    else:
        ctx.emit("Reshape", [ctx.tensor(x)], [out], {"shape": [int(d) for d in target]})


# --- reshapes --------------------------------------------------------------------------------------
def Reshape(ctx, node):
    x = ctx.inp(0)
    spec = ctx.const_ints(ctx.inp(1), "shape") if ctx.opset >= 5 else list(ctx.attr("shape"))
    in_shape = ctx.shape(x)
    allow_zero = int(ctx.attr("allowzero", 0))
    target = [in_shape[i] if d == 0 and not allow_zero else d for i, d in enumerate(spec)]
    if target.count(-1) > 1:
        ctx.fail(f"shape {spec} has more than one -1")
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        total = math.prod(in_shape)
        if known == 0 or total % known:
            ctx.fail(f"cannot reshape {list(in_shape)} to {spec}")
        target[target.index(-1)] = total // known
    if math.prod(target) != math.prod(in_shape) or min(target, default=1) < 0:
        ctx.fail(f"cannot reshape {list(in_shape)} to {spec}")
    _reshape(ctx, x, target, ctx.out(0))


def Flatten(ctx, node):
    x = ctx.inp(0)
    shape = ctx.shape(x)
    axis = int(ctx.attr("axis", 1))
    if not -len(shape) <= axis <= len(shape):
        ctx.fail(f"axis {axis} is out of range for rank {len(shape)}")
    if axis < 0:
        axis += len(shape)
    _reshape(ctx, x, [math.prod(shape[:axis]), math.prod(shape[axis:])], ctx.out(0))


def _axes_arg(ctx, from_opset):
    """Axes from input 1 (opset >= from_opset) or the 'axes' attribute; None when absent."""
    if ctx.opset >= from_opset:
        return ctx.const_ints(ctx.inp(1), "axes") if ctx.inp(1) else None
    axes = ctx.attr("axes")
    return None if axes is None else list(axes)


def Squeeze(ctx, node):
    x = ctx.inp(0)
    shape = ctx.shape(x)
    axes = _axes_arg(ctx, 13)
    if axes is None:
        axes = [d for d, n in enumerate(shape) if n == 1]
    axes = {_axis(ctx, a, len(shape)) for a in axes}
    if any(shape[a] != 1 for a in axes):
        ctx.fail(f"cannot squeeze axes {sorted(axes)} of shape {list(shape)}: not all are 1")
    _reshape(ctx, x, [n for d, n in enumerate(shape) if d not in axes], ctx.out(0))


def Unsqueeze(ctx, node):
    x = ctx.inp(0)
    shape = list(ctx.shape(x))
    axes = _axes_arg(ctx, 13)
    if axes is None:
        ctx.fail("Unsqueeze needs axes")
    rank = len(shape) + len(axes)
    axes = sorted(_axis(ctx, a, rank) for a in axes)
    if len(set(axes)) != len(axes):
        ctx.fail(f"repeated axes {axes}")
    for a in axes:
        shape.insert(a, 1)
    _reshape(ctx, x, shape, ctx.out(0))


def Transpose(ctx, node):
    x = ctx.inp(0)
    rank = ctx.rank(x)
    perm = list(ctx.attr("perm", list(range(rank))[::-1]))
    if perm == list(range(rank)):
        ctx.alias(ctx.out(0), ctx.tensor(x))
    else:
        ctx.emit("Transpose", [ctx.tensor(x)], [ctx.out(0)], {"perm": perm})


def SpaceToDepth(ctx, node):
    x = ctx.inp(0)
    n, c, h, w = ctx.shape(x)
    b = int(ctx.attr("blocksize"))
    if h % b or w % b:
        ctx.fail(f"H and W ({h}, {w}) are not multiples of the blocksize {b}")
    blocks = ctx.emit("Reshape", [ctx.tensor(x)], None, {"shape": [n, c, h // b, b, w // b, b]}, suffix="blocks")[0]
    # DCR (the default) orders output channels as (block row, block col, channel); CRD as (channel, ...).
    perm = [0, 3, 5, 1, 2, 4] if ctx.attr("mode", "DCR") == "DCR" else [0, 1, 3, 5, 2, 4]
    moved = ctx.emit("Transpose", [blocks], None, {"perm": perm})[0]
    ctx.emit("Reshape", [moved], [ctx.out(0)], {"shape": [n, c * b * b, h // b, w // b]}, suffix="depth")


def DepthToSpace(ctx, node):
    mode = ctx.attr("mode", "DCR")
    ctx.emit("DepthToSpace", [ctx.tensor(ctx.inp(0))], [ctx.out(0)],
             {"blocksize": int(ctx.attr("blocksize")), "mode": mode})


# --- joining and splitting ---------------------------------------------------------------------------
def Concat(ctx, node):
    names = [n for n in node.input if n]
    rank = ctx.rank(names[0])
    axis = _axis(ctx, int(ctx.attr("axis")), rank)
    # Empty inputs add nothing (exporters emit them for optional pieces of a shape).
    names = [n for n in names if ctx.shape(n)[axis] != 0] or names[:1]
    if len(names) == 1:
        ctx.alias(ctx.out(0), ctx.tensor(names[0]))
        return
    ctx.emit("Concat", [ctx.tensor(n) for n in names], [ctx.out(0)], {"axis": axis})


def Split(ctx, node):
    x = ctx.inp(0)
    shape = ctx.shape(x)
    axis = _axis(ctx, int(ctx.attr("axis", 0)), len(shape))
    outs = list(node.output)
    if ctx.opset >= 13:
        split = ctx.const_ints(ctx.inp(1), "split") if ctx.inp(1) else None
    else:
        split = ctx.attr("split")
    n = shape[axis]
    if split is None:
        parts = int(ctx.attr("num_outputs", len(outs)))
        if ctx.has_attr("num_outputs"):
            chunk = -(-n // parts)  # opset 18: equal chunks, the last one smaller
            split = [min(chunk, n - k * chunk) for k in range(parts)]
        elif n % parts:
            ctx.fail(f"axis {axis} of size {n} does not split into {parts} equal parts")
        else:
            split = [n // parts] * parts
    split = [int(s) for s in split]
    if len(split) != len(outs) or sum(split) != n:
        ctx.fail(f"split {split} does not cover axis {axis} of size {n} with {len(outs)} outputs")
    if len(outs) == 1:
        ctx.alias(outs[0], ctx.tensor(x))
        return
    ctx.emit("Split", [ctx.tensor(x)], outs, {"axis": axis, "split": split})


def _slice_range(start, end, step, n):
    """ONNX Slice bounds on a dim of size n, clamped as ONNX does, as a Python range (start, stop)."""
    if start < 0:
        start += n
    if end < 0:
        end += n
    if step > 0:
        return min(max(start, 0), n), min(max(end, 0), n)
    return min(max(start, 0), n - 1), min(max(end, -1), n - 1)


def Slice(ctx, node):
    x = ctx.inp(0)
    shape = ctx.shape(x)
    rank = len(shape)
    if ctx.opset >= 10:
        starts, ends = ctx.const_ints(ctx.inp(1), "starts"), ctx.const_ints(ctx.inp(2), "ends")
        axes = ctx.const_ints(ctx.inp(3), "axes") if ctx.inp(3) else list(range(len(starts)))
        steps = ctx.const_ints(ctx.inp(4), "steps") if ctx.inp(4) else [1] * len(starts)
    else:
        starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
        axes = list(ctx.attr("axes", list(range(len(starts)))))
        steps = [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        ctx.fail(f"starts/ends/axes/steps have different lengths ({starts}, {ends}, {axes}, {steps})")
    begin, stop, step = [0] * rank, list(shape), [1] * rank
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = _axis(ctx, a, rank)
        if st == 0:
            ctx.fail(f"step of axis {a} is 0")
        begin[a], stop[a] = _slice_range(s, e, st, shape[a])
        step[a] = st
    if begin == [0] * rank and stop == list(shape) and step == [1] * rank:
        ctx.alias(ctx.out(0), ctx.tensor(x))
        return
    ctx.emit("Slice", [ctx.tensor(x)], [ctx.out(0)], {"starts": begin, "ends": stop, "steps": step})


def Gather(ctx, node):
    x, idx = ctx.inp(0), ctx.inp(1)
    rank = ctx.rank(x)
    axis = _axis(ctx, int(ctx.attr("axis", 0)), rank)
    if ctx.is_const(idx) and ctx.const(idx).dtype not in (np.int64, np.int32):
        ctx.set_const(idx + "#i64", ctx.const(idx).astype(np.int64))
        idx = idx + "#i64"
    ctx.emit("Gather", [ctx.tensor(x), ctx.tensor(idx)], [ctx.out(0)], {"axis": axis})


# --- padding -------------------------------------------------------------------------------------------
def Pad(ctx, node):
    x = ctx.inp(0)
    shape = ctx.shape(x)
    rank = len(shape)
    mode = ctx.attr("mode", "constant")
    if ctx.opset >= 11:
        pads = ctx.const_ints(ctx.inp(1), "pads")
        value = ctx.optional_const(2, "constant_value")
        value = 0.0 if value is None or np.asarray(value).size == 0 else float(np.asarray(value).reshape(-1)[0])
        axes = ctx.const_ints(ctx.inp(3), "axes") if ctx.inp(3) else list(range(rank))
    else:
        pads, value, axes = list(ctx.attr("pads", ctx.attr("paddings"))), float(ctx.attr("value", 0.0)), \
            list(range(rank))
    if mode not in ("constant", "reflect", "edge"):
        raise Unsupported(f"Pad mode {mode!r}")
    if len(pads) != 2 * len(axes):
        ctx.fail(f"pads {pads} do not have two values per axis {axes}")
    full = [0] * (2 * rank)
    for k, a in enumerate(axes):
        a = _axis(ctx, a, rank)
        full[a], full[rank + a] = pads[k], pads[len(axes) + k]
    xi = ctx.tensor(x)
    if min(full) < 0:
        # Negative pads crop: a Slice first, then the (non-negative) rest.
        starts = [max(-full[d], 0) for d in range(rank)]
        ends = [shape[d] - max(-full[rank + d], 0) for d in range(rank)]
        xi = ctx.emit("Slice", [xi], None, {"starts": starts, "ends": ends, "steps": [1] * rank}, suffix="crop")[0]
        full = [max(p, 0) for p in full]
    if not any(full):
        ctx.alias(ctx.out(0), xi)
        return
    ctx.emit("Pad", [xi], [ctx.out(0)], {"pads": full, "mode": mode, "value": value})


# --- resizing ------------------------------------------------------------------------------------------
def _legacy_resize(ctx, x, scales, mode):
    """Upsample and opset-10 Resize: asymmetric coordinates; nearest takes floor when enlarging
    (and ceil when shrinking, as onnxruntime does for these versions)."""
    scales = [float(s) for s in scales]
    if mode not in ("nearest", "linear", "bilinear"):
        raise Unsupported(f"{ctx.node.op_type} mode {mode!r}")
    attrs = {"mode": "nearest" if mode == "nearest" else "linear", "coordinate_transformation_mode": "asymmetric",
             "scales": scales}
    if mode == "nearest":
        if all(s >= 1 for s in scales):
            attrs["nearest_mode"] = "floor"
        elif all(s <= 1 for s in scales):
            attrs["nearest_mode"] = "ceil"
        else:
            raise Unsupported(f"nearest resize that enlarges and shrinks at once (scales {scales})")
    ctx.emit("Resize", [ctx.tensor(x)], [ctx.out(0)], attrs)


def Upsample(ctx, node):
    scales = ctx.const(ctx.inp(1), "scales") if ctx.opset >= 9 else ctx.attr("scales")
    _legacy_resize(ctx, ctx.inp(0), np.asarray(scales).reshape(-1), ctx.attr("mode", "nearest"))


def resize_attrs(ctx, x) -> dict:
    """IR attributes of an opset-11+ Resize of ``x`` (any rank): mode, coordinate transform, nearest
    rounding, and full-rank scales or sizes; shared by the 2-D and the 3-D (volume) builders."""
    shape = ctx.shape(x)
    rank = len(shape)
    mode = ctx.attr("mode", "nearest")
    ctm = ctx.attr("coordinate_transformation_mode", "half_pixel")
    if mode not in ("nearest", "linear"):
        raise Unsupported(f"Resize mode {mode!r}")
    if ctm not in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_half_pixel_for_nn"):
        raise Unsupported(f"coordinate_transformation_mode {ctm!r}")
    if ctx.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise Unsupported(f"keep_aspect_ratio_policy {ctx.attr('keep_aspect_ratio_policy')!r}")
    axes = [_axis(ctx, a, rank) for a in ctx.attr("axes", list(range(rank)))]
    scales = ctx.optional_const(2, "scales")
    sizes = ctx.optional_const(3, "sizes")
    scales = None if scales is None or scales.size == 0 else [float(s) for s in scales.reshape(-1)]
    sizes = None if sizes is None or sizes.size == 0 else [int(s) for s in sizes.reshape(-1)]
    if (scales is None) == (sizes is None):
        ctx.fail("Resize needs exactly one of scales and sizes")
    given = scales if scales is not None else sizes
    if len(given) != len(axes):
        ctx.fail(f"{'scales' if scales else 'sizes'} {given} do not match axes {axes}")
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm}
    if mode == "nearest":
        attrs["nearest_mode"] = ctx.attr("nearest_mode", "round_prefer_floor")
    full = [1.0] * rank if scales is not None else list(shape)
    for a, s in zip(axes, given):
        full[a] = s
    attrs["scales" if scales is not None else "sizes"] = full
    shrinks = any(s < 1 for s in full) if scales is not None else any(o < n for o, n in zip(full, shape))
    if ctx.attr("antialias", 0) and shrinks and mode != "nearest":
        raise Unsupported("antialiased downscaling")
    return attrs


def Resize(ctx, node):
    x = ctx.inp(0)
    if ctx.opset < 11:
        _legacy_resize(ctx, x, ctx.const(ctx.inp(1), "scales").reshape(-1), ctx.attr("mode", "nearest"))
        return
    ctx.emit("Resize", [ctx.tensor(x)], [ctx.out(0)], resize_attrs(ctx, x))


BUILDERS = (Reshape, Flatten, Squeeze, Unsqueeze, Transpose, SpaceToDepth, DepthToSpace, Concat, Split, Slice,
            Gather, Pad, Upsample, Resize)
