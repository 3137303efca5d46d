"""Sparse inference end to end: pruning, the sparsify pass, .ert size, whole models sparse vs dense vs
onnxruntime, the CLI, and the two real sparse TFLite models."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from converters.convert import convert, convert_graph
from converters.prune import WARNING, parse_block, prune_file, prune_matrix, prune_onnx_model
from converters.zoo.mobilenet import mobilenet_v2
from edgert.cli import main
from edgert.errors import InputError
from edgert.runtime.session import load
from tests.helpers import assert_close
from tests.zoo_fixtures import mediapipe_models  # noqa: F401


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("block", [(1, 1), (1, 4), (4, 1), (2, 2)])
def test_prune_matrix_hits_the_sparsity_and_keeps_the_largest(sparsity, block):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((32, 48)).astype(np.float32)
    p = prune_matrix(w, sparsity, block)
    # round(sparsity * blocks) blocks are dropped: off by at most half a block
    assert abs((1 - np.count_nonzero(p) / p.size) - sparsity) <= 0.5 * block[0] * block[1] / p.size + 1e-12
    kept = p != 0
    np.testing.assert_array_equal(p[kept], w[kept])
    if block == (1, 1) and sparsity:
        assert np.abs(w[~kept]).max() <= np.abs(w[kept]).min()
    bm, bk = block  # every block is all zero or all kept
    blocks = kept.reshape(32 // bm, bm, 48 // bk, bk)
    assert np.all(blocks.all(axis=(1, 3)) | ~blocks.any(axis=(1, 3)))


def test_parse_block():
    assert parse_block("4x1") == (4, 1) and parse_block(None) == (1, 1)
    with pytest.raises(InputError):
        parse_block("4by1")


@pytest.fixture(scope="module")
def small_mobilenet(tmp_path_factory):
    """MobileNetV2 at 96x96, width 0.5, dense and 90% pruned (ONNX)."""
    d = tmp_path_factory.mktemp("mnv2")
    model = mobilenet_v2(size=96, width=0.5, num_classes=100, seed=3)
    (d / "dense.onnx").write_bytes(model.SerializeToString())
    report = prune_onnx_model(model, 0.9)
    assert report.layers and all(abs(after - 0.9) < 0.01 for *_, after in report.layers)
    (d / "p90.onnx").write_bytes(model.SerializeToString())
    return d


def test_sparsify_pass_stores_pruned_layers_sparse_and_the_file_shrinks(small_mobilenet):
    dense = convert(small_mobilenet / "dense.onnx", small_mobilenet / "dense.ert")
    sparse = convert(small_mobilenet / "p90.onnx", small_mobilenet / "p90.ert")
    assert "SparseConv1x1" not in dense.ops
    assert sparse.ops["SparseConv1x1"] == dense.ops["Conv"] - sparse.ops["Conv"] + dense.ops.get("FullyConnected", 0)
    assert sparse.passes["sparsify"] == sparse.ops["SparseConv1x1"]
    assert sparse.file_bytes < 0.35 * dense.file_bytes


@pytest.mark.parametrize("mode", ["auto", "always", "never"])
def test_pruned_mobilenet_matches_onnxruntime(small_mobilenet, mode):
    ort = pytest.importorskip("onnxruntime")
    if not (small_mobilenet / "p90.ert").exists():
        convert(small_mobilenet / "p90.onnx", small_mobilenet / "p90.ert")
    x = np.random.default_rng(1).random((1, 3, 96, 96)).astype(np.float32)
    s = ort.InferenceSession(str(small_mobilenet / "p90.onnx"), providers=["CPUExecutionProvider"])
    want = s.run(None, {s.get_inputs()[0].name: x})[0]
    sess = load(small_mobilenet / "p90.ert", threads=1, options={"sparse": mode})
    got = next(iter(sess.run({sess.inputs[0].name: x}).values()))
    assert_close(got, want, rtol=1e-4, atol=1e-4, what=mode)
    kernels = [n["kernel"] for n in sess.describe()["nodes"] if n["op"] == "SparseConv1x1"]
    if mode == "always":
        assert all(k.startswith("f32_spmm_rows") for k in kernels)
    if mode == "never":
        assert not any(k.startswith("f32_spmm_rows") for k in kernels)


def test_mask_product_is_folded_then_stored_sparse():
    """A weight x mask product (torch.nn.utils.prune without remove) becomes zeros, then CSR."""
    import onnx
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 32, 1, 1)).astype(np.float32)
    mask = (rng.random(w.shape) > 0.8).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Mul", ["w_orig", "mask"], ["w"]), helper.make_node("Conv", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 32, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 16, 8, 8])],
        [numpy_helper.from_array(w, "w_orig"), numpy_helper.from_array(mask, "mask")])
    graph, _ = convert_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert [n.op for n in graph.nodes] == ["SparseConv1x1"]


def test_prune_ert_in_ert_out(small_mobilenet, tmp_path):
    src = small_mobilenet / "dense.ert"
    if not src.exists():
        convert(small_mobilenet / "dense.onnx", src)
    report = prune_file(src, tmp_path / "p80.ert", 0.8, "4x1")
    assert report.bytes_out < 0.5 * report.bytes_in
    sess = load(tmp_path / "p80.ert", threads=1)
    blocks = [n.attrs["block"] for n in sess.graph.nodes if n.op == "SparseConv1x1"]
    assert blocks and all(b == [4, 1] for b in blocks[:-1])  # the classifier (100 rows) too: 100 % 4 == 0
    x = np.random.default_rng(2).random((1, 3, 96, 96)).astype(np.float32)
    dense = load(tmp_path / "p80.ert", threads=1, options={"sparse": "never"}).run({sess.inputs[0].name: x})
    sparse = load(tmp_path / "p80.ert", threads=1, options={"sparse": "always"}).run({sess.inputs[0].name: x})
    for k in dense:
        assert_close(sparse[k], dense[k], what=k)


def test_cli_prune_warns_and_inspect_shows_the_choice(small_mobilenet, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERT_SPARSE", "auto")  # --sparse sets it for the process: restored afterwards
    runner = CliRunner()
    r = runner.invoke(main, ["prune", str(small_mobilenet / "dense.onnx"), "-o", str(tmp_path / "p.onnx"),
                             "--sparsity", "0.95"])
    assert r.exit_code == 0, r.output
    assert WARNING in r.output  # click's runner mixes stderr in
    r = runner.invoke(main, ["convert", str(tmp_path / "p.onnx"), "-o", str(tmp_path / "p.ert"), "--quiet"])
    assert r.exit_code == 0, r.output
    for flag, kernel in (("on", "f32_spmm_rows"), ("off", "f32_gemm_rows")):
        r = runner.invoke(main, ["inspect", str(tmp_path / "p.ert"), "--threads", "1", "--sparse", flag])
        assert r.exit_code == 0, r.output
        rows = [line for line in r.output.splitlines() if "SparseConv1x1" in line]
        assert rows and all("sparsity 95" in line for line in rows[:-1])
        assert any(kernel in line for line in rows)


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["face_detection_full_range_sparse", "pose_detection"])
def test_real_sparse_tflite_models_sparse_equals_dense_and_litert(mediapipe_models, stem, tmp_path):  # noqa: F811
    from tests.tflite_harness import make_inputs, run_litert
    path = mediapipe_models[stem]
    report = convert(path, tmp_path / "m.ert")
    assert report.ops.get("SparseConv1x1", 0) >= 30
    sparse = load(tmp_path / "m.ert", threads=1, options={"sparse": "always"})
    dense = load(tmp_path / "m.ert", threads=1, options={"sparse": "never"})
    auto = load(tmp_path / "m.ert", threads=1)
    chosen = [n["kernel"] for n in auto.describe()["nodes"] if n["op"] == "SparseConv1x1"]
    assert any(k.startswith("f32_spmm_rows") for k in chosen)
    feeds = make_inputs([(i.name, i.shape) for i in sparse.inputs], "random")
    a, b = sparse.run(feeds), dense.run(feeds)
    for k in a:
        assert_close(a[k], b[k], rtol=1e-4, atol=1e-4, what=k)
    theirs = run_litert(path, feeds)
    for k, ref in theirs.items():
        assert_close(a[k], ref, rtol=1e-4, atol=1e-4, what=f"{k} vs LiteRT")


def test_sparse_threshold_option(small_mobilenet, tmp_path):
    """90%-sparse layers stay dense below a 0.95 threshold; the CLI's --sparse-threshold reaches the pass."""
    report = convert(small_mobilenet / "p90.onnx", tmp_path / "t95.ert", sparse_threshold=0.95)
    assert "SparseConv1x1" not in report.ops and report.passes["sparsify"] == 0
    r = CliRunner().invoke(main, ["convert", str(small_mobilenet / "p90.onnx"), "-o", str(tmp_path / "t.ert"),
                                  "--quiet", "--sparse-threshold", "0.3"])
    assert r.exit_code == 0, r.output
    assert "SparseConv1x1" in r.output


@pytest.mark.arm
def test_two_threads_bands_and_reuse_gap(tmp_path, monkeypatch):
    """At 2 threads the sparse 1x1s split large maps by pixels and small ones by output channels, the
    memory plan keeps their shared inputs from the depthwise outputs (planner.REUSE_GAP), and the
    result is the 1-thread one. MobileNetV2 at 160x160 pruned to 75%, as pose_detection's layers."""
    from edgert.runtime.planner import REUSE_GAP, check_no_overlap
    from tests.test_planner import check_reuse_gap
    model = mobilenet_v2(size=160, width=1.0, num_classes=10, seed=5)
    prune_onnx_model(model, 0.75)
    (tmp_path / "p75.onnx").write_bytes(model.SerializeToString())
    convert(tmp_path / "p75.onnx", tmp_path / "p75.ert")
    one = load(tmp_path / "p75.ert", threads=1, options={"sparse": "always"})
    two = load(tmp_path / "p75.ert", threads=2, options={"sparse": "always"})
    reasons = [n["reason"] for n in two.describe()["nodes"] if n["kernel"] == "f32_spmm_rows_mt"]
    assert any("bands of pixels" in r for r in reasons) and any("bands of output channels" in r for r in reasons)
    assert two.plan.notes["reuse_gap"] == REUSE_GAP and "reuse gap" in two.plan.strategy
    assert sum(b.shared_read for b in two.plan.buffers) and sum(b.band_write for b in two.plan.buffers)
    check_no_overlap(two.plan)
    check_reuse_gap(two.plan, REUSE_GAP)
    assert one.plan.notes == {}
    monkeypatch.setenv("EDGERT_SPARSE", "auto")  # restored after the test: --sparse sets it for the process
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "p75.ert"), "--threads", "2", "--sparse", "on"])
    assert r.exit_code == 0, r.output
    assert f"not reused by a band-written output for {REUSE_GAP} steps" in r.output
    x = {one.inputs[0].name: np.random.default_rng(2).random((1, 3, 160, 160)).astype(np.float32)}
    for k, v in one.run(x).items():
        assert_close(two.run(x)[k], v, rtol=1e-5, atol=1e-5, what=k)
