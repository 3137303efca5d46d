"""Linear algebra ops: FullyConnected (X @ W.T + b, fused activation) and MatMul (numpy semantics).

Kernel choice (``prepare``):

* FullyConnected with a small batch (<= GEMV_MAX_ROWS rows), or whose weights are computed by the
  graph: ``f32_gemv``, dot products straight on W [M, K] (no packing; memory-bound on W anyway);
* FullyConnected with a larger batch: ``f32_gemm_prepacked``, the GEMM with W.T packed into panels
  in prepare and X packed per run;
* MatMul by a constant B: ``f32_gemm_prepacked``; otherwise ``f32_gemm_rows`` (A packed in prepare
  when constant, else per run). Batch dims broadcast through two strided levels; anything that
  needs more (or a dtype other than f32) runs numpy's ``np.matmul(a, b, out=out)``.
"""

from __future__ import annotations

import numpy as np

from ..kernels import gemm as KG
from ..kernels.act import act_args, reference_act
from .common import ACT_ATTRS, broadcast_shape, check_activation, coalesce, flat
from .conv import _DUMMY, PARALLEL_MIN_MACS, gemv_prepared, writable
from .registry import OpDef, Prepared, register
from .shape import c_strides

GEMV_MAX_ROWS = 4


def _threads(ctx, macs):
    return ctx.threads if ctx.threads > 1 and macs >= PARALLEL_MIN_MACS else 1


def _const(ctx, node, index):
    name = node.inputs[index] if len(node.inputs) > index else ""
    return np.ascontiguousarray(ctx.const(name), np.float32) if name and ctx.is_const(name) else None


@register
class FullyConnected(OpDef):
    name = "FullyConnected"
    family = "linear"
    attrs = dict(ACT_ATTRS)
    num_inputs = (2, 3)
    kernels = ("f32_gemv", "f32_gemv_mt", "f32_gemm_prepacked", "f32_gemm_prepacked_mt")

    def infer(self, node, attrs, ins, ctx):
        check_activation(self, node, attrs)
        x, w = ins[0], ins[1]
        b = ins[2] if len(ins) > 2 else None
        for t, what in ((x, "input"), (w, "weight"), (b, "bias")):
            if t is not None and t.dtype != "f32":
                raise self.error(node, f"{what} must be f32, got {t.dtype}")
        if len(x.shape) != 2 or len(w.shape) != 2:
            raise self.error(node, f"takes X [N, K] and W [M, K], got {list(x.shape)} and {list(w.shape)}")
        if x.shape[1] != w.shape[1]:
            raise self.error(node, f"X has {x.shape[1]} features, W expects {w.shape[1]}")
        if b is not None and tuple(b.shape) != (w.shape[0],):
            raise self.error(node, f"bias must be [{w.shape[0]}], got {list(b.shape)}")
        return [((x.shape[0], w.shape[0]), "f32")]

    def reference(self, attrs, x, w, b=None):
        y = x.astype(np.float64) @ w.astype(np.float64).T
        if b is not None:
            y = y + b.astype(np.float64)
        return (reference_act(y, attrs["activation"], attrs["act_a"], attrs["act_b"]).astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        N, K = ins[0].shape
        M = ins[1].shape[0]
        has_bias = len(ins) > 2 and ins[2] is not None
        w, b = _const(ctx, node, 1), _const(ctx, node, 2) if has_bias else None
        act = act_args(attrs)
        T = _threads(ctx, N * M * K)
        if N <= GEMV_MAX_ROWS or w is None or (has_bias and b is None):
            # W is used in place (a read-only map of a big matrix is not worth copying); only a widened
            # fp16 constant is new memory, and only that counts as packed.
            weight = flat(w) if w is not None else None
            packed = {"bias": flat(writable(b)) if b is not None else np.zeros(M, np.float32)}
            if w is not None and ctx.graph.consts[node.inputs[1]].dtype != np.float32:
                packed["weight"] = weight
            why = "small batch" if N <= GEMV_MAX_ROWS else "weights or bias computed by the graph"
            return gemv_prepared(M, N, K, T, act,
                                 lambda i: weight if weight is not None else flat(i[1]),
                                 lambda i: flat(i[2]) if has_bias and b is None else packed["bias"],
                                 packed, f"{why}: {N} dot product pass{'es' if N > 1 else ''} over W {M}x{K}, "
                                         f"{T} thread{'s' if T > 1 else ''}")
        T, chunks, pg = KG.work_split(T, 1, N, M, K, packed_b=True)
        npan = -(-M // KG.NR)
        bias = np.zeros(npan * KG.NR, np.float32)
        if b is not None:
            bias[:M] = b
        packed = {"weight": KG.pack_b(w.T), "bias": bias}
        bias_mode = KG.BIAS_COL if has_bias else KG.BIAS_NONE
        g = KG.geometry(m=N, n=M, k=K, mchunks=chunks, pgroup=pg, ldy=M, bias_mode=bias_mode,
                        ap_nimg=1, ap_ngrp=1, ap_lda=K)
        packed["geometry"] = g
        name = "f32_gemm_prepacked" + ("_mt" if T > 1 else "")
        return Prepared(name, getattr(KG, name),
                        lambda i, o, s: (flat(s[1]), flat(writable(i[0])), packed["weight"], packed["bias"],
                                         flat(o[0]), g, s[0], *act),
                        scratch=[((T, KG.scratch_floats(K, 0)), "f32"), ((KG.packed_a_floats(N, K),), "f32")],
                        packed=packed,
                        reason=f"GEMM {N}x{K} @ {K}x{M} (W.T packed in prepare), {T} thread{'s' if T > 1 else ''}")


def matmul_shapes(a_shape, b_shape):
    """numpy matmul: (A as [..., M, K], B as [..., K, N], batch shape, output shape) or None if K differs."""
    a2 = (1,) + tuple(a_shape) if len(a_shape) == 1 else tuple(a_shape)
    b2 = tuple(b_shape) + (1,) if len(b_shape) == 1 else tuple(b_shape)
    if a2[-1] != b2[-2]:
        return None
    batch = tuple(np.broadcast_shapes(a2[:-2], b2[:-2]))
    out = batch + ((a2[-2],) if len(a_shape) > 1 else ()) + ((b2[-1],) if len(b_shape) > 1 else ())
    return a2, b2, batch, out


@register
class MatMul(OpDef):
    name = "MatMul"
    family = "linear"
    num_inputs = (2, 2)
    kernels = ("f32_gemm_rows", "f32_gemm_rows_mt", "f32_gemm_prepacked", "f32_gemm_prepacked_mt", "np_matmul")

    def infer(self, node, attrs, ins, ctx):
        a, b = ins
        if a.dtype != b.dtype:
            raise self.error(node, f"input dtypes differ: {a.dtype} and {b.dtype}")
        if len(a.shape) < 1 or len(b.shape) < 1:
            raise self.error(node, "takes inputs of rank >= 1 (no scalars)")
        a2 = a.shape if len(a.shape) > 1 else (1,) + tuple(a.shape)
        b2 = b.shape if len(b.shape) > 1 else tuple(b.shape) + (1,)
        if a2[-1] != b2[-2]:
            raise self.error(node, f"inner dims differ: {list(a.shape)} @ {list(b.shape)}")
        broadcast_shape(self, node, a2[:-2], b2[:-2])
        return [(matmul_shapes(a.shape, b.shape)[3], a.dtype)]

    def reference(self, attrs, a, b):
        return (np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        a2, b2, batch, _ = matmul_shapes(ins[0].shape, ins[1].shape)
        numpy = Prepared("np_matmul", _np_matmul(len(ins[0].shape) == 1, len(ins[1].shape) == 1),
                         lambda i, o, s: (i[0], i[1], o[0]), reason="numpy matmul: {}")
        if ins[0].dtype != "f32":
            numpy.reason = numpy.reason.format("dtype is not f32")
            return numpy
        M, K, N = a2[-2], a2[-1], b2[-1]
        rank = len(batch)
        a_b, b_b = (1,) * (rank - len(a2) + 2) + tuple(a2[:-2]), (1,) * (rank - len(b2) + 2) + tuple(b2[:-2])
        a_str = [0 if a_b[d] == 1 else st for d, st in enumerate(c_strides(a_b + (M * K,))[:-1])]
        b_str = [0 if b_b[d] == 1 else st for d, st in enumerate(c_strides(b_b + (K * N,))[:-1])]
        y_str = c_strides(batch + (M * N,))[:-1]
        levels = coalesce(batch, a_str, b_str, y_str, rank=2)
        if levels is None:
            numpy.reason = numpy.reason.format("batch dims do not flatten into two levels")
            return numpy
        (n_img, n_grp), (a_s, b_s, y_s) = [int(v) for v in levels[0]], levels[1]
        macs = int(np.prod(batch, dtype=np.int64)) * M * N * K
        a_const, b_const = _const(ctx, node, 0), _const(ctx, node, 1)
        ablock, bblock = KG.packed_a_floats(M, K), KG.packed_b_floats(K, N)
        fields = dict(m=M, n=N, k=K, nimg=n_img, ngrp=n_grp, ldb=N, y_is=int(y_s[0]), y_gs=int(y_s[1]), ldy=N)
        packed, scratch = {}, []
        if a_const is not None:
            # Every matrix of A packed in its own order; a level's stride in matrices scales to packed blocks.
            packed["a"] = KG.pack_a(a_const.reshape(-1, M, K))
            fields.update(a_is=int(a_s[0]) // (M * K) * ablock, a_gs=int(a_s[1]) // (M * K) * ablock)
        else:
            # Packed per run: one matrix per distinct A (a broadcast level packs it once).
            na_img, na_grp = (n_img if a_s[0] else 1), (n_grp if a_s[1] else 1)
            fields.update(a_is=na_grp * ablock if a_s[0] else 0, a_gs=ablock if a_s[1] else 0, ap_nimg=na_img,
                          ap_ngrp=na_grp, ap_sis=int(a_s[0]), ap_sgs=int(a_s[1]), ap_lda=K)
            scratch.append(((na_img * na_grp * ablock,), "f32"))
        if b_const is not None:
            packed["b"] = KG.pack_b(b_const.reshape(-1, K, N))
            fields.update(b_is=int(b_s[0]) // (K * N) * bblock, b_gs=int(b_s[1]) // (K * N) * bblock)
            base = "f32_gemm_prepacked"
        else:
            fields.update(b_is=int(b_s[0]), b_gs=int(b_s[1]))
            base = "f32_gemm_rows"
        T, chunks, pg = KG.work_split(_threads(ctx, macs), n_img * n_grp, M, N, K, packed_b=b_const is not None)
        fields.update(mchunks=chunks, pgroup=pg)
        g = KG.geometry(**fields)
        packed["geometry"] = g
        name = base + ("_mt" if T > 1 else "")
        a_in = 1 if a_const is None else 0  # index of the packed-A scratch (after the worker scratch)

        def bind(i, o, s):
            a = packed["a"] if a_const is not None else flat(s[a_in])
            asrc = _DUMMY if a_const is not None else flat(writable(i[0]))
            b = packed["b"] if b_const is not None else flat(writable(i[1]))
            return (a, asrc, b, _DUMMY, flat(o[0]), g, s[0], 0, 0.0, 0.0)

        what = f"GEMM {M}x{K} @ {K}x{N}" + (f" x {n_img * n_grp} batch" if n_img * n_grp > 1 else "")
        how = "B packed in prepare" if b_const is not None else ("A packed in prepare" if a_const is not None
                                                                    else "A packed per run")
        per_worker = KG.scratch_floats(K, 0 if b_const is not None else pg)
        return Prepared(name, getattr(KG, name), bind, scratch=[((T, per_worker), "f32")] + scratch,
                        packed=packed, reason=f"{what} ({how}), {T} thread{'s' if T > 1 else ''}")


def _np_matmul(a_vec, b_vec):
    def run(a, b, out):
        np.matmul(a, b, out=out)
    return run
