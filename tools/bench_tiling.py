"""Tiled volume inference (issue 9 B): how far sliding windows are from the whole-volume run, and the
peak memory of a BraTS-size run measured from outside the process.

    python tools/bench_tiling.py --work /tmp/bench_tiling [--skip-brats] [--threads 1]

Part 1, accuracy, on a medium volume (the BraTS-config network of tools/build_unet3d.py, seeded
weights, a smooth synthetic 4-channel volume): for every overlap and blend mode, edgert's tiled
output against (a) edgert's whole-volume run: mean and max abs difference of the class
probabilities and the Dice of the thresholded (p > 0.5) masks, mean over classes; (b) the same
sliding-window algorithm computed independently (onnxruntime on each window, numpy blending with
MONAI's weights): max relative error (the acceptance bar is 1e-4). Exact mode is reported when the
network allows it (not with InstanceNorm/GroupNorm, whose statistics span the whole volume).

Part 2, memory: ``edgert run`` on a 4 x 155 x 240 x 240 volume with ``--memory-budget 1GiB``, peak
RSS of the whole process from ``/usr/bin/time -v``; next to it the whole-volume plan (arena at
160 x 240 x 240, the nearest size the network takes) and onnxruntime's peak RSS on the whole volume.
Timings are medians over windows, edgert and onnxruntime in the same run (1 thread each).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgert.boards import format_bytes
from edgert.runtime import tiling as T

MIB = 1 << 20


def smooth_volume(shape, seed=0):
    """A smooth synthetic multi-channel volume (sums of random low-frequency waves plus a little
    noise): closer to an MRI than white noise, so thresholded masks have extended regions."""
    rng = np.random.default_rng(seed)
    _, C, *spatial = shape
    out = np.lib.format.open_memmap(str(shape_path(shape, seed)), mode="w+", dtype=np.float32, shape=tuple(shape))
    grids = [np.linspace(0, 1, n, dtype=np.float32) for n in spatial]
    waves = [(rng.uniform(1, 4, 3), rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.5, 1.0)) for _ in range(C * 4)]
    for d0 in range(0, spatial[0], 16):
        d = grids[0][d0:d0 + 16][:, None, None]
        h, w = grids[1][None, :, None], grids[2][None, None, :]
        for c in range(C):
            acc = 0.1 * rng.standard_normal((len(d), spatial[1], spatial[2]), dtype=np.float32)
            for (f, p, a) in waves[c * 4:(c + 1) * 4]:
                acc += a * np.sin(2 * np.pi * f[0] * d + p[0]) * np.sin(2 * np.pi * f[1] * h + p[1]) \
                    * np.sin(2 * np.pi * f[2] * w + p[2])
            out[0, c, d0:d0 + 16] = acc
    out.flush()
    return out


_WORK = [Path("/tmp")]


def shape_path(shape, seed):
    return _WORK[0] / f"volume_{'x'.join(map(str, shape))}_{seed}.npy"


def monai_oracle(predict, x, roi, overlap, mode):
    """The sliding window written out independently of edgert (as tests/test_tiling.py does)."""
    vol = x.shape[2:]
    pad = [((r - n) // 2, r - n - (r - n) // 2) if r > n else (0, 0) for n, r in zip(vol, roi)]
    xp = np.pad(x, [(0, 0), (0, 0)] + pad)
    image = xp.shape[2:]
    w = np.ones((), np.float64)
    for n in roi:
        t = np.arange(n, dtype=np.float64) - (n - 1) / 2
        w = np.multiply.outer(w, np.exp(-t * t / (2 * (0.125 * n) ** 2)) if mode == "gaussian" else np.ones(n))
    w = np.maximum(w, max(w.min(), 1e-3)).astype(np.float32)
    starts = []
    for n, r in zip(image, roi):
        i = r if r == n else max(int(r * (1 - overlap)), 1)
        count = next((d + 1 for d in range(math.ceil(n / i)) if d * i + r >= n), 1)
        starts.append([d * i - max(d * i + r - n, 0) for d in range(count)])
    out, cnt, seconds = None, np.zeros(image, np.float32), []
    for s in itertools.product(*starts):
        where = tuple(slice(a, a + r) for a, r in zip(s, roi))
        t0 = time.perf_counter()
        pred = predict(np.ascontiguousarray(xp[(slice(None), slice(None), *where)]))
        seconds.append(time.perf_counter() - t0)
        if out is None:
            out = np.zeros((x.shape[0], pred.shape[1], *image), np.float32)
        out[(slice(None), slice(None), *where)] += pred * w
        cnt[where] += w
    out /= cnt
    return out[(slice(None), slice(None), *[slice(b, b + n) for (b, _), n in zip(pad, vol)])], seconds


def dice(a, b):
    inter, total = np.logical_and(a, b).sum(), a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * inter / total


def accuracy(work, threads, volume_shape, roi, model="brats"):
    import onnxruntime as ort

    from edgert.ir.format import read_ert
    from edgert.runtime.prepare import with_input_shapes
    from edgert.runtime.session import Session
    ert, onnx_path = build(work, "brats", (1, 4, *roi)) if model == "brats" else plain_unet3d(work, roi)
    x = np.asarray(smooth_volume(volume_shape, seed=1))
    graph = read_ert(ert)
    t0 = time.perf_counter()
    whole = Session(with_input_shapes(graph, {"volume": x.shape}), threads=threads).run({"volume": x})
    whole = whole["probabilities"]
    whole_s = time.perf_counter() - t0
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    predict = lambda w: sess.run(None, {"volume": w})[0]
    win = Session(with_input_shapes(graph, {"volume": (1, 4, *roi)}), threads=threads)
    ours = []
    for _ in range(3):
        t0 = time.perf_counter()
        win.run({"volume": np.ascontiguousarray(x[:, :, :roi[0], :roi[1], :roi[2]])})
        ours.append(time.perf_counter() - t0)
    rows = []
    settings = [("gaussian", 0.0), ("gaussian", 0.25), ("gaussian", 0.5), ("constant", 0.25), ("constant", 0.5)]
    for blend, overlap in settings + ([("exact", None)] if model != "brats" else []):
        t0 = time.perf_counter()
        # exact windows need twice the halo (20 voxels here) on top of a core: 64^3 instead of the roi
        tile = tuple(min(64, n) for n in volume_shape[2:]) if blend == "exact" else roi
        plan, outs = T.tiled_run(ert, x, tile=tile, overlap=overlap or 0.0, blend="constant" if blend == "exact" else blend,
                                 exact=blend == "exact", threads=threads)
        tiled_s = time.perf_counter() - t0
        got = outs["probabilities"]
        ref, ort_seconds = (whole, [np.nan]) if blend == "exact" else monai_oracle(predict, x, roi, overlap, blend)
        diff = np.abs(got.astype(np.float64) - whole)
        dices = [dice(got[0, c] > 0.5, whole[0, c] > 0.5) for c in range(got.shape[1])]
        rel = float(np.max(np.abs(got.astype(np.float64) - ref)) / np.max(np.abs(ref)))
        rows.append({"blend": blend, "overlap": overlap, "windows": f"{len(plan.starts)} x {'x'.join(map(str, plan.roi))}",
                     "mean_abs": float(diff.mean()),
                     "max_abs": float(diff.max()), "dice": float(np.mean(dices)), "dice_min": float(np.min(dices)),
                     "rel_err_vs_independent": rel, "tiled_s": tiled_s,
                     "ort_window_median_s": float(np.median(ort_seconds))})
        print(json.dumps(rows[-1]), flush=True)
    return {"model": model, "volume": list(volume_shape), "roi": list(roi), "whole_s": whole_s, "rows": rows,
            "edgert_window_median_s": float(np.median(ours)),
            "ort_window_median_s": float(np.nanmedian([r["ort_window_median_s"] for r in rows]))}


def plain_unet3d(work, roi, seed=0, width=16, classes=3):
    """A U-Net without normalisation (two stride-2 levels, ConvTranspose up, additive skips,
    Softmax): its windows differ from the whole volume only near window borders, and exact mode
    applies. Returns (.ert, .onnx) paths."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from converters.convert import convert
    rng = np.random.default_rng(seed)
    inits, nodes, count = [], [], [0]

    def const(value):
        count[0] += 1
        inits.append(numpy_helper.from_array(value.astype(np.float32), f"c{count[0]}"))
        return f"c{count[0]}"

    def op(kind, ins, **attrs):
        count[0] += 1
        nodes.append(helper.make_node(kind, ins, [f"t{count[0]}"], **attrs))
        return f"t{count[0]}"

    def conv(x, cin, cout, k=3, stride=1):
        w = rng.standard_normal((cout, cin, k, k, k)) * np.sqrt(2.0 / (cin * k ** 3))
        return op("Relu", [op("Conv", [x, const(w), const(0.1 * rng.standard_normal(cout))], pads=[k // 2] * 6,
                              strides=[stride] * 3)])

    def up(x, cin, cout):
        w = rng.standard_normal((cin, cout, 2, 2, 2)) * np.sqrt(2.0 / cin)
        return op("ConvTranspose", [x, const(w), const(np.zeros(cout))], strides=[2, 2, 2])

    s1 = conv(conv("volume", 4, width), width, width)
    s2 = conv(conv(s1, width, 2 * width, stride=2), 2 * width, 2 * width)
    h = conv(conv(s2, 2 * width, 4 * width, stride=2), 4 * width, 4 * width)
    h = conv(op("Add", [up(h, 4 * width, 2 * width), s2]), 2 * width, 2 * width)
    h = conv(op("Add", [up(h, 2 * width, width), s1]), width, width)
    w = rng.standard_normal((classes, width, 1, 1, 1)) * np.sqrt(2.0 / width)
    logits = op("Conv", [h, const(w), const(np.zeros(classes))])
    nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    graph = helper.make_graph(nodes, "plain_unet3d",
                              [helper.make_tensor_value_info("volume", TensorProto.FLOAT, [1, 4, "D", "H", "W"])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                                             [1, classes, "D", "H", "W"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = work / f"plain_unet3d_{'x'.join(map(str, roi))}"
    onnx.save(model, path.with_suffix(".onnx"))
    convert(path.with_suffix(".onnx"), path.with_suffix(".ert"), input_shapes={"volume": (1, 4, *roi)})
    return path.with_suffix(".ert"), path.with_suffix(".onnx")


def build(work, config, shape):
    out = work / f"unet3d_{config}_{'x'.join(map(str, shape[2:]))}"
    if not out.with_suffix(".ert").exists():
        subprocess.run([sys.executable, str(ROOT / "tools/build_unet3d.py"), "--config", config, "--out", str(out),
                        "--shape", ",".join(map(str, shape))], check=True, stdout=subprocess.DEVNULL)
    return out.with_suffix(".ert"), out.with_suffix(".onnx")


def peak_rss(cmd):
    """Run ``cmd`` under /usr/bin/time -v; returns (peak RSS bytes, seconds, stdout)."""
    t0 = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr[-3000:]}")
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr).group(1))
    return kib * 1024, seconds, res.stdout


ORT_WHOLE = """
import sys, numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = int(sys.argv[3])
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2], mmap_mode="r")
full = np.zeros((1, 4, 160, 240, 240), np.float32); full[:, :, :x.shape[2]] = x
y = s.run(None, {"volume": full})[0]
print(y.shape, float(y.mean()))
"""


def brats(work, threads, budget="1GiB"):
    ert, onnx_path = build(work, "brats", (1, 4, 160, 240, 240))
    vol = shape_path((1, 4, 155, 240, 240), 2)
    if not vol.exists():
        smooth_volume((1, 4, 155, 240, 240), seed=2)
    info = subprocess.run([sys.executable, "-m", "edgert.cli", "inspect", str(ert), "--json", "--threads", "1"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    whole_arena = json.loads(info.stdout)["memory"]["arena_bytes"]
    out = work / "brats_out.npz"
    cmd = [sys.executable, "-m", "edgert.cli", "run", str(ert), "--input", f"volume={vol}", "--output", str(out),
           "--memory-budget", budget, "--threads", str(threads)]
    warm = shape_path((1, 4, 40, 48, 48), 3)  # warm the kernel cache on a small volume first:
    if not warm.exists():                       # compiling takes memory a warm board does not spend
        smooth_volume((1, 4, 40, 48, 48), seed=3)
    peak_rss(cmd[:5] + ["--input", f"volume={warm}", "--tile", "24", "--threads", str(threads)])
    rss, seconds, stdout = peak_rss(cmd)
    print(stdout, flush=True)
    plan_line = next(line for line in stdout.splitlines() if line.startswith("tiling"))
    ort_rss, ort_seconds, _ = peak_rss([sys.executable, "-c", ORT_WHOLE, str(onnx_path), str(vol), str(threads)])
    return {"edgert_peak_rss": rss, "edgert_seconds": seconds, "plan": plan_line, "whole_arena": whole_arena,
            "ort_whole_peak_rss": ort_rss, "ort_whole_seconds": ort_seconds, "budget": budget}


MODEL_TEXT = {"brats": "the BraTS-config reversible MBConv U-Net of tools/build_unet3d.py (seeded weights; "
                        "InstanceNorm, so every window normalises with its own statistics)",
              "plain": "a U-Net without normalisation (tools/bench_tiling.py plain_unet3d: 2 stride-2 levels, "
                       "ConvTranspose up, additive skips, Softmax), where windows differ only near their borders"}


def markdown(accs, mem, command):
    lines = ["## Tiled volume inference (issue 9, part B)", "", f"Command: `{command}`", ""]
    for acc in accs:
        lines += [f"Accuracy, {MODEL_TEXT[acc['model']]}, on a {'x'.join(map(str, acc['volume'][2:]))} x 4-channel "
                  f"smooth synthetic volume, {'x'.join(map(str, acc['roi']))} windows. Differences are tiled vs "
                  "edgert's whole-volume run (class probabilities); Dice of the p > 0.5 masks, mean (min) over "
                  "classes; the last column is the max error relative to the same sliding window computed "
                  "independently (onnxruntime per window + numpy MONAI blending; acceptance bar 1e-4), and for "
                  "exact mode relative to the whole-volume run.", "",
                  "| blend | overlap | windows | mean abs diff | max abs diff | Dice mean (min) | rel. err vs independent |",
                  "|---|---|---|---|---|---|---|"]
        for r in acc["rows"]:
            lines.append(f"| {r['blend']} | {r['overlap'] if r['overlap'] is not None else 'halo'} | {r['windows']} | "
                         f"{r['mean_abs']:.2e} | {r['max_abs']:.3g} | {r['dice']:.4f} ({r['dice_min']:.4f}) | "
                         f"{r['rel_err_vs_independent']:.1e} |")
        lines += ["", f"One {'x'.join(map(str, acc['roi']))} window, 1 thread, median: edgert "
                  f"{acc['edgert_window_median_s'] * 1e3:.0f} ms, onnxruntime {acc['ort_window_median_s'] * 1e3:.0f} ms "
                  f"({acc['edgert_window_median_s'] / acc['ort_window_median_s']:.2f}x).", ""]
    if mem:
        plan_text = re.search(r"(\d+ windows of .*)$", mem["plan"]).group(1)
        lines += ["BraTS-size volume (1 x 4 x 155 x 240 x 240 fp32, 136 MiB), `edgert run ... --memory-budget "
                  f"{mem['budget']}`, peak RSS of the whole process from `/usr/bin/time -v` (warm kernel cache):", "",
                  "| what | peak memory | time |", "|---|---|---|",
                  f"| edgert tiled run ({plan_text}) | "
                  f"**{format_bytes(mem['edgert_peak_rss'])}** "
                  f"(RSS) | {mem['edgert_seconds']:.0f} s |",
                  f"| edgert whole-volume plan (160 x 240 x 240, arena from `edgert inspect`) | "
                  f"{format_bytes(mem['whole_arena'])} (arena alone) | - |",
                  f"| onnxruntime, whole volume padded to 160 x 240 x 240 | {format_bytes(mem['ort_whole_peak_rss'])} "
                  f"(RSS) | {mem['ort_whole_seconds']:.0f} s |", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_tiling"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--volume", default="64x96x96", help="accuracy volume DxHxW")
    ap.add_argument("--roi", default="48x48x48", help="accuracy window DxHxW")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-brats", action="store_true")
    ap.add_argument("--from-json", type=Path, help="only rewrite the markdown from a previous run's tiling.json")
    args = ap.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        print(markdown(saved["accuracy"], saved["memory"], saved["command"]))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    _WORK[0] = args.work
    volume, roi = (1, 4, *map(int, args.volume.split("x"))), tuple(map(int, args.roi.split("x")))
    acc = [] if args.skip_accuracy else [accuracy(args.work, args.threads, volume, roi, model)
                                         for model in ("plain", "brats")]
    mem = None if args.skip_brats else brats(args.work, args.threads)
    command = "python tools/bench_tiling.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(acc, mem, command.strip())
    (args.work / "tiling.md").write_text(text + "\n")
    (args.work / "tiling.json").write_text(json.dumps({"accuracy": acc, "memory": mem, "command": command.strip()},
                                                      indent=2))
    print(text)


if __name__ == "__main__":
    main()
