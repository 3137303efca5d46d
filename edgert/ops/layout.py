"""Reorders between NCHW and the channel-blocked layout (see ``runtime/layout.py`` for when).

Prepare inserts these at the borders of blocked regions; the converters never write them, but a
file may hold them (they validate like any op). ``ToBlocked`` [N, C, H, W] -> [N, ceil(C/block), H,
W, block] with zero pad lanes; ``FromBlocked`` the reverse, dropping the pad lanes.
"""

from __future__ import annotations

import numpy as np

from ..kernels.work import threads_for
from .common import flat
from .registry import REQUIRED, OpDef, Prepared, register


def _reorder_prepared(name, N, C, P, ctx, what):
    from ..kernels import blocked as KB
    g = np.array([N, C, P], np.int64)
    sfx, mt = threads_for(ctx.threads, N * C * P)
    kname, T = name + sfx, ctx.threads if mt else 1
    return Prepared(kname, getattr(KB, kname), lambda i, o, s: (flat(i[0]), flat(o[0]), g, *mt),
                    packed={"geometry": g}, reason=f"{what}: {N * C} planes of {P} pixels, "
                                                   f"{T} thread{'s' if T > 1 else ''}")


@register
class ToBlocked(OpDef):
    name = "ToBlocked"
    family = "layout"
    attrs = {"block": REQUIRED}
    kernels = ("f32_to_blocked", "f32_to_blocked_mt")

    def infer(self, node, attrs, ins, ctx):
        x, vw = ins[0], int(attrs["block"])
        if x.dtype != "f32" or len(x.shape) != 4:
            raise self.error(node, f"takes a 4-d f32 tensor, got {x.dtype} {list(x.shape)}")
        if vw < 1:
            raise self.error(node, f"block must be positive, got {vw}")
        n, c, h, w = x.shape
        return [((n, -(-c // vw), h, w, vw), "f32")]

    def reference(self, attrs, x):
        vw = int(attrs["block"])
        n, c, h, w = x.shape
        cb = -(-c // vw)
        padded = np.zeros((n, cb * vw, h, w), x.dtype)
        padded[:, :c] = x
        return (np.ascontiguousarray(padded.reshape(n, cb, vw, h, w).transpose(0, 1, 3, 4, 2)),)

    def prepare(self, node, attrs, ins, outs, ctx):
        from ..kernels import blocked as KB
        n, c, h, w = ins[0].shape
        if int(attrs["block"]) != KB.VW:
            raise self.error(node, f"block {attrs['block']} is not this CPU's vector width {KB.VW}",
                             hint="let prepare choose the layout (reconvert without ToBlocked nodes)")
        return _reorder_prepared("f32_to_blocked", n, c, h * w, ctx, f"NCHW -> blocked by {KB.VW} channels")


@register
class FromBlocked(OpDef):
    name = "FromBlocked"
    family = "layout"
    attrs = {"channels": REQUIRED}
    kernels = ("f32_from_blocked", "f32_from_blocked_mt")

    def infer(self, node, attrs, ins, ctx):
        x, c = ins[0], int(attrs["channels"])
        if x.dtype != "f32" or len(x.shape) != 5:
            raise self.error(node, f"takes a 5-d blocked f32 tensor, got {x.dtype} {list(x.shape)}")
        n, cb, h, w, vw = x.shape
        if c < 1 or cb != -(-c // vw):
            raise self.error(node, f"{c} channels do not fill {cb} blocks of {vw}")
        return [((n, c, h, w), "f32")]

    def reference(self, attrs, x):
        c = int(attrs["channels"])
        n, cb, h, w, vw = x.shape
        return (np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3).reshape(n, cb * vw, h, w)[:, :c]),)

    def prepare(self, node, attrs, ins, outs, ctx):
        # ``ins`` are logical infos in prepare: the input's logical shape is the output's
        from ..kernels.simd import VW
        n, c, h, w = outs[0].shape
        return _reorder_prepared("f32_from_blocked", n, c, h * w, ctx, f"blocked by {VW} channels -> NCHW")
