"""Benchmark edgert against LiteRT on Google's MediaPipe TFLite models, side by side, as ratios.

    python tools/bench_tflite.py                          # every model that converts, 1 and 2 threads
    python tools/bench_tflite.py --models face_landmark,iris_landmark --threads 1 --json out.json
    python tools/bench_tflite.py --markdown BENCHMARKS-tflite.md

Same method as tools/bench_models.py (whose helpers this reuses): per model and thread count,
edgert and LiteRT (``ai_edge_litert``, XNNPACK delegate as users get it) run in one process,
interleaved in rounds; medians and the ratio edgert/LiteRT (< 1 is faster). Cold start (empty Numba
cache) and warm start (load + first run) are measured in fresh subprocesses. "foreign" is the CPU
other processes used during the timed window, in cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.bench_models import Foreign, _cpu_name, report, start_times

# The models of the TFLite acceptance list first, then the others that convert.
MODELS = ["face_detection_short_range", "face_detection_full_range_sparse", "pose_detection", "selfie_segmentation",
          "selfie_segmentation_landscape", "hand_landmark_lite", "palm_detection_lite", "face_landmark",
          "iris_landmark", "hand_recrop", "hand_landmark_full", "palm_detection_full", "pose_landmark_full"]


def model_files(name, work: Path):
    """(tflite path, ert path, input shape); converts once into ``work``."""
    from converters.zoo.fetch import fetch_mediapipe
    tflite_path = fetch_mediapipe()[name]
    ert_path = work / f"{name}.ert"
    if not ert_path.exists():
        # The user's path (`edgert convert`): frontend plus the shared graph passes (fusions).
        from converters.convert import convert
        convert(tflite_path, ert_path)
    import edgert
    shape = edgert.load(ert_path).inputs[0].shape
    return tflite_path, ert_path, shape


def _litert(path, threads):
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    return interp


def steady_state(tflite_path, ert_path, shape, threads, rounds=3, runs=20, min_seconds=0.5):
    import edgert
    from edgert.runtime.bench import time_calls
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    sess = edgert.load(ert_path, threads=threads)
    interp = _litert(tflite_path, threads)
    inp = interp.get_input_details()[0]["index"]
    outs = [d["index"] for d in interp.get_output_details()]

    def run_litert():
        interp.set_tensor(inp, x)
        interp.invoke()
        return [interp.get_tensor(i) for i in outs]

    feeds = {sess.inputs[0].name: x}
    ours = sess.run(feeds)
    theirs = run_litert()
    err = max(float(np.max(np.abs(ours[s.name] - t)) / max(1e-30, float(np.max(np.abs(t)))))
              for s, t in zip(sess.outputs, theirs))
    e_times, l_times = [], []
    with Foreign() as foreign:
        for _ in range(rounds):
            e_times.append(time_calls(lambda: sess.run(feeds), runs=runs, warmup=3, min_seconds=min_seconds))
            l_times.append(time_calls(run_litert, runs=runs, warmup=3, min_seconds=min_seconds))
    e, lt = np.concatenate(e_times), np.concatenate(l_times)
    mem = sess.describe()["memory"]
    return {"threads": threads, "edgert_ms": float(np.median(e)), "edgert_p90_ms": float(np.percentile(e, 90)),
            "litert_ms": float(np.median(lt)), "litert_p90_ms": float(np.percentile(lt, 90)),
            "ratio": float(np.median(e) / np.median(lt)), "rel_err": err, "foreign_cores": round(foreign.cores, 3),
            "arena_bytes": mem["arena_bytes"], "lower_bound_bytes": mem["lower_bound_bytes"]}


_LITERT_PROBE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
path, shape, threads = sys.argv[1], tuple(map(int, sys.argv[2].split('x'))), int(sys.argv[3])
x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
t1 = time.perf_counter()
from ai_edge_litert.interpreter import Interpreter  # the engine's import counts, as edgert's does
it = Interpreter(model_path=path, num_threads=threads); it.allocate_tensors()
t2 = time.perf_counter()
it.set_tensor(it.get_input_details()[0]['index'], x); it.invoke()
t3 = time.perf_counter()
print(json.dumps({'import_ms': (t1 - t0) * 1e3, 'load_ms': (t2 - t1) * 1e3, 'first_run_ms': (t3 - t2) * 1e3,
                  'start_ms': (t3 - t1) * 1e3,
                  'peak_rss_mib': [int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]}))
"""


def litert_start(path, shape, threads):
    out = subprocess.run([sys.executable, "-c", _LITERT_PROBE, str(path), "x".join(map(str, shape)), str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(results, command) -> str:
    lines = [f"Command: `{command}`", "",
             f"Machine: {os.cpu_count()} CPUs, {_cpu_name()}; date {time.strftime('%Y-%m-%d')}", "",
             ("| model | threads | edgert median ms (p90) | LiteRT median ms (p90) | edgert / LiteRT | rel. error | "
              "foreign cores |"), "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        for s in r["steady"]:
            lines.append(f"| {name} | {s['threads']} | {s['edgert_ms']:.3f} ({s['edgert_p90_ms']:.3f}) | "
                         f"{s['litert_ms']:.3f} ({s['litert_p90_ms']:.3f}) | **{s['ratio']:.2f}x** | "
                         f"{s['rel_err']:.1e} | {s['foreign_cores']} |")
    if not all("cold" in r for r in results.values()):
        return "\n".join(lines) + "\n"
    lines += ["", ("Start-up, fresh process, 1 thread (cold = empty Numba cache; warm = cached kernels). "
                   "start = import of the engine + load + first run (numpy's import excluded)."), "",
              ("| model | edgert cold start ms | edgert warm start ms (import+load + first run) | LiteRT start ms | "
               "warm / LiteRT | edgert peak RSS MiB | LiteRT peak RSS MiB | arena KiB |"), "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        c, w, o, s = r["cold"], r["warm"], r["litert_start"], r["steady"][0]
        lines.append(f"| {name} | {c['start_ms']:.0f} | {w['start_ms']:.0f} ({w['load_ms']:.0f} + "
                     f"{w['first_run_ms']:.0f}) | {o['start_ms']:.0f} | {w['start_ms'] / o['start_ms']:.2f}x | "
                     f"{w['peak_rss_mib']:.0f} | {o['peak_rss_mib']:.0f} | {s['arena_bytes'] / 1024:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-start", action="store_true", help="Skip the cold/warm start-up probes.")
    ap.add_argument("--work", default=None, help="Directory for converted models (default: a temp dir).")
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None, help="Write the tables to this file.")
    args = ap.parse_args(argv)
    command = "python tools/bench_tflite.py " + " ".join(argv if argv is not None else sys.argv[1:])
    work = Path(args.work or tempfile.mkdtemp(prefix="edgert-bench-tflite-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.models.split(","):
        tflite_path, ert_path, shape = model_files(name, work)
        print(f"== {name} {shape}", flush=True)
        r = {}
        if not args.no_start:
            cold_cache = Path(tempfile.mkdtemp(prefix="edgert-cold-"))
            r["cold"] = start_times("edgert", ert_path, shape, 1, cache_dir=cold_cache)
            r["warm"] = start_times("edgert", ert_path, shape, 1, cache_dir=cold_cache)
            r["litert_start"] = litert_start(tflite_path, shape, 1)
        r["steady"] = [steady_state(tflite_path, ert_path, shape, int(t), rounds=args.rounds)
                       for t in args.threads.split(",")]
        for s in r["steady"]:
            print(f"   {s['threads']}t edgert {s['edgert_ms']:.3f} ms  litert {s['litert_ms']:.3f} ms  "
                  f"ratio {s['ratio']:.2f}  err {s['rel_err']:.1e}  foreign {s['foreign_cores']}", flush=True)
        results[name] = r
    report(results, markdown(results, command), args)


if __name__ == "__main__":
    main()
