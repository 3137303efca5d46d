"""Elementwise ops: broadcast binary arithmetic (with a fused activation), activations, PRelu, Identity."""

from __future__ import annotations

import numpy as np

from ..kernels import elementwise as K
from ..kernels.act import CODES, act_args, reference_act
from ..kernels.work import threads_for
from .common import ACT_ATTRS, broadcast_shape, broadcast_strides, check_activation, coalesce, flat
from .registry import OpDef, Prepared, register

PARALLEL_MIN_ELEMENTS = 131072  # elementwise kernels with a _mt variant use threads from this size
_NUMPY_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
                 "Max": np.maximum, "Min": np.minimum, "Pow": np.power}


class _Binary(OpDef):
    family = "elementwise"
    attrs = dict(ACT_ATTRS)
    num_inputs = (2, 2)
    inplace = 0
    kernels = ("f32_binary_same", "f32_binary_same_mt", "f32_blocked_add_mt", "f32_binary_scalar_a", "f32_binary_scalar_b", "f32_binary_strided4",
               "np_binary", "f32_blocked_scale")

    def infer(self, node, attrs, ins, ctx):
        check_activation(self, node, attrs)
        a, b = ins
        if a.dtype != b.dtype:
            raise self.error(node, f"input dtypes differ: {a.dtype} and {b.dtype}")
        return [(broadcast_shape(self, node, a.shape, b.shape), a.dtype)]

    def reference(self, attrs, a, b):
        y = _NUMPY_BINARY[self.name](a, b)
        if attrs["activation"] != "none":
            y = reference_act(y, attrs["activation"], attrs["act_a"], attrs["act_b"])
        return (y.astype(a.dtype, copy=False),)

    def prepare(self, node, attrs, ins, outs, ctx):
        a, b, out = ins[0], ins[1], outs[0]
        op = K.BINARY_CODES[self.name]
        act = act_args(attrs)
        if out.dtype != "f32":
            return _numpy_binary(self, attrs, "dtype is not f32")
        if ctx.is_blocked(node.outputs[0]) and self.name == "Mul" and tuple(a.shape) != tuple(b.shape):
            from ..kernels import blocked_ops as KBO  # x * s[N, C, 1, 1] (runtime/layout.py checked)
            N, C, H, W = a.shape
            g = np.array([N * -(-C // KBO.VW), H * W], np.int64)
            return Prepared("f32_blocked_scale", KBO.f32_blocked_scale,
                            lambda i, o, s: (flat(i[0]), flat(i[1]), flat(o[0]), g), packed={"geometry": g},
                            reason="per-channel scale, one vector per pixel (blocked)")
        if tuple(a.shape) == tuple(b.shape) == tuple(out.shape):
            _, mt = threads_for(ctx.threads, out.size)
            if mt and ctx.is_blocked(node.outputs[0]) and self.name == "Add":
                from ..kernels import blocked_ops as KBO  # relu/clip at most (runtime/layout.py checked)
                P = int(np.prod(out.shape[2:]))
                return Prepared("f32_blocked_add_mt", KBO.f32_blocked_add_mt,
                                lambda i, o, s: (flat(i[0]), flat(i[1]), flat(o[0]), P, *act, *mt),
                                reason="same shapes (blocked): vectors over threads")
            # Blocked tensors of one shape have one physical layout too: the same flat loop.
            if mt:
                return Prepared("f32_binary_same_mt", K.f32_binary_same_mt,
                                lambda i, o, s: (flat(i[0]), flat(i[1]), flat(o[0]), op, *act, *mt),
                                reason="same shapes: flat loop, contiguous chunks over threads"
                                       + (" (blocked)" if ctx.is_blocked(node.outputs[0]) else ""))
            return Prepared("f32_binary_same", K.f32_binary_same,
                            lambda i, o, s: (flat(i[0]), flat(i[1]), flat(o[0]), op, *act),
                            reason="same shapes: flat loop" + (" (blocked)" if ctx.is_blocked(node.outputs[0]) else ""))
        if b.size == 1 and tuple(a.shape) == tuple(out.shape):
            return Prepared("f32_binary_scalar_b", K.f32_binary_scalar_b,
                            lambda i, o, s: (flat(i[0]), flat(i[1]), flat(o[0]), op, *act),
                            reason="second operand is a scalar")
        if a.size == 1 and tuple(b.shape) == tuple(out.shape):
            return Prepared("f32_binary_scalar_a", K.f32_binary_scalar_a,
                            lambda i, o, s: (flat(i[0]), flat(i[1]), flat(o[0]), op, *act),
                            reason="first operand is a scalar")
        packed = coalesce(out.shape, broadcast_strides(a.shape, out.shape), broadcast_strides(b.shape, out.shape))
        if packed is None:
            return _numpy_binary(self, attrs, "broadcast needs more than 4 dims")
        shape, (astr, bstr) = packed
        return Prepared("f32_binary_strided4", K.f32_binary_strided4,
                        lambda i, o, s: (flat(i[0]), astr, flat(i[1]), bstr, flat(o[0]), shape, op, *act),
                        reason="broadcast over coalesced dims " + "x".join(map(str, shape)))


def _numpy_binary(opdef, attrs, why):
    """Fallback through numpy's ufuncs with ``out=`` (still allocation-free)."""
    ufunc = _NUMPY_BINARY[opdef.name]
    act = attrs["activation"]

    def run(a, b, out):
        ufunc(a, b, out=out)
        if act != "none":
            out[...] = reference_act(out, act, attrs["act_a"], attrs["act_b"])

    return Prepared("np_binary", run, lambda i, o, s: (i[0], i[1], o[0]), reason=f"numpy ufunc: {why}")


for _name in _NUMPY_BINARY:
    register(type(_name, (_Binary,), {"name": _name}))


class _Activation(OpDef):
    """A standalone activation. ``act`` names the shared activation; attrs map to (a, b)."""

    family = "elementwise"
    act = ""
    param_names = ()  # attribute names for (a, b)
    inplace = 0
    kernels = ("f32_unary_act",)

    def infer(self, node, attrs, ins, ctx):
        if ins[0].dtype != "f32":
            raise self.error(node, f"takes f32, got {ins[0].dtype}")
        return [(ins[0].shape, ins[0].dtype)]

    def params(self, attrs):
        values = [float(attrs[n]) for n in self.param_names]
        return tuple(values + [0.0] * (2 - len(values)))

    def reference(self, attrs, x):
        return (reference_act(x, self.act, *self.params(attrs)),)

    def prepare(self, node, attrs, ins, outs, ctx):
        args = (CODES[self.act], *self.params(attrs))
        return Prepared("f32_unary_act", K.f32_unary_act, lambda i, o, s: (flat(i[0]), flat(o[0]), *args),
                        reason=f"{self.act} over a flat buffer")


def _activation(name, act, params=None):
    params = params or {}
    register(type(name, (_Activation,), {"name": name, "act": act, "attrs": params,
                                         "param_names": tuple(params)}))


_activation("Relu", "relu")
_activation("Clip", "clip", {"min": -np.inf, "max": np.inf})
_activation("Sigmoid", "sigmoid")
_activation("HardSigmoid", "hardsigmoid", {"alpha": 0.2, "beta": 0.5})
_activation("HardSwish", "hardswish")
_activation("Tanh", "tanh")
_activation("LeakyRelu", "leakyrelu", {"alpha": 0.01})


@register
class PRelu(OpDef):
    """PRelu(X, slope[, R]): with the optional third input (a residual Add fused by the
    ``fuse_add_prelu`` pass) the op computes PRelu(X + R), in one pass over memory instead of two."""

    name = "PRelu"
    family = "elementwise"
    num_inputs = (2, 3)
    inplace = 0
    kernels = ("f32_prelu_strided4", "f32_prelu_strided4_mt", "f32_add_prelu_strided4", "f32_add_prelu_strided4_mt",
               "f32_blocked_prelu", "f32_blocked_prelu_mt")

    def infer(self, node, attrs, ins, ctx):
        x, slope = ins[0], ins[1]
        if broadcast_shape(self, node, x.shape, slope.shape) != tuple(x.shape):
            raise self.error(node, f"slope {list(slope.shape)} must broadcast to the input {list(x.shape)}")
        if len(ins) > 2 and (tuple(ins[2].shape) != tuple(x.shape) or ins[2].dtype != x.dtype):
            raise self.error(node, f"addend {ins[2].dtype} {list(ins[2].shape)} must match the input "
                                   f"{x.dtype} {list(x.shape)}")
        return [(x.shape, x.dtype)]

    def reference(self, attrs, x, slope, addend=None):
        if addend is not None:
            x = (x + addend).astype(x.dtype)
        return (np.where(x >= 0, x, x * slope).astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        if ctx.is_blocked(node.outputs[0]):
            return self._blocked(node, attrs, ins, outs, ctx)
        packed = coalesce(ins[0].shape, broadcast_strides(ins[0].shape, ins[0].shape),
                          broadcast_strides(ins[1].shape, ins[0].shape))
        if packed is None:
            raise self.error(node, "PRelu broadcast needs more than 4 dims")
        shape, (_, sstr) = packed
        rows = int(shape[0] * shape[1] * shape[2])
        # Worth a parallel region (~5 us) from ~30 us of work (1 thread: ~4 elements per ns).
        T = ctx.threads if ctx.threads > 1 and ins[0].size >= PARALLEL_MIN_ELEMENTS and rows > 1 else 1
        mt, extra = ("_mt", (T,)) if T > 1 else ("", ())
        threads = f", {T} threads" if T > 1 else ""
        if len(ins) > 2:
            name = "f32_add_prelu_strided4" + mt
            return Prepared(name, getattr(K, name),
                            lambda i, o, s: (flat(i[0]), flat(i[2]), flat(np.ascontiguousarray(i[1])), sstr,
                                             flat(o[0]), shape, *extra),
                            reason="residual Add fused: PRelu(X + R), slope broadcast over coalesced dims" + threads)
        name = "f32_prelu_strided4" + mt
        return Prepared(name, getattr(K, name),
                        lambda i, o, s: (flat(i[0]), flat(np.ascontiguousarray(i[1])), sstr, flat(o[0]), shape, *extra),
                        reason="slope broadcast over coalesced dims" + threads)

    def _blocked(self, node, attrs, ins, outs, ctx):
        """Blocked [N][CB][P][VW]: the per-channel slope padded to whole blocks, one vector per pixel."""
        from ..kernels import blocked_ops as KBO
        N, C, H, W = ins[0].shape
        CB = -(-C // KBO.VW)
        slope = np.zeros(CB * KBO.VW, np.float32)
        slope[:C] = np.broadcast_to(np.asarray(ctx.const(node.inputs[1]), np.float32).reshape(-1), (C,))
        res = len(ins) > 2
        g = np.array([N, CB, H * W, int(res)], np.int64)
        T = ctx.threads if ctx.threads > 1 and ins[0].size >= PARALLEL_MIN_ELEMENTS and N * CB > 1 else 1
        from ..kernels.work import work_counter
        name = "f32_blocked_prelu" + ("_mt" if T > 1 else "")
        extra = (work_counter(T),) if T > 1 else ()
        dummy = np.zeros(1, np.float32)
        return Prepared(name, getattr(KBO, name),
                        lambda i, o, s: (flat(i[0]), flat(i[2]) if res else dummy, slope, flat(o[0]), g, *extra),
                        packed={"slope": slope, "geometry": g},
                        reason=("residual Add fused: PRelu(X + R)" if res else "per-channel slope")
                        + f", one vector per pixel (blocked){f', {T} threads' if T > 1 else ''}")


@register
class Identity(OpDef):
    name = "Identity"
    family = "shape"
    view_of = 0
    kernels = ("copy",)

    def infer(self, node, attrs, ins, ctx):
        return [(ins[0].shape, ins[0].dtype)]

    def reference(self, attrs, x):
        return (x.copy(),)

    def prepare(self, node, attrs, ins, outs, ctx):
        # Only reached when the input is a constant (views need no kernel).
        return Prepared("copy", np.copyto, lambda i, o, s: (o[0], i[0]), reason="copy of a constant")
