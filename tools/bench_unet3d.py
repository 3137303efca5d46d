"""Full BraTS-size volume through the reversible-MBConv 3-D U-Net: peak RSS of edgert (tiled, within a
memory budget) and of onnxruntime (whole volume), each in its own child process and measured from
outside it (the parent's ``os.wait4`` resource usage), next to the memory plans edgert makes for the
whole volume with and without its reducers. One thread each (the machine is shared).

    python tools/bench_unet3d.py --work /tmp/unet --write

Steps: build the model (tools/build_unet3d.py) and the volume (tools/make_volume.py) when missing;
plan the untiled padded volume (no reuse / greedy without reducers / with each reducer); run edgert
``tiled_run`` on the .npy (memory-mapped) under ``--budget``; run onnxruntime on the padded volume;
compare the two label maps (argmax over classes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.build_unet3d import CONFIGS, INPUT, build_unet3d

EDGERT_CHILD = """
import json, sys, time
from edgert.runtime.tiling import tiled_run
t0 = time.perf_counter()
plan, _ = tiled_run(sys.argv[1], sys.argv[2], output=sys.argv[3], tile=sys.argv[4], threads=1,
                    memory_budget=sys.argv[5], overlap=float(sys.argv[6]))
print(json.dumps({"seconds": time.perf_counter() - t0, "roi": list(plan.roi), "windows": len(plan.starts),
                  "plan": plan.describe(), "arena_bytes": plan.arena_bytes}))
"""

UNTILED_CHILD = """
import json, sys, time
import numpy as np, edgert
sess = edgert.load(sys.argv[1], threads=1)
x = np.load(sys.argv[2], mmap_mode="r")
pad = int(sys.argv[4]) - x.shape[2]
xp = np.pad(x, ((0, 0), (0, 0), (pad // 2, pad - pad // 2), (0, 0), (0, 0)))
t0 = time.perf_counter()
y = sess.run({sess.inputs[0].name: xp})[sess.outputs[0].name]
seconds = time.perf_counter() - t0
np.save(sys.argv[3], y[:, :, pad // 2:pad // 2 + x.shape[2]])
print(json.dumps({"seconds": seconds, "arena_bytes": sess.plan.arena_bytes}))
"""

ORT_CHILD = """
import json, sys, time
import numpy as np, onnxruntime as ort
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1; opts.inter_op_num_threads = 1
sess = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2], mmap_mode="r")
pad = int(sys.argv[4]) - x.shape[2]
xp = np.pad(x, ((0, 0), (0, 0), (pad // 2, pad - pad // 2), (0, 0), (0, 0)))
t0 = time.perf_counter()
y = sess.run(None, {sess.get_inputs()[0].name: xp})[0]
seconds = time.perf_counter() - t0
np.save(sys.argv[3], y[:, :, pad // 2:pad // 2 + x.shape[2]])
print(json.dumps({"seconds": seconds}))
"""


def run_child(code, *args):
    """Run ``python -c code args`` and return (its JSON line, peak RSS in bytes from wait4)."""
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                 "NUMBA_NUM_THREADS": "1"})
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode}): {out.decode()[-2000:]}")
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss * 1024


def plans(onnx_model, shape):
    """Arena bytes of the untiled plan at ``shape``: no reuse at all, greedy without the reducers,
    then adding the reducers one by one."""
    from converters.onnx import onnx_to_graph
    from converters.passes import PASSES, fold_concat_conv, fuse_mbconv, fuse_reversible, run_passes
    from edgert.runtime.prepare import prepare_graph
    out = {}
    reducers = (fuse_reversible, fuse_mbconv, fold_concat_conv)
    variants = {"greedy, no reducers": tuple(p for p in PASSES if p not in reducers),
                "+ in-place reversible blocks": tuple(p for p in PASSES if p not in reducers[1:]),
                "+ depth-slab MBConv": tuple(p for p in PASSES if p is not fold_concat_conv),
                "+ Concat folded into the 1x1x1 conv (all reducers, the shipped plan)": PASSES}
    for name, passes in variants.items():
        graph, _ = onnx_to_graph(onnx_model, {INPUT: shape}, False, None)
        run_passes(graph, passes=passes)
        _, plan, _ = prepare_graph(graph)
        if name == "greedy, no reducers":
            out["no reuse (every tensor its own buffer)"] = sum(b.size for b in plan.buffers)
        out[name] = plan.arena_bytes
    return out


def mib(n):
    return f"{n / 2**20:,.0f} MiB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/unet"))
    ap.add_argument("--config", choices=sorted(CONFIGS), default="brats")
    ap.add_argument("--tile", default="auto", help="edgert window: auto (largest within the budget) or DxHxW")
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--budget", default="1GiB")
    ap.add_argument("--skip-ort", action="store_true")
    ap.add_argument("--untiled", action="store_true",
                    help="also run edgert on the whole padded volume (no budget) and compare it with onnxruntime")
    ap.add_argument("--write", action="store_true", help="append the table to BENCHMARKS.md")
    args = ap.parse_args(argv)
    cfg = CONFIGS[args.config]
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    onnx_path, ert_path = work / f"{args.config}.onnx", work / f"{args.config}.ert"
    volume_path = work / f"{args.config}_volume.npy"
    padded = cfg["shape"]
    if not ert_path.exists():
        subprocess.run([sys.executable, "tools/build_unet3d.py", "--config", args.config, "--out",
                        str(work / args.config)], check=True, cwd=ROOT)
    if not volume_path.exists():
        depth = 155 if args.config == "brats" else padded[2]
        subprocess.run([sys.executable, "tools/make_volume.py", "--out", str(volume_path), "--shape",
                        ",".join(map(str, (depth, *padded[3:])))], check=True, cwd=ROOT)
    volume_shape = np.load(volume_path, mmap_mode="r").shape
    plan = plans(build_unet3d(**cfg), padded)
    for k, v in plan.items():
        print(f"untiled plan at {list(padded)}: {k}: {mib(v)}")
    edgert_out = work / "edgert_out.npy"
    e, e_rss = run_child(EDGERT_CHILD, ert_path, volume_path, edgert_out, args.tile, args.budget, args.overlap)
    print(f"edgert tiled {e['roi']} x {e['windows']} windows: {e['seconds']:.1f} s, peak RSS {mib(e_rss)}")
    rows = [("edgert, tiled " + "x".join(map(str, e["roi"])) + f" ({e['windows']} windows, overlap {args.overlap}, "
             f"budget {args.budget})", e_rss, e["seconds"])]
    agreement = None
    if not args.skip_ort:
        ort_out = work / "ort_out.npy"
        o, o_rss = run_child(ORT_CHILD, onnx_path, volume_path, ort_out, padded[2])
        print(f"onnxruntime whole volume: {o['seconds']:.1f} s, peak RSS {mib(o_rss)}")
        rows.append((f"onnxruntime 1.x, whole padded volume {list(padded[1:])}", o_rss, o["seconds"]))
        a, b = np.load(edgert_out, mmap_mode="r"), np.load(ort_out, mmap_mode="r")
        agreement = {"tiled": float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))}
        print(f"label agreement edgert (tiled) vs onnxruntime (whole volume): {agreement['tiled']:.4f}")
        if args.untiled:
            whole_out = work / "edgert_whole_out.npy"
            u, u_rss = run_child(UNTILED_CHILD, ert_path, volume_path, whole_out, padded[2])
            c = np.load(whole_out, mmap_mode="r")
            agreement["untiled"] = float(np.mean(np.argmax(c, axis=1) == np.argmax(b, axis=1)))
            agreement["untiled_rel_err"] = float(np.max(np.abs(c.astype(np.float64) - b)) / np.max(np.abs(b)))
            print(f"edgert whole volume: {u['seconds']:.1f} s, peak RSS {mib(u_rss)}, rel err vs onnxruntime "
                  f"{agreement['untiled_rel_err']:.2e}, label agreement {agreement['untiled']:.4f}")
            rows.append((f"edgert, untiled whole padded volume (arena {mib(u['arena_bytes'])}, no budget)", u_rss,
                         u["seconds"]))
    if args.write:
        write_section(args, volume_shape, padded, plan, rows, agreement)
    return 0


def write_section(args, volume_shape, padded, plan, rows, agreement):
    import onnxruntime
    cmd = "python tools/bench_unet3d.py " + " ".join(
        a for a in (f"--work {args.work}", f"--config {args.config}", f"--tile {args.tile}",
                    f"--overlap {args.overlap}", f"--budget {args.budget}", "--skip-ort" if args.skip_ort else "",
                    "--untiled" if args.untiled else "",
                    "--write") if a)
    lines = [f"\n## Reversible-MBConv 3-D U-Net on a full BraTS-size volume (issue 9), {time.strftime('%Y-%m-%d')}\n",
             (f"Command: `{cmd}` (1 thread each; the machine is shared by other engineers' runs). Model: "
             f"tools/build_unet3d.py --config {args.config} (base width {CONFIGS[args.config]['base']}, "
             f"{CONFIGS[args.config]['levels']} levels, {CONFIGS[args.config]['blocks']} reversible MBConv blocks per "
             f"level and side, expansion {CONFIGS[args.config]['expansion']}); synthetic volume "
             f"{list(volume_shape)} from tools/make_volume.py. Peak RSS is the child process's maximum resident "
             "set, read by the parent from wait4.\n"),
             "| run | peak RSS | time |", "|---|---|---|"]
    lines += [f"| {name} | {mib(rss)} | {sec:.1f} s |" for name, rss, sec in rows]
    lines += ["", f"edgert's untiled plan for the padded volume {list(padded)} (arena, what `edgert inspect` reports):",
              "", "| plan | arena |", "|---|---|"]
    lines += [f"| {k} | {mib(v)} |" for k, v in plan.items()]
    if agreement is not None:
        lines += ["", (f"Label agreement (argmax over classes) with onnxruntime's whole-volume output: edgert tiled "
                       f"{agreement['tiled']:.4f} (each window normalises with its own InstanceNorm statistics, as "
                       "a MONAI sliding window does, so a tiled run is not the whole-volume function)")
                  + (f"; edgert untiled {agreement['untiled']:.4f}, max relative error "
                     f"{agreement['untiled_rel_err']:.1e}." if "untiled" in agreement else "."),
                  f"onnxruntime {onnxruntime.__version__}."]
    with open(ROOT / "BENCHMARKS.md", "a") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
