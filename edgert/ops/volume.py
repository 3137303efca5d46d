"""Ops over NCDHW volumes: Conv3D, ConvTranspose3D, MaxPool3D, AveragePool3D, Resize3D, and the
reversible block's in-place CouplingAdd.

Pads are in ONNX order [d0, h0, w0, d1, h1, w1]. Conv3D may read a channel window of its input
(``in_offset``): the first convolution of a reversible block's F or G reads its half of the coupled
buffer in place instead of a copied half.

Kernel choice: a 1x1x1 stride-1 unpadded ungrouped Conv3D is the 2-D pointwise GEMM of the Conv op on
the [C, D, H*W] view (the fast path the 2-D runtime already has); everything else is
``f32_conv3d_direct`` (direct loops vectorised along W, parallel over output channels).
"""

from __future__ import annotations

import math

import numpy as np

from ..ir.graph import TensorInfo
from ..kernels import conv3d as K
from ..kernels.act import act_args, reference_act
from .common import ACT_ATTRS, check_activation, flat
from .conv import _weights, conv_output_size, writable
from .pool import pool_output_size
from .registry import REGISTRY, OpDef, Prepared, register
from .resize import (COORDINATE_MODES, MODES, NEAREST_MODES, linear_taps, nearest_indices, resolve_scales_sizes,
                     source_coordinates)
from .shape import choice_attr, int_attr, int_list

PARALLEL_MIN_MACS = 1_000_000


def _threads_note(ctx, work):
    return "parallel over output channels" if ctx.threads > 1 and work >= PARALLEL_MIN_MACS else "1 thread"


def _geometry(opdef, node, attrs, pool=False):
    strides = int_list(opdef, node, attrs, "strides", 3, 1)
    pads = int_list(opdef, node, attrs, "pads", 6, 0)
    dilations = int_list(opdef, node, attrs, "dilations", 3, 1)
    return strides, pads, dilations


def _need_5d(opdef, node, t, what):
    if t.dtype != "f32":
        raise opdef.error(node, f"{what} must be f32, got {t.dtype}")
    if len(t.shape) != 5:
        raise opdef.error(node, f"{what} must be 5-d (N, C, D, H, W), got {list(t.shape)}")


def _bias_check(opdef, node, ins, n):
    if len(ins) > 2 and ins[2] is not None:
        b = ins[2]
        if b.dtype != "f32" or tuple(b.shape) != (n,):
            raise opdef.error(node, f"bias must be f32 [{n}], got {b.dtype} {list(b.shape)}")


def _const_inputs(opdef, node, ctx, ins):
    w, w_const = _weights(ctx, node, ins, 1)
    b, b_const = _weights(ctx, node, ins, 2)
    if not (w_const and b_const):
        raise opdef.error(node, "weights and bias must be constants (edgert packs them at load)")
    return w, b


def _reference_conv3d(x, w, b, strides, pads, dilations, group, c_off=0):
    """Slow, plain: pad, then one einsum per kernel tap per group (float64)."""
    N, _, D, H, W = x.shape
    M, Cg, kd, kh, kw = w.shape
    x = x[:, c_off:c_off + Cg * group].astype(np.float64)
    out_sizes = [conv_output_size(n, k, s, pads[i], pads[i + 3], d)
                 for i, (n, k, s, d) in enumerate(zip((D, H, W), (kd, kh, kw), strides, dilations))]
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((pads[i], pads[i + 3]) for i in range(3)))
    y = np.zeros((N, M) + tuple(out_sizes))
    Mg = M // group
    (sd, sh, sw), (dd, dh, dw), (OD, OH, OW) = strides, dilations, out_sizes
    for gi in range(group):
        xs = xp[:, gi * Cg:(gi + 1) * Cg]
        ws = w[gi * Mg:(gi + 1) * Mg].astype(np.float64)
        for a in range(kd):
            for i in range(kh):
                for j in range(kw):
                    patch = xs[:, :, a * dd:a * dd + (OD - 1) * sd + 1:sd, i * dh:i * dh + (OH - 1) * sh + 1:sh,
                               j * dw:j * dw + (OW - 1) * sw + 1:sw]
                    y[:, gi * Mg:(gi + 1) * Mg] += np.einsum("ncdhw,mc->nmdhw", patch, ws[:, :, a, i, j])
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None, None]
    return y


def _conv_geometry(x_shape, c0, w_shape, out_shape, group, strides, pads, dilations):
    N, Ct, D, H, W = x_shape
    M, Cg, kd, kh, kw = w_shape
    return np.array([N, Ct, c0, D, H, W, M, *out_shape[2:], group, Cg, kd, kh, kw, *strides, *pads[:3], *dilations],
                    dtype=np.int64)


@register
class Conv3D(OpDef):
    name = "Conv3D"
    family = "conv"
    # in_offset/in_channels: read channels [in_offset, in_offset + in_channels) of the input (0: all of it)
    attrs = {"strides": [1, 1, 1], "pads": [0] * 6, "dilations": [1, 1, 1], "group": 1, "in_offset": 0,
             "in_channels": 0, **ACT_ATTRS}
    num_inputs = (2, 3)
    kernels = ("f32_gemm_rows", "f32_gemm_rows_mt", "f32_gemm_t", "f32_gemm_t_mt", "f32_conv3d_direct")

    def infer(self, node, attrs, ins, ctx):
        check_activation(self, node, attrs)
        strides, pads, dilations = _geometry(self, node, attrs)
        group = int_attr(self, node, attrs, "group", 1)
        c0 = int_attr(self, node, attrs, "in_offset", 0)
        window = int_attr(self, node, attrs, "in_channels", 0)
        _need_5d(self, node, ins[0], "input")
        _need_5d(self, node, ins[1], "weight")
        N, C, D, H, W = ins[0].shape
        M, Cg, kd, kh, kw = ins[1].shape
        _bias_check(self, node, ins, M)
        if min(M, Cg, kd, kh, kw) < 1:
            raise self.error(node, f"weight shape {list(ins[1].shape)} has an empty dim")
        if M % group:
            raise self.error(node, f"group {group} does not divide the {M} output channels")
        used = window or C - c0
        if c0 + used > C:
            raise self.error(node, f"reads channels [{c0}, {c0 + used}) of an input with {C}")
        if Cg * group != used:
            raise self.error(node, f"weight expects {Cg * group} input channels ({Cg} per group x {group} groups), "
                                   f"the input {'window ' if used != C else ''}has {used}")
        out = [conv_output_size(n, k, s, pads[i], pads[i + 3], d)
               for i, (n, k, s, d) in enumerate(zip((D, H, W), (kd, kh, kw), strides, dilations))]
        if min(out) < 1:
            raise self.error(node, f"output size {out} is empty: kernel {[kd, kh, kw]} does not fit the padded "
                                   f"input {[D, H, W]} (pads {pads})")
        return [((N, M, *out), "f32")]

    def reference(self, attrs, x, w, b=None):
        y = _reference_conv3d(x, w, b, attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"],
                              attrs["in_offset"])
        return (reference_act(y, attrs["activation"], attrs["act_a"], attrs["act_b"]).astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        _, C, D, H, W = ins[0].shape
        M, Cg, kd, kh, kw = ins[1].shape
        G, c0 = attrs["group"], attrs["in_offset"]
        macs = outs[0].size * Cg * kd * kh * kw
        pointwise = (kd, kh, kw) == (1, 1, 1) and attrs["strides"] == [1, 1, 1] and not any(attrs["pads"])
        if pointwise and G == 1 and (D * H * W > 1):
            return self._pointwise(node, attrs, ins, outs, ctx, macs)
        w, b = _const_inputs(self, node, ctx, ins)
        packed = {"weight": flat(w), "bias": flat(b) if b is not None else np.zeros(M, np.float32),
                  "geometry": _conv_geometry(ins[0].shape, c0, ins[1].shape, outs[0].shape, G, attrs["strides"],
                                             attrs["pads"], attrs["dilations"])}
        act = act_args(attrs)
        kind = "depthwise" if G > 1 and Cg == 1 else (f"{G} groups" if G > 1 else "dense")
        return Prepared("f32_conv3d_direct", K.f32_conv3d_direct,
                        lambda i, o, s: (flat(writable(i[0])), packed["weight"], packed["bias"], flat(o[0]),
                                         packed["geometry"], *act),
                        packed=packed,
                        reason=f"{kind} {kd}x{kh}x{kw} stride {attrs['strides']}: direct loops along W "
                               f"({macs / 1e6:.1f}M MACs, {_threads_note(ctx, macs)})"
                               + (f"; reads channels {c0}..{c0 + Cg * G} in place" if c0 or Cg * G != C else ""))

    def _pointwise(self, node, attrs, ins, outs, ctx, macs):
        """The 2-D Conv's pointwise GEMM over the [N, C, D, H*W] view; a channel window starts the
        input view c0 planes in (the image stride stays the whole buffer's)."""
        N, C, D, H, W = ins[0].shape
        M = ins[1].shape[0]
        c0, S = attrs["in_offset"], D * H * W
        conv2d = REGISTRY["Conv"]
        attrs2d = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1,
                   **{k: attrs[k] for k in ACT_ATTRS}}
        ins2d = [TensorInfo(ins[0].name, (N, C, D, H * W)), TensorInfo(ins[1].name, ins[1].shape[:2] + (1, 1))] \
            + list(ins[2:])
        outs2d = [TensorInfo(outs[0].name, (N, M, D, H * W))]
        inner = conv2d._gemm(node, attrs2d, ins2d, outs2d, ctx, macs)

        def bind(i, o, s):
            x = flat(writable(i[0]))[c0 * S:]
            return inner.bind([x] + list(i[1:]), o, s)

        return Prepared(inner.kernel, inner.fn, bind, scratch=inner.scratch, packed=inner.packed,
                        reason=f"1x1x1 as the 2-D pointwise GEMM on [C, D, H*W]: {inner.reason}"
                               + (f"; reads channels {c0}..{c0 + ins[1].shape[1]} in place"
                                  if c0 or ins[1].shape[1] != C else ""))


@register
class ConvTranspose3D(OpDef):
    name = "ConvTranspose3D"
    family = "conv"
    attrs = {"strides": [1, 1, 1], "pads": [0] * 6, "dilations": [1, 1, 1], "group": 1,
             "output_padding": [0, 0, 0], **ACT_ATTRS}
    num_inputs = (2, 3)
    kernels = ("f32_convtranspose3d_direct",)

    @staticmethod
    def output_size(n, k, s, p0, p1, d, op) -> int:
        return s * (n - 1) + op + d * (k - 1) + 1 - p0 - p1

    def infer(self, node, attrs, ins, ctx):
        check_activation(self, node, attrs)
        strides, pads, dilations = _geometry(self, node, attrs)
        out_pad = int_list(self, node, attrs, "output_padding", 3, 0)
        group = int_attr(self, node, attrs, "group", 1)
        _need_5d(self, node, ins[0], "input")
        _need_5d(self, node, ins[1], "weight")
        N, C, D, H, W = ins[0].shape
        Cw, Mg, kd, kh, kw = ins[1].shape
        _bias_check(self, node, ins, Mg * group)
        if min(Cw, Mg, kd, kh, kw) < 1:
            raise self.error(node, f"weight shape {list(ins[1].shape)} has an empty dim")
        if C % group or Cw != C:
            raise self.error(node, f"weight is for {Cw} input channels in {group} groups, the input has {C}")
        if any(o >= max(s, d) for o, s, d in zip(out_pad, strides, dilations)):
            raise self.error(node, f"output_padding {out_pad} must be smaller than the stride or the dilation")
        out = [self.output_size(n, k, s, pads[i], pads[i + 3], d, op)
               for i, (n, k, s, d, op) in enumerate(zip((D, H, W), (kd, kh, kw), strides, dilations, out_pad))]
        if min(out) < 1:
            raise self.error(node, f"output size {out} is empty (pads {pads} crop the whole output)")
        return [((N, Mg * group, *out), "f32")]

    def reference(self, attrs, x, w, b=None):
        strides, pads, dil, group = attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"]
        N, C, D, H, W = x.shape
        _, Mg, kd, kh, kw = w.shape
        Cg = C // group
        full_sizes = [s * (n - 1) + d * (k - 1) + 1 + op for n, k, s, d, op in
                      zip((D, H, W), (kd, kh, kw), strides, dil, attrs["output_padding"])]
        full = np.zeros((N, Mg * group, *full_sizes))
        xd = x.astype(np.float64)
        (sd, sh, sw), (dd, dh, dw) = strides, dil
        for gi in range(group):
            xs = xd[:, gi * Cg:(gi + 1) * Cg]
            ws = w[gi * Cg:(gi + 1) * Cg].astype(np.float64)
            for a in range(kd):
                for i in range(kh):
                    for j in range(kw):
                        full[:, gi * Mg:(gi + 1) * Mg, a * dd:a * dd + sd * (D - 1) + 1:sd,
                             i * dh:i * dh + sh * (H - 1) + 1:sh, j * dw:j * dw + sw * (W - 1) + 1:sw] += \
                            np.einsum("ncdhw,cm->nmdhw", xs, ws[:, :, a, i, j])
        y = full[:, :, pads[0]:full_sizes[0] - pads[3], pads[1]:full_sizes[1] - pads[4],
                 pads[2]:full_sizes[2] - pads[5]]
        if b is not None:
            y = y + b.astype(np.float64)[None, :, None, None, None]
        return (reference_act(y, attrs["activation"], attrs["act_a"], attrs["act_b"]).astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        M = outs[0].shape[1]
        C, Mg = ins[1].shape[:2]
        G = attrs["group"]
        w, b = _const_inputs(self, node, ctx, ins)
        g = _conv_geometry(ins[0].shape, 0, (M, C // G) + tuple(ins[1].shape[2:]), outs[0].shape, G,
                           attrs["strides"], attrs["pads"], attrs["dilations"])
        packed = {"weight": flat(w), "bias": flat(b) if b is not None else np.zeros(M, np.float32), "geometry": g}
        act = act_args(attrs)
        macs = ins[0].size * Mg * int(np.prod(ins[1].shape[2:]))
        return Prepared("f32_convtranspose3d_direct", K.f32_convtranspose3d_direct,
                        lambda i, o, s: (flat(writable(i[0])), packed["weight"], packed["bias"], flat(o[0]), g, *act),
                        packed=packed,
                        reason=f"{'x'.join(map(str, ins[1].shape[2:]))} stride {attrs['strides']}: scatter along W "
                               f"into each output channel ({macs / 1e6:.1f}M MACs, {_threads_note(ctx, macs)})")


class _Pool3D(OpDef):
    family = "pool"
    kernels = ("f32_pool3d",)
    is_max = False

    def infer(self, node, attrs, ins, ctx):
        _need_5d(self, node, ins[0], "input")
        kernel = int_list(self, node, attrs, "kernel", 3, 1)
        strides, pads, dilations = _geometry(self, node, attrs)
        int_attr(self, node, attrs, "ceil_mode", 0, 1)
        N, C, *spatial = ins[0].shape
        out = [pool_output_size(n, k, s, pads[i], pads[i + 3], d, attrs["ceil_mode"])
               for i, (n, k, s, d) in enumerate(zip(spatial, kernel, strides, dilations))]
        if min(out) < 1:
            raise self.error(node, f"output size {out} is empty: window {kernel} does not fit {spatial}")
        if any(p >= k * d for p, k, d in zip(pads[:3] + pads[3:], kernel * 2, dilations * 2)):
            raise self.error(node, f"pads {pads} must be smaller than the window {kernel}")
        return [((N, C, *out), "f32")]

    def reference(self, attrs, x):
        kernel, strides, pads, dil = attrs["kernel"], attrs["strides"], attrs["pads"], attrs["dilations"]
        N, C, *spatial = x.shape
        out = [pool_output_size(n, k, s, pads[i], pads[i + 3], d, attrs["ceil_mode"])
               for i, (n, k, s, d) in enumerate(zip(spatial, kernel, strides, dil))]
        y = np.zeros((N, C, *out))
        xd = x.astype(np.float64)
        for od in range(out[0]):
            for oh in range(out[1]):
                for ow in range(out[2]):
                    inside, padded = [], 0
                    for a in range(kernel[0]):
                        for i in range(kernel[1]):
                            for j in range(kernel[2]):
                                pos = [o * s + t * d - p for o, s, t, d, p in
                                       zip((od, oh, ow), strides, (a, i, j), dil, pads[:3])]
                                if any(q >= n + e for q, n, e in zip(pos, spatial, pads[3:])):
                                    continue
                                padded += 1
                                if all(0 <= q < n for q, n in zip(pos, spatial)):
                                    inside.append(pos)
                    vals = np.stack([xd[:, :, p[0], p[1], p[2]] for p in inside], -1) if inside else None
                    if self.is_max:
                        y[:, :, od, oh, ow] = vals.max(-1) if vals is not None else -np.finfo(np.float32).max
                    else:
                        div = padded if attrs["count_include_pad"] else len(inside)
                        y[:, :, od, oh, ow] = vals.sum(-1) / div if vals is not None else 0.0
        return (y.astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        N, C, D, H, W = ins[0].shape
        g = np.array([N * C, D, H, W, *outs[0].shape[2:], *attrs["kernel"], *attrs["strides"], *attrs["pads"][:3],
                      *attrs["dilations"], *attrs["pads"][3:]], dtype=np.int64)
        include = int(attrs.get("count_include_pad", 0))
        is_max = self.is_max
        return Prepared("f32_pool3d", K.f32_pool3d, lambda i, o, s: (flat(i[0]), flat(o[0]), g, is_max, include),
                        packed={"geometry": g},
                        reason=f"{'max' if is_max else 'average'} {'x'.join(map(str, attrs['kernel']))} window "
                               f"stride {attrs['strides']} over {N * C} volumes")


@register
class MaxPool3D(_Pool3D):
    name = "MaxPool3D"
    attrs = {"kernel": [1, 1, 1], "strides": [1, 1, 1], "pads": [0] * 6, "dilations": [1, 1, 1], "ceil_mode": 0}
    is_max = True


@register
class AveragePool3D(_Pool3D):
    name = "AveragePool3D"
    attrs = {"kernel": [1, 1, 1], "strides": [1, 1, 1], "pads": [0] * 6, "dilations": [1, 1, 1], "ceil_mode": 0,
             "count_include_pad": 0}


def _axis_table(attrs, n_out, n_in, scale):
    """(i0, i1, weight) of one axis; nearest is i0 == i1 with weight 0."""
    coords = source_coordinates(n_out, n_in, scale, attrs["coordinate_transformation_mode"])
    if attrs["mode"] == "nearest":
        idx = nearest_indices(coords, n_in, attrs["nearest_mode"])
        return idx, idx, np.zeros(n_out, np.float32)
    i0, i1, w = linear_taps(coords, n_in)
    return i0, i1, w.astype(np.float32)


@register
class Resize3D(OpDef):
    name = "Resize3D"
    family = "resize"
    attrs = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
             "nearest_mode": "round_prefer_floor", "scales": [], "sizes": []}
    kernels = ("f32_resize3d",)

    def infer(self, node, attrs, ins, ctx):
        _need_5d(self, node, ins[0], "input")
        choice_attr(self, node, attrs, "mode", MODES)
        choice_attr(self, node, attrs, "coordinate_transformation_mode", COORDINATE_MODES)
        choice_attr(self, node, attrs, "nearest_mode", NEAREST_MODES)
        scales = attrs["scales"]
        if not isinstance(scales, (list, tuple)) or len(scales) not in (0, 5) or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0
                for s in scales):
            raise self.error(node, f"'scales' must be 5 positive finite numbers, got {scales!r}")
        sizes = int_list(self, node, attrs, "sizes", minimum=1)
        if len(sizes) not in (0, 5) or not (scales or sizes):
            raise self.error(node, f"needs 'scales' or 'sizes' of 5 values, got scales={scales!r} sizes={sizes!r}")
        scales, sizes = resolve_scales_sizes(attrs, ins[0].shape)
        if scales[:2] != [1.0, 1.0] or sizes[:2] != list(ins[0].shape[:2]):
            raise self.error(node, f"resizes only D, H and W (scales {scales}, sizes {sizes})")
        if min(sizes) < 1:
            raise self.error(node, f"output size {sizes} has an empty dim")
        return [(tuple(sizes), "f32")]

    def reference(self, attrs, x):
        scales, sizes = resolve_scales_sizes(attrs, x.shape)
        v = x.astype(np.float64)
        for axis in (2, 3, 4):
            coords = source_coordinates(sizes[axis], x.shape[axis], scales[axis], attrs["coordinate_transformation_mode"])
            if attrs["mode"] == "nearest":
                v = np.take(v, nearest_indices(coords, x.shape[axis], attrs["nearest_mode"]), axis=axis)
            else:
                i0, i1, w = linear_taps(coords, x.shape[axis])
                w = w.reshape((-1,) + (1,) * (4 - axis))
                v = (1.0 - w) * np.take(v, i0, axis=axis) + w * np.take(v, i1, axis=axis)
        return (v.astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        N, C, D, H, W = ins[0].shape
        scales, sizes = resolve_scales_sizes(attrs, ins[0].shape)
        tables = [_axis_table(attrs, sizes[a], ins[0].shape[a], scales[a]) for a in (2, 3, 4)]
        g = np.array([N * C, D, H, W, *sizes[2:]], dtype=np.int64)
        args = tuple(t for table in tables for t in table) + (g,)
        packed = {f"table{k}": t for k, t in enumerate(args)}
        return Prepared("f32_resize3d", K.f32_resize3d, lambda i, o, s: (flat(i[0]), flat(o[0]), *args),
                        packed=packed,
                        reason=f"{attrs['mode']} {attrs['coordinate_transformation_mode']} {[D, H, W]}->{sizes[2:]}: "
                               "per-axis source tables")


@register
class CouplingAdd(OpDef):
    """One half of a reversible block: ``out = x`` with channels [offset, offset + C_f) increased by
    f (x1 += F(x2), then x2 += G(x1)). Output 0 may overwrite x when x dies here, which keeps a whole
    stack of reversible blocks in one buffer."""

    name = "CouplingAdd"
    family = "elementwise"
    attrs = {"offset": 0}
    num_inputs = (2, 2)
    inplace = 0
    kernels = ("f32_coupling_add",)

    def infer(self, node, attrs, ins, ctx):
        x, f = ins
        c0 = int_attr(self, node, attrs, "offset", 0)
        if x.dtype != "f32" or f.dtype != "f32":
            raise self.error(node, f"takes f32 tensors, got {x.dtype} and {f.dtype}")
        if len(x.shape) < 2 or len(f.shape) != len(x.shape) or x.shape[0] != f.shape[0] \
                or tuple(x.shape[2:]) != tuple(f.shape[2:]) or c0 + f.shape[1] > x.shape[1]:
            raise self.error(node, f"adds {list(f.shape)} into channels from {c0} of {list(x.shape)}: shapes "
                                   "must agree outside the channel axis and the channels must fit")
        return [(tuple(x.shape), "f32")]

    def reference(self, attrs, x, f):
        y = x.astype(np.float64)
        c0 = attrs["offset"]
        y[:, c0:c0 + f.shape[1]] += f
        return (y.astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        x, f = ins
        N, C = x.shape[:2]
        spatial = int(np.prod(x.shape[2:], dtype=np.int64))
        c0, ch = attrs["offset"], f.shape[1]

        def bind(i, o, s):
            same = i[0].ctypes.data == o[0].ctypes.data
            return (flat(i[0]), flat(i[1]), flat(o[0]), N, C, c0, ch, spatial, not same)

        return Prepared("f32_coupling_add", K.f32_coupling_add, bind,
                        reason=f"reversible coupling: channels {c0}..{c0 + ch} of {C} += f "
                               f"(in place when the planner aliases the output to x)")
