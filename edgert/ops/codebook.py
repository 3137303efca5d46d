"""Codebook features (``CodebookSnap``), the discrete key-value bottleneck (``KeyValueLookup``) and ``LayerNorm``.

Semantics follow the reference implementations (see docs/IR.md): the snap outputs the MEAN of
the k selected raw codes (not the sum), ranks inner-product codebooks by <LN(x), c>/|c| (cosine
order), and breaks ties toward the lower code index, as ONNX TopK/ArgMin do. Codebooks, keys,
values and projections must be constants: prepare precomputes code norms and packs keys.

Each snap node keeps its intervention state in ``Prepared.packed`` (arrays bound into the kernel
arguments), so ``edgert.interventions`` changes what a session computes without re-preparing:
``iv_ctrl``, ``iv_override``, ``iv_mask``, ``iv_mask_rows``; ``codes`` (snap) and ``codes`` (KV) hold
the ids of the last run even when the graph does not output them.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..kernels import codebook as KC
from ..kernels import kv as KV
from .registry import REQUIRED, OpDef, Prepared, register
from .shape import choice_attr, int_attr

SNAP_METRICS = ("inner_product", "euclidean", "dot")
TILE_BYTES = 65536  # one tile of codes is scored against every token while it sits in L1/L2
KEY_TILE_BYTES = 28672  # dk x tile keys (f32) stay in L1 while every query row is scored against them
PARALLEL_MIN_MACS = 1 << 18  # below this a thread launch costs more than it saves


def _prod(dims) -> int:
    return int(np.prod(dims, dtype=np.int64)) if len(dims) else 1


def _float_attr(opdef, node, attrs, key, positive=False) -> float:
    v = attrs[key]
    if not isinstance(v, numbers.Real) or isinstance(v, bool) or not np.isfinite(v) or (positive and v <= 0):
        raise opdef.error(node, f"attribute '{key}' must be a finite{' positive' if positive else ''} number, got {v!r}")
    return float(v)


def _need_const(opdef, node, ctx, index, what):
    name = node.inputs[index]
    if not ctx.is_const(name):
        raise opdef.error(node, f"the {what} ('{name}') must be a constant", hint="reconvert with the weights as initializers")


def _stored(ctx, name):
    """A constant as stored: f32 array, or (for fp16 storage) its uint16 bits; plus whether it is fp16."""
    value = ctx.graph.consts[name]
    if value.dtype == np.float16:
        return value.view(np.uint16), True
    return value, False


def _chunks(ctx, groups, codes, k) -> int:
    """How many code ranges per group the scan runs in parallel: enough items for every thread
    (twice over, for balance), each range long enough to amortise its top-k merge."""
    if ctx.threads <= 1:
        return 1
    want = -(-2 * ctx.threads // groups)
    return max(1, min(want, codes // max(256, 4 * k)))


@register
class LayerNorm(OpDef):
    name = "LayerNorm"
    family = "codebook"
    attrs = {"axis": -1, "epsilon": 1e-5}
    num_inputs = (1, 3)
    kernels = ("f32_layernorm_rows",)

    def infer(self, node, attrs, ins, ctx):
        x = ins[0]
        if x.dtype != "f32" or not x.shape:
            raise self.error(node, f"takes an f32 tensor of rank >= 1, got {x.dtype} {list(x.shape)}")
        axis = int_attr(self, node, attrs, "axis", -len(x.shape), len(x.shape) - 1) % len(x.shape)
        _float_attr(self, node, attrs, "epsilon", positive=True)
        inner = tuple(x.shape[axis:])
        for p, what in zip(ins[1:], ("scale", "bias")):
            if p is not None and (p.dtype != "f32" or _prod(p.shape) != _prod(inner)
                                  or tuple(d for d in p.shape if d != 1) != tuple(d for d in inner if d != 1)):
                raise self.error(node, f"{what} {list(p.shape)} must have the normalised shape {list(inner)}")
            if p is not None:
                _need_const(self, node, ctx, 1 if what == "scale" else 2, what)
        return [(x.shape, "f32")]

    def reference(self, attrs, x, scale=None, bias=None):
        axis = attrs["axis"] % x.ndim
        axes = tuple(range(axis, x.ndim))
        inner = x.shape[axis:]
        v = x.astype(np.float64)
        y = (v - v.mean(axes, keepdims=True)) / np.sqrt(v.var(axes, keepdims=True) + attrs["epsilon"])
        if scale is not None:
            y = y * scale.reshape(inner)
        if bias is not None:
            y = y + bias.reshape(inner)
        return (y.astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        shape = ins[0].shape
        axis = attrs["axis"] % len(shape)
        outer, inner = _prod(shape[:axis]), _prod(shape[axis:])
        gamma = np.ones(inner, np.float32)
        beta = np.zeros(inner, np.float32)
        packed = {"gamma": gamma, "beta": beta}
        eps = float(attrs["epsilon"])

        for index, target in ((1, gamma), (2, beta)):
            if len(node.inputs) > index and node.inputs[index]:
                target[:] = ctx.const(node.inputs[index]).reshape(-1)

        def bind(i, o, s):
            return (i[0].reshape(outer, inner), gamma, beta, o[0].reshape(outer, inner), eps)

        return Prepared("f32_layernorm_rows", KC.f32_layernorm_rows, bind, packed=packed,
                        reason=f"{outer} rows of {inner}, float64 moments")


@register
class CodebookSnap(OpDef):
    name = "CodebookSnap"
    family = "codebook"
    attrs = {"k": REQUIRED, "metric": "inner_product", "num_groups": 0, "pre_norm": "layernorm",
             "ln_epsilon": 1e-5, "reduce": "mean", "tie": "lower_index"}
    num_inputs = (2, 4)
    num_outputs = (1, 2)
    kernels = ("f32_codebook_snap", "f32_codebook_snap_mt", "f32_codebook_snap_f16", "f32_codebook_snap_f16_mt")

    def infer(self, node, attrs, ins, ctx):
        x, cb = ins[0], ins[1]
        if x.dtype != "f32" or cb.dtype != "f32" or not x.shape:
            raise self.error(node, f"takes f32 X (rank >= 1) and an f32 codebook, got {x.dtype} and {cb.dtype}")
        if len(cb.shape) != 3 or min(cb.shape) < 1:
            raise self.error(node, f"codebook must be [groups, codes, dim] with no empty dim, got {list(cb.shape)}")
        G, K, dg = cb.shape
        if x.shape[-1] != G * dg:
            raise self.error(node, f"X's last dim {x.shape[-1]} must be groups*dim = {G}*{dg} = {G * dg}")
        k = int_attr(self, node, attrs, "k", 1, K)
        groups = int_attr(self, node, attrs, "num_groups", 0)
        if groups not in (0, G):
            raise self.error(node, f"num_groups = {groups} but the codebook has {G} groups")
        choice_attr(self, node, attrs, "metric", SNAP_METRICS)
        pre = choice_attr(self, node, attrs, "pre_norm", ("layernorm", "none"))
        choice_attr(self, node, attrs, "reduce", ("mean", "sum"))
        choice_attr(self, node, attrs, "tie", ("lower_index",))
        _float_attr(self, node, attrs, "ln_epsilon", positive=True)
        _need_const(self, node, ctx, 1, "codebook")
        for index, what in ((2, "ln_scale"), (3, "ln_bias")):
            p = ins[index] if len(ins) > index else None
            if p is None:
                continue
            if pre != "layernorm":
                raise self.error(node, f"{what} is given but pre_norm is 'none'")
            if p.dtype != "f32" or tuple(p.shape) != (G, dg):
                raise self.error(node, f"{what} must be f32 [{G}, {dg}], got {p.dtype} {list(p.shape)}")
            _need_const(self, node, ctx, index, what)
        return [(x.shape, "f32"), (tuple(x.shape[:-1]) + (G, k), "i64")][:len(node.outputs)]

    def reference(self, attrs, x, cb, gamma=None, beta=None):
        G, _, dg = cb.shape
        k = attrs["k"]
        v = x.astype(np.float64).reshape(-1, G, dg)
        C = cb.astype(np.float64)
        if attrs["pre_norm"] == "layernorm":
            v = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + attrs["ln_epsilon"])
            v = v * (1.0 if gamma is None else gamma) + (0.0 if beta is None else beta)
        dots = np.einsum("ngd,gkd->ngk", v, C)
        if attrs["metric"] == "inner_product":
            with np.errstate(divide="ignore", invalid="ignore"):
                s = dots / np.linalg.norm(C, axis=-1)[None]
        elif attrs["metric"] == "euclidean":
            s = -np.sqrt(np.maximum(((v[:, :, None, :] - C[None]) ** 2).sum(-1), 0))
        else:
            s = dots
        ids = np.argsort(-s, axis=-1, kind="stable")[..., :k]  # NaN scores sort last
        y = C[np.arange(G)[None, :, None], ids].sum(axis=-2) / (k if attrs["reduce"] == "mean" else 1)
        return (y.reshape(x.shape).astype(x.dtype), ids.reshape(*x.shape[:-1], G, k).astype(np.int64))

    def prepare(self, node, attrs, ins, outs, ctx):
        G, K, dg = ins[1].shape
        k, D = attrs["k"], G * dg
        N = _prod(ins[0].shape[:-1])
        cb, is_f16 = _stored(ctx, node.inputs[1])
        why = ""
        if is_f16 and not np.isfinite(ctx.graph.consts[node.inputs[1]]).all():
            cb, is_f16, why = ctx.const(node.inputs[1]), False, " (fp16 codebook holds inf/NaN: widened to f32)"
        wide = cb.view(np.float16) if is_f16 else cb
        norms2 = np.einsum("gkd,gkd->gk", wide, wide, dtype=np.float64)  # buffered: no float64 copy of the codes
        scale, bias = np.ones((G, K), np.float32), np.zeros((G, K), np.float32)
        if attrs["metric"] == "inner_product":
            with np.errstate(divide="ignore"):
                scale[:] = np.where(norms2 > 0, 1.0 / np.sqrt(norms2), np.nan)  # a zero code never ranks
        elif attrs["metric"] == "euclidean":
            bias[:] = -0.5 * norms2
        gamma, beta = np.ones((G, dg), np.float32), np.zeros((G, dg), np.float32)
        for index, target in ((2, gamma), (3, beta)):
            if len(node.inputs) > index and node.inputs[index]:
                target[:] = ctx.const(node.inputs[index])
        nchunks = _chunks(ctx, G, K, k) if ctx.threads > 1 and N * G * K * dg >= PARALLEL_MIN_MACS else 1
        tile = int(max(4, min(256, TILE_BYTES // (4 * dg))))
        packed = {"scale": scale, "bias": bias, "gamma": gamma, "beta": beta,
                  "iv_ctrl": np.zeros(4, np.int64), "iv_override": np.full((N, G, k), -2, np.int64),
                  "iv_mask": np.zeros((G, K), np.uint8), "iv_mask_rows": np.ones(N, np.uint8),
                  "codes": np.full((N, G, k), -1, np.int64)}
        scratch = [((N, D), "f32"), ((nchunks, N * G, k), "f32"), ((nchunks, N * G, k), "i64"),
                   ((G * nchunks, 4, tile), "f32")]
        if is_f16:
            scratch.append(((G * nchunks, tile * dg), "f32"))
        p = packed
        use_ln = attrs["pre_norm"] == "layernorm"
        eps = float(attrs["ln_epsilon"])
        out_mul = 1.0 / k if attrs["reduce"] == "mean" else 1.0

        def bind(i, o, s):
            ids = o[1].reshape(N, G, k) if len(o) > 1 else p["codes"]
            return (i[0].reshape(N, D), cb, p["scale"], p["bias"], p["gamma"], p["beta"], eps, use_ln, out_mul,
                    p["iv_ctrl"], p["iv_override"], p["iv_mask"], p["iv_mask_rows"], o[0].reshape(N, D), ids,
                    p["codes"], *s, nchunks, tile)

        mt = ctx.threads > 1 and N * G * K * dg >= PARALLEL_MIN_MACS
        name = "f32_codebook_snap" + ("_f16" if is_f16 else "") + ("_mt" if mt else "")
        return Prepared(name, getattr(KC, name), bind, scratch=scratch, packed=packed,
                        reason=f"{G} group(s) x {K} codes x {dg}, top-{k} {attrs['metric']}: tiles of {tile} codes"
                               + (f", {nchunks} code range(s) per group over threads" if mt else "")
                               + (", fp16 codes decoded per tile" if is_f16 else "") + why)


@register
class KeyValueLookup(OpDef):
    name = "KeyValueLookup"
    family = "codebook"
    attrs = {"topk": 1, "metric": "sqeuclidean", "split": "projection", "combine": "none", "tie": "lower_index"}
    num_inputs = (3, 4)  # Z, keys, values, proj?
    num_outputs = (1, 3)
    kernels = ("f32_kv_lookup", "f32_kv_lookup_mt")

    def infer(self, node, attrs, ins, ctx):
        z, keys, values = ins[:3]
        proj = ins[3] if len(ins) > 3 else None
        if z.dtype != "f32" or not z.shape or any(t is not None and t.dtype != "f32" for t in ins[1:]):
            raise self.error(node, "takes f32 Z (rank >= 1), projection, keys and values")
        if len(keys.shape) != 3 or len(values.shape) != 3 or min(keys.shape) < 1 or min(values.shape) < 1:
            raise self.error(node, f"keys [C, M, dk] and values [C, M, dv] must be 3-d and non-empty, "
                                   f"got {list(keys.shape)} and {list(values.shape)}")
        C, M, dk = keys.shape
        if tuple(values.shape[:2]) != (C, M):
            raise self.error(node, f"values {list(values.shape)} must start with keys' [C, M] = [{C}, {M}]")
        topk = int_attr(self, node, attrs, "topk", 1, M)
        choice_attr(self, node, attrs, "metric", tuple(KV.METRICS))
        split = choice_attr(self, node, attrs, "split", ("projection", "chunk", "chunk_interleaved"))
        choice_attr(self, node, attrs, "combine", tuple(KV.COMBINES))
        choice_attr(self, node, attrs, "tie", ("lower_index",))
        D = z.shape[-1]
        if split == "projection":
            if proj is None or tuple(proj.shape) != (C, D, dk):
                got = "none" if proj is None else list(proj.shape)
                raise self.error(node, f"split 'projection' needs proj [C, D, dk] = [{C}, {D}, {dk}], got {got}")
            _need_const(self, node, ctx, 3, "projection")
        elif proj is not None:
            raise self.error(node, f"split '{split}' takes no projection input")
        elif D != C * dk:
            raise self.error(node, f"split '{split}' needs Z's last dim {D} = heads*dk = {C}*{dk}")
        _need_const(self, node, ctx, 1, "keys")
        _need_const(self, node, ctx, 2, "values")
        lead = tuple(z.shape[:-1])
        dv = values.shape[2]
        vshape = lead + (C, topk, dv) if attrs["combine"] == "none" else lead + (dv,)
        return [(vshape, "f32"), (lead + (C, topk), "i64"), (lead + (C, topk), "f32")][:len(node.outputs)]

    @staticmethod
    def queries(attrs, z, proj, C, dk):
        """q [n, C, dk] for each split mode (float64)."""
        z = z.reshape(-1, z.shape[-1]).astype(np.float64)
        if attrs["split"] == "projection":
            return np.einsum("nd,cdk->nck", z, proj.astype(np.float64))
        if attrs["split"] == "chunk":
            return z.reshape(-1, C, dk)
        return z.reshape(-1, dk, C).transpose(0, 2, 1)  # feature index = u*C + c

    def reference(self, attrs, z, keys, values, proj=None):
        C, _, dk = keys.shape
        topk = attrs["topk"]
        q = self.queries(attrs, z, proj, C, dk)
        K = keys.astype(np.float64)
        dots = np.einsum("nck,cmk->ncm", q, K)
        if attrs["metric"] == "dot":
            rank, dist = -dots, dots
        else:
            rank = (q ** 2).sum(-1)[..., None] - 2 * dots + (K ** 2).sum(-1)[None]
            dist = np.maximum(rank, 0) if attrs["metric"] == "sqeuclidean" else np.sqrt(np.maximum(rank, 0))
        ids = np.argsort(rank, axis=-1, kind="stable")[..., :topk]
        vals = values.astype(np.float64)[np.arange(C)[None, :, None], ids]  # [n, C, topk, dv]
        if attrs["combine"] == "vote":
            vals = vals.sum(axis=2).mean(axis=1)
        elif attrs["combine"] == "mean_codebooks":
            vals = vals.mean(axis=(1, 2))
        lead = z.shape[:-1]
        return (vals.reshape(*lead, *vals.shape[1:]).astype(np.float32),
                ids.reshape(*lead, C, topk).astype(np.int64),
                np.take_along_axis(dist, ids, -1).reshape(*lead, C, topk).astype(np.float32))

    def prepare(self, node, attrs, ins, outs, ctx):
        C, M, dk = ins[1].shape
        topk = attrs["topk"]
        D = ins[0].shape[-1]
        N = _prod(ins[0].shape[:-1])
        keys = np.asarray(ctx.const(node.inputs[1]), np.float32)
        packed = {"keys": np.ascontiguousarray(keys.transpose(0, 2, 1)),
                  "knorm": (np.einsum("cmk,cmk->cm", keys, keys, dtype=np.float64) if attrs["metric"] != "dot"
                            else np.zeros((C, M))).astype(np.float32),
                  "codes": np.full((N, C, topk), -1, np.int64)}
        use_proj = attrs["split"] == "projection"
        if use_proj:
            proj = ctx.const(node.inputs[3])
            packed["proj_t"] = np.ascontiguousarray(proj.transpose(1, 0, 2).reshape(D, C * dk), dtype=np.float32)
            qidx = np.zeros(1, np.int64)
        else:
            packed["proj_t"] = np.zeros((1, 1), np.float32)
            cols = np.arange(C * dk).reshape(C, dk)
            qidx = cols.reshape(-1) if attrs["split"] == "chunk" else (np.arange(dk)[None, :] * C + np.arange(C)[:, None]).reshape(-1)
            qidx = qidx.astype(np.int64)
        packed["qidx"] = qidx
        values, is_f16 = _stored(ctx, node.inputs[2])
        mt = ctx.threads > 1 and N * C * M * dk >= PARALLEL_MIN_MACS
        nchunk = max(1, min(ctx.threads, C)) if mt else 1
        metric, combine = KV.METRICS[attrs["metric"]], KV.COMBINES[attrs["combine"]]
        # Tiling pays when several query rows share each tile; one row streams the keys in one pass.
        tile = M if N == 1 else int(min(M, max(16, KEY_TILE_BYTES // (4 * dk))))
        scratch = [((N, C * dk), "f32"), ((nchunk, tile), "f32"), ((nchunk, N, topk), "f32"), ((nchunk, N, topk), "i64")]
        if len(outs) < 3:
            scratch.append(((N, C, topk), "f32"))
        p = packed

        def bind(i, o, s):
            ids = o[1].reshape(N, C, topk) if len(o) > 1 else p["codes"]
            dist = o[2].reshape(N, C, topk) if len(o) > 2 else s[4]
            return (i[0].reshape(N, D), p["proj_t"], p["qidx"], use_proj, p["keys"], p["knorm"], values, is_f16,
                    metric, combine, o[0].reshape(N, -1), ids, p["codes"], dist, s[0], s[1], s[2], s[3], nchunk)

        name = "f32_kv_lookup_mt" if mt else "f32_kv_lookup"
        return Prepared(name, getattr(KV, name), bind, scratch=scratch, packed=packed,
                        reason=f"{C} heads x {M} keys x {dk}, top-{topk} {attrs['metric']}: keys packed "
                               f"structure-of-arrays, tiles of {tile} keys" + (f", {nchunk} head ranges over threads" if mt else "")
                               + (", fp16 values read in place" if is_f16 else ""))
