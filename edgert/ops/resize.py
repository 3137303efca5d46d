"""Resize (ONNX opset 13+ semantics) of the H and W dims of an NCHW tensor: nearest and bilinear.

``scales`` are the factors used in the coordinate transform, ``sizes`` the output shape; either may
be omitted (sizes = floor(in * scale); scales = sizes / in), as ONNX derives one from the other.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..kernels.work import threads_for
from ..kernels import resize as K
from .common import flat
from .pool import row_chunks, use_threads
from .registry import OpDef, Prepared, register
from .shape import choice_attr, int_list

MODES = ("nearest", "linear")
COORDINATE_MODES = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def resolve_scales_sizes(attrs, in_shape):
    """(scales, sizes) over every dim (2-D Resize and Resize3D), filling in whichever one the attributes leave empty."""
    scales, sizes = list(attrs["scales"]), list(attrs["sizes"])
    if not sizes:
        sizes = [math.floor(s * n) for s, n in zip(scales, in_shape)]
    if not scales:
        scales = [o / n for o, n in zip(sizes, in_shape)]
    return [float(s) for s in scales], [int(o) for o in sizes]


def source_coordinates(n_out, n_in, scale, mode):
    """Input coordinate (float64) of every output index along one axis, as ONNX's reference computes
    it; ``length_resized`` is scale * n_in (a float), not the integer output length."""
    y = np.arange(n_out, dtype=np.float64)
    if math.isclose(scale, 1.0) and n_out == n_in:
        return y  # ONNX leaves an unscaled axis untouched, whatever the mode
    resized = scale * n_in
    if mode == "half_pixel" or (mode == "pytorch_half_pixel" and resized != 1):
        return (y + 0.5) / scale - 0.5
    if mode == "align_corners" and resized != 1:
        return y * (n_in - 1) / (resized - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale
    return np.zeros(n_out)  # align_corners / pytorch_half_pixel onto a single pixel


def nearest_indices(coords, n_in, mode):
    """Round coordinates per ``nearest_mode`` (ties exactly at .5), clamped into the input."""
    rounded = {"round_prefer_floor": np.ceil(coords - 0.5), "round_prefer_ceil": np.floor(coords + 0.5),
               "floor": np.floor(coords), "ceil": np.ceil(coords)}[mode]
    return np.clip(rounded, 0, n_in - 1).astype(np.int64)


def linear_taps(coords, n_in):
    """(i0, i1, w): out = in[i0] + w * (in[i1] - in[i0]); indices clamped (ONNX pads with edges)."""
    i0 = np.floor(coords)
    w = coords - i0
    return (np.clip(i0, 0, n_in - 1).astype(np.int64), np.clip(i0 + 1, 0, n_in - 1).astype(np.int64), w)


@register
class Resize(OpDef):
    name = "Resize"
    family = "resize"
    attrs = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
             "nearest_mode": "round_prefer_floor", "scales": [], "sizes": []}
    kernels = ("f32_resize_nearest", "f32_resize_nearest_mt", "f32_resize_linear", "f32_resize_linear_mt",
               "f32_blocked_resize_linear", "f32_blocked_resize_nearest", "f32_blocked_resize_linear_mt",
               "f32_blocked_resize_nearest_mt")

    def infer(self, node, attrs, ins, ctx):
        x = ins[0]
        if x.dtype != "f32":
            raise self.error(node, f"takes f32, got {x.dtype}")
        if len(x.shape) != 4:
            raise self.error(node, f"takes a 4-d NCHW input, got {list(x.shape)}")
        choice_attr(self, node, attrs, "mode", MODES)
        choice_attr(self, node, attrs, "coordinate_transformation_mode", COORDINATE_MODES)
        choice_attr(self, node, attrs, "nearest_mode", NEAREST_MODES)
        scales = attrs["scales"]
        if not isinstance(scales, (list, tuple)) or len(scales) not in (0, 4) or not all(
                isinstance(s, numbers.Real) and not isinstance(s, bool) and math.isfinite(s) and s > 0
                for s in scales):
            raise self.error(node, f"'scales' must be 4 positive finite numbers, got {scales!r}")
        sizes = int_list(self, node, attrs, "sizes", minimum=1)
        if len(sizes) not in (0, 4) or not (scales or sizes):
            raise self.error(node, f"needs 'scales' or 'sizes' of 4 values, got scales={scales!r} sizes={sizes!r}")
        scales, sizes = resolve_scales_sizes(attrs, x.shape)
        if scales[:2] != [1.0, 1.0] or sizes[:2] != list(x.shape[:2]):
            raise self.error(node, f"resizes only H and W: N and C must keep scale 1 (scales {scales}, "
                                   f"sizes {sizes}, input {list(x.shape)})")
        if min(sizes) < 1:
            raise self.error(node, f"output size {sizes} has an empty dim")
        return [(tuple(sizes), "f32")]

    def reference(self, attrs, x):
        scales, sizes = resolve_scales_sizes(attrs, x.shape)
        mode = attrs["coordinate_transformation_mode"]
        v = x.astype(np.float64)
        for axis in (2, 3):
            coords = source_coordinates(sizes[axis], x.shape[axis], scales[axis], mode)
            if attrs["mode"] == "nearest":
                v = np.take(v, nearest_indices(coords, x.shape[axis], attrs["nearest_mode"]), axis=axis)
            else:
                i0, i1, w = linear_taps(coords, x.shape[axis])
                w = w.reshape((-1, 1) if axis == 2 else (-1,))
                a, b = np.take(v, i0, axis=axis), np.take(v, i1, axis=axis)
                v = (1.0 - w) * a + w * b
        return (v.astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        N, C, H, W = ins[0].shape
        scales, (_, _, OH, OW) = resolve_scales_sizes(attrs, ins[0].shape)
        mode = attrs["coordinate_transformation_mode"]
        hc = source_coordinates(OH, H, scales[2], mode)
        wc = source_coordinates(OW, W, scales[3], mode)
        if ctx.is_blocked(node.outputs[0]):
            return self._blocked(attrs, ins, outs, ctx, hc, wc, H, W, OH, OW, mode)
        g = np.array([N * C, H, W, OH, OW], dtype=np.int64)
        work = outs[0].size * (1 if attrs["mode"] == "nearest" else 4)
        mt = use_threads(ctx, work)
        chunks = row_chunks(ctx, mt, N * C * OH)
        if attrs["mode"] == "nearest":
            packed = {"rows": nearest_indices(hc, H, attrs["nearest_mode"]),
                      "cols": nearest_indices(wc, W, attrs["nearest_mode"]).astype(np.uint64)}
            args, scratch = (packed["rows"], packed["cols"], g, chunks), []
        else:
            h0, h1, hw = linear_taps(hc, H)
            w0, w1, ww = linear_taps(wc, W)
            packed = {"row0": h0, "row1": h1, "row_weight": hw.astype(np.float32), "col0": w0.astype(np.uint64),
                      "col1": w1.astype(np.uint64), "col_weight": ww.astype(np.float32)}
            args, scratch = tuple(packed.values()), [((chunks, 2, OW), "f32")]
        name = f"f32_resize_{attrs['mode']}" + ("_mt" if mt else "")
        nearest = attrs["mode"] == "nearest"
        return Prepared(name, getattr(K, name),
                        lambda i, o, s: (flat(i[0]), flat(o[0]), *args) if nearest else
                        (flat(i[0]), flat(o[0]), *args, s[0], g),
                        packed=packed, scratch=scratch,
                        reason=f"{attrs['mode']} {mode} {H}x{W}->{OH}x{OW}: precomputed source tables"
                        + (f", {chunks} row chunks over threads" if mt else ""))

    def _blocked(self, attrs, ins, outs, ctx, hc, wc, H, W, OH, OW, mode):
        """Channel-blocked planes (runtime/layout.py): the same tables, one vector per pixel."""
        from ..kernels import blocked_ops as KBO
        N, C = ins[0].shape[:2]
        g = np.array([N * -(-C // KBO.VW), H, W, OH, OW], dtype=np.int64)
        sfx, mt = threads_for(ctx.threads, outs[0].size)
        threads = ", over threads" if mt else ""
        if attrs["mode"] == "nearest":
            packed = {"rows": nearest_indices(hc, H, attrs["nearest_mode"]),
                      "cols": nearest_indices(wc, W, attrs["nearest_mode"]), "geometry": g}
            return Prepared("f32_blocked_resize_nearest" + sfx, getattr(KBO, "f32_blocked_resize_nearest" + sfx),
                            lambda i, o, s: (flat(i[0]), flat(o[0]), packed["rows"], packed["cols"], g, *mt),
                            packed=packed,
                            reason=f"nearest {mode} {H}x{W}->{OH}x{OW}, {KBO.VW} channels per vector (blocked)"
                            + threads)
        h0, h1, hw = linear_taps(hc, H)
        w0, w1, ww = linear_taps(wc, W)
        packed = {"row0": h0, "row1": h1, "row_weight": hw.astype(np.float32), "col0": w0, "col1": w1,
                  "col_weight": ww.astype(np.float32), "geometry": g}
        args = tuple(packed.values())
        return Prepared("f32_blocked_resize_linear" + sfx, getattr(KBO, "f32_blocked_resize_linear" + sfx),
                        lambda i, o, s: (flat(i[0]), flat(o[0]), *args, *mt), packed=packed,
                        reason=f"linear {mode} {H}x{W}->{OH}x{OW}, {KBO.VW} channels per vector (blocked)" + threads)
