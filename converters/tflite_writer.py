"""Serialise a float TFLite model (one subgraph) as the .tflite flatbuffer, with the ``tflite``
package's generated builder functions (``tflite.ConvStart``, ``tflite.TensorAddShape`` ...).

``TFLiteModel`` collects tensors, constant buffers, operator codes and operators as plain records;
``to_bytes`` lays them out following the TFLite schema: Model{version 3, operator_codes, subgraphs,
buffers (buffer 0 empty, one per constant), description}. It knows nothing about edgert's IR
(``converters.tflite_export`` does the translation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np
import tflite

_TYPES = {np.dtype("float32"): tflite.TensorType.FLOAT32, np.dtype("int32"): tflite.TensorType.INT32,
          np.dtype("int64"): tflite.TensorType.INT64}
# TFLite's schema asks for 16-byte aligned buffer data (XNNPACK may read weights in place).
BUFFER_ALIGN = 16


@dataclass
class _Op:
    code: int  # index into TFLiteModel.opcodes
    inputs: list
    outputs: list
    options_type: str | None
    options: dict


@dataclass
class TFLiteModel:
    description: str = "edgert"
    tensors: list = field(default_factory=list)  # dicts: name, shape, type, buffer
    buffers: list = field(default_factory=lambda: [b""])  # buffer 0 is the empty one activations use
    opcodes: list = field(default_factory=list)  # (builtin name, version)
    ops: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)

    def tensor(self, name: str, shape, dtype=np.float32) -> int:
        """An activation tensor (no data); returns its index."""
        self.tensors.append({"name": name, "shape": [int(d) for d in shape], "type": _TYPES[np.dtype(dtype)],
                             "buffer": 0})
        return len(self.tensors) - 1

    def const(self, name: str, value) -> int:
        """A constant tensor holding ``value`` (float32 / int32 / int64, little-endian); returns its index."""
        value = np.ascontiguousarray(value)
        index = self.tensor(name, value.shape, value.dtype)
        self.buffers.append(value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes())
        self.tensors[index]["buffer"] = len(self.buffers) - 1
        return index

    def op(self, opcode: str, inputs, outputs, options_type=None, version=1, **options) -> None:
        """Append an operator ``opcode`` (a ``tflite.BuiltinOperator`` name); ``options`` are the fields
        of ``options_type`` by their builder names (``Padding``, ``StrideW`` ...); lists become vectors."""
        key = (opcode, version)
        if key not in self.opcodes:
            self.opcodes.append(key)
        self.ops.append(_Op(self.opcodes.index(key), list(inputs), list(outputs), options_type, options))

    # --- serialisation -------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        size = sum(len(d) + BUFFER_ALIGN for d in self.buffers) + 256 * (len(self.tensors) + len(self.ops)) + 1024
        b = flatbuffers.Builder(size)
        buffers = [self._buffer(b, data) for data in self.buffers]
        tensors = [self._tensor(b, t) for t in self.tensors]
        ops = [self._operator(b, op) for op in self.ops]
        sg_tensors = _offsets(b, tflite.SubGraphStartTensorsVector, tensors)
        sg_ops = _offsets(b, tflite.SubGraphStartOperatorsVector, ops)
        sg_in = _ints(b, tflite.SubGraphStartInputsVector, self.inputs)
        sg_out = _ints(b, tflite.SubGraphStartOutputsVector, self.outputs)
        sg_name = b.CreateString("main")
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, sg_tensors)
        tflite.SubGraphAddInputs(b, sg_in)
        tflite.SubGraphAddOutputs(b, sg_out)
        tflite.SubGraphAddOperators(b, sg_ops)
        tflite.SubGraphAddName(b, sg_name)
        subgraph = tflite.SubGraphEnd(b)
        codes = []
        for name, version in self.opcodes:
            code = getattr(tflite.BuiltinOperator, name)
            tflite.OperatorCodeStart(b)
            # Readers older than schema 3a only know the int8 field; 127 means "look at builtin_code".
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, version)
            codes.append(tflite.OperatorCodeEnd(b))
        codes_v = _offsets(b, tflite.ModelStartOperatorCodesVector, codes)
        subgraphs_v = _offsets(b, tflite.ModelStartSubgraphsVector, [subgraph])
        buffers_v = _offsets(b, tflite.ModelStartBuffersVector, buffers)
        description = b.CreateString(self.description)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, codes_v)
        tflite.ModelAddSubgraphs(b, subgraphs_v)
        tflite.ModelAddDescription(b, description)
        tflite.ModelAddBuffers(b, buffers_v)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _buffer(b, data: bytes):
        vector = None
        if data:
            # CreateByteVector aligns to 4 only: place the bytes on a 16-byte boundary by hand.
            b.StartVector(1, len(data), BUFFER_ALIGN)
            b.head -= len(data)
            b.Bytes[b.head:b.head + len(data)] = data
            vector = b.EndVector()
        tflite.BufferStart(b)
        if vector is not None:
            tflite.BufferAddData(b, vector)
        return tflite.BufferEnd(b)

    @staticmethod
    def _tensor(b, t):
        name, shape = b.CreateString(t["name"]), _ints(b, tflite.TensorStartShapeVector, t["shape"])
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, t["type"])
        tflite.TensorAddBuffer(b, t["buffer"])
        tflite.TensorAddName(b, name)
        return tflite.TensorEnd(b)

    @staticmethod
    def _operator(b, op: _Op):
        opts = None
        if op.options_type:
            kind = op.options_type
            vectors = {k: _ints(b, getattr(tflite, f"{kind}Start{k}Vector"), v)
                       for k, v in op.options.items() if isinstance(v, (list, tuple))}
            getattr(tflite, f"{kind}Start")(b)
            for k, v in op.options.items():
                getattr(tflite, f"{kind}Add{k}")(b, vectors.get(k, v))
            opts = getattr(tflite, f"{kind}End")(b)
        ins = _ints(b, tflite.OperatorStartInputsVector, op.inputs)
        outs = _ints(b, tflite.OperatorStartOutputsVector, op.outputs)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, op.code)
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        if opts is not None:
            tflite.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, op.options_type))
            tflite.OperatorAddBuiltinOptions(b, opts)
        return tflite.OperatorEnd(b)


def _vector(b, start, items, prepend):
    start(b, len(items))
    for v in reversed(items):
        prepend(v)
    return b.EndVector()


def _ints(b, start, items):
    return _vector(b, start, [int(v) for v in items], b.PrependInt32)


def _offsets(b, start, items):
    return _vector(b, start, list(items), b.PrependUOffsetTRelative)
