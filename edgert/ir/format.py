"""The .ert file: one versioned binary file holding the graph and its weights.

Layout (all integers little-endian)::

    0   8   magic  b"EDGERTIR"
    8   4   format version (u32)
    12  4   header length (u32, 64)
    16  8   table offset (u64)      -- JSON graph table, UTF-8
    24  8   table length (u64)
    32  8   data offset (u64)       -- start of the weight blobs, 64-byte aligned
    40  8   data length (u64)
    48  8   file length (u64)
    56  4   table CRC-32 (u32)
    60  4   header CRC-32 (u32) over bytes 0..59

Every weight blob starts on a 64-byte boundary so that it can be memory-mapped and used in place
(zero copy) with aligned SIMD loads. Each blob carries its own CRC-32. The table is plain JSON: no
pickle, nothing executable. Every offset, length, shape and dtype is checked against the file size
before anything is mapped.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..dtypes import DTYPES, from_numpy
from ..errors import GraphError, ModelFormatError
from ..fileio import atomic_write
from .graph import Graph, Node, TensorInfo

MAGIC = b"EDGERTIR"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sIIQQQQQII")
ALIGN = 64
MAX_RANK = 8
# Attribute values may only be JSON scalars, lists of them, or (one level of) dicts of them.
_SCALARS = (bool, int, float, str, type(None))

assert HEADER.size == 64


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _blob_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def write_ert(graph: Graph, path, producer: str = "edgert") -> int:
    """Serialise ``graph`` to ``path`` atomically. Returns the file size in bytes."""
    graph.validate(file=path)
    blobs, chunks, offset = [], [], 0
    consts = []
    for name, value in graph.consts.items():
        data = _blob_bytes(value)
        blobs.append({
            "dtype": from_numpy(value.dtype), "shape": list(value.shape),
            "offset": offset, "nbytes": len(data), "crc32": zlib.crc32(data),
        })
        chunks.append(data + b"\0" * (_align(len(data)) - len(data)))
        consts.append({"name": name, "blob": len(blobs) - 1})
        offset += _align(len(data))
    table = {
        "format": "edgert-ir",
        "producer": producer,
        "metadata": graph.metadata,
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        "tensors": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in graph.tensors.values()],
        "consts": consts,
        "blobs": blobs,
        "nodes": [{"name": n.name, "op": n.op, "inputs": list(n.inputs), "outputs": list(n.outputs),
                   "attrs": n.attrs} for n in graph.nodes],
    }
    table_bytes = json.dumps(table, separators=(",", ":")).encode("utf-8")
    table_offset = HEADER.size
    data_offset = _align(table_offset + len(table_bytes))
    # Blob offsets in the table are relative to data_offset, so the table does not depend on itself.
    file_length = data_offset + offset
    head = HEADER.pack(MAGIC, FORMAT_VERSION, HEADER.size, table_offset, len(table_bytes), data_offset,
                       offset, file_length, zlib.crc32(table_bytes), 0)
    head = head[:60] + struct.pack("<I", zlib.crc32(head[:60]))
    with atomic_write(path) as fh:
        fh.write(head)
        fh.write(table_bytes)
        fh.write(b"\0" * (data_offset - table_offset - len(table_bytes)))
        for chunk in chunks:
            fh.write(chunk)
    return file_length


class _Checker:
    """Typed access to the untrusted JSON table; every failure names the file and the field."""

    def __init__(self, path):
        self.path = path

    def fail(self, message, **kw):
        raise ModelFormatError(message, file=self.path, **kw)

    def get(self, obj, key, kind, where):
        if not isinstance(obj, dict) or key not in obj:
            self.fail(f"{where}: missing field '{key}'")
        value = obj[key]
        if kind is int and isinstance(value, bool):
            self.fail(f"{where}: field '{key}' must be an integer")
        if not isinstance(value, kind):
            self.fail(f"{where}: field '{key}' has the wrong type ({type(value).__name__})")
        return value

    def names(self, obj, key, where):
        values = self.get(obj, key, list, where)
        if not all(isinstance(v, str) for v in values):
            self.fail(f"{where}: '{key}' must be a list of tensor names")
        return values

    def shape(self, obj, where, limit):
        dims = self.get(obj, "shape", list, where)
        if len(dims) > MAX_RANK or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in dims):
            self.fail(f"{where}: invalid shape {dims!r}")
        size = math.prod(dims)
        if size > limit:
            self.fail(f"{where}: shape {dims} has {size} elements, more than any tensor can have")
        return tuple(dims)

    def attrs(self, value, where):
        if not isinstance(value, dict):
            self.fail(f"{where}: attrs must be an object")
        for key, item in value.items():
            ok = isinstance(item, _SCALARS) or (
                isinstance(item, list) and all(isinstance(x, _SCALARS) for x in item))
            if not ok:
                self.fail(f"{where}: attribute '{key}' has an unsupported value")
        return value


def read_header(buf, path):
    if len(buf) < HEADER.size:
        raise ModelFormatError(f"file is {len(buf)} bytes, too short for an .ert header", file=path,
                               hint="the file is truncated or not an .ert model")
    (magic, version, header_len, table_off, table_len, data_off, data_len, file_len, table_crc,
     head_crc) = HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise ModelFormatError("not an .ert file (bad magic)", file=path,
                               hint="convert the model first with `edgert convert`")
    if version != FORMAT_VERSION:
        raise ModelFormatError(f"format version {version} is not supported (this edgert reads {FORMAT_VERSION})",
                               file=path, hint="reconvert the model with this edgert version")
    if zlib.crc32(bytes(buf[:60])) != head_crc:
        raise ModelFormatError("header checksum mismatch: the file is corrupted", file=path)
    if header_len != HEADER.size or table_off != HEADER.size:
        raise ModelFormatError("header fields are inconsistent", file=path)
    if file_len != len(buf):
        raise ModelFormatError(f"file is {len(buf)} bytes but the header says {file_len}", file=path,
                               hint="the file is truncated or was extended; re-copy or reconvert it")
    if table_off + table_len > data_off or data_off % ALIGN or data_off + data_len != file_len:
        raise ModelFormatError("table/data regions are out of bounds", file=path)
    return table_off, table_len, data_off, data_len, table_crc


def read_ert(path, verify: bool = True) -> Graph:
    """Load an .ert file. Constants are read-only views into a memory map of the file (zero copy).

    ``verify`` checks every blob's CRC-32 (reads all weight pages once).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise ModelFormatError("file is empty", file=path)
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise ModelFormatError(f"cannot read the file: {exc.strerror or exc}", file=path) from None
    table_off, table_len, data_off, data_len, table_crc = read_header(buf, path)
    table_bytes = bytes(buf[table_off:table_off + table_len])
    if zlib.crc32(table_bytes) != table_crc:
        raise ModelFormatError("graph table checksum mismatch: the file is corrupted", file=path)
    try:
        table = json.loads(table_bytes.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ModelFormatError(f"graph table is not valid JSON ({type(exc).__name__})", file=path) from None
    graph = _graph_from_table(table, buf, data_off, data_len, path, verify)
    try:
        graph.validate(file=path)
    except GraphError as exc:
        raise ModelFormatError(exc.message, file=path, node=exc.node, op=exc.op) from None
    return graph


def _graph_from_table(table, buf, data_off, data_len, path, verify) -> Graph:
    c = _Checker(path)
    if not isinstance(table, dict) or table.get("format") != "edgert-ir":
        c.fail("graph table is not an edgert-ir table")
    metadata = c.get(table, "metadata", dict, "table")
    graph = Graph(metadata=metadata)
    max_elems = max(1, data_len) + 2**31  # activations are bounded separately by the planner/budget
    for i, entry in enumerate(c.get(table, "tensors", list, "table")):
        where = f"tensor #{i}"
        name = c.get(entry, "name", str, where)
        dtype = c.get(entry, "dtype", str, where)
        if dtype not in DTYPES:
            c.fail(f"tensor '{name}': unknown dtype {dtype!r}")
        if name in graph.tensors:
            c.fail(f"tensor '{name}' is declared twice")
        graph.tensors[name] = TensorInfo(name, c.shape(entry, f"tensor '{name}'", max_elems), dtype)
    blobs = c.get(table, "blobs", list, "table")
    for i, entry in enumerate(c.get(table, "consts", list, "table")):
        name = c.get(entry, "name", str, f"const #{i}")
        index = c.get(entry, "blob", int, f"const '{name}'")
        if not 0 <= index < len(blobs):
            c.fail(f"const '{name}' refers to blob {index}, but there are {len(blobs)}")
        if name not in graph.tensors or name in graph.consts:
            c.fail(f"const '{name}' has no tensor entry or is declared twice")
        graph.consts[name] = _map_blob(c, blobs[index], f"blob of const '{name}'", buf, data_off, data_len, verify)
        _check_const_type(c, graph.tensors[name], graph.consts[name])
    graph.inputs = c.names(table, "inputs", "table")
    graph.outputs = c.names(table, "outputs", "table")
    for i, entry in enumerate(c.get(table, "nodes", list, "table")):
        where = f"node #{i}"
        name = c.get(entry, "name", str, where)
        op = c.get(entry, "op", str, f"node '{name}'")
        node = Node(name, op, c.names(entry, "inputs", f"node '{name}'"), c.names(entry, "outputs", f"node '{name}'"),
                    c.attrs(c.get(entry, "attrs", dict, f"node '{name}'"), f"node '{name}'"))
        graph.nodes.append(node)
    return graph


def _map_blob(c, entry, where, buf, data_off, data_len, verify):
    dtype_name = c.get(entry, "dtype", str, where)
    if dtype_name not in DTYPES:
        c.fail(f"{where}: unknown dtype {dtype_name!r}")
    dtype = DTYPES[dtype_name]
    shape = c.shape(entry, where, data_len // dtype.itemsize + 1)
    offset = c.get(entry, "offset", int, where)
    nbytes = c.get(entry, "nbytes", int, where)
    crc = c.get(entry, "crc32", int, where)
    if offset < 0 or offset % ALIGN or nbytes < 0 or offset + nbytes > data_len:
        c.fail(f"{where}: offset {offset} / length {nbytes} are outside the data region ({data_len} bytes)")
    if nbytes != math.prod(shape) * dtype.itemsize:
        c.fail(f"{where}: {nbytes} bytes do not hold shape {list(shape)} of {dtype_name}")
    start = data_off + offset
    if verify and zlib.crc32(memoryview(buf)[start:start + nbytes]) != crc:
        c.fail(f"{where}: checksum mismatch, the weights are corrupted", hint="re-copy or reconvert the model")
    count = math.prod(shape)
    return np.frombuffer(buf, dtype=dtype, count=count, offset=start).reshape(shape)


def _check_const_type(c, info, value):
    stored = from_numpy(value.dtype)
    if tuple(value.shape) != tuple(info.shape):
        c.fail(f"const '{info.name}': stored shape {list(value.shape)} != declared {list(info.shape)}")
    if stored != info.dtype and not (info.dtype == "f32" and stored == "f16"):
        c.fail(f"const '{info.name}': stored as {stored}, declared {info.dtype}")
