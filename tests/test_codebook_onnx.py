"""ONNX conversion of the codebook layers: custom-domain ops, plain-op subgraphs fused, against onnxruntime.

The converter's hooks for this module are applied with monkeypatch (``hook_patches``), so the test
does not depend on whether the loader wires them in itself yet.
"""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgert.ops.codebook  # noqa: F401
from converters.onnx_codebook import fuse_codebook_patterns, hook_patches, reference_ops
from edgert.errors import ConversionError, UnsupportedOpError
from edgert.runtime.session import Session
from tests.helpers import assert_close
from tools.build_codebook_models import Writer, codebook_block, kv_classifier, snap_plain, synthetic_images

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def hooks(monkeypatch):
    for obj, attr, value in hook_patches():
        monkeypatch.setattr(obj, attr, value)


def convert(model, fp16=False):
    from converters.convert import convert_graph
    graph, _ = convert_graph(model, fp16=fp16)
    return graph


def ort_run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def snap_model(metric, G=4, K=96, dg=8, k=5, seed=0):
    rng = np.random.default_rng(seed)
    w = Writer("snap")
    C = rng.standard_normal((G, K, dg)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 1.5, (G, dg)).astype(np.float32), (0.1 * rng.standard_normal((G, dg))).astype(np.float32)
    snap_plain(w, "x", C, gamma, beta, k, metric, [2, 3])
    w.nodes[-1].output[0] = "y"
    return w.model([("x", [2, 3, G * dg])], [("y", TensorProto.FLOAT, [2, 3, G * dg]),
                                             ("codes", TensorProto.INT64, [2, 3, G, k])])


@pytest.mark.parametrize("metric", ["inner_product", "euclidean", "dot"])
def test_plain_group_codebook_fuses_into_one_node_and_matches_onnxruntime(metric):
    model = snap_model(metric)
    _, report = fuse_codebook_patterns(model)
    assert len(report) == 1 and f"'metric': '{metric}'" in report[0]
    graph = convert(model)
    assert [n.op for n in graph.nodes] == ["CodebookSnap"]
    x = np.random.default_rng(1).standard_normal((2, 3, 32)).astype(np.float32)
    got, want = Session(graph, threads=1).run({"x": x}), ort_run(model, {"x": x})
    np.testing.assert_array_equal(got["codes"], want["codes"])
    assert_close(got["y"], want["y"])


def test_ungrouped_matmul_form_with_sum_over_k_fuses():
    rng = np.random.default_rng(2)
    K, d, k = 50, 12, 3
    C = rng.standard_normal((K, d)).astype(np.float32)
    nodes = [helper.make_node("LayerNormalization", ["x", "s"], ["h"], axis=-1),
             helper.make_node("MatMul", ["h", "ct"], ["dots"]),
             helper.make_node("Div", ["dots", "norms"], ["scores"]),
             helper.make_node("TopK", ["scores", "k"], ["v", "ids"]),
             helper.make_node("Gather", ["C", "ids"], ["codes"]),
             helper.make_node("ReduceSum", ["codes", "axes"], ["total"], keepdims=0),
             helper.make_node("Div", ["total", "kf"], ["y"])]
    inits = {"s": np.ones(d, np.float32), "ct": C.T.copy(), "norms": np.linalg.norm(C, axis=1).astype(np.float32),
             "k": np.array([k]), "C": C, "axes": np.array([-2]), "kf": np.float32(k)}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, d])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, d])],
                              [numpy_helper.from_array(v, n) for n, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    ir = convert(model)
    assert [n.op for n in ir.nodes] == ["CodebookSnap"] and ir.nodes[0].attrs["k"] == k
    x = rng.standard_normal((4, d)).astype(np.float32)
    assert_close(Session(ir, threads=1).run({"x": x})["y"], ort_run(model, {"x": x})["y"])


def test_variants_that_are_not_codebooks_are_left_alone():
    model = snap_model("inner_product")
    topk = next(n for n in model.graph.node if n.op_type == "TopK")
    topk.attribute.append(helper.make_attribute("largest", 0))  # the k worst codes: no edgert metric ranks that
    del topk.attribute[:-1]
    fused, report = fuse_codebook_patterns(model)
    assert report == [] and fused is model
    # The broken TorchScript export (notes §3.1): only the ids leave the graph, nothing gathers codes.
    w = Writer("broken")
    s = w.node("Einsum", ["x", w.const("C", np.ones((1, 4, 3), np.float32))], equation="bgd,gkd->bgk")
    w.node("TopK", [s, w.const("k", np.array([2]))], outputs=["vals", "ids"])
    broken = w.model([("x", [2, 1, 3])], [("ids", TensorProto.INT64, [2, 1, 2])])
    assert fuse_codebook_patterns(broken)[1] == []
    with pytest.raises(UnsupportedOpError, match="Einsum"):
        convert(broken)


def test_custom_op_reference_matches_the_plain_export_in_onnxruntime():
    x = np.random.default_rng(3).standard_normal((1, 8, 64)).astype(np.float32)
    from onnx.reference import ReferenceEvaluator
    ours = ReferenceEvaluator(codebook_block("custom"), new_ops=reference_ops()).run(None, {"x": x})
    theirs = ort_run(codebook_block("plain"), {"x": x})
    np.testing.assert_array_equal(ours[1], theirs["codes"])
    assert_close(ours[0], theirs["y"])


@pytest.mark.parametrize("form", ["plain", "custom"])
def test_codebook_block_whole_model_matches_onnxruntime(form):
    x = np.random.default_rng(4).standard_normal((1, 8, 64)).astype(np.float32)
    try:
        graph = convert(codebook_block(form))
    except UnsupportedOpError as exc:
        pytest.skip(f"the rest of the block does not convert yet: {exc.message[:120]}")
    got, want = Session(graph, threads=1).run({"x": x}), ort_run(codebook_block("plain"), {"x": x})
    assert "CodebookSnap" in [n.op for n in graph.nodes]
    np.testing.assert_array_equal(got["codes"], want["codes"])
    assert_close(got["y"], want["y"])


@pytest.fixture(scope="module")
def classifiers():
    return {form: kv_classifier(form, batch=8, train_size=600) for form in ("plain", "custom")}


@pytest.mark.parametrize("fp16", [False, True])
def test_kv_classifier_both_forms_match_onnxruntime(classifiers, fp16):
    x, _ = synthetic_images(8, seed=9)
    want = ort_run(classifiers["plain"], {"images": x})["logits"]
    for form, model in classifiers.items():
        graph = convert(model, fp16=fp16)
        ops = [n.op for n in graph.nodes]
        assert ops.count("KeyValueLookup") == 1 and "Einsum" not in ops, ops
        got = Session(graph, threads=1).run({"images": x})["logits"]
        if fp16:  # keys and values in half precision: the decisions still agree
            assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.75
        else:
            assert_close(got, want, what=form)


def test_custom_op_builder_rejects_runtime_interventions_and_takes_2d_codebooks():
    rng = np.random.default_rng(5)
    C = rng.standard_normal((20, 6)).astype(np.float32)

    types = {"y": (TensorProto.FLOAT, [3, 6]), "ids": (TensorProto.INT64, [3, 1, 2]),
             "scores": (TensorProto.FLOAT, [3, 1, 2])}

    def model(extra_inputs=(), outputs=("y",)):
        node = helper.make_node("CodebookSnap", ["x", "C", "", "b", *extra_inputs], list(outputs), domain="ai.edgert", k=2)
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 6])] +
                              [helper.make_tensor_value_info(n, TensorProto.INT64, [3, 1, 2]) for n in extra_inputs if n],
                              [helper.make_tensor_value_info(o, *types[o]) for o in outputs],
                              [numpy_helper.from_array(C, "C"), numpy_helper.from_array(np.full(6, 0.5, np.float32), "b")])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.edgert", 1)])

    graph = convert(model())
    x = rng.standard_normal((3, 6)).astype(np.float32)
    from onnx.reference import ReferenceEvaluator
    want = ReferenceEvaluator(model(), new_ops=reference_ops()).run(None, {"x": x})[0]
    assert_close(Session(graph, threads=1).run({"x": x})["y"], want)
    with pytest.raises((UnsupportedOpError, ConversionError), match="interventions at run time"):
        convert(model(["override"]))
    with pytest.raises((UnsupportedOpError, ConversionError), match="scores"):
        convert(model(outputs=("y", "ids", "scores")))
    assert onnx.checker.check_model(model()) is None
