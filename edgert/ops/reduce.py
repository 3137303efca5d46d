"""Reductions (ReduceMean, ReduceSum, ReduceMax over given axes) and Softmax over one axis."""

from __future__ import annotations

import itertools

import numpy as np

from ..kernels import reduce as K
from .common import flat
from .registry import REQUIRED, OpDef, Prepared, register
from .shape import c_strides, int_attr, int_list


def reduce_groups(shape, axes):
    """Coalesce dims into runs of kept ('K') and reduced ('R') dims, size-1 dims dropped.

    Returns (kinds, sizes), e.g. ('KRK', [outer, n, inner]) for a mean over H, W of NCHW.
    """
    kinds, sizes = "", []
    for d, n in enumerate(shape):
        if n == 1:
            continue
        kind = "R" if d in axes else "K"
        if kinds and kinds[-1] == kind:
            sizes[-1] *= n
        else:
            kinds += kind
            sizes.append(n)
    return kinds, sizes


def _offsets(shape, dims):
    """Flat input offset of every index over ``dims`` (C order), as int64."""
    strides = c_strides(shape)
    off = np.zeros(1, dtype=np.int64)
    for d in dims:
        off = (off[:, None] + np.arange(shape[d], dtype=np.int64)[None, :] * strides[d]).reshape(-1)
    return off


class _Reduce(OpDef):
    family = "reduce"
    attrs = {"axes": REQUIRED, "keepdims": 1}
    code = K.SUM
    kernels = ("f32_reduce_rows", "f32_reduce_mid", "f32_reduce_tables")

    @staticmethod
    def axes(attrs, rank):
        """The reduced axes; an empty list reduces all of them (ONNX's default)."""
        return list(attrs["axes"]) or list(range(rank))

    def infer(self, node, attrs, ins, ctx):
        x = ins[0]
        if x.dtype != "f32":
            raise self.error(node, f"takes f32, got {x.dtype}")
        rank = len(x.shape)
        axes = int_list(self, node, attrs, "axes", minimum=0)
        if any(a >= rank for a in axes) or any(b <= a for a, b in itertools.pairwise(axes)):
            raise self.error(node, f"axes {axes} must be sorted, unique and in [0, {rank})")
        keep = int_attr(self, node, attrs, "keepdims", 0, 1)
        axes = self.axes(attrs, rank)
        shape = [1 if d in axes else n for d, n in enumerate(x.shape)] if keep else \
            [n for d, n in enumerate(x.shape) if d not in axes]
        return [(tuple(shape), "f32")]

    def reference(self, attrs, x):
        axes = tuple(self.axes(attrs, x.ndim))
        keep = bool(attrs["keepdims"])
        if self.code == K.MAX:
            return (np.max(x, axis=axes, keepdims=keep).astype(x.dtype),)
        fn = np.mean if self.code == K.MEAN else np.sum
        return (fn(x.astype(np.float64), axis=axes, keepdims=keep).astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        shape = tuple(ins[0].shape)
        axes = self.axes(attrs, len(shape))
        count = int(np.prod([shape[a] for a in axes], dtype=np.int64))
        scale = (1.0 / count if count else np.nan) if self.code == K.MEAN else 1.0
        op = self.code
        kinds, sizes = reduce_groups(shape, axes)
        padded = {"": (1, 1, 1), "K": (sizes[:1] + [1, 1]), "R": [1] + sizes + [1], "KR": sizes + [1],
                  "RK": [1] + sizes, "KRK": sizes}.get(kinds)
        if padded is None:
            kept = [d for d in range(len(shape)) if d not in axes]
            out_off, red_off = _offsets(shape, kept), _offsets(shape, axes)
            return Prepared("f32_reduce_tables", K.f32_reduce_tables,
                            lambda i, o, s: (flat(i[0]), flat(o[0]), out_off, red_off, op, scale),
                            packed={"out_offsets": out_off, "reduce_offsets": red_off},
                            reason=f"axes {axes} do not coalesce ({kinds}): offset tables")
        outer, n, inner = (int(v) for v in padded)
        if inner == 1:
            return Prepared("f32_reduce_rows", K.f32_reduce_rows,
                            lambda i, o, s: (flat(i[0]), flat(o[0]), outer, n, op, scale),
                            reason=f"{outer} contiguous rows of {n}")
        return Prepared("f32_reduce_mid", K.f32_reduce_mid,
                        lambda i, o, s: (flat(i[0]), flat(o[0]), s[0], outer, n, inner, op, scale),
                        scratch=[((inner,), "f64")], reason=f"[{outer}, {n}, {inner}] over the middle dim")


for _name, _code in K.CODES.items():
    register(type(_name, (_Reduce,), {"name": _name, "code": _code}))


@register
class Softmax(OpDef):
    name = "Softmax"
    family = "reduce"
    attrs = {"axis": -1}
    inplace = 0
    kernels = ("f32_softmax_rows", "f32_softmax_mid")

    def infer(self, node, attrs, ins, ctx):
        x = ins[0]
        if x.dtype != "f32":
            raise self.error(node, f"takes f32, got {x.dtype}")
        if not x.shape:
            raise self.error(node, "takes a tensor of rank >= 1, got a scalar")
        int_attr(self, node, attrs, "axis", -len(x.shape), len(x.shape) - 1)
        return [(x.shape, "f32")]

    def reference(self, attrs, x):
        v = x.astype(np.float64)
        e = np.exp(v - v.max(axis=attrs["axis"], keepdims=True))
        return ((e / e.sum(axis=attrs["axis"], keepdims=True)).astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        shape = ins[0].shape
        axis = attrs["axis"] % len(shape)
        outer, n = int(np.prod(shape[:axis], dtype=np.int64)), shape[axis]
        inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
        if inner == 1:
            return Prepared("f32_softmax_rows", K.f32_softmax_rows,
                            lambda i, o, s: (flat(i[0]), flat(o[0]), outer, n),
                            reason=f"last axis: {outer} rows of {n}")
        return Prepared("f32_softmax_mid", K.f32_softmax_mid,
                        lambda i, o, s: (flat(i[0]), flat(o[0]), s[0], s[1], outer, n, inner),
                        scratch=[((inner,), "f32"), ((inner,), "f64")],
                        reason=f"axis {axis} of [{outer}, {n}, {inner}]")
