"""Hostile ONNX files: byte-level and structural mutations of a valid model, fed to the converter.

Whatever the damage, ``convert`` either writes a model that loads and runs, or raises one of
edgert's documented errors naming the file; never another exception, never a partial output file.
Structural mutations are the ones a byte flip rarely produces: cyclic graphs, dangling tensor
references, overflowing shape products, wrong dtypes, initializers whose data disagree with their
declared dims.
"""

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import edgert
from converters.convert import convert
from edgert.errors import EdgertError


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B"),
             numpy_helper.from_array(np.array([1, -1], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "c"], ["a"], name="add"),
             helper.make_node("Reshape", ["a", "shape"], ["y"], name="flatten")]
    graph = helper.make_graph(nodes, "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


GOOD = _model().SerializeToString()


def _converts_or_refuses(tmp_path, data: bytes) -> None:
    src, dst = tmp_path / "m.onnx", tmp_path / "m.ert"
    src.write_bytes(data)
    dst.unlink(missing_ok=True)
    try:
        convert(src, dst)
    except EdgertError as exc:
        assert exc.file is None or "m.onnx" in str(exc.file), exc
        assert not dst.exists(), "a failed conversion left an output file"
        assert not [p for p in tmp_path.iterdir() if p.name not in ("m.onnx",)], "temporary files left behind"
        return
    sess = edgert.load(dst, threads=1)  # what was written must load and run
    sess.run({s.name: np.zeros(s.shape, s.dtype) for s in sess.inputs})


_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(1, len(GOOD) - 1)))
def test_byte_mutations(tmp_path, edits, cut):
    data = bytearray(GOOD)
    for pos, value in edits:
        data[pos] = value
    _converts_or_refuses(tmp_path, bytes(data[:cut] if cut else data))


def _cycle(m):
    m.graph.node[0].input[0] = "a"  # conv reads add's output: a cycle through relu and add


def _dangling(m):
    m.graph.node[2].input[1] = "nowhere"


def _huge_dims(m):
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 2 ** 40


def _overflow_product(m):
    for d in m.graph.input[0].type.tensor_type.shape.dim:
        d.dim_value = 2 ** 31 - 1


def _negative_dim(m):
    m.graph.input[0].type.tensor_type.shape.dim[3].dim_value = -5


def _wrong_dtype(m):
    m.graph.initializer[0].data_type = TensorProto.STRING


def _short_raw_data(m):
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-7]


def _dims_lie(m):
    m.graph.initializer[0].dims[0] = 2 ** 33


def _dtype_reinterpreted(m):
    m.graph.initializer[0].data_type = TensorProto.BOOL  # 4-byte floats read as 1-byte bools: 4x the elements


def _dtype_unknown(m):
    m.graph.initializer[1].data_type = 99  # not an ONNX type at all (onnx's helpers raise KeyError)


def _int_input(m):
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.INT8


def _duplicate_output(m):
    m.graph.node[1].output[0] = "c"


def _no_nodes(m):
    del m.graph.node[:]


def _unknown_domain(m):
    m.graph.node[1].domain = "com.example.evil"


def _bad_attr(m):
    m.graph.node[0].attribute.append(helper.make_attribute("strides", [0, -3]))


def _bad_opset(m):
    m.opset_import[0].version = 10 ** 6


def _empty_name_input(m):
    m.graph.node[0].input[0] = ""


@pytest.mark.parametrize("mutate", [_cycle, _dangling, _huge_dims, _overflow_product, _negative_dim, _wrong_dtype,
                                    _short_raw_data, _dims_lie, _dtype_reinterpreted, _dtype_unknown, _int_input,
                                    _duplicate_output, _no_nodes,
                                    _unknown_domain, _bad_attr, _bad_opset, _empty_name_input])
def test_structural_mutations_are_refused_with_a_reason(tmp_path, mutate):
    model = onnx.ModelProto.FromString(GOOD)
    mutate(model)
    src, dst = tmp_path / "m.onnx", tmp_path / "m.ert"
    src.write_bytes(model.SerializeToString())
    with pytest.raises(EdgertError) as info:
        convert(src, dst)
    assert "m.onnx" in str(info.value)
    assert not dst.exists()


def test_huge_declared_input_is_refused_before_shape_inference_allocates(tmp_path):
    # Found by tools/fuzz_sources.py: a 2^38-wide input made MaxPool's shape check allocate 2 TiB.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 2 ** 38])
    graph = helper.make_graph([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], name="pool")], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2 ** 37])])
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), src)
    with pytest.raises(EdgertError, match="implausibly large"):
        convert(src, tmp_path / "m.ert")


@_FUZZ
@given(data=st.data())
def test_random_structural_combinations(tmp_path, data):
    muts = data.draw(st.lists(st.sampled_from([_cycle, _dangling, _huge_dims, _negative_dim, _wrong_dtype,
                                               _dtype_reinterpreted, _dtype_unknown,
                                               _short_raw_data, _dims_lie, _duplicate_output, _bad_attr,
                                               _empty_name_input]), min_size=1, max_size=3, unique=True))
    model = onnx.ModelProto.FromString(GOOD)
    for m in muts:
        m(model)
    _converts_or_refuses(tmp_path, model.SerializeToString())
