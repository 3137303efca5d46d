"""The ONNX frontend: every op builder on small hand-made models against onnxruntime, and the
converter's error paths (unsupported ops, dynamic dims, damaged files), BN folding and fp16."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgert
from converters.convert import convert, convert_graph
from edgert.errors import ConversionError, UnsupportedOpError
from edgert.ir.format import read_ert
from edgert.runtime.session import Session
from tests.onnx_helpers import check_against_ort, make_model, ort_run, random_feeds

F32 = np.float32
RNG = np.random.default_rng(1234)


def w(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(F32)


def single(op, inputs, inits=(), opset=13, n_out=1, **attrs):
    """A one-node model: ``inputs`` are runtime [(name, shape)] (f32 unless a dtype is given),
    ``inits`` constants {name: array}; the node reads inputs then inits in the given order."""
    inits = dict(inits)
    names = [i[0] for i in inputs] + list(inits)
    node = helper.make_node(op, names, [f"y{k}" for k in range(n_out)], name=f"the_{op.lower()}", **attrs)
    ins = [(i[0], i[2] if len(i) > 2 else F32, i[1]) for i in inputs]
    return make_model([node], ins, [f"y{k}" for k in range(n_out)], inits, opset=opset)


def ordered(op, names, inputs, inits, opset=13, **attrs):
    """Like ``single`` but with an explicit input name order ('' for an omitted input)."""
    node = helper.make_node(op, names, ["y0"], name=f"the_{op.lower()}", **attrs)
    ins = [(i[0], i[2] if len(i) > 2 else F32, i[1]) for i in inputs]
    return make_model([node], ins, ["y0"], inits, opset=opset)


X4 = [("x", [2, 3, 5, 6])]
I64 = np.int64

CASES = {
    # elementwise arithmetic and variadic ops
    "add_broadcast": single("Add", [("x", [2, 3, 4]), ("b", [4])]),
    "sub_const": single("Sub", [("x", [2, 3])], {"c": w(2, 3)}),
    "mul_channel": single("Mul", X4, {"c": w(3, 1, 1)}),
    "div": single("Div", [("x", [3, 4])], {"c": w(3, 4) + 3}),
    "pow_int_exponent": single("Pow", [("x", [3, 4])], {"e": np.array(2, I64)}),
    "max_3": single("Max", [("a", [2, 3]), ("b", [3]), ("c", [2, 1])]),
    "min_1": single("Min", [("a", [2, 3])]),
    "sum_3": single("Sum", [("a", [2, 3]), ("b", [2, 3]), ("c", [3])]),
    "mean_2": single("Mean", [("a", [2, 3]), ("b", [2, 3])]),
    "neg": single("Neg", [("x", [4, 5])]),
    "reciprocal": single("Reciprocal", [("x", [4, 5])]),
    "sqrt_of_relu": make_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sqrt", ["r"], ["y0"])],
                               [("x", F32, [4, 5])], ["y0"]),
    # activations
    "relu": single("Relu", X4),
    "sigmoid": single("Sigmoid", X4),
    "tanh": single("Tanh", X4),
    "hardswish": single("HardSwish", X4, opset=14),
    "hardsigmoid": single("HardSigmoid", X4, alpha=0.3, beta=0.4),
    "leakyrelu": single("LeakyRelu", X4, alpha=0.2),
    "prelu": single("PRelu", X4, {"slope": w(3, 1, 1)}),
    "clip_opset6": single("Clip", X4, opset=6, min=-0.5, max=1.5),
    "clip_inputs": single("Clip", X4, {"lo": np.array(-1, F32), "hi": np.array(0.5, F32)}, opset=11),
    "clip_max_only": ordered("Clip", ["x", "", "hi"], X4, {"hi": np.array(0.7, F32)}),
    # convolution
    "conv_plain": single("Conv", X4, {"W": w(4, 3, 3, 3), "B": w(4)}),
    "conv_stride_pads": single("Conv", [("x", [1, 3, 9, 8])], {"W": w(5, 3, 3, 2)}, strides=[2, 3],
                               pads=[1, 0, 2, 1]),
    "conv_grouped": single("Conv", [("x", [1, 4, 7, 7])], {"W": w(6, 2, 3, 3)}, group=2, pads=[1, 1, 1, 1]),
    "conv_depthwise": single("Conv", [("x", [1, 4, 7, 7])], {"W": w(4, 1, 3, 3), "B": w(4)}, group=4,
                             strides=[2, 2], pads=[1, 1, 1, 1]),
    "conv_dilated": single("Conv", [("x", [1, 2, 9, 9])], {"W": w(3, 2, 3, 3)}, dilations=[2, 2]),
    "conv_same_upper": single("Conv", [("x", [1, 2, 7, 8])], {"W": w(3, 2, 4, 3)}, auto_pad="SAME_UPPER",
                              strides=[2, 2]),
    "conv_same_lower": single("Conv", [("x", [1, 2, 7, 8])], {"W": w(3, 2, 4, 3)}, auto_pad="SAME_LOWER",
                              strides=[2, 2]),
    "conv_valid": single("Conv", [("x", [1, 2, 7, 8])], {"W": w(3, 2, 3, 3)}, auto_pad="VALID"),
    "conv_1d": single("Conv", [("x", [2, 3, 11])], {"W": w(4, 3, 3), "B": w(4)}, pads=[1, 2], strides=[2]),
    "conv_runtime_weight": single("Conv", [("x", [1, 3, 6, 6]), ("W", [2, 3, 3, 3])]),
    "convtranspose_stride2": single("ConvTranspose", [("x", [1, 3, 4, 5])], {"W": w(3, 2, 3, 3), "B": w(2)},
                                    strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
    "convtranspose_output_shape": single("ConvTranspose", [("x", [1, 2, 4, 4])], {"W": w(2, 3, 3, 3)},
                                         strides=[2, 2], output_shape=[9, 8]),
    "convtranspose_same_upper": single("ConvTranspose", [("x", [1, 2, 4, 4])], {"W": w(2, 3, 4, 4)},
                                       strides=[2, 2], auto_pad="SAME_UPPER"),
    "convtranspose_group": single("ConvTranspose", [("x", [1, 4, 3, 3])], {"W": w(4, 3, 2, 2)}, group=2,
                                  strides=[2, 2]),
    # normalisation
    "batchnorm_standalone": single("BatchNormalization", X4, {"s": w(3) + 1, "b": w(3), "m": w(3),
                                                              "v": np.abs(w(3)) + 0.1}, epsilon=1e-3),
    "batchnorm_2d_input": single("BatchNormalization", [("x", [4, 3])], {"s": w(3) + 1, "b": w(3), "m": w(3),
                                                                         "v": np.abs(w(3)) + 0.1}),
    "lrn": single("LRN", [("x", [1, 7, 4, 5])], size=3, alpha=1e-2, beta=0.75, bias=1.5),
    # pooling
    "maxpool_pads": single("MaxPool", X4, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "maxpool_ceil": single("MaxPool", [("x", [1, 2, 8, 7])], kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1),
    "maxpool_dilated": single("MaxPool", [("x", [1, 2, 9, 9])], kernel_shape=[2, 2], dilations=[2, 2]),
    "maxpool_same_upper": single("MaxPool", [("x", [1, 2, 7, 7])], kernel_shape=[3, 3], strides=[2, 2],
                                 auto_pad="SAME_UPPER"),
    "maxpool_1d": single("MaxPool", [("x", [1, 2, 9])], kernel_shape=[3], strides=[2]),
    "avgpool_exclude_pad": single("AveragePool", X4, kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    "avgpool_include_pad": single("AveragePool", X4, kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
    "avgpool_ceil": single("AveragePool", [("x", [1, 2, 8, 7])], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
    "globalavgpool": single("GlobalAveragePool", X4),
    "globalmaxpool": single("GlobalMaxPool", X4),
    # matrix products
    "gemm_transb_bias": single("Gemm", [("a", [3, 5])], {"B": w(4, 5), "C": w(4)}, transB=1),
    "gemm_alpha_beta": single("Gemm", [("a", [3, 5])], {"B": w(5, 4), "C": w(1, 4)}, alpha=0.5, beta=2.0),
    "gemm_matrix_c": single("Gemm", [("a", [3, 5])], {"B": w(5, 4), "C": w(3, 4)}),
    "gemm_transa": single("Gemm", [("a", [5, 3])], {"B": w(5, 4)}, transA=1),
    "gemm_runtime_b": single("Gemm", [("a", [3, 5]), ("b", [4, 5])], {"C": w(4)}, transB=1, alpha=2.0),
    "matmul_const_2d": single("MatMul", [("a", [3, 5])], {"B": w(5, 4)}),
    "matmul_const_3d": single("MatMul", [("a", [2, 3, 5])], {"B": w(5, 4)}),
    "matmul_runtime": single("MatMul", [("a", [2, 3, 5]), ("b", [2, 5, 4])]),
    # softmax and reductions
    "softmax_13_axis1": single("Softmax", X4, axis=1),
    "softmax_11_coerce": single("Softmax", X4, opset=11, axis=1),
    "softmax_11_default": single("Softmax", X4, opset=11),
    "reducemean_attr": single("ReduceMean", X4, axes=[2, 3]),
    "reducemean_18_input": single("ReduceMean", X4, {"axes": np.array([-1], I64)}, opset=18, keepdims=0),
    "reducesum_13_input": single("ReduceSum", X4, {"axes": np.array([1], I64)}),
    "reducesum_all": single("ReduceSum", X4, keepdims=0),
    "reducemax_attr": single("ReduceMax", X4, axes=[0, 2], keepdims=0),
    "reducesum_noop": single("ReduceSum", X4, noop_with_empty_axes=1),
    # reshapes
    "reshape_zero_minus1": single("Reshape", X4, {"s": np.array([0, -1, 6], I64)}),
    "reshape_allowzero": single("Reshape", X4, {"s": np.array([2, 15, 6], I64)}, opset=14, allowzero=1),
    "flatten_axis2": single("Flatten", X4, axis=2),
    "flatten_axis0": single("Flatten", X4, axis=0),
    "flatten_negative": single("Flatten", X4, axis=-1),
    "squeeze_attr": single("Squeeze", [("x", [2, 1, 3, 1])], opset=11, axes=[1]),
    "squeeze_input": single("Squeeze", [("x", [2, 1, 3, 1])], {"axes": np.array([-1, 1], I64)}),
    "squeeze_all": single("Squeeze", [("x", [2, 1, 3, 1])]),
    "unsqueeze_attr": single("Unsqueeze", [("x", [2, 3])], opset=11, axes=[0, 3]),
    "unsqueeze_input": single("Unsqueeze", [("x", [2, 3])], {"axes": np.array([-1, 1], I64)}),
    "transpose": single("Transpose", X4, perm=[0, 2, 3, 1]),
    "transpose_default": single("Transpose", [("x", [2, 3, 4])]),
    "spacetodepth": single("SpaceToDepth", [("x", [1, 2, 4, 6])], blocksize=2),
    "depthtospace_dcr": single("DepthToSpace", [("x", [1, 8, 2, 3])], blocksize=2),
    "depthtospace_crd": single("DepthToSpace", [("x", [1, 8, 2, 3])], blocksize=2, mode="CRD"),
    # joins, splits, slices, pads, gathers
    "concat_negative_axis": single("Concat", [("a", [2, 3, 4]), ("b", [2, 2, 4])], {"c": w(2, 1, 4)}, axis=-2),
    "split_11_attr": single("Split", [("x", [2, 6])], opset=11, n_out=2, axis=1, split=[2, 4]),
    "split_13_input": single("Split", [("x", [2, 6])], {"s": np.array([1, 5], I64)}, n_out=2, axis=1),
    "split_equal": single("Split", [("x", [6, 2])], n_out=3),
    "split_18_uneven": single("Split", [("x", [2, 7])], opset=18, n_out=3, axis=1, num_outputs=3),
    "slice_9_attrs": single("Slice", [("x", [5, 6])], opset=9, starts=[1, -4], ends=[100, -1], axes=[0, 1]),
    "slice_negative_step": single("Slice", [("x", [5, 6])], {"s": np.array([-1, 4], I64), "e": np.array(
        [-100, 0], I64), "a": np.array([0, 1], I64), "t": np.array([-2, -1], I64)}),
    "slice_clamped": single("Slice", X4, {"s": np.array([1], I64), "e": np.array([np.iinfo(I64).max], I64),
                                          "a": np.array([-1], I64)}),
    "pad_2_attrs": single("Pad", X4, opset=2, pads=[0, 0, 1, 2, 0, 0, 2, 1], value=0.5),
    "pad_reflect": single("Pad", X4, {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], I64)}, mode="reflect"),
    "pad_edge": single("Pad", X4, {"p": np.array([0, 1, 0, 0, 0, 0, 0, 3], I64)}, mode="edge"),
    "pad_18_axes": single("Pad", X4, {"p": np.array([1, 2, 0, 1], I64), "v": np.array(-1.0, F32),
                                      "ax": np.array([2, -1], I64)}, opset=18),
    "pad_negative": single("Pad", X4, {"p": np.array([0, 0, -1, 1, 0, 0, 1, -2], I64)}),
    "gather_const_indices": single("Gather", [("x", [5, 4])], {"i": np.array([[0, -1], [2, 2]], I64)}, axis=0),
    "gather_runtime_indices": single("Gather", [("x", [3, 5, 4]), ("i", [2], I64)], axis=-2),
    "gather_scalar": single("Gather", [("x", [3, 5])], {"i": np.array(1, I64)}, axis=1),
    # resizing
    "resize_11_scales_nearest": ordered("Resize", ["x", "roi", "sc"], [("x", [1, 2, 3, 4])],
                                        {"roi": np.zeros(0, F32), "sc": np.array([1, 1, 2, 1.5], F32)}, opset=11,
                                        coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    "resize_13_sizes_linear": ordered("Resize", ["x", "", "", "sz"], [("x", [1, 2, 4, 5])],
                                      {"sz": np.array([1, 2, 7, 3], I64)}, mode="linear"),
    "resize_13_align_corners": ordered("Resize", ["x", "", "sc"], [("x", [1, 2, 4, 5])],
                                       {"sc": np.array([1, 1, 2, 2], F32)}, mode="linear",
                                       coordinate_transformation_mode="align_corners"),
    "resize_18_axes": ordered("Resize", ["x", "", "sc"], [("x", [1, 2, 4, 5])], {"sc": np.array([2, 3], F32)},
                              opset=18, axes=[2, 3], mode="nearest"),
    "resize_19_pytorch": ordered("Resize", ["x", "", "sc"], [("x", [1, 2, 4, 5])], {"sc": np.array([1, 1, .5, .5],
                                 F32)}, opset=19, mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
    "upsample_9": single("Upsample", [("x", [1, 2, 3, 4])], {"sc": np.array([1, 1, 2, 3], F32)}, opset=9),
    "resize_10": single("Resize", [("x", [1, 2, 3, 4])], {"sc": np.array([1, 1, 2, 2], F32)}, opset=10),
    "resize_10_shrink": single("Resize", [("x", [1, 2, 6, 8])], {"sc": np.array([1, 1, .5, .75], F32)}, opset=10),
    "resize_10_linear": single("Resize", [("x", [1, 2, 6, 8])], {"sc": np.array([1, 1, .5, 1.5], F32)}, opset=10,
                               mode="linear"),
    "upsample_7_attr": single("Upsample", [("x", [1, 2, 3, 4])], opset=7, scales=[1.0, 1.0, 2.0, 3.0]),
    "upsample_9_linear": single("Upsample", [("x", [1, 2, 3, 4])], {"sc": np.array([1, 1, 2, 2], F32)}, opset=9,
                                mode="linear"),
    "resize_13_tf_half_pixel_ceil": ordered("Resize", ["x", "", "", "sz"], [("x", [1, 2, 4, 5])],
                                            {"sz": np.array([1, 2, 9, 7], I64)},
                                            coordinate_transformation_mode="tf_half_pixel_for_nn",
                                            nearest_mode="round_prefer_ceil"),
    # constants and identities
    "identity": single("Identity", X4),
    "dropout": single("Dropout", X4, opset=12),
    "cast_same_type": single("Cast", X4, to=TensorProto.FLOAT),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_builder_matches_onnxruntime(name):
    check_against_ort(CASES[name], rtol=1e-5, atol=1e-5)


def test_shape_subgraph_folds_away():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, plus Cast/ConstantOfShape/Range/Where on
    shapes: all known at conversion time, so only the compute nodes remain."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        helper.make_node("Cast", ["n1"], ["n1f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["n1f"], ["n1i"], to=TensorProto.INT64),
        helper.make_node("Concat", ["n1i", "minus1"], ["target"], axis=0),
        helper.make_node("ConstantOfShape", ["n1i"], ["ones"], value=helper.make_tensor("v", TensorProto.INT64,
                                                                                         [1], [1])),
        helper.make_node("Range", ["zero", "n", "one"], ["r"]),
        helper.make_node("Equal", ["r", "zero"], ["is0"]),
        helper.make_node("Where", ["is0", "target", "target"], ["target2"]),
        helper.make_node("Reshape", ["x", "target2"], ["flat"], name="flatten_it"),
        helper.make_node("Relu", ["flat"], ["y"], name="relu"),
    ]
    inits = {"zero": np.array(0, I64), "one": np.array(1, I64), "ax0": np.array([0], I64),
             "minus1": np.array([-1], I64)}
    model = make_model(nodes, [("x", F32, [2, 3, 4])], [("y", [2, 12])], inits)
    graph, _ = check_against_ort(model)
    assert [n.op for n in graph.nodes] == ["Reshape", "Relu"]
    assert [n.name for n in graph.nodes] == ["flatten_it", "relu"]


def test_node_names_and_metadata_are_kept(tmp_path):
    model = single("Conv", X4, {"W": w(4, 3, 3, 3)})
    onnx.save(model, tmp_path / "m.onnx")
    report = convert(tmp_path / "m.onnx", tmp_path / "m.ert")
    graph = read_ert(tmp_path / "m.ert")
    assert [n.name for n in graph.nodes] == ["the_conv"]
    md = graph.metadata
    assert md["source"] == "m.onnx" and md["producer"].startswith("edgert-tests") and md["opset"] == 13
    assert md["converter"].startswith("edgert ")
    assert report.nodes == 1 and "1 onnx nodes -> 1 edgert nodes" in report.summary()


def test_progress_is_reported(tmp_path):
    model = single("Relu", X4)
    onnx.save(model, tmp_path / "m.onnx")
    calls = []
    convert(tmp_path / "m.onnx", tmp_path / "m.ert", progress=lambda *a: calls.append(a))
    stages = [c[0] for c in calls]
    assert {"load", "convert", "optimize", "write"} <= set(stages)
    assert ("convert", 1, 1) in calls


# --- errors -------------------------------------------------------------------------------------
def test_unsupported_ops_are_all_listed_at_once(tmp_path):
    nodes = [helper.make_node("Erf", ["x"], ["a"], name="first_bad"),
             helper.make_node("Relu", ["a"], ["b"], name="fine_but_downstream"),
             helper.make_node("Relu", ["x"], ["c"], name="fine"),
             helper.make_node("TopK", ["c", "k"], ["d", "e"], name="second_bad"),
             helper.make_node("Exp", ["c"], ["f"], name="third_bad"),
             helper.make_node("Add", ["b", "f"], ["y"], name="sum")]
    model = make_model(nodes, [("x", F32, [2, 3])], ["y", "d"], {"k": np.array([1], I64)})
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(UnsupportedOpError) as info:
        convert(tmp_path / "m.onnx", tmp_path / "m.ert")
    err = info.value
    assert err.ops == [("first_bad", "Erf"), ("second_bad", "TopK"), ("third_bad", "Exp")]
    for word in ("first_bad", "second_bad", "third_bad", "Erf", "TopK", "Exp"):
        assert word in str(err)
    assert not (tmp_path / "m.ert").exists()


def test_unsupported_variant_and_domain_are_reported():
    nodes = [helper.make_node("Resize", ["x", "", "sc"], ["r"], name="cubic", mode="cubic"),
             helper.make_node("MyOp", ["x"], ["m"], name="custom", domain="com.example")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("m", TensorProto.FLOAT, None)],
                              [onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], F32), "sc")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)])
    with pytest.raises(UnsupportedOpError) as info:
        from converters.onnx import onnx_to_graph
        onnx_to_graph(model)
    assert info.value.ops == [("cubic", "Resize"), ("custom", "com.example.MyOp")]
    assert "cubic" in str(info.value) and "com.example" in str(info.value)


def test_dynamic_dims_error_names_input_dim_and_fix():
    node = helper.make_node("Relu", ["img"], ["y"])
    model = make_model([node], [("img", F32, ["batch", 3, None, 224]), ("other", F32, [2])], ["y"])
    with pytest.raises(ConversionError) as info:
        convert_graph(model)
    text = str(info.value)
    assert "'img'" in text and "dim 0 ('batch')" in text and "dim 2" in text
    assert "--input-shape img=?x3x?x224" in text and "other" not in text
    graph, _ = convert_graph(model, input_shapes={"img": (1, 3, 8, 224)})
    assert graph.tensors["img"].shape == (1, 3, 8, 224)


def test_input_shape_errors():
    model = make_model([helper.make_node("Relu", ["img"], ["y"])], [("img", F32, [1, 3, None, None])], ["y"])
    with pytest.raises(ConversionError, match="unknown input"):
        convert_graph(model, input_shapes={"image": (1, 3, 4, 4)})
    with pytest.raises(ConversionError, match="does not match"):
        convert_graph(model, input_shapes={"img": (1, 4, 4, 4)})


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "checker"])
def test_damaged_files_are_conversion_errors(tmp_path, damage):
    good = single("Conv", X4, {"W": w(4, 3, 3, 3), "B": w(4)})
    data = good.SerializeToString()
    path = tmp_path / "bad.onnx"
    if damage == "garbage":
        path.write_bytes(b"\x08\x07\xff\xff\xff" + bytes(range(256)) * 4)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        broken = onnx.ModelProto.FromString(data)
        broken.graph.node[0].input[1] = "missing_weight"
        path.write_bytes(broken.SerializeToString())
    with pytest.raises(ConversionError) as info:
        convert(path, tmp_path / "out.ert")
    assert "bad.onnx" in str(info.value)
    assert not (tmp_path / "out.ert").exists()


def test_missing_file_and_unwritable_output_are_clear_errors(tmp_path):
    with pytest.raises(ConversionError, match="no such file"):
        convert(tmp_path / "nope.onnx", tmp_path / "out.ert")
    onnx.save(single("Relu", X4), tmp_path / "m.onnx")
    with pytest.raises(ConversionError, match="cannot write"):
        convert(tmp_path / "m.onnx", tmp_path / "no_such_dir" / "out.ert")


# --- batch-norm folding and fp16 -------------------------------------------------------------------
def _conv_bn(conv_op="Conv", group=1):
    c_in, c_out = 4, 6
    wshape = (c_out, c_in // group, 3, 3) if conv_op == "Conv" else (c_in, c_out // group, 3, 3)
    inits = {"W": w(*wshape), "B": w(c_out), "gamma": w(c_out) + 1, "beta": w(c_out), "mean": w(c_out),
             "var": np.abs(w(c_out)) * 10 + 1e-3}
    nodes = [helper.make_node(conv_op, ["x", "W", "B"], ["c"], name="conv", group=group, pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["bn"], name="bn",
                              epsilon=1e-4),
             helper.make_node("Relu", ["bn"], ["y"], name="relu")]
    return make_model(nodes, [("x", F32, [1, c_in, 7, 7])], ["y"], inits)


@pytest.mark.parametrize(("conv_op", "group"), [("Conv", 1), ("Conv", 2), ("ConvTranspose", 1),
                                                ("ConvTranspose", 2)])
def test_batchnorm_folds_into_conv_exactly(conv_op, group):
    graph, _ = check_against_ort(_conv_bn(conv_op, group), rtol=1e-5, atol=1e-5)
    assert [n.op for n in graph.nodes] == [conv_op]
    conv = graph.nodes[0]
    assert conv.name == "conv" and conv.attrs["activation"] == "relu" and conv.outputs == ["y"]


def test_batchnorm_after_a_shared_conv_output_is_not_folded():
    model = _conv_bn()
    model.graph.node.append(helper.make_node("Sigmoid", ["c"], ["z"], name="other_reader"))
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 6, 7, 7]))
    graph, _ = check_against_ort(model)
    assert sorted(n.op for n in graph.nodes) == ["Add", "Conv", "Mul", "Sigmoid"]


def test_fp16_halves_the_file_and_stays_close(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "W2"], ["c"]),
             helper.make_node("Flatten", ["c"], ["d"]),
             helper.make_node("Gemm", ["d", "F", "FB"], ["y"], transB=1)]
    inits = {"W1": w(32, 16, 3, 3), "B1": w(32), "W2": w(16, 32, 1, 1), "F": w(10, 16 * 6 * 6, scale=0.05),
             "FB": w(10)}
    model = make_model(nodes, [("x", F32, [1, 16, 6, 6])], ["y"], inits)
    onnx.save(model, tmp_path / "m.onnx")
    r32 = convert(tmp_path / "m.onnx", tmp_path / "f32.ert")
    r16 = convert(tmp_path / "m.onnx", tmp_path / "f16.ert", fp16=True)
    assert r16.file_bytes < 0.55 * r32.file_bytes
    assert all(v.dtype == np.float16 for v in read_ert(tmp_path / "f16.ert").consts.values())
    feeds = random_feeds(model)
    want = ort_run(model, feeds)["y"]
    got = Session(read_ert(tmp_path / "f16.ert")).run(feeds)["y"]
    assert np.max(np.abs(got - want)) <= 1e-2 * np.max(np.abs(want))


def test_fp16_initializers_stay_fp16():
    half = w(4, 3, 3, 3).astype(np.float16)
    nodes = [helper.make_node("Cast", ["Wh"], ["W"], to=TensorProto.FLOAT),
             helper.make_node("Conv", ["x", "W"], ["y"])]
    model = make_model(nodes, [("x", F32, [1, 3, 5, 5])], ["y"], {"Wh": half})
    graph, _ = check_against_ort(model)
    (weight,) = [v for v in graph.consts.values()]
    assert weight.dtype == np.float16 and np.array_equal(weight, half)


def test_graph_output_that_is_an_input_alias_keeps_its_name():
    nodes = [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Dropout", ["x"], ["z"])]
    model = make_model(nodes, [("x", F32, [2, 2])], ["y", "z"])
    graph, _ = check_against_ort(model)
    assert graph.outputs == ["y", "z"]


def test_constant_output():
    nodes = [helper.make_node("Constant", [], ["c"], value=helper.make_tensor("v", TensorProto.FLOAT, [2], [1, 2])),
             helper.make_node("Add", ["x", "c"], ["y"])]
    model = make_model(nodes, [("x", F32, [3, 2])], ["y", "c"])
    check_against_ort(model)


def test_external_data_is_loaded(tmp_path):
    model = single("Conv", X4, {"W": w(8, 3, 3, 3), "B": w(8)})
    reference = onnx.ModelProto.FromString(model.SerializeToString())  # saving moves the weights out
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.weights", size_threshold=0)
    assert (tmp_path / "m.weights").is_file()
    convert(tmp_path / "m.onnx", tmp_path / "m.ert")
    feeds = random_feeds(reference)
    got = Session(read_ert(tmp_path / "m.ert")).run(feeds)["y0"]
    np.testing.assert_allclose(got, ort_run(reference, feeds)["y0"], rtol=1e-5, atol=1e-5)


# --- sparse initializers (SparseTensorProto) --------------------------------------------------------
def _sparse_fc_model(indices_2d=True, damage=None):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((16, 24)).astype(np.float32)
    w[rng.random(w.shape) < 0.8] = 0
    nz = np.nonzero(w)
    vals = w[nz]
    idx = np.stack(nz, axis=1) if indices_2d else np.ravel_multi_index(nz, w.shape)
    idx = idx.astype(np.int64)
    if damage == "out_of_range":
        idx = idx.copy()
        idx.reshape(-1)[0] = 999
    if damage == "duplicate":
        idx = np.concatenate([idx, idx[:1]])
        vals = np.concatenate([vals, vals[:1]])
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(vals, "W"), numpy_helper.from_array(idx, "W_idx"),
                                       list(w.shape))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="fc")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 24])],
                              sparse_initializer=[sparse])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), w


@pytest.mark.parametrize("indices_2d", [True, False])
def test_sparse_initializers_are_densified_and_match_onnxruntime(tmp_path, indices_2d):
    model, w = _sparse_fc_model(indices_2d)
    onnx.save(model, tmp_path / "m.onnx")
    convert(tmp_path / "m.onnx", tmp_path / "m.ert")
    x = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    got = edgert.load(tmp_path / "m.ert", threads=1).run({"x": x})["y"]
    np.testing.assert_allclose(got, x @ w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("damage,checker,ours", [("out_of_range", "out of range", "outside"),
                                                   ("duplicate", "sorted order", "twice")])
def test_damaged_sparse_initializers_are_conversion_errors(tmp_path, damage, checker, ours):
    model, _ = _sparse_fc_model(damage=damage)
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(ConversionError, match=checker) as info:  # onnx's checker sees it first
        convert(tmp_path / "m.onnx", tmp_path / "m.ert")
    assert "m.onnx" in str(info.value) and not (tmp_path / "m.ert").exists()
    from converters.onnx.context import sparse_tensor_value  # and the decoder on its own
    with pytest.raises(ConversionError, match=ours):
        sparse_tensor_value(model.graph.sparse_initializer[0])
