"""The .ert container: round trip, zero-copy mapping, and hostile or corrupted files."""

import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import edgert
from converters.builder import GraphBuilder
from edgert.errors import EdgertError, ModelFormatError
from edgert.ir.format import ALIGN, HEADER, read_ert, write_ert


def small_graph(fp16=False):
    b = GraphBuilder(metadata={"source": "test"})
    b.add_input("x", (2, 3))
    b.add_const("w", np.arange(6, dtype=np.float32).reshape(2, 3) / 7, dtype="f16" if fp16 else None)
    b.add_const("v", np.linspace(-1, 1, 3, dtype=np.float32))
    b.add_node("Mul", ["x", "w"], ["y"], name="scale")
    b.add_node("Add", ["y", "v"], ["z"], {"activation": "relu"}, name="shift")
    b.add_output("z")
    return b.finish()


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.ert"
    write_ert(small_graph(), path)
    return path


@pytest.mark.arm
def test_round_trip_and_zero_copy(model_file):
    g = read_ert(model_file)
    assert [n.name for n in g.nodes] == ["scale", "shift"]
    assert g.metadata == {"source": "test"}
    w = g.consts["w"]
    assert not w.flags.writeable, "constants must be read-only views of the mapped file"
    assert w.ctypes.data % ALIGN == 0 or isinstance(w.base, memoryview) or w.base is not None
    np.testing.assert_array_equal(w, np.arange(6, dtype=np.float32).reshape(2, 3) / 7)
    x = np.ones((2, 3), np.float32)
    out = edgert.load(model_file).run({"x": x})["z"]
    np.testing.assert_allclose(out, np.maximum(x * w + g.consts["v"], 0), rtol=1e-6)


@pytest.mark.arm
def test_blobs_are_64_byte_aligned_in_the_file(model_file):
    data = model_file.read_bytes()
    head = HEADER.unpack_from(data, 0)
    table = json.loads(data[head[3]:head[3] + head[4]])
    assert head[5] % ALIGN == 0
    assert all(b["offset"] % ALIGN == 0 for b in table["blobs"])


@pytest.mark.arm
def test_fp16_weights_are_stored_half_size_and_computed_in_fp32(tmp_path):
    p32, p16 = tmp_path / "a.ert", tmp_path / "b.ert"
    write_ert(small_graph(False), p32)
    write_ert(small_graph(True), p16)
    g = read_ert(p16)
    assert g.consts["w"].dtype == np.float16 and g.tensors["w"].dtype == "f32"
    x = np.random.default_rng(0).random((2, 3)).astype(np.float32)
    a = edgert.load(p32).run({"x": x})["z"]
    b = edgert.load(p16).run({"x": x})["z"]
    assert b.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-3)


def _patch_header(data: bytes, **fields) -> bytes:
    names = ["magic", "version", "header_len", "table_off", "table_len", "data_off", "data_len", "file_len",
             "table_crc", "head_crc"]
    values = dict(zip(names, HEADER.unpack_from(data, 0)))
    values.update(fields)
    head = HEADER.pack(*[values[n] for n in names])
    head = head[:60] + struct.pack("<I", zlib.crc32(head[:60]))
    return head + data[HEADER.size:]


def _rewrite_table(data: bytes, edit) -> bytes:
    """Apply ``edit`` to the JSON table and re-seal every checksum, as a hostile producer would."""
    head = HEADER.unpack_from(data, 0)
    table = json.loads(data[head[3]:head[3] + head[4]])
    edit(table)
    raw = json.dumps(table, separators=(",", ":")).encode()
    data_off = (HEADER.size + len(raw) + ALIGN - 1) // ALIGN * ALIGN
    blobs = data[head[5]:]
    body = data[:HEADER.size] + raw + b"\0" * (data_off - HEADER.size - len(raw)) + blobs
    return _patch_header(body, table_len=len(raw), table_crc=zlib.crc32(raw), data_off=data_off,
                         file_len=len(body))


@pytest.mark.arm
@pytest.mark.parametrize("case, expect", [
    ("empty", "empty"), ("magic", "bad magic"), ("version", "version"), ("truncated", "truncated"),
    ("header_crc", "header checksum"), ("table_crc", "table checksum"), ("blob_flip", "checksum mismatch"),
    ("data_len", "out of bounds"),
])
def test_corrupted_files_give_clear_errors(model_file, case, expect):
    data = model_file.read_bytes()
    if case == "empty":
        data = b""
    elif case == "magic":
        data = b"NOTERTIR" + data[8:]
    elif case == "version":
        data = _patch_header(data, version=99)
    elif case == "truncated":
        data = data[:-10]
    elif case == "header_crc":
        data = data[:20] + bytes([data[20] ^ 1]) + data[21:]
    elif case == "table_crc":
        pos = HEADER.size + 5
        data = data[:pos] + bytes([data[pos] ^ 0x20]) + data[pos + 1:]
    elif case == "blob_flip":
        pos = HEADER.unpack_from(data, 0)[5] + 5  # inside the first weight blob
        data = data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1:]
    elif case == "data_len":
        data = _patch_header(data, data_len=2**62)
    model_file.write_bytes(data)
    with pytest.raises(ModelFormatError) as info:
        edgert.load(model_file)
    text = str(info.value).lower()
    assert str(model_file).lower() in text and expect in text, text


@pytest.mark.arm
@pytest.mark.parametrize("edit, expect", [
    (lambda t: t["blobs"][0].update(offset=2**40), "outside the data region"),
    (lambda t: t["blobs"][0].update(offset=3), "outside the data region"),
    (lambda t: t["blobs"][0].update(shape=[2**31, 2**31]), "shape"),
    (lambda t: t["blobs"][0].update(dtype="complex"), "dtype"),
    (lambda t: t["tensors"][0].update(shape=[-1, 3]), "invalid shape"),
    (lambda t: t["consts"][0].update(blob=99), "refers to blob"),
    (lambda t: t["nodes"][0].update(inputs=["x", "nowhere"]), "not a known tensor"),
    (lambda t: t["nodes"].reverse(), "before it is produced"),
    (lambda t: t["nodes"][0].update(op="LaunchMissiles"), "not supported"),
    (lambda t: t["nodes"][1]["attrs"].update(activation="explode"), "unknown activation"),
    (lambda t: t["nodes"][1]["attrs"].update(bogus=1), "unknown attribute"),
    (lambda t: t["nodes"][1].update(attrs={"activation": {"nested": [1]}}), "unsupported value"),
    (lambda t: t.update(outputs=["ghost"]), "never produced"),
    (lambda t: t["tensors"][-1].update(shape=[9, 9]), "declared as"),
])
def test_hostile_tables_give_clear_errors(model_file, edit, expect):
    model_file.write_bytes(_rewrite_table(model_file.read_bytes(), edit))
    with pytest.raises(EdgertError) as info:
        edgert.load(model_file)
    assert expect in str(info.value), str(info.value)


@pytest.mark.arm
@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_corruption_only_raises_edgert_errors(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "m.ert"
    write_ert(small_graph(), path)
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(raw)))
    path.write_bytes(bytes(raw[:cut]))
    try:
        edgert.load(path).run({"x": np.ones((2, 3), np.float32)})
    except EdgertError:
        pass


def test_write_is_atomic_on_failure(tmp_path):
    path = tmp_path / "m.ert"
    write_ert(small_graph(), path)
    before = path.read_bytes()
    g = small_graph()
    g.outputs.append("missing")  # invalid: validate() fails before anything is written
    with pytest.raises(EdgertError):
        write_ert(g, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.ert"], "no temporary file may be left behind"
