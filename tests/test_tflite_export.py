"""TFLite exporter: small ONNX conv nets and the zoo models, exported and run in LiteRT.

Each model is checked three ways on the same seeded input: LiteRT on the exported file against
onnxruntime on the original ONNX, LiteRT against edgert on the IR graph the file was exported from,
and edgert's own TFLite converter reading the exported file back against edgert on the original.
The criterion is max|a - b| <= 1e-4 x max|reference|.
"""

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import helper

from converters.tflite import read_model
from converters.tflite_export import export_graph, load_dense_graph
from edgert.dtypes import from_numpy
from edgert.errors import ConversionError
from edgert.ir.graph import TensorInfo
from edgert.runtime.session import Session
from tests.onnx_helpers import make_model, ort_run, random_feeds
from tests.tflite_harness import edgert_graph, run_litert

pytest.importorskip("ai_edge_litert")
TOL = 1e-4
RNG = np.random.default_rng(2024)


def nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


def nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x


def rel_err(got, want):
    assert got.shape == want.shape, f"shape {got.shape} vs {want.shape}"
    return float(np.max(np.abs(got.astype(np.float64) - want))) / max(float(np.max(np.abs(want))), 1e-30)


def check_export(model, seed=0):
    """Export ``model`` and compare LiteRT / onnxruntime / edgert / edgert on the file read back through
    its own TFLite converter. Returns the exported operators (so tests can assert how an op was expressed)."""
    graph, _ = load_dense_graph(model)
    data = export_graph(graph)
    feeds = random_feeds(model, seed)
    want = ort_run(model, feeds)
    ours = Session(graph, threads=1).run(feeds)
    tfl_feeds = {name: nhwc(value) for name, value in feeds.items()}
    theirs = {name: nchw(value) for name, value in run_litert(data, tfl_feeds).items()}
    back = {name: nchw(value) for name, value in Session(edgert_graph(data), threads=1).run(tfl_feeds).items()}
    assert set(theirs) == set(want), f"outputs {sorted(theirs)} vs {sorted(want)}"
    for name, ref in want.items():
        assert rel_err(theirs[name], ref) <= TOL, f"LiteRT vs onnxruntime, '{name}'"
        assert rel_err(theirs[name], ours[name]) <= TOL, f"LiteRT vs edgert, '{name}'"
        assert rel_err(back[name], ours[name]) <= TOL, f"edgert on the read-back file vs edgert, '{name}'"
    return [op.opcode for op in read_model(data).operators]


def w(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def conv_node(x, out, weight, bias=None, **attrs):
    return helper.make_node("Conv", [x, weight] + ([bias] if bias else []), [out], name=f"conv_{out}", **attrs)


# --- convolutions and padding ------------------------------------------------------------------------
@pytest.mark.parametrize("size,pads,padded", [
    ((16, 16), [0, 0, 1, 1], False),  # TFLite's SAME split for stride 2 on an even size
    ((16, 16), [1, 1, 1, 1], True),   # PyTorch-style symmetric pads: a PAD before a VALID conv
    ((15, 13), [1, 1, 1, 1], False),  # odd sizes: symmetric pads are SAME
    ((15, 14), [1, 1, 1, 1], True),   # SAME in H only: one PAD for both
    ((9, 9), [0, 0, 0, 0], False),    # VALID
])
def test_strided_conv_padding(size, pads, padded):
    nodes = [conv_node("x", "y", "w", "b", strides=[2, 2], pads=pads), helper.make_node("Relu", ["y"], ["z"])]
    model = make_model(nodes, [("x", np.float32, [1, 3, *size])], ["z"], {"w": w(8, 3, 3, 3), "b": w(8)})
    ops = check_export(model)
    assert ops.count("PAD") == int(padded), ops
    assert ops == (["PAD"] if padded else []) + ["CONV_2D"], ops  # relu fused into the conv


@st.composite
def conv_geometry(draw):
    k, d, s = draw(st.integers(1, 4)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    eff = (k - 1) * d + 1
    pads = [draw(st.integers(0, min(2, eff - 1))) for _ in range(4)]  # a pad never exceeds the window
    h = draw(st.integers(max(1, eff - pads[0] - pads[2]), 12))
    wd = draw(st.integers(max(1, eff - pads[1] - pads[3]), 12))
    return (h, wd), k, d, s, pads, draw(st.booleans())


@given(conv_geometry())
def test_conv_geometry_property(geometry):
    # Any stride/dilation/pads/size: SAME, VALID or PAD + VALID must select exactly the IR's windows.
    (h, wd), k, d, s, pads, depthwise = geometry
    c = 3
    node = conv_node("x", "z", "w", "b", strides=[s, s], dilations=[d, d], pads=pads, group=c if depthwise else 1)
    weight = w(c * 2, 1, k, k) if depthwise else w(4, c, k, k)
    model = make_model([node], [("x", np.float32, [1, c, h, wd])], ["z"], {"w": weight, "b": w(weight.shape[0])})
    ops = check_export(model)
    assert ops[-1] == ("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D") and ops[:-1] in ([], ["PAD"]), ops


@given(st.integers(1, 4), st.integers(1, 3), st.lists(st.integers(0, 3), min_size=4, max_size=4),
       st.integers(1, 11), st.integers(1, 11), st.sampled_from(["max", "avg", "avg_count_pads"]), st.booleans())
def test_pool_geometry_property(k, s, pads, h, wd, kind, ceil):
    # Exported exactly, or refused with a ConversionError naming the node (average pooling that
    # excludes pads TFLite cannot place, ceil-mode sizes no padding reproduces); never wrong numbers.
    pads = [min(p, k - 1) for p in pads]
    h, wd = max(h, k - pads[0] - pads[2]), max(wd, k - pads[1] - pads[3])
    attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": pads, "ceil_mode": int(ceil)}
    if kind != "max":
        attrs["count_include_pad"] = int(kind == "avg_count_pads")
    node = helper.make_node("MaxPool" if kind == "max" else "AveragePool", ["x"], ["z"], name="pool", **attrs)
    model = make_model([node], [("x", np.float32, [1, 2, h, wd])], ["z"])
    try:
        ops = check_export(model)
    except ConversionError as exc:
        assert (exc.node, any(pads) or ceil) == ("pool", True), str(exc)
        return
    assert ops[-1] in ("MAX_POOL_2D", "AVERAGE_POOL_2D"), ops


def test_conv_odd_sizes_dilation_no_bias():
    nodes = [conv_node("x", "y", "w1", pads=[2, 2, 2, 2], dilations=[2, 2]),
             conv_node("y", "z", "w2", "b2", kernel_shape=[1, 1])]
    model = make_model(nodes, [("x", np.float32, [1, 5, 11, 7])], ["z"], {"w1": w(6, 5, 3, 3), "w2": w(4, 6, 1, 1),
                                                                         "b2": w(4)})
    assert check_export(model) == ["CONV_2D", "CONV_2D"]


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_relu6(multiplier):
    c = 6
    nodes = [conv_node("x", "y", "w", "b", group=c, pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Clip", ["y", "lo", "hi"], ["z"])]
    model = make_model(nodes, [("x", np.float32, [1, c, 13, 10])], ["z"],
                       {"w": w(c * multiplier, 1, 3, 3), "b": w(c * multiplier), "lo": np.float32(0.0),
                        "hi": np.float32(6.0)})
    assert check_export(model) == ["PAD", "DEPTHWISE_CONV_2D"]


# --- blocks: residual, squeeze-excite, head ----------------------------------------------------------
def test_residual_squeeze_excite_hardswish():
    c = 8
    nodes = [conv_node("x", "a", "w1", "b1", pads=[1, 1, 1, 1]),
             helper.make_node("HardSwish", ["a"], ["h"]),
             helper.make_node("GlobalAveragePool", ["h"], ["p"]),
             conv_node("p", "s", "w2", "b2"),
             helper.make_node("Sigmoid", ["s"], ["g"]),
             helper.make_node("Mul", ["h", "g"], ["m"]),
             helper.make_node("HardSigmoid", ["m"], ["hs"], alpha=0.2, beta=0.5),
             helper.make_node("Add", ["hs", "x"], ["z"])]
    model = make_model(nodes, [("x", np.float32, [1, c, 9, 7])], ["z"],
                       {"w1": w(c, c, 3, 3), "b1": w(c), "w2": w(c, c, 1, 1), "b2": w(c)}, opset=14)
    ops = check_export(model)
    assert {"HARD_SWISH", "LOGISTIC", "MEAN", "MUL", "ADD"} <= set(ops), ops


def test_classifier_head_flatten_gemm_softmax():
    nodes = [conv_node("x", "y", "w", "b", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["y"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc", "fb"], ["g"], transB=1),
             helper.make_node("Softmax", ["g"], ["z"], axis=1)]
    model = make_model(nodes, [("x", np.float32, [1, 4, 6, 6])], ["z"],
                       {"w": w(16, 4, 3, 3), "b": w(16), "fc": w(10, 16), "fb": w(10)})
    ops = check_export(model)
    assert ops == ["CONV_2D", "MEAN", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"], ops


def test_reduce_mean_matmul_and_spatial_flatten():
    # ReduceMean over H, W without keepdims; a Flatten of a real 4-D map (needs NCHW order: TRANSPOSE).
    nodes = [conv_node("x", "y", "w", "b"),
             helper.make_node("ReduceMean", ["y"], ["r"], axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["r", "m"], ["z1"]),
             helper.make_node("Flatten", ["y"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["z2"], transB=1)]
    model = make_model(nodes, [("x", np.float32, [1, 3, 5, 4])], ["z1", "z2"],
                       {"w": w(6, 3, 1, 1), "b": w(6), "m": w(6, 7), "fc": w(5, 6 * 5 * 4)})
    ops = check_export(model)
    assert "TRANSPOSE" in ops and ops.count("FULLY_CONNECTED") == 2, ops


def test_layout_changes_softmax_over_width_reduce_over_channels_concat():
    # Softmax over W and a 4-D result in IR order need TRANSPOSEs; MEAN over C without keepdims keeps
    # [N, H, W] in order; a rank-3 constant broadcasts against the NHWC concat.
    nodes = [conv_node("x", "y", "w", "b"), helper.make_node("Softmax", ["y"], ["z"], axis=3),
             helper.make_node("ReduceMean", ["y"], ["r"], axes=[1], keepdims=0),
             helper.make_node("Concat", ["y", "y"], ["c"], axis=1), helper.make_node("Max", ["c", "k"], ["m"])]
    model = make_model(nodes, [("x", np.float32, [1, 3, 5, 6])], ["z", "r", "m"],
                       {"w": w(4, 3, 1, 1), "b": w(4), "k": w(8, 1, 1)})
    ops = check_export(model)
    assert ops == ["CONV_2D", "TRANSPOSE", "SOFTMAX", "MEAN", "CONCATENATION", "MAXIMUM", "TRANSPOSE"], ops


# --- pooling and explicit padding --------------------------------------------------------------------
@pytest.mark.parametrize("size", [(12, 12), (11, 9)])
def test_pools(size):
    nodes = [conv_node("x", "y", "w", "b"),
             helper.make_node("MaxPool", ["y"], ["m"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("AveragePool", ["m"], ["a"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("AveragePool", ["y"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                              count_include_pad=1)]
    model = make_model(nodes, [("x", np.float32, [1, 3, *size])], ["a", "c"], {"w": w(5, 3, 1, 1), "b": w(5)})
    ops = check_export(model)
    assert ops.count("MAX_POOL_2D") == 1 and ops.count("AVERAGE_POOL_2D") == 2, ops
    assert ("PADV2" in ops) == (size[0] % 2 == 0), ops  # odd: SAME; even: -inf pads before a VALID pool


def test_reflect_pad():
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], mode="reflect"), conv_node("p", "z", "w", "b")]
    model = make_model(nodes, [("x", np.float32, [1, 3, 7, 8])], ["z"],
                       {"pads": np.array([0, 0, 2, 1, 0, 0, 1, 2], np.int64), "w": w(4, 3, 3, 3), "b": w(4)})
    assert check_export(model) == ["MIRROR_PAD", "CONV_2D"]


# --- decoder ops: upsampling and transposed convolutions ---------------------------------------------
NEAREST, BILINEAR = "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"


@pytest.mark.parametrize("mode,sampling,rounding,expect", [
    ("nearest", "asymmetric", "floor", NEAREST),
    ("nearest", "tf_half_pixel_for_nn", "floor", NEAREST),
    ("linear", "half_pixel", "floor", BILINEAR),
    ("linear", "align_corners", "floor", BILINEAR),
])
def test_resize(mode, sampling, rounding, expect):
    nodes = [conv_node("x", "y", "w", "b"),
             helper.make_node("Resize", ["y", "", "scales"], ["z"], mode=mode, coordinate_transformation_mode=sampling,
                              nearest_mode=rounding)]
    model = make_model(nodes, [("x", np.float32, [1, 3, 5, 7])], ["z"],
                       {"w": w(4, 3, 1, 1), "b": w(4), "scales": np.array([1, 1, 2, 3], np.float32)})
    assert check_export(model) == ["CONV_2D", expect]


@pytest.mark.parametrize("kernel,pads", [(2, [0, 0, 0, 0]), (3, [0, 0, 1, 1]), (4, [1, 1, 1, 1])])
def test_conv_transpose(kernel, pads):
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=pads),
             helper.make_node("Relu", ["y"], ["z"])]
    model = make_model(nodes, [("x", np.float32, [1, 6, 5, 4])], ["z"], {"w": w(6, 3, kernel, kernel), "b": w(3)})
    assert check_export(model) == ["TRANSPOSE_CONV", "RELU"]


def test_conv_transpose_other_crop_is_a_clear_error():
    # PyTorch's output_padding form: the same output size as SAME, but cropped one pixel further.
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["z"], strides=[2, 2], pads=[1, 1, 1, 1],
                              output_padding=[1, 1], name="up")]
    model = make_model(nodes, [("x", np.float32, [1, 2, 5, 5])], ["z"], {"w": w(2, 2, 3, 3)})
    with pytest.raises(ConversionError, match="neither TFLite's SAME nor VALID") as info:
        export_graph(load_dense_graph(model)[0])
    assert (info.value.node, info.value.op) == ("up", "ConvTranspose")


# --- the sparse op (edgert/ops/sparse.py) exports densified --------------------------------------------
@pytest.mark.parametrize("block", [[1, 1], [1, 4], [2, 1]])
def test_sparse_conv1x1_exports_dense(block):
    from edgert.ops.sparse import to_csr
    nodes = [conv_node("x", "y", "w1", "b1", kernel_shape=[1, 1]), helper.make_node("Relu", ["y"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc", "fb"], ["z"], transB=1)]
    w1, fc = w(16, 8, 1, 1), w(12, 16)
    w1[np.abs(w1) < 0.4] = 0.0  # about 60% zeros
    fc[:, ::2] = 0.0
    model = make_model(nodes, [("x", np.float32, [1, 8, 7, 5])], ["z"], {"w1": w1, "b1": w(16), "fc": fc,
                                                                        "fb": w(12)})
    graph, _ = load_dense_graph(model)
    for node in graph.nodes:  # what the sparsify pass makes of them: CSR/BSR weights, same attributes
        if node.op in ("Conv", "FullyConnected"):
            dense = graph.consts[node.inputs[1]]
            arrays = to_csr(dense.reshape(dense.shape[0], -1), tuple(block))
            names = [f"{node.name}/{k}" for k in ("values", "cols", "rowptr")]
            for name, value in zip(names, arrays):
                graph.consts[name] = value
                graph.tensors[name] = TensorInfo(name, value.shape, from_numpy(value.dtype))
            act = {k: v for k, v in node.attrs.items() if k.startswith("act")}
            node.op, node.inputs, node.attrs = "SparseConv1x1", [node.inputs[0], *names, node.inputs[2]], \
                {"block": block, **act}
    assert [n.op for n in graph.nodes].count("SparseConv1x1") == 2
    data = export_graph(graph)
    ops = [op.opcode for op in read_model(data).operators]
    assert ops == ["CONV_2D", "MEAN", "RESHAPE", "FULLY_CONNECTED"], ops
    feeds = random_feeds(model, 3)
    want = ort_run(model, feeds)["z"]
    assert rel_err(run_litert(data, {"x": nhwc(feeds["x"])})["z"], want) <= TOL
    assert rel_err(Session(graph, threads=1).run(feeds)["z"], want) <= TOL


def test_graph_from_the_sparsify_pass_and_dense_source_agree():
    # The user's path (convert: sparsify stores the pruned 1x1/FC layers as SparseConv1x1) and the
    # exporter's own ONNX path (sparsify skipped) give the same dense TFLite model.
    from converters.convert import convert_graph
    nodes = [conv_node("x", "y", "w1", "b1", kernel_shape=[1, 1]), helper.make_node("Clip", ["y", "lo", "hi"], ["r"]),
             conv_node("r", "z", "w2", "b2", kernel_shape=[1, 1])]
    w1, w2 = w(24, 8, 1, 1), w(8, 24, 1, 1)
    w1[np.abs(w1) < 0.5] = 0.0
    w2[:, 1::4] = w2[:, 2::4] = w2[:, 3::4] = 0.0
    model = make_model(nodes, [("x", np.float32, [1, 8, 6, 9])], ["z"],
                       {"w1": w1, "b1": w(24), "w2": w2, "b2": w(8), "lo": np.float32(0), "hi": np.float32(6)})
    sparse_graph, _ = convert_graph(model)
    dense_graph, note = load_dense_graph(model)
    assert [n.op for n in sparse_graph.nodes] == ["SparseConv1x1"] * 2
    assert [n.op for n in dense_graph.nodes] == ["Conv"] * 2 and "sparsify" in note
    feeds = random_feeds(model, 5)
    want = ort_run(model, feeds)["z"]
    outputs = [run_litert(export_graph(g), {"x": nhwc(feeds["x"])})["z"] for g in (sparse_graph, dense_graph)]
    for got in outputs:
        assert rel_err(nchw(got), want) <= TOL
    np.testing.assert_array_equal(outputs[0], outputs[1])


# --- what does not export ----------------------------------------------------------------------------
def test_grouped_conv_is_a_clear_error(tmp_path):
    from converters.tflite_export import export_tflite
    nodes = [conv_node("x", "z", "w", "b", group=2)]
    model = make_model(nodes, [("x", np.float32, [1, 4, 5, 5])], ["z"], {"w": w(6, 2, 3, 3), "b": w(6)})
    with pytest.raises(ConversionError) as info:
        export_graph(load_dense_graph(model)[0])
    assert info.value.node == "conv_z" and info.value.op == "Conv" and "group 2" in str(info.value)
    src, dst = tmp_path / "g.onnx", tmp_path / "g.tflite"
    onnx.save(model, src)
    with pytest.raises(ConversionError):
        export_tflite(src, dst)
    assert list(tmp_path.iterdir()) == [src]  # no partial output file, no temporary left


def test_ert_source(tmp_path):
    # An .ert file as edgert convert writes it (the pruned 1x1 conv stored sparse) exports like its ONNX.
    from converters.convert import convert
    from converters.tflite_export import export_tflite
    nodes = [conv_node("x", "y", "w1", "b1", pads=[1, 1, 1, 1], strides=[2, 2]), conv_node("y", "z", "w2", "b2")]
    w2 = w(6, 8, 1, 1)
    w2[:, :6] = 0.0
    model = make_model(nodes, [("x", np.float32, [1, 3, 10, 10])], ["z"],
                       {"w1": w(8, 3, 3, 3), "b1": w(8), "w2": w2, "b2": w(6)})
    src = tmp_path / "m.onnx"
    onnx.save(model, src)
    convert(src, tmp_path / "m.ert")
    from edgert.ir.format import read_ert
    assert [n.op for n in read_ert(tmp_path / "m.ert").nodes] == ["Conv", "SparseConv1x1"]
    report = export_tflite(tmp_path / "m.ert", tmp_path / "m.tflite")
    assert report.tflite_ops == {"PAD": 1, "CONV_2D": 2}, report.summary()
    feeds = random_feeds(model, 1)
    got = run_litert(tmp_path / "m.tflite", {"x": nhwc(feeds["x"])})["z"]
    assert rel_err(nchw(got), ort_run(model, feeds)["z"]) <= TOL


def test_tool_writes_the_file(tmp_path):
    from tools.export_tflite import main
    nodes = [conv_node("x", "z", "w", "b", pads=[1, 1, 1, 1])]
    src, dst = tmp_path / "m.onnx", tmp_path / "m.tflite"
    onnx.save(make_model(nodes, [("x", np.float32, [1, 3, 8, 8])], ["z"], {"w": w(4, 3, 3, 3), "b": w(4)}), src)
    assert main([str(src), "-o", str(dst)]) == 0
    assert read_model(dst.read_bytes()).operators[0].opcode == "CONV_2D"
    assert main([str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "x.tflite")]) == 6
    assert not (tmp_path / "x.tflite").exists()


# --- the zoo models the benchmarks compare -----------------------------------------------------------
@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])  # ~1.5 s each with warm kernels
def test_zoo_models(name):
    from converters.zoo import MODELS
    ops = check_export(MODELS[name]())
    assert "DEPTHWISE_CONV_2D" in ops and "TRANSPOSE" not in ops, ops
