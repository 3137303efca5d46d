"""Conv on channel-blocked tensors (the layout in runtime/layout.py; kernels in kernels/blocked.py).

Called by ``Conv.prepare`` when the planner stored the node's output blocked. The three kinds:

* 1x1, stride 1, group 1 (``f32_blocked_conv1x1``): a register tile of pixels x output blocks per
  input channel: VW-wide weight vectors times broadcast input values, read in place; a fused
  residual (the 4th input, blocked too) is added before the activation;
* depthwise (``f32_blocked_dwconv``): VW channels per vector, any kernel size, stride and pads;
* any other group-1 conv (``f32_blocked_conv``): direct convolution, reading a plain NCHW input
  (a network's stem) or a blocked one.

The 1x1 and general kinds may carry activation 'prelu' with the slope as a 5th input: the layout
planner folded the PRelu after them (runtime/layout.py, ``fuse_prelu``); the slope is packed after
the bias (``pack_prelu_bias``).
"""

from __future__ import annotations

import numpy as np

from ..kernels.act import act_args
from ..runtime.layout import blocked_kind
from .common import flat

_DUMMY = np.zeros(1, np.float32)


def _threads(ctx, macs, items, min_macs):
    return ctx.threads if ctx.threads > 1 and macs >= min_macs and items > 1 else 1


def _mt_args(T):
    """The extra argument of a blocked _mt kernel: its work cursors (kernels/work.py)."""
    from ..kernels import blocked as KB
    return (KB.work_counter(T),) if T > 1 else ()


def _bias(node, ins, ctx, M):
    from ..kernels import blocked as KB
    b = ctx.const(node.inputs[2]).reshape(-1) if len(node.inputs) > 2 and node.inputs[2] else None
    return KB.pad_bias(None if b is None else np.ascontiguousarray(b, np.float32), M)


def prepare_blocked(opdef, node, attrs, ins, outs, ctx, parallel_min_macs, dw_parallel_min_macs):
    from ..kernels import blocked as KB  # imported here: only sessions with a blocked region load it
    from .registry import Prepared
    N, C, H, W = ins[0].shape
    M, Cg, kh, kw = ins[1].shape
    OH, OW = outs[0].shape[2:]
    w = np.ascontiguousarray(ctx.const(node.inputs[1]), np.float32)
    bias = _bias(node, ins, ctx, M)
    fused = ""
    if attrs["activation"] == "prelu":  # fused by the layout planner (runtime/layout.py, fuse_prelu)
        bias = KB.pack_prelu_bias(bias, ctx.const(node.inputs[4]), M)
        act = (KB.PRELU, 0.0, 0.0)
        fused = ", PRelu fused (its slope applied per output block of each tile, in L1)"
    else:
        act = act_args(attrs)
    vw = KB.VW
    CBo = -(-M // vw)
    macs = outs[0].size * Cg * kh * kw
    (sh, sw), (pt, pl, _, _), (dh, dw) = attrs["strides"], attrs["pads"], attrs["dilations"]
    kind = blocked_kind(node, attrs, ins, ctx.graph)  # the planner's own test: 'dwconv', 'conv1x1' or 'conv'
    if kind == "dwconv":
        if fused:
            raise opdef.error(node, "a PRelu is fused only into 1x1 and general blocked convs")
        g = np.array([N, CBo, H, W, OH, OW, kh, kw, sh, sw, pt, pl], np.int64)
        wp = KB.pack_dwconv(w, C)
        T = _threads(ctx, macs, N * CBo * OH, dw_parallel_min_macs)
        name, mt = "f32_blocked_dwconv" + ("_mt" if T > 1 else ""), _mt_args(T)
        return Prepared(name, getattr(KB, name),
                        lambda i, o, s: (flat(i[0]), wp, bias, flat(o[0]), g, *act, *mt),
                        packed={"weight": wp, "bias": bias, "geometry": g},
                        reason=f"depthwise {kh}x{kw} stride {sh}x{sw}, blocked by {vw} channels: {C} channels "
                               f"on {OH}x{OW}, one vector per pixel, {T} thread{'s' if T > 1 else ''}")
    P = H * W
    if kind == "conv1x1":
        residual = len(node.inputs) > 3 and bool(node.inputs[3])
        g = KB.conv1x1_geometry(N, C, M, P, residual)  # with C: the last block's pad lanes are skipped
        wp = KB.pack_conv1x1(w.reshape(M, C))
        T = _threads(ctx, macs, N * CBo * P, parallel_min_macs)
        name, mt = "f32_blocked_conv1x1" + ("_mt" if T > 1 else ""), _mt_args(T)
        return Prepared(name, getattr(KB, name),
                        lambda i, o, s: (flat(i[0]), wp, bias, flat(i[3]) if residual else _DUMMY, flat(o[0]), g,
                                         *act, *mt),
                        packed={"weight": wp, "bias": bias, "geometry": g},
                        reason=f"1x1 stride 1, blocked by {vw} channels: {C} -> {M} channels on {H}x{W}, weights "
                               f"as vectors times broadcast inputs (read in place)"
                               + (", residual Add fused" if residual else "") + fused
                               + f", {T} thread{'s' if T > 1 else ''}")
    in_blocked = ctx.is_blocked(node.inputs[0])
    g = np.array([N, C, CBo, H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw, int(in_blocked)], np.int64)
    wp = KB.pack_conv(w, int(in_blocked))
    T = _threads(ctx, macs, N * CBo * OH, parallel_min_macs)
    name, mt = "f32_blocked_conv" + ("_mt" if T > 1 else ""), _mt_args(T)
    return Prepared(name, getattr(KB, name), lambda i, o, s: (flat(i[0]), wp, bias, flat(o[0]), g, *act, *mt),
                    packed={"weight": wp, "bias": bias, "geometry": g},
                    reason=f"{kh}x{kw} stride {sh}x{sw} direct convolution into blocks of {vw} channels, "
                           f"{'blocked' if in_blocked else 'plain NCHW'} input, {C} -> {M} channels{fused}, "
                           f"{T} thread{'s' if T > 1 else ''}")
