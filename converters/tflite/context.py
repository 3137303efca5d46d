"""The conversion context: which IR tensor holds each TFLite tensor, in which layout, and constants.

Every TFLite tensor has one IR name for its TFLite-order form (its own, sanitised and unique name)
and may have other forms (``name@nchw``) created on demand; ``value(t, perm)`` returns the form a
consumer needs and inserts at most one Transpose per (tensor, layout), cached, so no tensor is ever
transposed to the same layout twice. Constants (buffer data, or DEQUANTIZE/DENSIFY results) stay
numpy arrays until a consumer needs them, and are then stored already in the consumer's layout.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from edgert.errors import ConversionError, ShapeError
from edgert.ir.graph import TensorInfo
from edgert.ops import get_op
from edgert.ops.registry import PrepareContext

from .layout import NCHW, identity, only_moves_unit_dims, relayout
from .reader import MAX_CONST_ELEMENTS
from .sparsity import densify, describe

# Operators that compute in NCHW, and which of their inputs is the image.
SPATIAL_INPUT = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 0, "MAX_POOL_2D": 0, "AVERAGE_POOL_2D": 0, "RESIZE_BILINEAR": 0,
                 "RESIZE_NEAREST_NEIGHBOR": 0, "DEPTH_TO_SPACE": 0, "TRANSPOSE_CONV": 2,
                 "Convolution2DTransposeBias": 0}


class Unsupported(Exception):
    """Raised by an op builder for a variant edgert cannot express; the converter collects these."""


@dataclass
class ConstVal:
    array: np.ndarray  # as shipped: fp16 stays fp16
    sparse: dict | None = None  # sparsity facts (density, block per TFLite dim) if it came from DENSIFY


def _clean(name: str) -> str:
    return re.sub(r"[\x00-\x1f]", "_", name)[:200]


class Context:
    def __init__(self, model, builder, input_shapes=None, fp16=False):
        self.model = model
        self.b = builder
        self.path = model.path
        self.fp16 = fp16
        self.input_shapes = dict(input_shapes or {})
        self.check_shapes = not self.input_shapes
        self.names = [builder.unique(_clean(t.name) or f"tensor{t.index}") for t in model.tensors]
        self.forms: dict = {}  # tensor index -> {perm or weight key: IR name}
        self.consts: dict = {}  # tensor index -> ConstVal
        self.sparse_meta: dict = {}  # IR const name -> sparsity facts
        self.op = None
        self._ctx = PrepareContext(builder.graph, file=self.path)
        self.sparse = set()  # tensors stored sparse, decoded on first use
        self.consumers: dict = {}  # tensor index -> [(operator, input position)]
        for op in model.operators:
            for k, t in enumerate(op.inputs):
                if t >= 0:
                    self.consumers.setdefault(t, []).append((op, k))
        for t in model.tensors:
            if t.data is not None:
                if t.sparsity is None:
                    self.consts[t.index] = ConstVal(t.data)
                else:
                    self.sparse.add(t.index)

    # --- errors and naming -----------------------------------------------------------------------
    def where(self) -> str:
        op = self.op
        if op is None:
            return "graph"
        out = self.model.tensors[op.outputs[0]].name if op.outputs else "?"
        return f"operator #{op.index} {op.opcode} (output '{out}')"

    def fail(self, message):
        raise ConversionError(f"{self.where()}: {message}", file=self.path)

    def tensor(self, t):
        if t < 0:
            self.fail("a required input is missing")
        return self.model.tensors[t]

    # --- constants -------------------------------------------------------------------------------
    def is_const(self, t) -> bool:
        return t >= 0 and (t in self.consts or t in self.sparse)

    def const(self, t) -> np.ndarray:
        if not self.is_const(t):
            raise Unsupported(f"input '{self.tensor(t).name}' must be a constant")
        if t not in self.consts:
            self.consts[t] = self._decode_sparse(self.tensor(t))
        return self.consts[t].array

    def _decode_sparse(self, tensor) -> ConstVal:
        """Densify a sparse constant exactly (values, CSR levels and blocks checked against the shape)."""
        if tensor.size > MAX_CONST_ELEMENTS:
            self.fail(f"sparse tensor '{tensor.name}' has a dense size of {tensor.size} elements; "
                      f"more than {MAX_CONST_ELEMENTS} is refused")
        sp = tensor.sparsity
        try:
            dense = densify(tensor.data, tensor.shape, sp.traversal_order, sp.block_map, sp.dim_metadata)
        except ValueError as exc:
            self.fail(f"sparse tensor '{tensor.name}' is malformed: {exc}")
        facts = describe(dense, sp.block_map, sp.dim_metadata, sp.traversal_order)
        facts["tflite_tensor"] = tensor.name
        return ConstVal(dense, facts)

    def const_ints(self, t, what) -> list:
        a = self.const(t)
        if a.dtype.kind not in "iu":
            self.fail(f"{what} must be an integer constant, got {a.dtype}")
        return [int(v) for v in a.reshape(-1)]

    def set_const(self, t, array, sparse=None):
        self.consts[t] = ConstVal(np.asarray(array), sparse)

    def _add_const(self, name, array):
        if array.dtype.kind == "f":
            dtype = "f16" if (array.dtype == np.float16 or self.fp16) else None
            return self.b.add_const(name, np.ascontiguousarray(array), dtype=dtype)
        return self.b.add_const(name, np.ascontiguousarray(array))

    def weight(self, t, perm=None, pre_shape=None):
        """Store constant ``t`` (reshaped to ``pre_shape``, then transposed by ``perm``) once; returns
        its IR name. Sparsity facts travel along (their per-dim block sizes permuted like the array)."""
        forms = self.forms.setdefault(t, {})
        key = ("w", tuple(perm) if perm else None, tuple(pre_shape) if pre_shape else None)
        if key in forms:
            return forms[key]
        array = self.const(t)
        cv = self.consts[t]
        if pre_shape is not None:
            array = array.reshape(pre_shape)
        if perm is not None:
            array = np.transpose(array, perm)
        taken = set(forms.values())
        name = self.names[t] if self.names[t] not in taken and self.names[t] not in self.b.graph.tensors \
            else self.b.unique(self.names[t] + "@w")
        forms[key] = self._add_const(name, array)
        if cv.sparse is not None:
            meta = dict(cv.sparse)
            block = meta["block"]
            meta["block"] = [block[p] for p in perm] if perm is not None and pre_shape is None else block
            self.sparse_meta[name] = meta
        return forms[key]

    # --- values and layouts ------------------------------------------------------------------------
    def rank(self, t) -> int:
        return len(self.shape(t))

    def shape(self, t) -> tuple:
        """The tensor's current shape in TFLite order (from IR inference, so input overrides flow)."""
        if self.is_const(t):
            return tuple(self.const(t).shape)
        perm = self.held(t)
        name = self.forms[t][perm]
        ir = self.b.graph.tensors[name].shape
        out = [0] * len(ir)
        for i, p in enumerate(perm):
            out[p] = ir[i]
        return tuple(out)

    def held(self, t) -> tuple:
        """The layout ``t`` was produced in (identity for constants and graph inputs)."""
        if self.is_const(t):
            return identity(self.const(t).ndim)
        forms = [k for k in self.forms.get(t, {}) if k[:1] != ("w",)]
        if not forms:
            self.fail(f"input '{self.tensor(t).name}' is used before any operator produces it")
        return forms[0]

    def value(self, t, perm=None) -> str:
        """The IR name of ``t`` held as ``perm`` (default: TFLite order), transposing once if needed."""
        rank = self.rank(t)
        perm = tuple(perm) if perm is not None else identity(rank)
        forms = self.forms.setdefault(t, {})
        if perm in forms:
            return forms[perm]
        if self.is_const(t):
            array = np.transpose(self.const(t), perm)
            forms[perm] = self._add_const(self.form_name(t, perm), array)
            return forms[perm]
        src_perm = self.held(t)
        src = forms[src_perm]
        shape = self.b.graph.tensors[src].shape
        rel = relayout(src_perm, perm)
        if only_moves_unit_dims(shape, rel):
            new_shape = [shape[r] for r in rel]
            return self.emit("Reshape", [src], {"shape": new_shape}, out=t, perm=perm, suffix="relayout")
        return self.emit("Transpose", [src], {"perm": list(rel)}, out=t, perm=perm, suffix="relayout")

    def nchw(self, t) -> str:
        if self.rank(t) != 4:
            self.fail(f"expects a 4-D NHWC input, got shape {list(self.shape(t))}")
        return self.value(t, NCHW)

    def wants_nchw(self, t) -> bool:
        """True if every reader of ``t`` is a spatial op taking it as its image (and there is one):
        a layout-agnostic op producing ``t`` should then work in NCHW, so that the one Transpose sits
        before it (a Pad can then fold into the Conv after it)."""
        readers = self.consumers.get(t, [])
        return bool(readers) and t not in self.model.outputs and all(
            SPATIAL_INPUT.get(op.opcode) == k for op, k in readers)

    def form_name(self, t, perm) -> str:
        if perm == identity(len(perm)) and self.names[t] not in self.b.graph.tensors:
            return self.names[t]
        tag = "nchw" if tuple(perm) == NCHW else "p" + "".join(map(str, perm))
        return self.b.unique(f"{self.names[t]}@{tag}")

    def alias(self, t, ir_name, perm):
        """Record that TFLite tensor ``t`` is IR tensor ``ir_name`` held as ``perm`` (no node needed)."""
        self.forms.setdefault(t, {})[tuple(perm)] = ir_name

    # --- emitting IR nodes -------------------------------------------------------------------------
    def emit(self, op, inputs, attrs=None, out=None, perm=None, suffix="") -> str:
        """Add one IR node; infer its output now (later decisions need shapes). ``out``/``perm`` say
        which TFLite tensor (and layout) the node produces, or None for an intermediate."""
        name = None
        if out is not None:
            perm = tuple(perm) if perm is not None else None
            if perm is not None:
                name = self.form_name(out, perm)
            elif self.names[out] not in self.b.graph.tensors:
                name = self.names[out]  # no layout given: TFLite order, the tensor's own name
        prefix = f"op{self.op.index}:{self.op.opcode}" if self.op is not None else "graph"
        node_name = self.b.unique(f"{prefix}/{op}" + (f"/{suffix}" if suffix else ""))
        if name is None:
            name = self.b.unique(f"{prefix}/{op}:out")
        node = self.b.add_node(op, inputs, [name], attrs or {}, name=node_name)
        self._infer(node)
        if out is not None:
            if perm is None:
                perm = identity(len(self.b.graph.tensors[name].shape))
            self.forms.setdefault(out, {})[perm] = name
        return name

    def _infer(self, node):
        opdef = get_op(node.op)
        if opdef is None:
            self.fail(f"needs the IR op '{node.op}', which this edgert version does not register")
        try:
            opdef.check_arity(node)
            attrs = opdef.resolve_attrs(node)
            ins = [self.b.graph.tensors[n] if n else None for n in node.inputs]
            results = opdef.infer(node, attrs, ins, self._ctx)
        except ShapeError as exc:
            self.fail(f"the IR {node.op} node rejects it: {exc.message}")
        except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, OverflowError) as exc:
            self.fail(f"the IR {node.op} node rejects it ({type(exc).__name__}: {exc})")
        for name, (shape, dtype) in zip(node.outputs, results):
            self.b.graph.tensors[name] = TensorInfo(name, tuple(int(d) for d in shape), dtype)

    def check_declared(self, t):
        """Compare the inferred shape of ``t`` with the shape the file declares (catches bad files)."""
        if not self.check_shapes or t not in self.forms:
            return
        declared = tuple(self.tensor(t).shape)
        got = self.shape(t)
        if got != declared and not (declared == () and math.prod(got) == 1):
            self.fail(f"output '{self.tensor(t).name}' is declared as {list(declared)} but computes to {list(got)}")

