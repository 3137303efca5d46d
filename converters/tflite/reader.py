"""Read a .tflite flatbuffer into plain, validated Python records (never the interpreter).

The file is untrusted: every flatbuffer access goes through ``_guard``, which turns the exceptions a
truncated or corrupted buffer provokes (``struct.error``, ``IndexError``, ``TypeError`` ...) into a
``ConversionError`` naming the file. Vector lengths are checked against the file size before any
loop runs over them, every tensor/buffer/opcode index is range-checked, and every constant's byte
length is checked against its shape before it is decoded, so a hostile file can neither crash the
converter nor make it allocate more than the file implies.
"""

from __future__ import annotations

import math
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tflite

from edgert.errors import ConversionError

# A dense constant (e.g. a decoded sparse weight) larger than this is refused: 2**28 f32 = 1 GiB.
MAX_CONST_ELEMENTS = 1 << 28
# An activation shape larger than this is refused (its product also must not overflow int64).
MAX_TENSOR_ELEMENTS = 1 << 34
MAX_RANK = 8

_TYPES = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
_NUMPY = {"FLOAT32": "<f4", "FLOAT16": "<f2", "FLOAT64": "<f8", "INT32": "<i4", "INT64": "<i8",
          "INT16": "<i2", "INT8": "i1", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
          "BOOL": "?"}
_BUILTIN = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_OPTIONS = {v: k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_")}
_INDEX_VECTORS = {1: ("Int32Vector", "<i4"), 2: ("Uint16Vector", "<u2"), 3: ("Uint8Vector", "u1")}

# The option fields the op builders read, per options table (getter names of the tflite classes).
OPTION_FIELDS = {
    "Conv2DOptions": ("Padding", "StrideW", "StrideH", "FusedActivationFunction", "DilationWFactor",
                      "DilationHFactor"),
    "DepthwiseConv2DOptions": ("Padding", "StrideW", "StrideH", "DepthMultiplier", "FusedActivationFunction",
                               "DilationWFactor", "DilationHFactor"),
    "Pool2DOptions": ("Padding", "StrideW", "StrideH", "FilterWidth", "FilterHeight", "FusedActivationFunction"),
    "AddOptions": ("FusedActivationFunction",),
    "SubOptions": ("FusedActivationFunction",),
    "MulOptions": ("FusedActivationFunction",),
    "ConcatenationOptions": ("Axis", "FusedActivationFunction"),
    "ReshapeOptions": ("NewShape*",),
    "ReducerOptions": ("KeepDims",),
    "FullyConnectedOptions": ("FusedActivationFunction", "WeightsFormat", "KeepNumDims"),
    "StridedSliceOptions": ("BeginMask", "EndMask", "EllipsisMask", "NewAxisMask", "ShrinkAxisMask", "Offset"),
    "ResizeBilinearOptions": ("AlignCorners", "HalfPixelCenters"),
    "ResizeNearestNeighborOptions": ("AlignCorners", "HalfPixelCenters"),
    "DepthToSpaceOptions": ("BlockSize",),
    "TransposeConvOptions": ("Padding", "StrideW", "StrideH", "FusedActivationFunction"),
    "SoftmaxOptions": ("Beta",),
    "MirrorPadOptions": ("Mode",),
}


@dataclass
class DimMeta:
    """One traversal level of a sparse tensor: DENSE (``dense_size``) or SPARSE_CSR (segments, indices)."""

    format: str  # "DENSE" or "SPARSE_CSR"
    dense_size: int = 0
    segments: np.ndarray | None = None
    indices: np.ndarray | None = None


@dataclass
class Sparsity:
    traversal_order: list
    block_map: list
    dim_metadata: list  # [DimMeta], one per traversal level


@dataclass
class Quant:
    scale: np.ndarray
    zero_point: np.ndarray
    quantized_dimension: int


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple
    type: str  # TFLite type name, e.g. "FLOAT32"
    buffer: int
    data: np.ndarray | None = None  # dense: typed, shaped; sparse: the stored values (1-D)
    sparsity: Sparsity | None = None
    quant: Quant | None = None
    is_variable: bool = False

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass
class Operator:
    index: int
    opcode: str  # builtin name ("CONV_2D") or the custom code ("Convolution2DTransposeBias")
    custom: bool
    version: int
    inputs: tuple  # tensor indices; -1 marks an omitted optional input
    outputs: tuple
    options_type: str  # "NONE" or e.g. "Conv2DOptions"
    options: dict = field(default_factory=dict)
    custom_options: bytes = b""


@dataclass
class Model:
    path: str
    version: int
    description: str
    tensors: list
    operators: list
    inputs: list
    outputs: list
    subgraphs: int = 1


@contextmanager
def _guard(path, what):
    """Turn low-level decoding failures into one ConversionError naming the file and the field."""
    try:
        yield
    except ConversionError:
        raise
    except (struct.error, IndexError, TypeError, ValueError, OverflowError, AttributeError, KeyError,
            UnicodeDecodeError, MemoryError) as exc:
        raise ConversionError(f"corrupt TFLite flatbuffer while reading {what} ({type(exc).__name__}: {exc})",
                              file=path) from None


def read_model(src) -> Model:
    """Parse ``src`` (a path, or the file's bytes) into a validated ``Model`` (subgraph 0)."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        buf, path = bytes(src), "<bytes>"
    else:
        path = str(src)
        try:
            buf = Path(src).read_bytes()
        except OSError as exc:
            raise ConversionError(f"cannot read the model: {exc.strerror or exc}", file=path) from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ConversionError("not a TFLite model (missing the 'TFL3' flatbuffer identifier)", file=path)
    return _Reader(buf, path).model()


class _Reader:
    def __init__(self, buf: bytes, path: str):
        self.buf, self.path = buf, path

    def fail(self, message):
        raise ConversionError(message, file=self.path)

    def count(self, n, what, width=4):
        """A vector length, checked to fit in the file (each element takes >= ``width`` bytes)."""
        if not 0 <= n <= len(self.buf) // width:
            self.fail(f"{what} claims {n} entries, more than the {len(self.buf)}-byte file can hold")
        return n

    def ints(self, array, what, lo=None, hi=None) -> list:
        values = [int(v) for v in np.asarray(array).reshape(-1)]
        for v in values:
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                self.fail(f"{what}: value {v} is outside [{lo}, {hi}]")
        return values

    def model(self) -> Model:
        with _guard(self.path, "the model header"):
            m = tflite.Model.GetRootAs(self.buf, 0)
            version = m.Version()
            description = (m.Description() or b"").decode("utf-8", "replace")
            n_sub = self.count(m.SubgraphsLength(), "subgraphs")
            if n_sub < 1:
                self.fail("the model has no subgraph")
            codes = [self.opcode(m, i) for i in range(self.count(m.OperatorCodesLength(), "operator codes"))]
            n_buffers = self.count(m.BuffersLength(), "buffers")
            sg = m.Subgraphs(0)
            n_tensors = self.count(sg.TensorsLength(), "tensors")
        with _guard(self.path, "the tensors"):
            tensors = [self.tensor(m, sg, i, n_buffers) for i in range(n_tensors)]
        with _guard(self.path, "the operators"):
            n_ops = self.count(sg.OperatorsLength(), "operators")
            operators = [self.operator(sg, i, codes, n_tensors) for i in range(n_ops)]
            inputs = self.ints(sg.InputsAsNumpy() if sg.InputsLength() else [], "subgraph inputs", 0, n_tensors - 1)
            outputs = self.ints(sg.OutputsAsNumpy() if sg.OutputsLength() else [], "subgraph outputs", 0,
                                n_tensors - 1)
        if not outputs:
            self.fail("the subgraph has no outputs")
        return Model(self.path, version, description, tensors, operators, inputs, outputs, n_sub)

    def opcode(self, m, i):
        oc = m.OperatorCodes(i)
        # Schema v3a moved codes >= 127 to ``builtin_code``; old files only fill the deprecated int8 field.
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        name = _BUILTIN.get(code)
        if name is None:
            return (f"UNKNOWN_BUILTIN_{code}", False, oc.Version())
        if name == "CUSTOM":
            custom = oc.CustomCode()
            return ((custom or b"").decode("utf-8", "replace") or "<unnamed custom op>", True, oc.Version())
        return (name, False, oc.Version())

    def tensor(self, m, sg, i, n_buffers) -> Tensor:
        t = sg.Tensors(i)
        name = (t.Name() or b"").decode("utf-8", "replace")
        where = f"tensor {i} '{name}'"
        n_dims = self.count(t.ShapeLength(), f"{where} shape")
        if n_dims > MAX_RANK:
            self.fail(f"{where} has rank {n_dims}; at most {MAX_RANK} is supported")
        shape = tuple(self.ints(t.ShapeAsNumpy() if n_dims else [], f"{where} shape", 0, 1 << 31))
        if math.prod(shape) > MAX_TENSOR_ELEMENTS:
            self.fail(f"{where} has shape {list(shape)} whose size {math.prod(shape)} is implausibly large")
        type_name = _TYPES.get(t.Type(), f"TYPE_{t.Type()}")
        buffer = t.Buffer()
        if not 0 <= buffer < max(n_buffers, 1):
            self.fail(f"{where} refers to buffer {buffer}, but the model has {n_buffers} buffers")
        tensor = Tensor(i, name, shape, type_name, buffer, is_variable=bool(t.IsVariable()))
        sparsity = t.Sparsity()
        if sparsity is not None:
            tensor.sparsity = self.sparsity(sparsity, where, len(shape))
        q = t.Quantization()
        if q is not None and q.ScaleLength():
            self.count(q.ScaleLength(), f"{where} quantization scales")
            scale = q.ScaleAsNumpy().astype(np.float64)
            zero = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros(len(scale), np.int64)
            tensor.quant = Quant(scale, zero, int(q.QuantizedDimension()))
        raw = self.buffer_bytes(m, buffer, where) if n_buffers else b""
        # Constants of types edgert cannot read (strings, int4...) stay undecoded: an operator using
        # one is then reported as unsupported (its input is not float32), not the whole file refused.
        if raw and tensor.type in _NUMPY:
            tensor.data = self.decode(tensor, raw, where)
        return tensor

    def buffer_bytes(self, m, index, where) -> bytes:
        b = m.Buffers(index)
        offset, size = int(b.Offset()), int(b.Size())
        if offset > 1:  # large models keep buffers after the flatbuffer, addressed from the file start
            if offset + size > len(self.buf):
                self.fail(f"{where}: buffer {index} spans bytes {offset}..{offset + size}, past the end of the "
                          f"{len(self.buf)}-byte file")
            return self.buf[offset:offset + size]
        n = self.count(b.DataLength(), f"{where} buffer {index}", width=1)
        return b.DataAsNumpy().tobytes() if n else b""

    def decode(self, tensor, raw, where):
        dtype = _NUMPY[tensor.type]
        itemsize = np.dtype(dtype).itemsize
        if tensor.sparsity is not None:
            # The buffer holds only the stored values, in traversal order; sparsity.py checks the count.
            if len(raw) % itemsize:
                self.fail(f"{where}: sparse buffer of {len(raw)} bytes is not a whole number of {tensor.type}")
            return np.frombuffer(raw, dtype=dtype)
        expected = math.prod(tensor.shape) * itemsize
        if len(raw) != expected:
            self.fail(f"{where}: buffer holds {len(raw)} bytes but shape {list(tensor.shape)} of {tensor.type} "
                      f"needs {expected}")
        if math.prod(tensor.shape) > MAX_CONST_ELEMENTS:
            self.fail(f"{where}: constant of {math.prod(tensor.shape)} elements is too large")
        return np.frombuffer(raw, dtype=dtype).reshape(tensor.shape)

    def sparsity(self, sp, where, rank) -> Sparsity:
        order = self.ints(sp.TraversalOrderAsNumpy() if self.count(sp.TraversalOrderLength(), where) else [],
                          f"{where} traversal order")
        block_map = self.ints(sp.BlockMapAsNumpy() if self.count(sp.BlockMapLength(), where) else [],
                              f"{where} block map")
        dims = []
        for level in range(self.count(sp.DimMetadataLength(), f"{where} dim metadata")):
            d = sp.DimMetadata(level)
            fmt = int(d.Format())
            if fmt == tflite.DimensionType.DENSE:
                dims.append(DimMeta("DENSE", dense_size=int(d.DenseSize())))
            elif fmt == tflite.DimensionType.SPARSE_CSR:
                dims.append(DimMeta("SPARSE_CSR",
                                    segments=self.index_vector(d.ArraySegmentsType(), d.ArraySegments(),
                                                               f"{where} level {level} segments"),
                                    indices=self.index_vector(d.ArrayIndicesType(), d.ArrayIndices(),
                                                              f"{where} level {level} indices")))
            else:
                self.fail(f"{where}: level {level} has unknown dimension format {fmt}")
        return Sparsity(order, block_map, dims)

    def index_vector(self, kind, table, what) -> np.ndarray:
        if kind not in _INDEX_VECTORS or table is None:
            self.fail(f"{what}: missing or unknown index vector type {kind}")
        cls_name, dtype = _INDEX_VECTORS[kind]
        vec = getattr(tflite, cls_name)()
        vec.Init(table.Bytes, table.Pos)
        n = self.count(vec.ValuesLength(), what, width=np.dtype(dtype).itemsize)
        return vec.ValuesAsNumpy().astype(np.int64) if n else np.zeros(0, np.int64)

    def operator(self, sg, i, codes, n_tensors) -> Operator:
        op = sg.Operators(i)
        k = op.OpcodeIndex()
        if not 0 <= k < len(codes):
            self.fail(f"operator {i} uses opcode index {k}, but the model has {len(codes)} operator codes")
        name, custom, version = codes[k]
        where = f"operator {i} ({name})"
        ins = self.ints(op.InputsAsNumpy() if self.count(op.InputsLength(), where) else [], f"{where} inputs",
                        -1, n_tensors - 1)
        outs = self.ints(op.OutputsAsNumpy() if self.count(op.OutputsLength(), where) else [],
                         f"{where} outputs", 0, n_tensors - 1)
        opts_type = _OPTIONS.get(op.BuiltinOptionsType(), f"OPTIONS_{op.BuiltinOptionsType()}")
        options = self.options(opts_type, op.BuiltinOptions(), where)
        custom_options = b""
        if custom:
            large_off, large_size = int(op.LargeCustomOptionsOffset()), int(op.LargeCustomOptionsSize())
            if large_off > 1:
                if large_off + large_size > len(self.buf):
                    self.fail(f"{where}: custom options lie past the end of the file")
                custom_options = self.buf[large_off:large_off + large_size]
            elif self.count(op.CustomOptionsLength(), f"{where} custom options", width=1):
                custom_options = op.CustomOptionsAsNumpy().tobytes()
        return Operator(i, name, custom, version, tuple(ins), tuple(outs), opts_type, options, custom_options)

    def options(self, type_name, table, where) -> dict:
        fields = OPTION_FIELDS.get(type_name)
        if fields is None or table is None:
            return {}
        obj = getattr(tflite, type_name)()
        obj.Init(table.Bytes, table.Pos)
        out = {}
        for f in fields:
            if f.endswith("*"):  # a vector field
                f = f[:-1]
                n = self.count(getattr(obj, f + "Length")(), f"{where} option {f}")
                out[f] = [int(v) for v in getattr(obj, f + "AsNumpy")()] if n else []
            else:
                out[f] = getattr(obj, f)()
        return out
