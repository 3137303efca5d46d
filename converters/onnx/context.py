"""The ONNX conversion context: which IR tensor holds each ONNX tensor, constants, and node emission.

ONNX tensors are either *known* (their value is fixed at conversion time: initializers, Constant
nodes, and everything folded from them, kept as numpy arrays in ``consts``) or *runtime* tensors
held by an IR tensor (``ir``). A known tensor becomes an IR constant only when an IR node consumes
it, so shape arithmetic that folds away never reaches the file.

``emit`` adds one IR node and runs its op's own shape inference right away, so every builder can
ask for the shape of anything produced so far (the IR's inference is the authority, never ONNX's).
"""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from edgert.dtypes import from_numpy
from edgert.errors import ConversionError, EdgertError, ShapeError
from edgert.ir.graph import TensorInfo
from edgert.ops import get_op
from edgert.ops.registry import PrepareContext

# ONNX TensorProto element types edgert can hold, by the IR's short dtype names.
ONNX_DTYPES = {1: "f32", 10: "f16", 11: "f64", 7: "i64", 6: "i32", 5: "i16", 3: "i8", 2: "u8", 4: "u16", 9: "bool"}


class Unsupported(Exception):
    """Raised by an op builder for an op or variant edgert cannot express; the loader collects these."""


class Context:
    def __init__(self, model, builder, fp16=False, file=None):
        self.model = model
        self.b = builder
        self.graph = builder.graph
        self.fp16 = fp16
        self.file = file
        self.opsets = {imp.domain or "": imp.version for imp in model.opset_import}
        self.opset = self.opsets.get("", self.opsets.get("ai.onnx", 1))
        self.consts: dict = {}  # ONNX name -> np.ndarray (known at conversion time)
        self.half: set = set()  # known f32 tensors whose values came from fp16 (stored as fp16 again)
        self.ir: dict = {}  # ONNX name -> IR tensor name (runtime tensors and materialised constants)
        self.graph_outputs = {o.name for o in model.graph.output}
        self.uses: dict = {}  # ONNX name -> how many node inputs read it
        for node in model.graph.node:
            for name in node.input:
                if name:
                    self.uses[name] = self.uses.get(name, 0) + 1
        self.node = None
        self.node_name = ""
        self._main_taken = False
        self._ctx = PrepareContext(self.graph, file=file)
        self._producer: dict = {}  # IR tensor name -> IR node

    # --- the node being converted ----------------------------------------------------------------
    def begin(self, node) -> None:
        self.node = node
        self.node_name = self.b.unique(node_label(node))
        self._main_taken = False

    def attr(self, name, default=None):
        for a in self.node.attribute:
            if a.name == name:
                value = helper.get_attribute_value(a)
                if isinstance(value, bytes):
                    return value.decode("utf-8")
                if isinstance(value, list):
                    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]
                return value
        return default

    def has_attr(self, name) -> bool:
        return any(a.name == name for a in self.node.attribute)

    def inp(self, i) -> str:
        """The ONNX name of input ``i`` ('' when omitted or past the end)."""
        return self.node.input[i] if i < len(self.node.input) else ""

    def out(self, i) -> str:
        return self.node.output[i] if i < len(self.node.output) else ""

    def fail(self, message, hint=None):
        raise ConversionError(message, file=self.file, node=self.node_name, op=self.node.op_type, hint=hint)

    # --- known (constant) tensors --------------------------------------------------------------
    def is_const(self, name) -> bool:
        return bool(name) and name in self.consts

    def const(self, name, what="input") -> np.ndarray:
        """The value of a known tensor; Unsupported when it is only known at run time."""
        if not name:
            raise Unsupported(f"{what} is missing")
        if name not in self.consts:
            raise Unsupported(f"{what} '{name}' must be known at conversion time (a constant or foldable)")
        return self.consts[name]

    def const_ints(self, name, what="input") -> list:
        return [int(v) for v in np.asarray(self.const(name, what)).reshape(-1)]

    def optional_const(self, i, what):
        """Constant input ``i`` as an array, or None when the input is omitted."""
        name = self.inp(i)
        return self.const(name, what) if name else None

    def set_const(self, name, value, half=False) -> None:
        self.consts[name] = np.asarray(value)
        if half:
            self.half.add(name)

    # --- shapes and dtypes ---------------------------------------------------------------------
    def info(self, name) -> TensorInfo:
        if name in self.consts:
            v = self.consts[name]
            return TensorInfo(name, tuple(v.shape), "f32" if v.dtype == np.float16 else from_numpy(v.dtype))
        if name not in self.ir:
            raise Unsupported(f"tensor '{name}' is not produced by any supported node")
        return self.graph.tensors[self.ir[name]]

    def shape(self, name) -> tuple:
        return tuple(self.info(name).shape)

    def rank(self, name) -> int:
        return len(self.info(name).shape)

    def dtype(self, name) -> str:
        return self.info(name).dtype

    # --- IR tensors ------------------------------------------------------------------------------
    def tensor(self, name) -> str:
        """The IR tensor holding ONNX tensor ``name``; a known tensor becomes an IR constant here."""
        if not name:
            return ""
        if name in self.ir:
            return self.ir[name]
        if name in self.consts:
            self.ir[name] = self.add_const(name, self.consts[name], half=name in self.half)
            return self.ir[name]
        raise Unsupported(f"tensor '{name}' is not produced by any supported node")

    def add_const(self, base, value, half=False) -> str:
        """A new IR constant. Float weights are stored as fp16 when converting with fp16 or when
        the source stored them in fp16 (widening and narrowing back is lossless)."""
        value = np.asarray(value)
        if value.dtype == np.float64:
            value = value.astype(np.float32)  # edgert computes in f32; f64 constants are narrowed once here
        ir_name = self.b.unique(base)  # the ONNX name itself when free
        # With --fp16, scalars stay f32 (they save nothing and are often epsilons that fp16 would
        # flush), as do values outside fp16's range.
        f16 = value.dtype == np.float16 or (value.dtype == np.float32 and (half or (
            self.fp16 and value.size > 1 and bool(np.all(np.abs(value) <= 65504.0)))))
        if value.dtype == np.float16:
            value = value.astype(np.float32)
        return self.b.add_const(ir_name, value, dtype="f16" if f16 else None)

    def temp(self, suffix) -> str:
        """A fresh IR name for an intermediate tensor of the current node."""
        return self.b.unique(f"{self.node_name}/{suffix}")

    def producer(self, ir_name):
        return self._producer.get(ir_name)

    def emit(self, op, inputs, outputs=None, attrs=None, suffix=None) -> list:
        """Add an IR node for the current ONNX node and infer its outputs now.

        ``outputs``: ONNX output names (registered as this node's results) or None for one fresh
        intermediate tensor. The first node emitted without a ``suffix`` takes the ONNX node's name
        (builders leave the suffix off their main node); others are named ``<onnx name>/<suffix or op>``. Returns the IR output names.
        """
        if outputs is None:
            ir_outs = [self.temp(suffix or op.lower())]
            onnx_outs = [None]
        else:
            onnx_outs = list(outputs)
            ir_outs = [self._output_name(o) for o in onnx_outs]
        if suffix is None and not self._main_taken:
            name, self._main_taken = self.node_name, True
        else:
            name = self.b.unique(f"{self.node_name}/{suffix or op}")
        node = self.b.add_node(op, list(inputs), ir_outs, attrs or {}, name=name)
        self._infer(node)
        for o, ir_name in zip(onnx_outs, ir_outs):
            if o:
                self.ir[o] = ir_name
            self._producer[ir_name] = node
        return ir_outs

    def _output_name(self, onnx_name) -> str:
        return self.b.unique(onnx_name or f"{self.node_name}/out")  # the ONNX name itself when free

    def _infer(self, node) -> None:
        opdef = get_op(node.op)
        if opdef is None:
            self.graph.nodes.remove(node)
            raise Unsupported(f"edgert has no IR op {node.op!r} yet")
        try:
            opdef.check_arity(node)
            attrs = opdef.resolve_attrs(node)
            ins = [self.graph.tensors[n] if n else None for n in node.inputs]
            results = opdef.infer(node, attrs, ins, self._ctx)
        except EdgertError as exc:
            self.graph.nodes.remove(node)
            detail = exc.message if isinstance(exc, ShapeError) else str(exc)
            self.fail(f"the translated {node.op} node is invalid: {detail}")
        except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, OverflowError, MemoryError) as exc:
            self.graph.nodes.remove(node)
            self.fail(f"the translated {node.op} node is invalid ({type(exc).__name__}: {str(exc)[:200]})")
        for ir_name, (shape, dtype) in zip(node.outputs, results):
            self.graph.tensors[ir_name] = TensorInfo(ir_name, tuple(int(d) for d in shape), dtype)

    def alias(self, onnx_name, ir_name) -> None:
        """ONNX tensor ``onnx_name`` is the same as IR tensor ``ir_name`` (Identity, Dropout, ...)."""
        self.ir[onnx_name] = ir_name


def node_label(node) -> str:
    """How the IR and error messages name an ONNX node: its name, or (unnamed) op and first output."""
    return node.name or f"{node.op_type}/{node.output[0] if node.output else ''}"


def tensor_value(proto) -> np.ndarray:
    """A TensorProto as numpy; unsupported element types and data that disagree with the declared
    dims are ConversionErrors naming the tensor (onnx's own reader raises bare ValueErrors)."""
    if proto.data_type not in ONNX_DTYPES:
        try:
            what = helper.tensor_dtype_to_string(proto.data_type)
        except (KeyError, ValueError):
            what = f"unknown element type {proto.data_type}"
        raise Unsupported(f"tensor '{proto.name}' has an element type edgert cannot store ({what})")
    try:
        return numpy_helper.to_array(proto)
    except (ValueError, TypeError, KeyError, MemoryError) as exc:
        raise ConversionError(f"initializer '{proto.name}' is damaged: its data do not match its dims "
                              f"{list(proto.dims)} ({type(exc).__name__}: {str(exc)[:120]})") from None


def sparse_tensor_value(proto) -> tuple:
    """(name, dense array) of a SparseTensorProto (COO: ``values`` [NNZ] and ``indices`` [NNZ] linear
    or [NNZ, rank]); indices are checked against ``dims`` so a damaged file is an error, not a crash."""
    values = tensor_value(proto.values)
    name = proto.values.name
    dims = [int(d) for d in proto.dims]
    if any(d < 0 for d in dims) or int(np.prod(dims, dtype=np.float64)) > (1 << 31):
        raise ConversionError(f"sparse initializer '{name}' has implausible dims {dims}")
    indices = tensor_value(proto.indices) if proto.HasField("indices") else np.zeros((0,), np.int64)
    values = values.reshape(-1)
    size = int(np.prod(dims, dtype=np.int64))
    if indices.dtype.kind not in "iu":
        raise ConversionError(f"sparse initializer '{name}': indices must be integers, got {indices.dtype}")
    if indices.ndim == 2 and indices.shape == (len(values), len(dims)):
        if len(values) and ((indices < 0).any() or (indices >= np.array(dims)).any()):
            raise ConversionError(f"sparse initializer '{name}': an index lies outside dims {dims}")
        flat = np.ravel_multi_index(indices.T, dims) if len(values) else np.zeros(0, np.int64)
    elif indices.ndim == 1 and len(indices) == len(values):
        flat = indices.astype(np.int64)
        if len(flat) and (flat.min() < 0 or flat.max() >= size):
            raise ConversionError(f"sparse initializer '{name}': a linear index lies outside [0, {size})")
    else:
        raise ConversionError(f"sparse initializer '{name}': indices {list(indices.shape)} do not match "
                              f"{len(values)} values of a rank-{len(dims)} tensor")
    if len(np.unique(flat)) != len(flat):
        raise ConversionError(f"sparse initializer '{name}' gives a value twice for one position")
    dense = np.zeros(size, dtype=values.dtype)
    dense[flat] = values
    return name, dense.reshape(dims)
