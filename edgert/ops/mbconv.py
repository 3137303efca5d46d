"""MBConv3DCouple: a reversible block's F (or G) fused with its coupling add, run over depth slabs.

    y = x;  y[:, out_offset:out_offset+Cout] += project(act2(dw(act1(norm(expand(x[:, in_offset:+Cin]))))))

Inputs: x, expand weight [E, Cin, 1, 1, 1], expand bias [E], norm scale [E], norm bias [E],
depthwise weight [E, 1, k, k, k], depthwise bias [E], project weight [Cout, E, 1, 1, 1], project
bias [Cout]. ``norm_groups`` 0 means no normalisation (scale/bias ignored). The depthwise
convolution is stride 1 with 'same' zero padding (k odd). Output 0 overwrites x when x dies here
(the read and written channel ranges are disjoint), so a reversible block is two such nodes on one
buffer and the expanded activations exist only as a ring of k depth planes (see the kernel).
"""

from __future__ import annotations

import numpy as np

from ..kernels import mbconv3d as K
from ..kernels.act import CODES, reference_act
from .common import flat
from .conv import writable
from .registry import OpDef, Prepared, register
from .shape import int_attr
from .volume import _reference_conv3d

ACT_PAIR = {"act1": "none", "act1_a": 0.0, "act1_b": 0.0, "act2": "none", "act2_a": 0.0, "act2_b": 0.0}


@register
class MBConv3DCouple(OpDef):
    name = "MBConv3DCouple"
    family = "conv"
    attrs = {"in_offset": 0, "out_offset": 0, "norm_groups": 0, "epsilon": 1e-5, **ACT_PAIR}
    num_inputs = (9, 9)
    inplace = 0
    kernels = ("f32_mbconv3d_slab",)

    def infer(self, node, attrs, ins, ctx):
        x, we, be, gs, gb, wd, bd, wp, bp = ins
        for key in ("act1", "act2"):
            if attrs[key] not in CODES:
                raise self.error(node, f"unknown activation {attrs[key]!r}")
        i0 = int_attr(self, node, attrs, "in_offset", 0)
        o0 = int_attr(self, node, attrs, "out_offset", 0)
        if len(x.shape) != 5 or x.dtype != "f32":
            raise self.error(node, f"takes an f32 NCDHW input, got {x.dtype} {list(x.shape)}")
        C = x.shape[1]
        if len(we.shape) != 5 or len(wd.shape) != 5 or len(wp.shape) != 5:
            raise self.error(node, "expand, depthwise and project weights must be 5-d")
        E, Cin = we.shape[:2]
        k = wd.shape[2]
        Cout = wp.shape[0]
        if tuple(we.shape[2:]) != (1, 1, 1) or tuple(wp.shape[2:]) != (1, 1, 1) or wp.shape[1] != E:
            raise self.error(node, f"expand {list(we.shape)} and project {list(wp.shape)} must be 1x1x1 around "
                                   f"{E} expanded channels")
        if tuple(wd.shape) != (E, 1, k, k, k) or k % 2 == 0:
            raise self.error(node, f"depthwise weight must be [{E}, 1, k, k, k] with k odd, got {list(wd.shape)}")
        for t, n, what in ((be, E, "expand bias"), (gs, E, "norm scale"), (gb, E, "norm bias"),
                           (bd, E, "depthwise bias"), (bp, Cout, "project bias")):
            if tuple(t.shape) != (n,):
                raise self.error(node, f"{what} must be [{n}], got {list(t.shape)}")
        groups = int_attr(self, node, attrs, "norm_groups", 0, E)
        if groups and E % groups:
            raise self.error(node, f"norm_groups {groups} does not divide {E} expanded channels")
        if i0 + Cin > C or o0 + Cout > C or (i0 < o0 + Cout and o0 < i0 + Cin):
            raise self.error(node, f"reads channels [{i0}, {i0 + Cin}) and writes [{o0}, {o0 + Cout}) of {C}: "
                                   "both must fit and must not overlap")
        return [(tuple(x.shape), "f32")]

    def reference(self, attrs, x, we, be, gs, gb, wd, bd, wp, bp):
        i0, o0 = attrs["in_offset"], attrs["out_offset"]
        E, Cin = we.shape[:2]
        h = np.einsum("ncdhw,ec->nedhw", x[:, i0:i0 + Cin].astype(np.float64), we[:, :, 0, 0, 0].astype(np.float64))
        h += be.astype(np.float64)[None, :, None, None, None]
        G = attrs["norm_groups"]
        if G:
            v = h.reshape(h.shape[0], G, -1)
            v = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + attrs["epsilon"])
            h = v.reshape(h.shape) * gs.astype(np.float64)[None, :, None, None, None] \
                + gb.astype(np.float64)[None, :, None, None, None]
        h = reference_act(h, attrs["act1"], attrs["act1_a"], attrs["act1_b"])
        k = wd.shape[2]
        h = _reference_conv3d(h, wd, bd, [1, 1, 1], [k // 2] * 6, [1, 1, 1], E)
        h = reference_act(h, attrs["act2"], attrs["act2_a"], attrs["act2_b"])
        f = np.einsum("nedhw,me->nmdhw", h, wp[:, :, 0, 0, 0].astype(np.float64)) \
            + bp.astype(np.float64)[None, :, None, None, None]
        y = x.astype(np.float64)
        y[:, o0:o0 + f.shape[1]] += f
        return (y.astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        N, C, D, H, W = ins[0].shape
        E, Cin = ins[1].shape[:2]
        k = ins[5].shape[2]
        Cout = ins[7].shape[0]
        for i in range(1, 9):
            if not ctx.is_const(node.inputs[i]):
                raise self.error(node, f"input #{i} must be a constant (weights are packed at load)")
        consts = [flat(writable(np.ascontiguousarray(ctx.const(node.inputs[i]), np.float32))) for i in range(1, 9)]
        g = np.array([N, C, attrs["in_offset"], Cin, D, H, W, E, Cout, attrs["out_offset"], k,
                      attrs["norm_groups"], 0], dtype=np.int64)
        packed = {f"p{i}": c for i, c in enumerate(consts)}
        packed["geometry"] = g
        eps = float(attrs["epsilon"])
        acts = (CODES[attrs["act1"]], float(attrs["act1_a"]), float(attrs["act1_b"]),
                CODES[attrs["act2"]], float(attrs["act2_a"]), float(attrs["act2_b"]))
        scratch = [((k * E * H * W,), "f32"), ((E * H * W,), "f32"), ((4 * E + Cin + Cin * Cin,), "f64")]

        def bind(i, o, s):
            geometry = g.copy()
            geometry[12] = int(i[0].ctypes.data != o[0].ctypes.data)  # not aliased: copy the other channels
            packed["bound_geometry"] = geometry
            return (flat(i[0]), flat(o[0]), *consts, s[0], s[1], s[2], geometry, eps, *acts)

        full = 2 * E * D * H * W * 4
        return Prepared("f32_mbconv3d_slab", K.f32_mbconv3d_slab, bind, scratch=scratch, packed=packed,
                        reason=f"MBConv {Cin}->{E}->{Cout} (dw {k}x{k}x{k}"
                               + (f", norm over {attrs['norm_groups']} groups from input moments" if attrs["norm_groups"]
                                  else "")
                               + f") over depth slabs, channels {attrs['in_offset']}.. -> += channels "
                               f"{attrs['out_offset']}..: {k + 1} expanded planes instead of 2 expanded volumes "
                               f"(saves {_mib(full - (k + 1) * E * H * W * 4)})")


def _mib(n):
    return f"{n / 2**20:.1f} MiB"
