"""Shape and data-movement ops: Reshape, Transpose, Concat, Split, Slice, Pad, Gather, DepthToSpace.

f32 tensors take numba kernels (edgert/kernels/shape.py). Other dtypes (e.g. int64 shape arithmetic a
converter left unfolded) take numpy paths that write straight into the arena.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import InputError
from ..kernels import shape as K
from ..kernels.work import threads_for
from .common import coalesce, flat
from .registry import REQUIRED, OpDef, Prepared, Sequence, register

MAX_IO = 1 << 16  # Concat inputs / Split outputs


# --- attribute validation shared by the pool, reduce and resize records ---------------------------
def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def int_attr(opdef, node, attrs, key, lo=None, hi=None) -> int:
    """attrs[key] as an int, checked to lie in [lo, hi]."""
    v = attrs[key]
    if not _is_int(v):
        raise opdef.error(node, f"attribute '{key}' must be an integer, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise opdef.error(node, f"attribute '{key}' = {v} is outside [{lo}, {hi}]")
    return int(v)


def int_list(opdef, node, attrs, key, length=None, minimum=None) -> list:
    """attrs[key] as a list of ints, checked for length and a lower bound."""
    value = attrs[key]
    if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
        raise opdef.error(node, f"attribute '{key}' must be a list of integers, got {value!r}")
    if length is not None and len(value) != length:
        raise opdef.error(node, f"attribute '{key}' must have {length} values, got {len(value)}")
    if minimum is not None and any(v < minimum for v in value):
        raise opdef.error(node, f"attribute '{key}' values must be >= {minimum}, got {list(value)}")
    return [int(v) for v in value]


def choice_attr(opdef, node, attrs, key, choices) -> str:
    if attrs[key] not in choices:
        raise opdef.error(node, f"attribute '{key}' = {attrs[key]!r}; expected one of {', '.join(choices)}")
    return attrs[key]


def c_strides(shape) -> list:
    """Element strides of a C-contiguous tensor."""
    strides, acc = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        strides[d] = acc
        acc *= int(shape[d])
    return strides


def _prod(dims) -> int:
    return int(np.prod(dims, dtype=np.int64)) if len(dims) else 1


def _flat_copy(why):
    return Prepared("copy", np.copyto, lambda i, o, s: (flat(o[0]), flat(i[0])), reason=why)


def _strided_copy(out_shape, base, xstrides, what):
    """A copy ``out[idx] = x[base + idx . xstrides]`` through f32_copy_strided6, or None if > 6 dims."""
    merged = coalesce(out_shape, xstrides, rank=6)
    if merged is None:
        return None
    shape6, (xs6,) = merged
    return Prepared("f32_copy_strided6", K.f32_copy_strided6,
                    lambda i, o, s: (flat(i[0]), base, xs6, flat(o[0]), shape6),
                    reason=f"{what} as a strided copy over dims " + "x".join(map(str, shape6)))


@register
class Reshape(OpDef):
    name = "Reshape"
    family = "shape"
    attrs = {"shape": REQUIRED}
    view_of = 0
    kernels = ("copy",)

    def infer(self, node, attrs, ins, ctx):
        shape = int_list(self, node, attrs, "shape", minimum=1)
        if _prod(shape) != ins[0].size:
            raise self.error(node, f"cannot reshape {list(ins[0].shape)} ({ins[0].size} elements) to {shape}")
        return [(tuple(shape), ins[0].dtype)]

    def reference(self, attrs, x):
        return (x.reshape(attrs["shape"]).copy(),)

    def prepare(self, node, attrs, ins, outs, ctx):
        # Only reached when the input is a constant: a view needs no kernel.
        return _flat_copy("copy of a constant")


@register
class Transpose(OpDef):
    name = "Transpose"
    family = "shape"
    attrs = {"perm": REQUIRED}
    kernels = ("copy", "f32_transpose_2d", "f32_transpose_2d_mt", "f32_copy_strided6", "np_transpose", "f32_blocked_to_nhwc",
               "f32_blocked_to_nhwc_mt")

    def infer(self, node, attrs, ins, ctx):
        perm = int_list(self, node, attrs, "perm")
        if sorted(perm) != list(range(len(ins[0].shape))):
            raise self.error(node, f"perm {perm} is not a permutation of the {len(ins[0].shape)} input dims")
        return [(tuple(ins[0].shape[p] for p in perm), ins[0].dtype)]

    def reference(self, attrs, x):
        return (np.transpose(x, attrs["perm"]).copy(),)

    def prepare(self, node, attrs, ins, outs, ctx):
        perm = list(attrs["perm"])
        if ctx.is_blocked(node.inputs[0]):  # NCHW -> NHWC straight from the channel blocks
            from ..kernels import blocked_ops as KBO
            N, C, H, W = ins[0].shape
            g = np.array([N, C, H * W], np.int64)
            sfx, mt = threads_for(ctx.threads, outs[0].size)
            return Prepared("f32_blocked_to_nhwc" + sfx, getattr(KBO, "f32_blocked_to_nhwc" + sfx),
                            lambda i, o, s: (flat(i[0]), flat(o[0]), g, *mt), packed={"geometry": g},
                            reason=f"blocked by {KBO.VW} channels -> NHWC" + (", over threads" if mt else ""))
        numpy = Prepared("np_transpose", np.copyto, lambda i, o, s: (o[0], i[0].transpose(perm)),
                         reason="numpy copy of a transposed view")
        if ins[0].dtype != "f32":
            return numpy
        strides = c_strides(ins[0].shape)
        xstrides = [strides[p] for p in perm]
        merged = coalesce(outs[0].shape, xstrides, rank=6)
        if merged is None:
            return numpy
        shape6, (xs6,) = merged
        dims = [(int(n), int(s)) for n, s in zip(shape6, xs6) if n != 1]
        if len(dims) <= 1:
            return _flat_copy("perm only moves size-1 dims: a flat copy")
        if len(dims) in (2, 3):
            (a, sa), (b, sb) = dims[-2:]
            batch, sbatch = dims[0] if len(dims) == 3 else (1, a * b)
            if sa == 1 and sb == a and sbatch == a * b:
                what = {(0, 2, 3, 1): "NCHW->NHWC", (0, 3, 1, 2): "NHWC->NCHW"}.get(tuple(perm), "2-d transpose")
                _, mt = threads_for(ctx.threads, outs[0].size, batch * -(-b // K.TRANSPOSE_TILE))
                name = "f32_transpose_2d" + ("_mt" if mt else "")
                return Prepared(name, getattr(K, name),
                                lambda i, o, s: (flat(i[0]), flat(o[0]), batch, b, a, *mt),
                                reason=f"{what}: {batch} tiled transpose(s) of {b}x{a}" + (", over threads" if mt else ""))
        return _strided_copy(outs[0].shape, 0, xstrides, "transpose")


@register
class Concat(OpDef):
    name = "Concat"
    family = "shape"
    attrs = {"axis": REQUIRED}
    num_inputs = (1, MAX_IO)
    kernels = ("f32_concat_blocks", "np_concat")

    def infer(self, node, attrs, ins, ctx):
        first = ins[0]
        axis = int_attr(self, node, attrs, "axis", 0, len(first.shape) - 1)
        total = 0
        for name, x in zip(node.inputs, ins):
            if x.dtype != first.dtype:
                raise self.error(node, f"input '{name}' is {x.dtype}, the first input is {first.dtype}")
            same = len(x.shape) == len(first.shape) and all(
                a == b for d, (a, b) in enumerate(zip(x.shape, first.shape)) if d != axis)
            if not same:
                raise self.error(node, f"input '{name}' {list(x.shape)} does not match {list(first.shape)} "
                                       f"outside axis {axis}")
            total += x.shape[axis]
        shape = list(first.shape)
        shape[axis] = total
        return [(tuple(shape), first.dtype)]

    def reference(self, attrs, *xs):
        return (np.concatenate(xs, axis=attrs["axis"]),)

    def prepare(self, node, attrs, ins, outs, ctx):
        axis = attrs["axis"]
        if outs[0].dtype != "f32":
            return Prepared("np_concat", _np_concat, lambda i, o, s: (tuple(i), o[0], axis),
                            reason="numpy concatenate (dtype is not f32)")
        # Constants are copied once so every block is a writable float32 array (one numba tuple type).
        packed = {f"input{k}": np.array(ctx.const(n), dtype=np.float32).reshape(-1)
                  for k, n in enumerate(node.inputs) if ctx.is_const(n)}
        inners = np.array([_prod(x.shape[axis:]) for x in ins], dtype=np.int64)
        outer, out_inner = _prod(outs[0].shape[:axis]), _prod(outs[0].shape[axis:])

        def bind(i, o, s):
            xs = tuple(packed[f"input{k}"] if f"input{k}" in packed else flat(v) for k, v in enumerate(i))
            return (xs, inners, flat(o[0]), outer, out_inner)

        return Prepared("f32_concat_blocks", K.f32_concat_blocks, bind, packed=packed,
                        reason=f"{len(ins)} blocks per row, {outer} rows")


def _np_concat(xs, out, axis):
    np.concatenate(xs, axis=axis, out=out)


@register
class Split(OpDef):
    name = "Split"
    family = "shape"
    attrs = {"axis": 0, "split": REQUIRED}
    num_outputs = (1, MAX_IO)
    kernels = ("f32_split_blocks", "np_split")

    def infer(self, node, attrs, ins, ctx):
        x = ins[0]
        axis = int_attr(self, node, attrs, "axis", 0, len(x.shape) - 1)
        split = int_list(self, node, attrs, "split", len(node.outputs), 0)
        if sum(split) != x.shape[axis]:
            raise self.error(node, f"split {split} sums to {sum(split)}, axis {axis} has {x.shape[axis]}")
        return [(tuple(x.shape[:axis]) + (n,) + tuple(x.shape[axis + 1:]), x.dtype) for n in split]

    def reference(self, attrs, x):
        return tuple(p.copy() for p in np.split(x, np.cumsum(attrs["split"])[:-1], axis=attrs["axis"]))

    def prepare(self, node, attrs, ins, outs, ctx):
        axis, x = attrs["axis"], ins[0]
        if x.dtype != "f32":
            bounds = np.cumsum([0] + list(attrs["split"]))
            return Prepared("np_split", _np_split, lambda i, o, s: (i[0], tuple(o), bounds, axis),
                            reason="numpy copies (dtype is not f32)")
        inners = np.array([_prod(o.shape[axis:]) for o in outs], dtype=np.int64)
        outer, in_inner = _prod(x.shape[:axis]), _prod(x.shape[axis:])
        return Prepared("f32_split_blocks", K.f32_split_blocks,
                        lambda i, o, s: (flat(i[0]), tuple(flat(v) for v in o), inners, outer, in_inner),
                        reason=f"{len(outs)} blocks per row, {outer} rows")


def _np_split(x, outs, bounds, axis):
    for k, out in enumerate(outs):
        np.copyto(out, x[(slice(None),) * axis + (slice(bounds[k], bounds[k + 1]),)])


@register
class Slice(OpDef):
    name = "Slice"
    family = "shape"
    attrs = {"starts": REQUIRED, "ends": REQUIRED, "steps": []}
    kernels = ("f32_copy_strided6", "np_slice")

    def ranges(self, attrs, shape):
        steps = attrs["steps"] or [1] * len(shape)
        return [range(s, e, st) for s, e, st in zip(attrs["starts"], attrs["ends"], steps)]

    def infer(self, node, attrs, ins, ctx):
        shape = ins[0].shape
        rank = len(shape)
        int_list(self, node, attrs, "starts", rank)
        int_list(self, node, attrs, "ends", rank)
        if attrs["steps"]:
            steps = int_list(self, node, attrs, "steps", rank)
            if 0 in steps:
                raise self.error(node, f"step of dim {steps.index(0)} is 0")
        for d, r in enumerate(self.ranges(attrs, shape)):
            if not (-1 <= r.start <= shape[d] and -1 <= r.stop <= shape[d]):
                raise self.error(node, f"dim {d} (size {shape[d]}): start {r.start} / end {r.stop} wrap around; "
                                       "the converter must normalise them")
            if len(r) and not (0 <= min(r[0], r[-1]) and max(r[0], r[-1]) < shape[d]):
                raise self.error(node, f"dim {d} (size {shape[d]}): range({r.start}, {r.stop}, {r.step}) "
                                       "reads outside the input")
        return [(tuple(len(r) for r in self.ranges(attrs, shape)), ins[0].dtype)]

    def reference(self, attrs, x):
        return (x[np.ix_(*[np.arange(r.start, r.stop, r.step) for r in self.ranges(attrs, x.shape)])],)

    def prepare(self, node, attrs, ins, outs, ctx):
        ranges = self.ranges(attrs, ins[0].shape)
        slices = tuple(slice(r.start, r.stop if r.stop >= 0 else None, r.step) if len(r) else slice(0, 0)
                       for r in ranges)
        numpy = Prepared("np_slice", np.copyto, lambda i, o, s: (o[0], i[0][slices]), reason="numpy copy of a view")
        if ins[0].dtype != "f32":
            return numpy
        strides = c_strides(ins[0].shape)
        base = sum(r.start * st for r, st in zip(ranges, strides) if len(r))
        xstrides = [r.step * st for r, st in zip(ranges, strides)]
        return _strided_copy(outs[0].shape, base, xstrides, "slice") or numpy


@register
class Pad(OpDef):
    name = "Pad"
    family = "shape"
    attrs = {"pads": REQUIRED, "mode": "constant", "value": 0.0}
    kernels = ("copy", "f32_pad_rows6", "np_pad", "f32_blocked_pad_channels", "f32_blocked_pad_channels_mt")

    def infer(self, node, attrs, ins, ctx):
        shape = ins[0].shape
        rank = len(shape)
        pads = int_list(self, node, attrs, "pads", 2 * rank, 0)
        mode = choice_attr(self, node, attrs, "mode", tuple(K.PAD_CODES))
        if not isinstance(attrs["value"], numbers.Real):
            raise self.error(node, f"attribute 'value' must be a number, got {attrs['value']!r}")
        for d, n in enumerate(shape):
            b, e = pads[d], pads[rank + d]
            if mode == "reflect" and max(b, e) >= n and (b or e):
                raise self.error(node, f"reflect pads ({b}, {e}) of dim {d} must be smaller than its size {n}")
            if mode == "edge" and n == 0 and (b or e):
                raise self.error(node, f"edge padding of the empty dim {d}")
        return [(tuple(n + pads[d] + pads[rank + d] for d, n in enumerate(shape)), ins[0].dtype)]

    def reference(self, attrs, x):
        return (_numpy_pad(x, attrs),)

    def prepare(self, node, attrs, ins, outs, ctx):
        shape, pads, mode = list(ins[0].shape), attrs["pads"], attrs["mode"]
        if ctx.is_blocked(node.outputs[0]):  # zero channels appended (runtime/layout.py checked)
            from ..kernels import blocked_ops as KBO
            N, C, H, W = shape
            g = np.array([N, C, -(-C // KBO.VW), -(-outs[0].shape[1] // KBO.VW), H * W], np.int64)
            sfx, mt = threads_for(ctx.threads, outs[0].size)
            return Prepared("f32_blocked_pad_channels" + sfx, getattr(KBO, "f32_blocked_pad_channels" + sfx),
                            lambda i, o, s: (flat(i[0]), flat(o[0]), g, *mt), packed={"geometry": g},
                            reason=f"{C} -> {outs[0].shape[1]} channels, zeros appended (blocked)"
                            + (", over threads" if mt else ""))
        rank = len(shape)
        if not any(pads):
            return _flat_copy("no padding: a flat copy")
        numpy = Prepared("np_pad", _np_pad, lambda i, o, s: (i[0], o[0], attrs), reason="numpy pad")
        if ins[0].dtype != "f32":
            return numpy
        dims, block = _pad_dims(shape, pads[:rank], pads[rank:])
        if dims is None:
            return numpy
        return Prepared("f32_pad_rows6", K.f32_pad_rows6,
                        lambda i, o, s: (flat(i[0]), flat(o[0]), dims, block, K.PAD_CODES[mode],
                                         np.float32(attrs["value"])),
                        reason=f"{mode} pad over {len(shape)} dims, rows of {block}-element blocks")


def _pad_dims(shape, begins, ends):
    """Coalesce for f32_pad_rows6: ([6, 4] int64 (out_len, in_len, pad_begin, x_stride), block) or (None, 0).

    Trailing unpadded dims become the block; runs of unpadded dims merge (their index map is the
    identity); each padded dim stays its own dim.
    """
    last = max(d for d in range(len(shape)) if begins[d] or ends[d])
    block = _prod(shape[last + 1:])
    strides = c_strides(shape)
    rows = []
    for d in range(last + 1):
        n, b, e = shape[d], begins[d], ends[d]
        if rows and not (b or e) and rows[-1][0] == rows[-1][1] and rows[-1][2] == 0:
            rows[-1] = [rows[-1][0] * n, rows[-1][1] * n, 0, strides[d]]
        else:
            rows.append([n + b + e, n, b, strides[d]])
    if len(rows) > 6:
        return None, 0
    rows = [[1, 1, 0, 0]] * (6 - len(rows)) + rows
    return np.array(rows, dtype=np.int64), block


def _numpy_pad(x, attrs):
    rank, pads = x.ndim, attrs["pads"]
    widths = [(pads[d], pads[rank + d]) for d in range(rank)]
    if attrs["mode"] == "constant":
        return np.pad(x, widths, mode="constant", constant_values=attrs["value"])
    return np.pad(x, widths, mode=attrs["mode"])


def _np_pad(x, out, attrs):
    np.copyto(out, _numpy_pad(x, attrs))


@register
class Gather(OpDef):
    name = "Gather"
    family = "shape"
    attrs = {"axis": 0}
    num_inputs = (2, 2)
    kernels = ("f32_gather_rows", "f32_gather_rows_checked", "np_take")

    def infer(self, node, attrs, ins, ctx):
        x, ind = ins
        rank = len(x.shape)
        if rank == 0:
            raise self.error(node, "cannot gather from a scalar")
        axis = int_attr(self, node, attrs, "axis", -rank, rank - 1) % rank
        if ind.dtype not in ("i64", "i32"):
            raise self.error(node, f"indices must be i64 or i32, got {ind.dtype}")
        n = x.shape[axis]
        if ctx.is_const(node.inputs[1]):
            bad = [int(v) for v in np.asarray(ctx.const(node.inputs[1])).reshape(-1) if not -n <= v < n]
            if bad:
                raise self.error(node, f"index {bad[0]} is out of range for axis {axis} of size {n}")
        return [(tuple(x.shape[:axis]) + tuple(ind.shape) + tuple(x.shape[axis + 1:]), x.dtype)]

    def reference(self, attrs, x, indices):
        return (np.take(x, np.asarray(indices, dtype=np.int64), axis=attrs["axis"]),)

    def prepare(self, node, attrs, ins, outs, ctx):
        x, ind = ins
        axis = attrs["axis"] % len(x.shape)
        outer, n, inner = _prod(x.shape[:axis]), x.shape[axis], _prod(x.shape[axis + 1:])
        if ctx.is_const(node.inputs[1]):
            idx = np.asarray(ctx.const(node.inputs[1]), dtype=np.int64).reshape(-1)
            idx = np.where(idx < 0, idx + n, idx)
            if x.dtype != "f32":
                return Prepared("np_take", _np_take, lambda i, o, s: (i[0], idx.reshape(ind.shape), o[0], axis),
                                packed={"indices": idx}, reason="numpy take (dtype is not f32)")
            return Prepared("f32_gather_rows", K.f32_gather_rows,
                            lambda i, o, s: (flat(i[0]), idx, flat(o[0]), outer, n, inner),
                            packed={"indices": idx}, reason=f"constant indices: {idx.size} rows of {inner}")
        where = {"node": node.name, "op": node.op}

        def check(status):
            if status[0]:
                raise InputError(f"Gather index {int(status[1])} is out of range for axis {axis} of size {n}",
                                 **where)

        if x.dtype != "f32":
            def run_numpy(x, indices, out):
                bad = indices[(indices < -n) | (indices >= n)]
                check(np.array([bad.size, bad[0] if bad.size else 0]))
                np.take(x, indices, axis=axis, out=out)
            return Prepared("np_take", run_numpy, lambda i, o, s: (i[0], i[1], o[0]),
                            reason="numpy take (dtype is not f32)")

        return Prepared("f32_gather_rows_checked", Sequence(K.f32_gather_rows_checked, check),
                        lambda i, o, s: ((flat(i[0]), flat(i[1]), flat(o[0]), outer, n, inner, s[0]), (s[0],)),
                        scratch=[((2,), "i64")], reason="runtime indices, range-checked before any read")


def _np_take(x, indices, out, axis):
    np.take(x, indices, axis=axis, out=out)


@register
class DepthToSpace(OpDef):
    name = "DepthToSpace"
    family = "shape"
    attrs = {"blocksize": REQUIRED, "mode": "DCR"}
    kernels = ("f32_depth_to_space", "f32_depth_to_space_mt", "np_depth_to_space")

    def infer(self, node, attrs, ins, ctx):
        x = ins[0]
        b = int_attr(self, node, attrs, "blocksize", 1)
        choice_attr(self, node, attrs, "mode", ("DCR", "CRD"))
        if len(x.shape) != 4:
            raise self.error(node, f"takes a 4-d NCHW input, got {list(x.shape)}")
        N, C, H, W = x.shape
        if C % (b * b):
            raise self.error(node, f"channels {C} are not a multiple of blocksize^2 = {b * b}")
        return [((N, C // (b * b), H * b, W * b), x.dtype)]

    def reference(self, attrs, x):
        b = attrs["blocksize"]
        N, C, H, W = x.shape
        if attrs["mode"] == "DCR":
            y = x.reshape(N, b, b, C // (b * b), H, W).transpose(0, 3, 4, 1, 5, 2)
        else:
            y = x.reshape(N, C // (b * b), b, b, H, W).transpose(0, 1, 4, 2, 5, 3)
        return (y.reshape(N, C // (b * b), H * b, W * b),)

    def prepare(self, node, attrs, ins, outs, ctx):
        b = attrs["blocksize"]
        N, C, H, W = outs[0].shape[0], outs[0].shape[1], ins[0].shape[2], ins[0].shape[3]
        if ins[0].dtype != "f32":
            return Prepared("np_depth_to_space", np.copyto,
                            lambda i, o, s: (o[0], self.reference(attrs, i[0])[0]), reason="numpy (dtype is not f32)")
        c, i, j = np.meshgrid(np.arange(C), np.arange(b), np.arange(b), indexing="ij")
        chan = ((i * b + j) * C + c) if attrs["mode"] == "DCR" else (c * b * b + i * b + j)
        chan = np.ascontiguousarray(chan.reshape(-1), dtype=np.int64)
        _, mt = threads_for(ctx.threads, outs[0].size, N * C)
        name = "f32_depth_to_space" + ("_mt" if mt else "")
        return Prepared(name, getattr(K, name),
                        lambda i_, o, s: (flat(i_[0]), flat(o[0]), chan, N, C, H, W, b, *mt),
                        packed={"channels": chan}, reason=f"{attrs['mode']} blocksize {b}, row form"
                        + (", output planes over threads" if mt else ""))
