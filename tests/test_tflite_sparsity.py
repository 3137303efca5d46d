"""The TFLite sparse-tensor decoder: hand-built CSR / block-CSR examples (expected dense arrays written
out by hand), the documented worked examples, malformed encodings, the three index widths through a
real flatbuffer, and a property test that encodes random dense tensors and decodes them back."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from converters.tflite.reader import DimMeta, read_model
from converters.tflite.sparsity import densify, describe
from converters.tflite_entry import convert_tflite
from edgert.errors import ConversionError
from tests.tflite_harness import ModelWriter

D = lambda n: DimMeta("DENSE", dense_size=n)
CSR = lambda seg, idx: DimMeta("SPARSE_CSR", segments=np.array(seg), indices=np.array(idx))

# The 3x4 matrix TFLite's sparsity_format_converter_test.cc uses throughout.
M34 = np.array([[6, 0, 9, 8],
                [0, 0, 0, 0],
                [5, 0, 0, 7]])


@pytest.mark.arm
@pytest.mark.parametrize("order,levels,data", [
    # every level dense: plain row-major storage
    ([0, 1], [D(3), D(4)], [6, 0, 9, 8, 0, 0, 0, 0, 5, 0, 0, 7]),
    # rows compressed (rows 0 and 2 stored), columns dense
    ([0, 1], [CSR([0, 2], [0, 2]), D(4)], [6, 0, 9, 8, 5, 0, 0, 7]),
    # classic CSR: dense rows, compressed columns
    ([0, 1], [D(3), CSR([0, 3, 3, 5], [0, 2, 3, 0, 3])], [6, 9, 8, 5, 7]),
    # both compressed: the column level's parents are the stored rows
    ([0, 1], [CSR([0, 2], [0, 2]), CSR([0, 3, 5], [0, 2, 3, 0, 3])], [6, 9, 8, 5, 7]),
    # column-major traversal, dense
    ([1, 0], [D(4), D(3)], [6, 0, 5, 0, 0, 0, 9, 0, 0, 8, 0, 7]),
    # CSC: dense columns, compressed rows
    ([1, 0], [D(4), CSR([0, 2, 2, 3, 5], [0, 2, 0, 0, 2])], [6, 5, 9, 8, 7]),
    # columns compressed (0, 2, 3 stored), rows dense
    ([1, 0], [CSR([0, 3], [0, 2, 3]), D(3)], [6, 0, 5, 9, 0, 0, 8, 0, 7]),
])
def test_two_dim_encodings(order, levels, data):
    np.testing.assert_array_equal(densify(np.array(data), (3, 4), order, [], levels), M34)


@pytest.mark.arm
def test_three_dims_sparse_dense_sparse():
    # shape (3, 2, 2): dim 0 compressed (slices 0 and 2), dim 1 dense, dim 2 compressed
    data = [6, 9, 8, 5, 7]
    levels = [CSR([0, 2], [0, 2]), D(2), CSR([0, 1, 3, 4, 5], [0, 0, 1, 0, 1])]
    expected = np.array([[[6, 0], [9, 8]],
                         [[0, 0], [0, 0]],
                         [[5, 0], [0, 7]]])
    np.testing.assert_array_equal(densify(np.array(data), (3, 2, 2), [0, 1, 2], [], levels), expected)


@pytest.mark.arm
def test_block_csr_2x2_worked_example():
    # LiteRT tflite/testdata/sparse_tensor.json: 4x4 int8 in 2x2 blocks, block rows dense, block cols CSR
    data = [1, 0, 0, 4, 2, 3, 0, 0, 5, 0, 0, 6]
    levels = [D(2), CSR([0, 2, 3], [0, 1, 1]), D(2), D(2)]
    expected = np.array([[1, 0, 2, 3],
                         [0, 4, 0, 0],
                         [0, 0, 5, 0],
                         [0, 0, 0, 6]])
    got = densify(np.array(data, np.int8), (4, 4), [0, 1, 2, 3], [0, 1], levels)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.int8


@pytest.mark.arm
def test_one_dim_blocks_on_columns():
    # TFLite's BlockTestD0S11DBlock: columns in blocks of 2; per row, the non-empty column blocks
    data = [1, 0, 2, 3, 0, 4, 5, 0, 0, 6]
    levels = [D(4), CSR([0, 2, 3, 4, 5], [0, 1, 0, 1, 1]), D(2)]
    expected = np.array([[1, 0, 2, 3],
                         [0, 4, 0, 0],
                         [0, 0, 5, 0],
                         [0, 0, 0, 6]])
    np.testing.assert_array_equal(densify(np.array(data), (4, 4), [0, 1, 2], [1], levels), expected)
    facts = describe(expected, [1], levels, [0, 1, 2])
    assert facts["block"] == [1, 2] and facts["nonzeros"] == 6 and facts["density"] == 0.375


@pytest.mark.arm
def test_blocks_on_rows_traversed_column_major():
    # 4x2 with rows in blocks of 2, block rows walked inside columns: order (1, 0, block)
    expected = np.array([[1, 0],
                         [2, 0],
                         [0, 0],
                         [0, 3]])
    levels = [D(2), CSR([0, 1, 2], [0, 1]), D(2)]
    data = [1, 2, 0, 3]  # column 0: block row 0 = (1, 2); column 1: block row 1 = (0, 3)
    np.testing.assert_array_equal(densify(np.array(data), (4, 2), [1, 0, 2], [0], levels), expected)


@pytest.mark.arm
def test_conv_weight_layout_as_the_tflite_converter_writes_it():
    # OHWI 2x1x1x3 with the input-channel level compressed: a CSR matrix over (O rows x I columns)
    levels = [D(2), D(1), D(1), CSR([0, 1, 3], [2, 0, 1])]
    expected = np.array([0.0, 0.0, 1.5, -2.0, 0.5, 0.0], np.float32).reshape(2, 1, 1, 3)
    got = densify(np.array([1.5, -2.0, 0.5], np.float32), (2, 1, 1, 3), [0, 1, 2, 3], [], levels)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.arm
@pytest.mark.parametrize("shape,order,block_map,levels,data,message", [
    ((3, 4), [0, 1], [], [D(3), CSR([0, 3, 2, 5], [0, 2, 3, 0, 3])], [1] * 5, "non-decreasing"),
    ((3, 4), [0, 1], [], [D(3), CSR([0, 3, 3, 5], [0, 2, 4, 0, 3])], [1] * 5, "indices must lie"),
    ((3, 4), [0, 1], [], [D(3), CSR([0, 3, 3, 5], [0, 2, 3, 0, 3])], [1] * 4, "buffer holds 4"),
    ((3, 4), [0, 1], [], [D(3), CSR([0, 3, 3], [0, 2, 3])], [1] * 3, "segments"),
    ((3, 4), [0, 1], [], [D(3), CSR([0, 2, 2, 2], [3, 1])], [1] * 2, "strictly increasing"),
    ((3, 4), [0, 1], [], [D(3), D(5)], [1] * 15, "shape implies 4"),
    ((3, 4), [0, 0], [], [D(3), D(4)], [1] * 12, "permutation"),
    ((3, 4), [0, 1, 2], [1], [D(3), D(2), D(3)], [1] * 18, "not a multiple"),
    ((3, 4), [0, 1, 2], [1], [D(3), D(2), CSR([0], [])], [], "must be DENSE"),
    ((3, 4), [0, 1], [], [D(3)], [1] * 3, "entries"),
])
def test_malformed_encodings_are_rejected(shape, order, block_map, levels, data, message):
    with pytest.raises(ValueError, match=message):
        densify(np.array(data), shape, order, block_map, levels)


# --- index widths through a real flatbuffer ------------------------------------------------------------
@pytest.mark.parametrize("width", [8, 16, 32])
def test_index_widths_through_the_flatbuffer(width):
    cols = 300 if width > 8 else 200  # uint8 indices stop at 255
    rng = np.random.default_rng(width)
    dense = np.where(rng.random((3, cols)) < 0.1, rng.standard_normal((3, cols)), 0).astype(np.float32)
    segments, indices = [0], []
    for row in dense:
        indices += np.flatnonzero(row).tolist()
        segments.append(len(indices))
    m = ModelWriter()
    x, w_out, y = m.tensor([2, cols], name="x"), m.tensor([3, cols]), m.tensor([2, 3], name="y")
    sparse = m.tensor([3, cols], "FLOAT32", dense[dense != 0], name="w",
                      sparsity=([0, 1], [], [("DENSE", 3), ("CSR", segments, indices, width)]))
    m.op("DENSIFY", [sparse], [w_out])
    m.op("FULLY_CONNECTED", [x, w_out, -1], [y], "FullyConnectedOptions",
         dict(FusedActivationFunction=0, KeepNumDims=False))
    buf = m.build([x], [y])
    assert read_model(buf).tensors[sparse].sparsity.dim_metadata[1].indices.max() == max(indices)
    graph = convert_tflite(buf)
    (name, facts), = graph.metadata["tflite_sparse"].items()
    np.testing.assert_array_equal(graph.consts[name], dense)
    assert facts["tflite_tensor"] == "w" and facts["nonzeros"] == len(indices)


def test_malformed_sparse_tensor_in_a_model_names_it():
    m = ModelWriter()
    x, w_out, y = m.tensor([1, 4], name="x"), m.tensor([3, 4]), m.tensor([1, 3], name="y")
    sparse = m.tensor([3, 4], "FLOAT32", np.ones(5), name="bad_w",
                      sparsity=([0, 1], [], [("DENSE", 3), ("CSR", [0, 3, 3, 5], [0, 2, 9, 0, 3], 8)]))
    m.op("DENSIFY", [sparse], [w_out])
    m.op("FULLY_CONNECTED", [x, w_out, -1], [y], "FullyConnectedOptions",
         dict(FusedActivationFunction=0, KeepNumDims=False))
    with pytest.raises(ConversionError, match="sparse tensor 'bad_w' is malformed.*indices must lie"):
        convert_tflite(m.build([x], [y]))


# --- property test: a small encoder, then decode back --------------------------------------------------
def encode(dense, order, block_map, block_sizes, formats):
    """Encode ``dense`` the way TFLite's format converter does: level by level in traversal order;
    a CSR level keeps the coordinates whose sub-tree holds a nonzero, a DENSE level keeps them all."""
    n = dense.ndim
    blocks = dict(zip(block_map, block_sizes))
    # Split each blocked dim d into (d // b, b), then put the axes in traversal order.
    split_shape, axis_of = [], {}
    for d in range(n):
        if d in blocks:
            axis_of[d] = len(split_shape)
            axis_of[n + block_map.index(d)] = len(split_shape) + 1
            split_shape += [dense.shape[d] // blocks[d], blocks[d]]
        else:
            axis_of[d] = len(split_shape)
            split_shape.append(dense.shape[d])
    walked = dense.reshape(split_shape).transpose([axis_of[level_dim] for level_dim in order])
    paths = [()]
    levels = []
    for level, fmt in enumerate(formats):
        size = walked.shape[level]
        if fmt == "DENSE":
            paths = [p + (c,) for p in paths for c in range(size)]
            levels.append(DimMeta("DENSE", dense_size=size))
        else:
            segments, indices, kept = [0], [], []
            for p in paths:
                for c in range(size):
                    if np.any(walked[p + (c,)]):
                        indices.append(c)
                        kept.append(p + (c,))
                segments.append(len(indices))
            paths = kept
            levels.append(DimMeta("SPARSE_CSR", segments=np.array(segments), indices=np.array(indices)))
    values = np.array([walked[p] for p in paths], dtype=dense.dtype)
    return values, levels


@st.composite
def sparse_cases(draw):
    rank = draw(st.integers(1, 4))
    shape = draw(st.lists(st.sampled_from([1, 2, 3, 4, 6]), min_size=rank, max_size=rank))
    order = list(draw(st.permutations(range(rank))))
    blockable = [d for d in range(rank) if shape[d] % 2 == 0]
    block_map = draw(st.lists(st.sampled_from(blockable), unique=True, max_size=2)) if blockable else []
    block_sizes = [draw(st.sampled_from([b for b in (2, 3, 6) if shape[d] % b == 0])) for d in block_map]
    order += [rank + j for j in draw(st.permutations(range(len(block_map))))]
    formats = [draw(st.sampled_from(["DENSE", "SPARSE_CSR"])) if dim < rank else "DENSE" for dim in order]
    density = draw(st.sampled_from([0.0, 0.2, 0.5, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 31 - 1)))
    dense = np.where(rng.random(shape) < density, rng.integers(1, 9, shape), 0).astype(np.float32)
    return dense, order, block_map, block_sizes, formats


@pytest.mark.arm
@given(case=sparse_cases())
def test_encode_then_decode_round_trips(case):
    dense, order, block_map, block_sizes, formats = case
    values, levels = encode(dense, order, block_map, block_sizes, formats)
    got = densify(values, dense.shape, order, block_map, levels)
    np.testing.assert_array_equal(got, dense)
    assert got.dtype == dense.dtype
    if dense.size:
        assert describe(got, block_map, levels, order)["nonzeros"] == int(np.count_nonzero(dense))


@pytest.mark.arm
def test_all_zero_tensor_with_only_sparse_levels_stores_nothing():
    dense = np.zeros((2, 3), np.float32)
    for formats in itertools.product(["DENSE", "SPARSE_CSR"], repeat=2):
        values, levels = encode(dense, [0, 1], [], [], list(formats))
        np.testing.assert_array_equal(densify(values, (2, 3), [0, 1], [], levels), dense)
