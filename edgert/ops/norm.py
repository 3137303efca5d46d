"""GroupNorm over NC... tensors of any spatial rank (InstanceNormalization is groups == channels).

y = (x - mean_g) / sqrt(var_g + epsilon) * scale_c + bias_c, statistics over each group's channels and
all spatial positions of one image; scale and bias are per channel (ONNX opset 18's per-group
parameters are expanded by the converter).
"""

from __future__ import annotations

import numpy as np

from ..kernels import norm as K
from ..kernels.act import act_args, reference_act
from .common import ACT_ATTRS, check_activation, flat
from .conv import writable
from .registry import REQUIRED, OpDef, Prepared, register
from .shape import int_attr


@register
class GroupNorm(OpDef):
    name = "GroupNorm"
    family = "norm"
    attrs = {"groups": REQUIRED, "epsilon": 1e-5, **ACT_ATTRS}
    num_inputs = (3, 3)
    inplace = 0  # each group's statistics are read before any of its values is overwritten
    kernels = ("f32_group_norm",)

    def infer(self, node, attrs, ins, ctx):
        check_activation(self, node, attrs)
        x, scale, bias = ins
        if len(x.shape) < 3 or x.dtype != "f32":
            raise self.error(node, f"takes an f32 [N, C, spatial...] input, got {x.dtype} {list(x.shape)}")
        C = x.shape[1]
        groups = int_attr(self, node, attrs, "groups", 1, C)
        if C % groups:
            raise self.error(node, f"groups {groups} does not divide the {C} channels")
        for t, what in ((scale, "scale"), (bias, "bias")):
            if t.dtype != "f32" or tuple(t.shape) != (C,):
                raise self.error(node, f"{what} must be f32 [{C}], got {t.dtype} {list(t.shape)}")
        eps = attrs["epsilon"]
        if not isinstance(eps, (int, float)) or not eps >= 0:
            raise self.error(node, f"epsilon must be a non-negative number, got {eps!r}")
        return [(tuple(x.shape), "f32")]

    def reference(self, attrs, x, scale, bias):
        N, C = x.shape[:2]
        G = attrs["groups"]
        v = x.astype(np.float64).reshape(N, G, -1)
        mean = v.mean(-1, keepdims=True)
        var = ((v - mean) ** 2).mean(-1, keepdims=True)
        y = ((v - mean) / np.sqrt(var + attrs["epsilon"])).reshape(x.shape)
        per_channel = (1, C) + (1,) * (x.ndim - 2)
        y = y * scale.astype(np.float64).reshape(per_channel) + bias.astype(np.float64).reshape(per_channel)
        return (reference_act(y, attrs["activation"], attrs["act_a"], attrs["act_b"]).astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        N, C = ins[0].shape[:2]
        G = attrs["groups"]
        spatial = int(np.prod(ins[0].shape[2:], dtype=np.int64))
        eps = float(attrs["epsilon"])
        act = act_args(attrs)
        return Prepared("f32_group_norm", K.f32_group_norm,
                        lambda i, o, s: (flat(writable(i[0])), flat(writable(i[1])), flat(writable(i[2])), flat(o[0]),
                                         N, G, C // G, spatial, eps, *act),
                        reason=f"{G} groups of {C // G} channels x {spatial} positions: two-pass statistics "
                               f"in float64")
