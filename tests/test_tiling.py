"""Tiled (sliding-window) inference: MONAI's windows and weights, streamed files, exact mode, budgets.

The oracle for the blended modes is written here, independently of edgert.runtime.tiling: plain
numpy loops over MONAI's window starts (``dense_patch_slices``), MONAI's importance map
(``compute_importance_map``), onnxruntime on each window, and the final division.
"""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from converters.convert import convert, convert_graph
from edgert.errors import BudgetError, InputError, ShapeError
from edgert.runtime import tiling as T
from edgert.runtime.prepare import with_input_shapes
from edgert.runtime.session import Session, load
from tests.helpers import assert_close

# ------------------------------------------------------------------------------------ models


def _w(rng, *shape):
    return (rng.standard_normal(shape) / math.sqrt(np.prod(shape[1:]))).astype(np.float32)


def unet(rank=2, up="resize", channels=2, classes=3, width=8, seed=0, head=None):
    """A small U-Net: conv, strided conv, conv, upsample (Resize or ConvTranspose), skip add, 1x1 head.
    Spatial dims are symbolic so onnxruntime takes any window."""
    rng = np.random.default_rng(seed)
    k3, k1, k2 = (3,) * rank, (1,) * rank, (2,) * rank
    pads = [1] * (2 * rank)
    inits = {"w1": _w(rng, width, channels, *k3), "b1": _w(rng, width), "w2": _w(rng, width, width, *k3),
             "b2": _w(rng, width), "w3": _w(rng, width, width, *k3), "b3": _w(rng, width),
             "w4": _w(rng, classes, width, *k1), "b4": _w(rng, classes)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=pads), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=pads, strides=[2] * rank),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], pads=pads), helper.make_node("Relu", ["c3"], ["r3"])]
    if up == "resize":
        inits["sc"] = np.array([1, 1] + [2] * rank, np.float32)
        nodes.append(helper.make_node("Resize", ["r3", "", "sc"], ["u"], mode="nearest"))
    else:
        inits["wt"], inits["bt"] = _w(rng, width, width, *k2), _w(rng, width)
        nodes.append(helper.make_node("ConvTranspose", ["r3", "wt", "bt"], ["u"], strides=[2] * rank))
    nodes += [helper.make_node("Add", ["u", "r1"], ["s"]), helper.make_node("Conv", ["s", "w4", "b4"], ["y"])]
    out = "y"
    if head == "global":  # a squeeze-excitation style gate: every voxel depends on the whole input
        nodes += [helper.make_node("GlobalAveragePool", ["y"], ["g"]), helper.make_node("Mul", ["y", "g"], ["z"])]
        out = "z"
    spatial = [f"s{a}" for a in range(rank)]
    graph = helper.make_graph(nodes, "unet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, *spatial])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, classes, *spatial])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def edgert_graph(model, window):
    graph, _ = convert_graph(model, input_shapes={"x": (1, model.graph.input[0].type.tensor_type.shape.dim[1].dim_value,
                                                         *window)})
    return graph


def ort_predictor(model):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": np.ascontiguousarray(x)})[0]


# ------------------------------------------------------------- the independent MONAI oracle


def monai_weights(roi, mode):
    """compute_importance_map: ones, or a product of 1-D Gaussians (sigma = roi / 8), floored at
    max(min, 1e-3)."""
    w = np.ones(roi, np.float64)
    if mode == "gaussian":
        w = np.ones((), np.float64)
        for n in roi:
            x = np.arange(n, dtype=np.float64) - (n - 1) / 2
            w = np.multiply.outer(w, np.exp(-x * x / (2 * (0.125 * n) ** 2)))
    return np.maximum(w, max(w.min(), 1e-3)).astype(np.float32)


def monai_starts(n, r, overlap):
    """dense_patch_slices along one axis, with _get_scan_interval's interval."""
    interval = r if r == n else max(int(r * (1 - overlap)), 1)
    count = 1
    for d in range(math.ceil(n / interval)):
        if d * interval + r >= n:
            count = d + 1
            break
    return [d * interval - max(d * interval + r - n, 0) for d in range(count)]


def sliding_window_oracle(predict, x, roi, overlap, mode):
    """sliding_window_inference, written out: pad, loop over windows, blend, divide, crop."""
    vol = x.shape[2:]
    pad = [((r - n) // 2, r - n - (r - n) // 2) if r > n else (0, 0) for n, r in zip(vol, roi)]
    xp = np.pad(x, [(0, 0), (0, 0)] + pad)
    image = xp.shape[2:]
    weights = monai_weights(roi, mode)
    out, count = None, np.zeros(image, np.float32)
    for start in itertools.product(*[monai_starts(n, r, overlap) for n, r in zip(image, roi)]):
        where = tuple(slice(s, s + r) for s, r in zip(start, roi))
        pred = np.stack([predict(xp[b:b + 1][(slice(None), slice(None), *where)])[0] for b in range(x.shape[0])])
        if out is None:
            out = np.zeros((x.shape[0], pred.shape[1], *image), np.float32)
        out[(slice(None), slice(None), *where)] += pred * weights
        count[where] += weights
    out /= count
    return out[(slice(None), slice(None), *[slice(b, b + n) for (b, _), n in zip(pad, vol)])]


def assert_relative(got, want, rel=1e-4):
    err = float(np.max(np.abs(got.astype(np.float64) - want)))
    scale = float(np.max(np.abs(want)))
    assert err <= rel * scale, f"max abs err {err:.3g} > {rel} x {scale:.3g}"


# ------------------------------------------------------------------------- windows, weights


@pytest.mark.arm
@pytest.mark.parametrize("roi", [(5,), (8, 8), (7, 12), (96, 96, 96), (4, 5, 6)])
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_importance_map_is_monais(roi, mode):
    got = T.importance_map(roi, mode)
    assert got.dtype == np.float32 and got.shape == roi
    np.testing.assert_allclose(got, monai_weights(roi, mode), rtol=2e-6, atol=0)


def test_gaussian_floor_is_applied_in_3d():
    w = T.importance_map((32, 32, 32), "gaussian")
    assert w.min() == np.float32(1e-3) and w.max() == pytest.approx(np.exp(-3 * 0.5 * (0.5 / 4) ** 2), rel=1e-5)


@pytest.mark.arm
@given(n=st.integers(1, 300), r=st.integers(1, 128), overlap=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9]))
def test_window_starts_are_monais(n, r, overlap):
    n = max(n, r)  # the scan runs over the padded image
    assert T.axis_starts(n, r, T.scan_interval((n,), (r,), overlap)[0]) == monai_starts(n, r, overlap)


def test_windows_cover_the_brats_volume_as_the_notes_count():
    # memory-and-boards.md 2.3: 96^3 at 0.25 overlap is 3x3x2 = 18 windows over 240x240x155.
    assert len(T.window_starts((240, 240, 155), (96, 96, 96), 0.25)) == 18
    assert len(T.window_starts((240, 240, 155), (64, 64, 64), 0.5)) == 7 * 7 * 4


# ------------------------------------------------------------- tiled == independent oracle

@pytest.fixture(scope="module")
def unet2d():
    model = unet(2)
    return model, edgert_graph(model, (32, 32)), ort_predictor(model)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_tiled_equals_independent_sliding_window_2d(unet2d, overlap, blend):
    _, graph, predict = unet2d
    x = np.random.default_rng(1).uniform(-1, 1, (1, 2, 75, 61)).astype(np.float32)
    plan, outs = T.tiled_run(graph, x, tile=(32, 24), overlap=overlap, blend=blend, threads=1)
    assert plan.roi == (32, 24) and len(plan.starts) > 4
    assert_relative(outs["y"], sliding_window_oracle(predict, x, (32, 24), overlap, blend))


def test_volume_off_the_stride_grid_is_padded_as_monai_does(unet2d):
    _, graph, predict = unet2d
    x = np.random.default_rng(2).uniform(-1, 1, (2, 2, 19, 70)).astype(np.float32)  # batch of 2, H < window
    plan, outs = T.tiled_run(graph, x, tile="20x32", overlap=0.25, blend="gaussian", threads=1)
    assert plan.pad == [(0, 1), (0, 0)] and outs["y"].shape == (2, 3, 19, 70)
    assert_relative(outs["y"], sliding_window_oracle(predict, x, (20, 32), 0.25, "gaussian"))
    # the padding itself, MONAI's (diff // 2 before, the rest after), on a window past the volume
    assert T.padding((19, 70), (32, 70)) == [(6, 7), (0, 0)]
    with pytest.raises(InputError, match="larger than the volume 19x70 on axis 0"):
        T.tiled_run(graph, x, tile="32", overlap=0.25)


def test_tiled_equals_independent_sliding_window_3d():
    model = unet(3, up="transpose", channels=4, width=4)
    graph = edgert_graph(model, (16, 16, 16))
    x = np.random.default_rng(3).uniform(-1, 1, (1, 4, 30, 27, 20)).astype(np.float32)
    plan, outs = T.tiled_run(graph, x, tile=(16, 16, 16), overlap=0.25, blend="gaussian", threads=1)
    assert len(plan.starts) == 3 * 2 * 2
    assert_relative(outs["y"], sliding_window_oracle(ort_predictor(model), x, (16, 16, 16), 0.25, "gaussian"))
    # exact mode: equal to the whole-volume run (volume on the stride grid)
    x = x[:, :, :30, :26, :20]
    plan, outs = T.tiled_run(graph, x, tile=(24, 24, 20), exact=True, threads=1)
    assert len(plan.starts) > 1
    whole = Session(with_input_shapes(graph, {"x": x.shape}), threads=1).run({"x": x})["y"]
    assert_close(outs["y"], whole, rtol=1e-6, atol=1e-6, what="exact 3-D")


# --------------------------------------------------------------------------------- exact mode

@pytest.mark.parametrize("up", ["resize", "transpose"])
def test_exact_mode_equals_the_whole_volume_run(up):
    model = unet(2, up=up, seed=4)
    graph = edgert_graph(model, (32, 32))
    x = np.random.default_rng(5).uniform(-1, 1, (1, 2, 90, 66)).astype(np.float32)
    plan, outs = T.tiled_run(graph, x, tile=(32, 32), exact=True, threads=1)
    assert plan.blend == "exact" and len(plan.starts) > 9 and min(plan.halo) >= 4
    whole = Session(with_input_shapes(graph, {"x": x.shape}), threads=1).run({"x": x})["y"]
    assert_close(outs["y"], whole, rtol=1e-6, atol=1e-6, what="exact vs whole volume")
    # ...while the blended modes only approximate it near window edges
    _, blended = T.tiled_run(graph, x, tile=(32, 32), overlap=0.25, blend="gaussian", threads=1)
    assert np.max(np.abs(blended["y"] - whole)) > 1e-3


def test_exact_mode_refuses_networks_that_mix_all_positions():
    graph = edgert_graph(unet(2, head="global"), (32, 32))
    x = np.zeros((1, 2, 64, 64), np.float32)
    with pytest.raises(InputError, match=r"bounded neighbourhood; \S+ \(GlobalAveragePool\) mixes all positions"):
        T.tiled_run(graph, x, tile="32", exact=True)


def test_exact_mode_window_too_small_for_the_halo(unet2d):
    _, graph, _ = unet2d
    with pytest.raises(InputError, match="no core"):
        T.tiled_run(graph, np.zeros((1, 2, 64, 64), np.float32), tile="12", exact=True)


def test_network_geometry_reads_stride_and_halo(unet2d):
    _, graph, _ = unet2d
    stride, halo = T.network_geometry(graph, "x", 2)
    # 3x3 pad 1 at 1x (1) + 3x3 s2 pad 1 at 1x (1) + 3x3 pad 1 at 2x (2) + nearest x2 from 2x (2) + 1x1 (0)
    assert stride == (2, 2) and halo == (6, 6)


# ------------------------------------------------------------------------------ files, atomicity

def test_npy_and_npz_outputs_stream_the_same_values(tmp_path, unet2d):
    _, graph, _ = unet2d
    x = np.random.default_rng(6).uniform(-1, 1, (1, 2, 70, 50)).astype(np.float32)
    np.save(tmp_path / "vol.npy", x)
    _, mem = T.tiled_run(graph, x, tile="32", overlap=0.5)
    T.tiled_run(graph, tmp_path / "vol.npy", tmp_path / "out.npy", tile="32", overlap=0.5)
    T.tiled_run(graph, tmp_path / "vol.npy", tmp_path / "out.npz", tile="32", overlap=0.5)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), mem["y"])
    with np.load(tmp_path / "out.npz") as z:
        assert list(z.keys()) == ["y"]
        np.testing.assert_array_equal(z["y"], mem["y"])


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_a_failing_run_leaves_no_output_and_no_temporary_file(tmp_path, unet2d, suffix):
    _, graph, _ = unet2d
    np.save(tmp_path / "vol.npy", np.zeros((1, 2, 96, 96), np.float32))
    before = set(os.listdir(tmp_path))

    def fail_midway(done, total):
        if done == total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.tiled_run(graph, tmp_path / "vol.npy", tmp_path / f"out{suffix}", tile="32", progress=fail_midway)
    assert set(os.listdir(tmp_path)) == before


def test_input_pages_are_given_back(tmp_path):
    x = np.arange(2 * 3 * 256 * 256, dtype=np.float32).reshape(2, 3, 256, 256)
    np.save(tmp_path / "v.npy", x)
    r = T.MappedNpy(tmp_path / "v.npy")
    np.testing.assert_array_equal(r.array, x)
    r.release()
    np.testing.assert_array_equal(r.array[1, 2, 100], x[1, 2, 100])  # still readable after release
    r.close()


# ------------------------------------------------------------------------------------- budgets

def test_auto_window_is_the_largest_that_fits_the_budget(unet2d):
    _, graph, _ = unet2d
    volume = (512, 512)
    small = T.plan_tiles(graph, "x", volume, (16, 16), baseline_bytes=0)
    big = T.plan_tiles(graph, "x", volume, (256, 256), baseline_bytes=0)
    budget = (small.need_bytes + big.need_bytes) // 2
    plan = T.plan_tiles(graph, "x", volume, "auto", budget_bytes=budget, baseline_bytes=0)
    assert plan.need_bytes <= budget and all(r % 2 == 0 for r in plan.roi)
    bigger = tuple(r + 2 for r in plan.roi)
    with pytest.raises(BudgetError, match="over the budget"):
        T.plan_tiles(graph, "x", volume, bigger, budget_bytes=budget, baseline_bytes=0)
    with pytest.raises(BudgetError, match="even the smallest window"):
        tiny = T.plan_tiles(graph, "x", volume, (2, 2), baseline_bytes=0)  # one stride: the smallest window
        T.plan_tiles(graph, "x", volume, "auto", budget_bytes=tiny.need_bytes - 1, baseline_bytes=0)


def test_auto_window_without_budget_covers_the_volume_rounded_to_the_stride(unet2d):
    _, graph, _ = unet2d
    plan = T.plan_tiles(graph, "x", (45, 30), "auto", baseline_bytes=0)
    assert plan.roi == (46, 30) and len(plan.starts) == 1 and plan.pad == [(0, 1), (0, 0)]


# -------------------------------------------------------------------------------------- errors

@pytest.mark.arm
@pytest.mark.parametrize("text", ["12x", "0x4", "axb", "4x4x4", "-8", ""])
def test_bad_tile_strings(text):
    with pytest.raises(InputError, match="bad --tile"):
        T.parse_tile(text, 2)


@pytest.mark.arm
def test_tile_strings():
    assert T.parse_tile("auto", 3) == "auto" and T.parse_tile(None, 3) == "auto"
    assert T.parse_tile("96", 3) == (96, 96, 96) and T.parse_tile("64x96x32", 3) == (64, 96, 32)


def test_clear_errors(unet2d):
    _, graph, _ = unet2d
    x = np.zeros((1, 2, 64, 64), np.float32)
    with pytest.raises(InputError, match="not a multiple of the network's stride 2x2"):
        T.tiled_run(graph, x, tile="33")
    with pytest.raises(InputError, match="overlap"):
        T.tiled_run(graph, x, tile="32", overlap=1.0)
    with pytest.raises(InputError, match="blend"):
        T.tiled_run(graph, x, tile="32", blend="linear")
    with pytest.raises(InputError, match="3 channels, the model takes 2"):
        T.tiled_run(graph, np.zeros((1, 3, 64, 64), np.float32), tile="32")
    with pytest.raises(InputError, match="exact mode needs the volume 63x64 on the network's stride grid"):
        T.tiled_run(graph, np.zeros((1, 2, 63, 64), np.float32), tile="32", exact=True)


def test_reinference_names_the_node_that_cannot_take_the_new_shape():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "shape"], ["y"])]
    graph = helper.make_graph(nodes, "baked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])],
                              [numpy_helper.from_array(_w(rng, 4, 2, 3, 3), "w"),
                               numpy_helper.from_array(np.array([1, 256], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    g, _ = convert_graph(model)
    with pytest.raises(ShapeError) as info:
        with_input_shapes(g, {"x": (1, 2, 16, 16)})
    assert info.value.op == "Reshape" and "x=1x2x16x16" in str(info.value)
    with pytest.raises(Exception, match="no graph input"):
        with_input_shapes(g, {"nope": (1, 2, 16, 16)})


def test_load_with_input_shapes(tmp_path, unet2d):
    model, _, predict = unet2d
    onnx.save(model, tmp_path / "m.onnx")
    convert(tmp_path / "m.onnx", tmp_path / "m.ert", input_shapes={"x": (1, 2, 32, 32)})
    sess = load(tmp_path / "m.ert", input_shapes={"x": (1, 2, 48, 40)}, threads=1)
    assert sess.inputs[0].shape == (1, 2, 48, 40) and sess.outputs[0].shape == (1, 3, 48, 40)
    x = np.random.default_rng(7).uniform(-1, 1, (1, 2, 48, 40)).astype(np.float32)
    assert_close(sess.run({"x": x})["y"], predict(x), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ CLI

@pytest.fixture()
def cli_files(tmp_path, unet2d):
    model, _, _ = unet2d
    onnx.save(model, tmp_path / "m.onnx")
    convert(tmp_path / "m.onnx", tmp_path / "m.ert", input_shapes={"x": (1, 2, 32, 32)})
    x = np.random.default_rng(8).uniform(-1, 1, (1, 2, 640, 600)).astype(np.float32)
    np.save(tmp_path / "vol.npy", x)
    return tmp_path, x


def test_cli_tiles_when_the_whole_volume_plan_is_over_budget(cli_files, unet2d):
    from edgert.cli import main
    tmp, x = cli_files
    _, graph, predict = unet2d
    T.tiled_run(graph, x[:, :, :64, :64], tile="32")  # kernels loaded first: the budget is relative to now
    budget = T.process_rss() + 16 * 2 ** 20  # the whole 640x600 plan needs ~40 MiB on top
    assert not T.whole_volume_fits(graph, "x", x.shape, budget)[0]
    result = CliRunner().invoke(main, ["run", str(tmp / "m.ert"), "--input", f"x={tmp / 'vol.npy'}", "--output",
                                       str(tmp / "out.npz"), "--memory-budget", str(budget), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "tiling (the whole-volume plan needs" in result.output and "gaussian, overlap 0.25" in result.output
    with np.load(tmp / "out.npz") as z:
        got = z["y"]
    plan_roi = tuple(int(v) for v in result.output.split("windows of ")[1].split(" ")[0].split("x"))
    assert_relative(got, sliding_window_oracle(predict, x, plan_roi, 0.25, "gaussian"))


def test_cli_tile_options_and_untiled_run_at_the_files_shape(cli_files):
    from edgert.cli import main
    tmp, _ = cli_files
    runner = CliRunner()
    result = runner.invoke(main, ["run", str(tmp / "m.ert"), "--input", f"x={tmp / 'vol.npy'}", "--output",
                                  str(tmp / "exact.npy"), "--tile", "64x64", "--exact", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "exact, halo 6x6" in result.output
    result = runner.invoke(main, ["run", str(tmp / "m.ert"), "--input", f"x={tmp / 'vol.npy'}", "--output",
                                  str(tmp / "whole.npz"), "--threads", "1"])
    assert result.exit_code == 0 and "tiling" not in result.output, result.output
    with np.load(tmp / "whole.npz") as z:
        assert_close(np.load(tmp / "exact.npy"), z["y"], rtol=1e-6, atol=1e-6)
    result = runner.invoke(main, ["run", str(tmp / "m.ert"), "--input", f"x={tmp / 'vol.npy'}", "--tile", "31"])
    assert result.exit_code == 8 and "not a multiple of the network's stride" in result.output
    result = runner.invoke(main, ["run", str(tmp / "m.ert"), "--input", f"x={tmp / 'vol.npy'}", "--tile", "9x"])
    assert result.exit_code == 8 and "bad --tile" in result.output
    result = runner.invoke(main, ["run", str(tmp / "m.ert"), "--input", f"x={tmp / 'vol.npy'}", "--tile", "64",
                                  "--overlap", "1.5"])
    assert result.exit_code == 8 and "--overlap" in result.output
