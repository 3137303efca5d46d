"""Pooling ops over NCHW: MaxPool, AveragePool, GlobalAveragePool (ONNX semantics, explicit pads)."""

from __future__ import annotations

import numpy as np

from ..kernels.work import threads_for
from ..kernels import pool as K
from ..kernels import reduce as R
from .common import flat
from .registry import REQUIRED, OpDef, Prepared, register
from .shape import int_attr, int_list

# Element-operations below which a prange launch (~3 us with the OpenMP layer) does not pay off.
PARALLEL_MIN_WORK = 1 << 15


def use_threads(ctx, work: int) -> bool:
    return ctx.threads > 1 and work >= PARALLEL_MIN_WORK


def row_chunks(ctx, mt: bool, rows: int) -> int:
    """How many chunks of output rows a kernel splits its work into (one scratch row each): a few
    per thread, so a thread slowed by another process does not hold up the whole op."""
    return max(1, min(rows, 4 * ctx.threads)) if mt else 1


def pool_output_size(n, k, s, p0, p1, d, ceil_mode) -> int:
    """ONNX's output length: floor (or ceil) of (n + pads - extent) / s + 1; in ceil mode the last
    window must start inside the input or the leading padding."""
    span = n + p0 + p1 - ((k - 1) * d + 1)
    if span < 0:
        return 0
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    return out - 1 if (out - 1) * s >= n + p0 else out


def _taps(n_out, k, s, p0, d):
    """Input index of every (output position, kernel tap): shape [n_out, k]."""
    return np.arange(n_out)[:, None] * s - p0 + np.arange(k)[None, :] * d


class _Pool(OpDef):
    family = "pool"
    dilated = True

    def geometry(self, attrs, shape):
        """(kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, OH, OW) for an [N, C, H, W] input."""
        kh, kw = attrs["kernel"]
        sh, sw = attrs["strides"]
        pt, pl, pb, pr = attrs["pads"]
        dh, dw = attrs["dilations"] if self.dilated else (1, 1)
        ceil = attrs["ceil_mode"]
        OH = pool_output_size(shape[2], kh, sh, pt, pb, dh, ceil)
        OW = pool_output_size(shape[3], kw, sw, pl, pr, dw, ceil)
        return kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, OH, OW

    def infer(self, node, attrs, ins, ctx):
        x = ins[0]
        if x.dtype != "f32":
            raise self.error(node, f"takes f32, got {x.dtype}")
        if len(x.shape) != 4:
            raise self.error(node, f"takes a 4-d NCHW input, got {list(x.shape)}")
        kernel = int_list(self, node, attrs, "kernel", 2, 1)
        int_list(self, node, attrs, "strides", 2, 1)
        pads = int_list(self, node, attrs, "pads", 4, 0)
        dilations = int_list(self, node, attrs, "dilations", 2, 1) if self.dilated else [1, 1]
        int_attr(self, node, attrs, "ceil_mode", 0, 1)
        for d in range(2):
            extent = (kernel[d] - 1) * dilations[d] + 1
            if max(pads[d], pads[d + 2]) >= extent:
                raise self.error(node, f"pads {pads} must be smaller than the kernel extent {extent} "
                                       f"along {'HW'[d]}")
        kh, kw, sh, sw, pt, pl, _, _, dh, dw, OH, OW = self.geometry(attrs, x.shape)
        if OH < 1 or OW < 1:
            raise self.error(node, f"kernel {kernel} does not fit the padded input {list(x.shape[2:])}")
        # With dilation a window can step over the whole input; engines disagree on what such a
        # window yields (onnxruntime: -FLT_MAX, onnx's evaluator: an error), so refuse it here.
        for axis, taps in (("H", _taps(OH, kh, sh, pt, dh)), ("W", _taps(OW, kw, sw, pl, dw))):
            n = x.shape[2] if axis == "H" else x.shape[3]
            if not ((taps >= 0) & (taps < n)).any(axis=1).all():
                raise self.error(node, f"some pooling window covers only padding along {axis} "
                                       f"(kernel {kernel}, dilations {dilations}, pads {pads})")
        return [((x.shape[0], x.shape[1], OH, OW), "f32")]

    def windows(self, attrs, x):
        """Every window tap as [N, C, OH, kh, OW, kw] (float64), plus per-axis masks of which taps lie
        inside the input and which lie inside input-plus-pads (ceil mode can overhang the pads)."""
        kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, OH, OW = self.geometry(attrs, x.shape)
        H, W = x.shape[2:]
        ih, iw = _taps(OH, kh, sh, pt, dh), _taps(OW, kw, sw, pl, dw)
        taps = x.astype(np.float64)[:, :, np.clip(ih, 0, H - 1)[:, :, None, None],
                                    np.clip(iw, 0, W - 1)[None, None, :, :]]
        inside = ((ih >= 0) & (ih < H))[:, :, None, None] & ((iw >= 0) & (iw < W))[None, None, :, :]
        in_pads = (ih < H + pb)[:, :, None, None] & (iw < W + pr)[None, None, :, :]
        return taps, inside, in_pads


def blocked_mean(shape) -> Prepared:
    """Mean over all pixels of a blocked [N, C, H, W] tensor, VW channels per vector."""
    from ..kernels import blocked as KB
    N, C, H, W = shape
    g = np.array([N, -(-C // KB.VW), H * W], np.int64)
    return Prepared("f32_blocked_gap", KB.f32_blocked_gap, lambda i, o, s: (flat(i[0]), flat(o[0]), g),
                    packed={"geometry": g}, reason=f"mean of {H}x{W} pixels, {KB.VW} channels per vector (blocked)")


@register
class MaxPool(_Pool):
    name = "MaxPool"
    attrs = {"kernel": REQUIRED, "strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "ceil_mode": 0}
    kernels = ("f32_maxpool_rows", "f32_maxpool_rows_mt", "f32_maxpool_2x2s2", "f32_maxpool_2x2s2_mt",
               "f32_blocked_maxpool", "f32_blocked_maxpool_mt")

    def reference(self, attrs, x):
        taps, inside, _ = self.windows(attrs, x)
        return (np.where(inside, taps, -np.inf).max(axis=(3, 5)).astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        N, C, H, W = ins[0].shape
        kh, kw, sh, sw, pt, pl, _, _, dh, dw, OH, OW = self.geometry(attrs, ins[0].shape)
        if ctx.is_blocked(node.outputs[0]):
            from ..kernels import blocked_ops as KBO
            gb = np.array([N * -(-C // KBO.VW), H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw], dtype=np.int64)
            sfx, mt = threads_for(ctx.threads, outs[0].size)
            return Prepared("f32_blocked_maxpool" + sfx, getattr(KBO, "f32_blocked_maxpool" + sfx),
                            lambda i, o, s: (flat(i[0]), flat(o[0]), gb, *mt),
                            packed={"geometry": gb}, reason=f"{kh}x{kw} s{sh}x{sw}, {KBO.VW} channels per vector "
                                                            "(blocked)" + (", over threads" if mt else ""))
        g = np.array([N * C, H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw], dtype=np.int64)
        mt = use_threads(ctx, outs[0].size * kh * kw)
        if (kh, kw, sh, sw, dh, dw) == (2, 2, 2, 2, 1, 1) and not any(attrs["pads"]) and (OH, OW) == (H // 2, W // 2):
            chunks = row_chunks(ctx, mt, N * C * OH)
            name = "f32_maxpool_2x2s2" + ("_mt" if mt else "")
            extra = (chunks,) if mt else ()
            return Prepared(name, getattr(K, name), lambda i, o, s: (flat(i[0]), flat(o[0]), g, *extra),
                            reason="2x2 s2: one pass over row pairs" + (", over threads" if mt else ""))
        name = "f32_maxpool_rows_mt" if mt else "f32_maxpool_rows"
        return Prepared(name, getattr(K, name), lambda i, o, s: (flat(i[0]), flat(o[0]), s[0], g),
                        scratch=[((row_chunks(ctx, mt, N * C * OH), 2, max(W, (OW - 1) * sw + 1)), "f32")],
                        reason=f"{kh}x{kw} s{sh}x{sw} d{dh}x{dw} separable rows" + (", over threads" if mt else ""))


@register
class AveragePool(_Pool):
    name = "AveragePool"
    attrs = {"kernel": REQUIRED, "strides": [1, 1], "pads": [0, 0, 0, 0], "ceil_mode": 0, "count_include_pad": 0}
    dilated = False
    kernels = ("f32_avgpool_rows", "f32_avgpool_rows_mt")

    def infer(self, node, attrs, ins, ctx):
        int_attr(self, node, attrs, "count_include_pad", 0, 1)
        return super().infer(node, attrs, ins, ctx)

    def reference(self, attrs, x):
        taps, inside, in_pads = self.windows(attrs, x)
        counted = in_pads if attrs["count_include_pad"] else inside
        total = np.where(inside, taps, 0.0).sum(axis=(3, 5))
        return ((total / np.broadcast_to(counted, taps.shape).sum(axis=(3, 5))).astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        if ctx.is_blocked(node.outputs[0]):  # a window as large as the input (runtime/layout.py)
            return blocked_mean(ins[0].shape)
        N, C, H, W = ins[0].shape
        kh, kw, sh, sw, pt, pl, pb, pr, _, _, OH, OW = self.geometry(attrs, ins[0].shape)
        include = bool(attrs["count_include_pad"])
        rscale = 1.0 / _window_counts(OH, H, kh, sh, pt, pb, include)
        cscale = 1.0 / _window_counts(OW, W, kw, sw, pl, pr, include)
        packed = {"row_scale": rscale.astype(np.float32), "col_scale": cscale.astype(np.float32)}
        g = np.array([N * C, H, W, OH, OW, kh, kw, sh, sw, pt, pl, 1, 1], dtype=np.int64)
        mt = use_threads(ctx, outs[0].size * kh * kw)
        name = "f32_avgpool_rows_mt" if mt else "f32_avgpool_rows"
        return Prepared(name, getattr(K, name),
                        lambda i, o, s: (flat(i[0]), flat(o[0]), packed["row_scale"], packed["col_scale"], s[0], g),
                        packed=packed, scratch=[((row_chunks(ctx, mt, N * C * OH), 2, max(W, (OW - 1) * sw + 1)), "f32")],
                        reason=f"{kh}x{kw} s{sh}x{sw} separable rows, divisor tables"
                        + (" (pads counted)" if include else "") + (", over threads" if mt else ""))


def _window_counts(n_out, n, k, s, p0, p1, include_pad):
    """Taps of each window along one axis that count toward the average: inside the input, or with
    count_include_pad inside input-plus-pads (never the ceil-mode overhang past the pads)."""
    start = np.arange(n_out) * s - p0
    if include_pad:
        return np.minimum(start + k, n + p1) - start
    return np.minimum(start + k, n) - np.maximum(start, 0)


@register
class GlobalAveragePool(OpDef):
    name = "GlobalAveragePool"
    family = "pool"
    kernels = ("f32_reduce_rows", "f32_blocked_gap")

    def infer(self, node, attrs, ins, ctx):
        x = ins[0]
        if x.dtype != "f32":
            raise self.error(node, f"takes f32, got {x.dtype}")
        if len(x.shape) < 3:
            raise self.error(node, f"takes an [N, C, spatial...] input, got {list(x.shape)}")
        return [(tuple(x.shape[:2]) + (1,) * (len(x.shape) - 2), "f32")]

    def reference(self, attrs, x):
        axes = tuple(range(2, x.ndim))
        return (x.astype(np.float64).mean(axis=axes, keepdims=True).astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        if ctx.is_blocked(node.outputs[0]):
            return blocked_mean(ins[0].shape)
        planes = ins[0].shape[0] * ins[0].shape[1]
        n = ins[0].size // planes if planes else 0
        scale = 1.0 / n if n else np.nan
        return Prepared("f32_reduce_rows", R.f32_reduce_rows,
                        lambda i, o, s: (flat(i[0]), flat(o[0]), planes, n, R.MEAN, scale),
                        reason=f"mean of {planes} contiguous planes of {n}")
