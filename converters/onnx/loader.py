"""ONNX ModelProto -> edgert IR graph.

``load_onnx`` reads and checks a file; ``onnx_to_graph`` translates a checked model node by node:
initializers and Constant nodes are known values, nodes whose inputs are all known are folded with
onnx's reference evaluator (shape arithmetic, Shape of a static tensor, ConstantOfShape, Range...),
and every other node goes to its builder in ``ops.OPS``. Unsupported ops are collected, not fatal
on the first one, so the error lists them all. Graph passes run later (``converters.convert``).
"""

from __future__ import annotations

import math

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

import edgert
from edgert.errors import ConversionError, EdgertError, UnsupportedOpError
from edgert.ir.graph import TensorInfo

from ..builder import GraphBuilder
from .context import ONNX_DTYPES, Context, Unsupported, node_label, sparse_tensor_value, tensor_value
from .ops import OPS

# Never folded even on constant inputs: their result is not a function of the inputs.
NONDETERMINISTIC = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli",
                    "Multinomial"}
# Ops that only move or re-type values: folding them keeps a constant's fp16 origin (lossless).
DATA_MOVEMENT = {"Cast", "CastLike", "Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten",
                 "Concat", "Slice", "Gather", "Split", "Expand", "Tile"}
STANDARD_DOMAINS = ("", "ai.onnx")


def load_onnx(path) -> onnx.ModelProto:
    """Read and check an ONNX file; every failure is a ConversionError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError("no such file", file=path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001  (protobuf raises several unrelated types for damaged files)
        raise ConversionError(f"not a readable ONNX model ({type(exc).__name__}: {_first_line(exc)})", file=path,
                              hint="the file is truncated, corrupted or not ONNX") from None
    check_model(model, path)
    return model


def check_model(model, path=None) -> None:
    """onnx's checker over the model; given the file, it checks the file (which also works for
    models with external data and models over 2 GB, which cannot be checked in memory)."""
    try:
        onnx.checker.check_model(str(path) if path is not None else model)
    except Exception as exc:  # noqa: BLE001  (the checker raises ValidationError, and others on odd input)
        raise ConversionError(f"the ONNX checker rejects the model: {_first_line(exc)}", file=path,
                              hint="the file is damaged or was written by a broken exporter") from None


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# --- graph inputs -------------------------------------------------------------------------------------
# 2^34 floats is 64 GiB: no edge model takes such an input; a declared dim that big is damage, and
# shape inference would otherwise try to allocate index tables of that size.
MAX_INPUT_ELEMENTS = 1 << 34


def fixed_inputs(model, input_shapes, file=None) -> list:
    """[(name, shape, dtype)] of the runtime inputs, every dim static, or a ConversionError saying
    which dims are dynamic and how to fix them."""
    inits = {i.name for i in model.graph.initializer} | {i.values.name for i in model.graph.sparse_initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    shapes = dict(input_shapes or {})
    unknown = sorted(set(shapes) - {i.name for i in inputs})
    if unknown:
        raise ConversionError(f"--input-shape names unknown input(s) {unknown}; the model's inputs are "
                              + ", ".join(repr(i.name) for i in inputs), file=file)
    out, problems = [], []
    for vi in inputs:
        t = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        if t is None or t.elem_type not in ONNX_DTYPES:
            what = helper.tensor_dtype_to_string(t.elem_type) if t is not None else "a non-tensor type"
            raise ConversionError(f"input '{vi.name}' has {what}, which edgert cannot take", file=file)
        declared = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim] \
            if t.HasField("shape") else None
        if vi.name in shapes:
            given = tuple(int(d) for d in shapes[vi.name])
            if declared is not None and (len(given) != len(declared)
                                         or any(d is not None and d != g for d, g in zip(declared, given))):
                raise ConversionError(f"--input-shape {vi.name}={'x'.join(map(str, given))} does not match the "
                                      f"model's {_describe_dims(t)}", file=file)
            out.append((vi.name, given, ONNX_DTYPES[t.elem_type]))
        elif declared is None:
            problems.append(f"input '{vi.name}' has no declared shape")
        elif None in declared:
            dims = ", ".join(f"dim {k} ({_dim_label(t.shape.dim[k])})" for k, d in enumerate(declared) if d is None)
            example = "x".join("?" if d is None else str(d) for d in declared)
            problems.append(f"input '{vi.name}' has dynamic {dims}: fix them with --input-shape {vi.name}={example}, "
                            "each ? replaced by a size")
        else:
            out.append((vi.name, tuple(declared), ONNX_DTYPES[t.elem_type]))
    for name, shape, _ in out:
        if math.prod(shape) > MAX_INPUT_ELEMENTS:
            raise ConversionError(f"input '{name}' has shape {list(shape)}, {math.prod(shape)} elements: implausibly "
                                  f"large (more than {MAX_INPUT_ELEMENTS})", file=file,
                                  hint="fix the size with --input-shape")
    if problems:
        raise ConversionError("edgert needs static shapes; " + "; ".join(problems), file=file)
    return out


def _dim_label(dim) -> str:
    return f"'{dim.dim_param}'" if dim.dim_param else "unknown"


def _describe_dims(t) -> str:
    if not t.HasField("shape"):
        return "unknown shape"
    return "shape [" + ", ".join(str(d.dim_value) if d.dim_value > 0 else (d.dim_param or "?")
                                 for d in t.shape.dim) + "]"


# --- translation ------------------------------------------------------------------------------------------
# The codebook/key-value layers (converters/onnx_codebook.py) are wired in here, not patched in.
CODEBOOK_HOOKS = True


def onnx_to_graph(model, input_shapes=None, fp16=False, progress=None, file=None):
    """Translate a checked ModelProto. Returns (Graph validated by edgert's inference, info dict)."""
    from ..onnx_codebook import fuse_codebook_patterns
    # Plain-op codebook / key-value subgraphs become single ai.edgert nodes first (each rewrite is
    # checked numerically against the subgraph it replaces).
    model, fused = fuse_codebook_patterns(model, input_shapes)
    g = model.graph
    builder = GraphBuilder(metadata=_metadata(model, file, fp16))
    ctx = Context(model, builder, fp16=fp16, file=file)
    for vi in fixed_inputs(model, input_shapes, file):
        builder.add_input(*vi)
        ctx.ir[vi[0]] = vi[0]
    for sparse in g.sparse_initializer:
        # Densified here; the sparsify pass stores 1x1/FC weights with enough zeros as CSR again.
        try:
            ctx.set_const(*sparse_tensor_value(sparse))
        except Unsupported as exc:
            raise ConversionError(str(exc), file=file) from None
        except ConversionError as exc:
            exc.file = exc.file or (str(file) if file else None)
            raise
    for init in g.initializer:
        try:
            ctx.set_const(init.name, tensor_value(init))
        except Unsupported as exc:
            raise ConversionError(str(exc), file=file) from None
        except ConversionError as exc:
            exc.file = exc.file or (str(file) if file else None)
            raise
    unsupported, poisoned = [], set()
    total = len(g.node)
    for k, node in enumerate(g.node):
        if progress:
            progress("convert", k + 1, total)
        if any(n in poisoned for n in node.input if n):
            # Downstream of an unsupported node: nothing is known about its inputs. Only an op type
            # edgert never supports is worth reporting here.
            poisoned.update(o for o in node.output if o)
            if not _known_op(node):
                unsupported.append((node_label(node), node.op_type, node.domain, "no edgert equivalent"))
            continue
        ctx.begin(node)
        try:
            convert_node(ctx, node)
        except Unsupported as exc:
            unsupported.append((ctx.node_name, node.op_type, node.domain, str(exc)))
            poisoned.update(o for o in node.output if o)
    if unsupported:
        raise UnsupportedOpError(_unsupported_message(unsupported), file=file,
                                 ops=[(name, op if not dom else f"{dom}.{op}") for name, op, dom, _ in unsupported])
    for vi in g.output:
        _bind_output(ctx, vi.name)
    try:
        graph = builder.finish(file=file)
    except EdgertError as exc:
        raise ConversionError(f"edgert's shape inference rejects the converted graph: {exc.message}", file=file,
                              node=exc.node, op=exc.op) from None
    return graph, {"source_nodes": total, "fused_codebook_layers": fused,
                   "warnings": _compare_with_onnx_shapes(model, ctx, graph)}


def _known_op(node) -> bool:
    from ..onnx_codebook import CUSTOM_OPS
    if node.domain == "ai.edgert":
        return node.op_type in CUSTOM_OPS
    return node.op_type in OPS and node.domain in STANDARD_DOMAINS


def convert_node(ctx, node) -> None:
    if node.domain == "ai.edgert":
        from ..onnx_codebook import CUSTOM_OPS
        if node.op_type not in CUSTOM_OPS:
            raise Unsupported(f"ai.edgert.{node.op_type} is not an edgert custom op")
        CUSTOM_OPS[node.op_type](ctx, node)
        return
    if node.domain not in STANDARD_DOMAINS:
        raise Unsupported(f"ops of domain {node.domain!r} are not supported")
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        raise Unsupported("control flow (subgraphs) is not supported")
    known = all(ctx.is_const(n) for n in node.input if n)
    if node.op_type == "Constant" or not (known and node.op_type not in NONDETERMINISTIC):
        builder = OPS.get(node.op_type)
        if builder is None:
            raise Unsupported("no edgert equivalent" + ("" if known else " (and its inputs are only known at run time)"))
        builder(ctx, node)
    else:
        fold_node(ctx, node)


def fold_node(ctx, node) -> None:
    """Evaluate a node whose inputs are all known with onnx's reference evaluator."""
    from onnx.reference import ReferenceEvaluator
    feeds = {n: ctx.consts[n] for n in node.input if n}
    try:
        results = ReferenceEvaluator(node, opsets=ctx.opsets).run(None, feeds)
    except Exception as exc:  # noqa: BLE001  (any failure of the evaluator means: not foldable)
        if node.op_type in OPS:
            OPS[node.op_type](ctx, node)  # the builder may still express it with constant IR inputs
            return
        raise Unsupported(f"cannot evaluate it on its constant inputs ({type(exc).__name__}: {_first_line(exc)})") \
            from None
    half = node.op_type in DATA_MOVEMENT and all(
        ctx.consts[n].dtype == np.float16 or n in ctx.half for n in node.input[:1] if n)
    for name, value in zip(node.output, results):
        if not name:
            continue
        if not isinstance(value, np.ndarray | np.generic):
            raise Unsupported("its result is not a tensor (sequences and maps are not supported)")
        ctx.set_const(name, np.asarray(value), half=half and np.asarray(value).dtype == np.float32)


def _bind_output(ctx, name) -> None:
    """Make ONNX graph output ``name`` an IR tensor of the same name (users look outputs up by name)."""
    ir = ctx.tensor(name) if (name in ctx.ir or name in ctx.consts) else None
    if ir is None:
        raise ConversionError(f"graph output '{name}' is not produced by any node", file=ctx.file)
    if ir != name:
        if name in ctx.graph.tensors:
            raise ConversionError(f"graph output '{name}' clashes with another tensor's name", file=ctx.file)
        node = ctx.b.add_node("Identity", [ir], [name], name=ctx.b.unique(f"{name}/output"))
        info = ctx.graph.tensors[ir]
        ctx.graph.tensors[name] = TensorInfo(name, info.shape, info.dtype)
        ctx._producer[name] = node
    ctx.b.add_output(name)


def _unsupported_message(items) -> str:
    names = sorted({op if not dom else f"{dom}.{op}" for _, op, dom, _ in items})
    lines = [f"'{name}' ({op}{', domain ' + dom if dom else ''}): {why}" for name, op, dom, why in items]
    return (f"{len(items)} node(s) cannot be converted (op types: {', '.join(names)}): " + "; ".join(lines))


def _metadata(model, file, fp16) -> dict:
    producer = f"{model.producer_name} {model.producer_version}".strip()
    return {"source": Path(file).name if file else (model.graph.name or "model"), "source_format": "onnx",
            "producer": producer or "unknown",
            "opset": next((imp.version for imp in model.opset_import if imp.domain in STANDARD_DOMAINS), 0),
            "converter": f"edgert {edgert.__version__}", "fp16_weights": bool(fp16)}


def _compare_with_onnx_shapes(model, ctx, graph) -> list:
    """ONNX's own shape inference, as a cross-check only: disagreements become warnings."""
    try:
        fixed = onnx.ModelProto()
        fixed.CopyFrom(model)
        for vi in fixed.graph.input:
            if vi.name in graph.tensors and vi.name in graph.inputs:
                dims = vi.type.tensor_type.shape.dim
                for d, n in zip(dims, graph.tensors[vi.name].shape):
                    d.Clear()
                    d.dim_value = n
        inferred = onnx.shape_inference.infer_shapes(fixed)
    except Exception:  # noqa: BLE001  (only a cross-check: no warnings when ONNX cannot infer)
        return []
    warnings = []
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        ir = ctx.ir.get(vi.name)
        if ir is None or ir not in graph.tensors or not vi.type.HasField("tensor_type"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if not vi.type.tensor_type.HasField("shape") or not all(d.HasField("dim_value") for d in dims):
            continue
        onnx_shape = tuple(d.dim_value for d in dims)
        if onnx_shape != tuple(graph.tensors[ir].shape):
            warnings.append(f"tensor '{vi.name}': ONNX infers {list(onnx_shape)}, edgert {list(graph.tensors[ir].shape)}")
    return warnings
