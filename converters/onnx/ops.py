"""ONNX op builders: one function per ONNX op type, named exactly after it, collected in ``OPS``.

A builder reads the current ONNX node through ``ctx`` (attributes, inputs, known constants, the
shapes inferred so far) and emits IR nodes with ``ctx.emit``; it raises ``Unsupported`` for a
variant edgert cannot express. This module holds the elementwise ops, activations and the
constant/identity family; ``ops_nn`` (convolution, pooling, matmul, normalisation, reductions)
and ``ops_tensor`` (shape and data-movement ops, resize) hold the rest.

Nodes whose inputs are all known at conversion time never reach a builder: the loader folds them
with onnx's reference evaluator (see ``loader.fold_node``).
"""

from __future__ import annotations

import math

import numpy as np
from onnx import helper

from . import ops_nn, ops_tensor
from .context import ONNX_DTYPES, Unsupported, tensor_value


# --- elementwise arithmetic --------------------------------------------------------------------
def _binary(ctx, ir_op):
    a, b = ctx.inp(0), ctx.inp(1)
    ta, tb = ctx.dtype(a), ctx.dtype(b)
    if ta != tb:
        # ONNX Pow may raise a float to an integer power: a constant exponent takes the base's type.
        if ctx.is_const(b):
            ctx.set_const(b + "#as_" + ta, ctx.const(b).astype(np.dtype(_np_dtype(ta))))
            b = b + "#as_" + ta
        else:
            raise Unsupported(f"operands have different types ({ta} and {tb})")
    ctx.emit(ir_op, [ctx.tensor(a), ctx.tensor(b)], [ctx.out(0)])


def _np_dtype(ir_dtype):
    from edgert.dtypes import DTYPES
    return DTYPES[ir_dtype]


def Add(ctx, node):
    _binary(ctx, "Add")


def Sub(ctx, node):
    _binary(ctx, "Sub")


def Mul(ctx, node):
    _binary(ctx, "Mul")


def Div(ctx, node):
    if ctx.dtype(ctx.inp(0)) != "f32":
        raise Unsupported("integer division of runtime tensors")
    _binary(ctx, "Div")


def Pow(ctx, node):
    _binary(ctx, "Pow")


def _variadic(ctx, ir_op):
    """Max/Min/Sum of n inputs as a chain of binary nodes (numpy broadcasting, like ONNX)."""
    names = [n for n in node_inputs(ctx) if n]
    if len(names) == 1:
        ctx.alias(ctx.out(0), ctx.tensor(names[0]))
        return
    acc = ctx.tensor(names[0])
    for k, name in enumerate(names[1:], start=1):
        last = k == len(names) - 1
        acc = ctx.emit(ir_op, [acc, ctx.tensor(name)], [ctx.out(0)] if last else None,
                       suffix=None if k == 1 else f"{ir_op.lower()}{k}")[0]


def node_inputs(ctx):
    return list(ctx.node.input)


def Max(ctx, node):
    _variadic(ctx, "Max")


def Min(ctx, node):
    _variadic(ctx, "Min")


def Sum(ctx, node):
    _variadic(ctx, "Add")


def Mean(ctx, node):
    names = [n for n in node.input if n]
    if len(names) == 1:
        ctx.alias(ctx.out(0), ctx.tensor(names[0]))
        return
    acc = ctx.tensor(names[0])
    for k, name in enumerate(names[1:], start=1):
        acc = ctx.emit("Add", [acc, ctx.tensor(name)], None, suffix=f"sum{k}")[0]
    scale = ctx.add_const(f"{ctx.node_name}/1_over_n", np.float32(1.0 / len(names)))
    ctx.emit("Mul", [acc, scale], [ctx.out(0)])


def Neg(ctx, node):
    minus_one = ctx.add_const(f"{ctx.node_name}/minus_one", np.float32(-1.0))
    _require_f32(ctx, ctx.inp(0))
    ctx.emit("Mul", [ctx.tensor(ctx.inp(0)), minus_one], [ctx.out(0)])


def Reciprocal(ctx, node):
    one = ctx.add_const(f"{ctx.node_name}/one", np.float32(1.0))
    _require_f32(ctx, ctx.inp(0))
    ctx.emit("Div", [one, ctx.tensor(ctx.inp(0))], [ctx.out(0)])


def Sqrt(ctx, node):
    half = ctx.add_const(f"{ctx.node_name}/one_half", np.float32(0.5))
    _require_f32(ctx, ctx.inp(0))
    ctx.emit("Pow", [ctx.tensor(ctx.inp(0)), half], [ctx.out(0)])


def _require_f32(ctx, name):
    if ctx.dtype(name) != "f32":
        raise Unsupported(f"takes {ctx.dtype(name)} input; edgert computes this op in f32 only")


# --- activations -------------------------------------------------------------------------------
def _unary(ctx, ir_op, attrs=None):
    _require_f32(ctx, ctx.inp(0))
    ctx.emit(ir_op, [ctx.tensor(ctx.inp(0))], [ctx.out(0)], attrs or {})


def Relu(ctx, node):
    _unary(ctx, "Relu")


def Sigmoid(ctx, node):
    _unary(ctx, "Sigmoid")


def Tanh(ctx, node):
    _unary(ctx, "Tanh")


def HardSwish(ctx, node):
    _unary(ctx, "HardSwish")


def HardSigmoid(ctx, node):
    _unary(ctx, "HardSigmoid", {"alpha": float(ctx.attr("alpha", 0.2)), "beta": float(ctx.attr("beta", 0.5))})


def LeakyRelu(ctx, node):
    _unary(ctx, "LeakyRelu", {"alpha": float(ctx.attr("alpha", 0.01))})


def Clip(ctx, node):
    if ctx.opset < 11:
        lo, hi = ctx.attr("min", -math.inf), ctx.attr("max", math.inf)
    else:
        lo_v, hi_v = ctx.optional_const(1, "min"), ctx.optional_const(2, "max")
        lo = -math.inf if lo_v is None else float(np.asarray(lo_v).reshape(-1)[0])
        hi = math.inf if hi_v is None else float(np.asarray(hi_v).reshape(-1)[0])
    # ONNX's opset-6 defaults are the float limits: the same as no bound at all.
    attrs = {}
    if lo > -3.4e38:
        attrs["min"] = float(lo)
    if hi < 3.4e38:
        attrs["max"] = float(hi)
    _unary(ctx, "Clip", attrs)


def PRelu(ctx, node):
    x, slope = ctx.inp(0), ctx.inp(1)
    _require_f32(ctx, x)
    shape, s_shape = ctx.shape(x), ctx.shape(slope)
    if len(s_shape) == 1 and len(shape) > 2 and s_shape[0] == shape[1] and (ctx.opset < 7 or s_shape[0] != shape[-1]):
        # Before opset 7 (and in exporters that still follow it) a 1-D slope is one value per channel.
        per_channel = [s_shape[0]] + [1] * (len(shape) - 2)
        if ctx.is_const(slope):
            ctx.set_const(slope + "#per_channel", ctx.const(slope).reshape(per_channel), half=slope in ctx.half)
            s_ir = ctx.tensor(slope + "#per_channel")
        else:
            s_ir = ctx.emit("Reshape", [ctx.tensor(slope)], None, {"shape": per_channel}, suffix="slope")[0]
    else:
        s_ir = ctx.tensor(slope)
    ctx.emit("PRelu", [ctx.tensor(x), s_ir], [ctx.out(0)])


# --- constants, identities, casts ---------------------------------------------------------------
def Constant(ctx, node):
    a = node.attribute[0] if node.attribute else None
    if a is None:
        raise Unsupported("Constant without a value")
    if a.name == "value":
        value = tensor_value(a.t)
    elif a.name in ("value_float", "value_int"):
        value = np.array(helper.get_attribute_value(a), dtype=np.float32 if a.name == "value_float" else np.int64)
    elif a.name in ("value_floats", "value_ints"):
        value = np.array(helper.get_attribute_value(a), dtype=np.float32 if a.name == "value_floats" else np.int64)
    else:
        raise Unsupported(f"Constant with {a.name} (edgert holds numeric dense tensors only)")
    ctx.set_const(ctx.out(0), value)


def Identity(ctx, node):
    ctx.alias(ctx.out(0), ctx.tensor(ctx.inp(0)))


def Dropout(ctx, node):
    # Inference: the output is the input and the mask (if anyone reads it) is all true.
    if ctx.inp(2):
        training = ctx.const(ctx.inp(2), "training_mode")
        if bool(np.asarray(training).reshape(-1)[0]):
            raise Unsupported("Dropout in training mode")
    x = ctx.inp(0)
    ctx.alias(ctx.out(0), ctx.tensor(x))
    if ctx.out(1):
        ctx.set_const(ctx.out(1), np.ones(ctx.shape(x), dtype=bool))


def Cast(ctx, node):
    to = ONNX_DTYPES.get(ctx.attr("to"))
    if to is None or to != ctx.dtype(ctx.inp(0)):
        raise Unsupported(f"Cast of a runtime tensor from {ctx.dtype(ctx.inp(0))} to "
                          f"{to or helper.tensor_dtype_to_string(ctx.attr('to'))} (edgert folds casts of constants only)")
    ctx.alias(ctx.out(0), ctx.tensor(ctx.inp(0)))


def CastLike(ctx, node):
    if ctx.dtype(ctx.inp(0)) != ctx.dtype(ctx.inp(1)):
        raise Unsupported("CastLike of a runtime tensor to another type (edgert folds casts of constants only)")
    ctx.alias(ctx.out(0), ctx.tensor(ctx.inp(0)))


def Shape(ctx, node):
    # Every shape is static after conversion, so Shape is a constant.
    shape = np.array(ctx.shape(ctx.inp(0)), dtype=np.int64)
    start, end = ctx.attr("start", 0), ctx.attr("end", None)
    ctx.set_const(ctx.out(0), shape[start:end] if end is not None else shape[start:])


def Size(ctx, node):
    ctx.set_const(ctx.out(0), np.array(int(np.prod(ctx.shape(ctx.inp(0)), dtype=np.int64)), dtype=np.int64))


_LOCAL = [Add, Sub, Mul, Div, Pow, Max, Min, Sum, Mean, Neg, Reciprocal, Sqrt,
          Relu, Sigmoid, Tanh, HardSwish, HardSigmoid, LeakyRelu, Clip, PRelu,
          Constant, Identity, Dropout, Cast, CastLike, Shape, Size]

# ONNX op type -> builder. Every supported op type appears exactly once, under its own name.
OPS = {f.__name__: f for f in _LOCAL + list(ops_nn.BUILDERS) + list(ops_tensor.BUILDERS)}


def _register_codebook_ops():
    # LayerNormalization lives with the codebook layers that need it.
    from ..onnx_codebook import STANDARD_OPS
    for name, fn in STANDARD_OPS.items():
        OPS.setdefault(name, fn)


_register_codebook_ops()


def _register_volume_ops():
    # 5-D inputs of Conv/ConvTranspose/pooling/Resize go to the IR's 3-D ops; Instance/GroupNormalization.
    from .ops_volume import volume_forms
    volume_forms(OPS)


_register_volume_ops()
