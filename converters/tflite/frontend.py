"""TFLite model -> edgert IR graph: inputs, one builder call per operator, outputs, shape check.

Unsupported operators are collected first (by opcode) and while building (variants a builder
cannot express); every one is reported in a single ``UnsupportedOpError`` with its operator index
and output tensor name. Tensors downstream of an unsupported operator are skipped silently, so the
report lists causes, not consequences.
"""

from __future__ import annotations

from converters.builder import GraphBuilder
from edgert.dtypes import from_numpy
from edgert.errors import ConversionError, GraphError, ShapeError, UnsupportedOpError

from .context import Context, Unsupported
from .layout import identity
from .ops import CUSTOM_BUILDERS
from .ops import __dict__ as _ops_namespace
from .ops_shape import BUILDERS as _SHAPE_BUILDERS
from .reader import _NUMPY

# Builders are the module-level functions named in capitals, exactly like TFLite's BuiltinOperator.
BUILDERS = {name: fn for name, fn in _ops_namespace.items() if name.isupper() and callable(fn)}
BUILDERS.update(_SHAPE_BUILDERS)


# Required inputs per operator (every builder produces exactly one output).
MIN_INPUTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "TRANSPOSE_CONV": 3, "Convolution2DTransposeBias": 3,
              "ADD": 2, "SUB": 2, "MUL": 2, "PRELU": 2, "MEAN": 2, "FULLY_CONNECTED": 2, "STRIDED_SLICE": 4,
              "RESIZE_BILINEAR": 2, "RESIZE_NEAREST_NEIGHBOR": 2, "TRANSPOSE": 2, "PAD": 2,
              "PADV2": 2, "MIRROR_PAD": 2, "MAXIMUM": 2, "MINIMUM": 2}


def builder_for(op):
    return CUSTOM_BUILDERS.get(op.opcode) if op.custom else BUILDERS.get(op.opcode)


def supported_ops() -> list:
    """Names of the TFLite operators (and custom ops) this converter translates."""
    return sorted(BUILDERS) + sorted(CUSTOM_BUILDERS)


def _label(model, op):
    out = model.tensors[op.outputs[0]].name if op.outputs else "?"
    kind = f"{op.opcode} (custom)" if op.custom else op.opcode
    return f"#{op.index} '{out}'", kind


def build_graph(model, input_shapes=None, fp16=False, progress=None, tensor_map=None):
    """Translate a parsed ``Model`` into a validated IR ``Graph``.

    ``tensor_map``, if a dict, receives {TFLite tensor index: (IR name, perm)} for every tensor that
    has an IR value (``ir = np.transpose(tflite, perm)``): for layer-by-layer debugging."""
    b = GraphBuilder(metadata={"source_format": "tflite", "tflite_schema_version": model.version,
                               "description": model.description[:500]})
    ctx = Context(model, b, input_shapes, fp16)
    unsupported = []
    for op in model.operators:
        if builder_for(op) is None:
            unsupported.append((op, "custom op unknown to edgert" if op.custom else "no IR equivalent"))
    _add_inputs(ctx, model, input_shapes or {})

    produced = set(model.inputs)
    poisoned = {op.outputs[k] for op, _ in unsupported for k in range(len(op.outputs))}
    total = len(model.operators)
    for op in model.operators:
        if progress:
            progress("convert", op.index, total)
        for t in op.outputs:
            if t in produced or ctx.is_const(t):
                raise ConversionError(f"operator #{op.index} {op.opcode} writes tensor {t} "
                                      f"'{model.tensors[t].name}', which already has a value", file=model.path)
            produced.add(t)
        if builder_for(op) is None or any(t in poisoned for t in op.inputs if t >= 0):
            poisoned.update(op.outputs)
            continue
        ctx.op = op
        need = MIN_INPUTS.get(op.opcode, 1)
        if len(op.outputs) != 1 or len(op.inputs) < need or any(t < 0 for t in op.inputs[:need]):
            ctx.fail(f"needs {need} inputs and 1 output, the file gives inputs {list(op.inputs)} and outputs "
                     f"{list(op.outputs)}")
        try:
            _check_float_inputs(ctx, op)
            builder_for(op)(ctx, op)
        except Unsupported as exc:
            unsupported.append((op, str(exc)))
            poisoned.update(op.outputs)
            continue
        except (IndexError, KeyError, ValueError, TypeError, OverflowError, ZeroDivisionError) as exc:
            # A safety net: inconsistent data in a well-formed flatbuffer must not escape as a crash.
            ctx.fail(f"inconsistent operator data ({type(exc).__name__}: {exc})")
        for t in op.outputs:
            if t not in ctx.forms and not ctx.is_const(t):
                ctx.fail(f"produced no value for output '{model.tensors[t].name}'")
            ctx.check_declared(t)
    ctx.op = None
    if progress:
        progress("convert", total, total)
    if unsupported:
        unsupported.sort(key=lambda item: item[0].index)
        lines = []
        for op, why in unsupported:
            where, kind = _label(model, op)
            lines.append(f"  operator {where.replace(' ', ' ' + kind + ' -> ', 1)}: {why}")
        raise UnsupportedOpError(f"{len(unsupported)} operator(s) cannot be converted:\n" + "\n".join(lines),
                                 ops=[_label(model, op) for op, _ in unsupported], file=model.path,
                                 hint="nothing was written")
    _add_outputs(ctx, model)
    try:
        graph = b.finish(file=model.path)
    except (GraphError, ShapeError) as exc:  # every node was already inferred: this is a converter bug
        raise ConversionError(f"the converted graph is inconsistent: {exc}", file=model.path) from exc
    if ctx.sparse_meta:
        graph.metadata["tflite_sparse"] = ctx.sparse_meta
    if tensor_map is not None:
        for t, forms in ctx.forms.items():
            perm = next((k for k in forms if k[:1] != ("w",)), None)
            if perm is not None and forms[perm] in graph.tensors:
                tensor_map[t] = (forms[perm], perm)
    graph.metadata["input_layout"] = {ctx.names[t]: "NHWC" for t in model.inputs
                                      if len(graph.tensors[ctx.names[t]].shape) == 4}
    return graph


def _add_inputs(ctx, model, input_shapes):
    names = {model.tensors[t].name: t for t in model.inputs}
    unknown = sorted(set(input_shapes) - set(names))
    if unknown:
        raise ConversionError(f"--input-shape names unknown input(s) {unknown}; the model's inputs are "
                              f"{sorted(names)}", file=model.path)
    for t in model.inputs:
        tensor = model.tensors[t]
        if ctx.is_const(t):
            continue
        shape = tuple(input_shapes.get(tensor.name, tensor.shape))
        if len(shape) != len(tensor.shape) or any(int(d) < 1 for d in shape):
            raise ConversionError(f"input '{tensor.name}' needs {len(tensor.shape)} positive dims, got {list(shape)}",
                                  file=model.path)
        if tensor.type not in _NUMPY:
            raise ConversionError(f"input '{tensor.name}' has type {tensor.type}, which edgert cannot take",
                                  file=model.path)
        ctx.b.add_input(ctx.names[t], shape, from_numpy(_NUMPY[tensor.type]))
        ctx.alias(t, ctx.names[t], identity(len(shape)))


def _check_float_inputs(ctx, op):
    for t in op.inputs:
        if t >= 0 and not ctx.is_const(t) and ctx.tensor(t).type != "FLOAT32":
            raise Unsupported(f"tensor '{ctx.tensor(t).name}' is {ctx.tensor(t).type}; only float32 "
                              "activations are supported (quantized models are not)")


def _add_outputs(ctx, model):
    seen = set()
    for t in model.outputs:
        name = ctx.value(t)  # TFLite order: users get the shapes the .tflite file declares
        if name in seen or name in ctx.b.graph.inputs or name in ctx.b.graph.consts or name != ctx.names[t]:
            wanted = ctx.names[t] if ctx.names[t] not in ctx.b.graph.tensors else ctx.b.unique(ctx.names[t] + ":out")
            ctx.b.add_node("Identity", [name], [wanted], {}, name=ctx.b.unique(f"output:{wanted}"))
            ctx._infer(ctx.b.graph.nodes[-1])
            name = wanted
        seen.add(name)
        ctx.b.add_output(name)
