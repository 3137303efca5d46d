"""Start-up benchmark: edgert cold, warm (numba cache) and warm (AOT library) vs the reference engine.

    python tools/bench_start.py --models mobilenet_v2,efficientnet_lite0,face_detection_short_range \
        --repeats 5 --work /tmp/bs --markdown /tmp/start.md

Every number is one fresh Python process: start = import of the engine + load/session creation +
first run (numpy's import excluded), 1 thread, medians over ``--repeats`` processes, with Python's
bytecode cache on (see ``main``). Per model, a
new empty cache root (``EDGERT_CACHE_DIR``) is used:

* cold: the first process (numba compiles every kernel the model needs, into the cache);
* warm, JIT: later processes with ``EDGERT_AOT=0`` (kernels load from numba's cache);
* ``edgert warm MODEL`` is then run once (its time is reported) to build the AOT library;
* warm, AOT: later processes (kernels come from the library; numba is not imported).

The reference is onnxruntime for the zoo models and LiteRT for MediaPipe models, measured the same
way in the same run (``tools/bench_models.py`` / ``tools/bench_tflite.py`` probes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.bench_models import MODELS as ZOO_MODELS
from tools.bench_models import _cpu_name, start_times

_EDGERT_PROBE = r"""
import json, sys, time
import numpy as np
path, shape = sys.argv[1], tuple(map(int, sys.argv[2].split('x')))
x = np.random.default_rng(0).random(shape).astype(np.float32)
t1 = time.perf_counter()
import edgert
s = edgert.load(path, threads=1)
t2 = time.perf_counter()
s.run({s.inputs[0].name: x})
t3 = time.perf_counter()
hwm = [int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]
print(json.dumps({'load_ms': (t2 - t1) * 1e3, 'first_run_ms': (t3 - t2) * 1e3, 'start_ms': (t3 - t1) * 1e3,
                  'peak_rss_mib': hwm, 'numba_loaded': 'numba' in sys.modules, 'compiled': s.describe()['compiled']}))
"""


def edgert_start(ert_path, shape, cache: Path, aot: bool):
    env = dict(os.environ, EDGERT_CACHE_DIR=str(cache), EDGERT_AOT="1" if aot else "0")
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", _EDGERT_PROBE, str(ert_path), "x".join(map(str, shape))],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median(runs, key="start_ms"):
    return statistics.median(r[key] for r in runs)


def measure(name, work: Path, repeats: int) -> dict:
    from tools.bench_tflite import litert_start
    litert_ms = None
    if name in ZOO_MODELS:
        from tools.bench_models import model_files, tflite_file
        ref_path, ert_path, shape = model_files(name, work)
        reference = "onnxruntime"
        ref_runs = [start_times("ort", ref_path, shape, 1) for _ in range(repeats)]
        tflite_path = tflite_file(name, ref_path, work, shape)  # the same weights, exported for LiteRT
        if tflite_path:
            nhwc = (shape[0], *shape[2:], shape[1])
            litert_ms = _median([litert_start(tflite_path, nhwc, 1) for _ in range(repeats)])
    else:
        from tools.bench_tflite import model_files
        ref_path, ert_path, shape = model_files(name, work)
        reference = "LiteRT"
        ref_runs = [litert_start(ref_path, shape, 1) for _ in range(repeats)]
    cache = Path(tempfile.mkdtemp(prefix="edgert-start-"))
    cold = edgert_start(ert_path, shape, cache, aot=False)
    jit = [edgert_start(ert_path, shape, cache, aot=False) for _ in range(repeats)]
    t0 = time.perf_counter()
    warm = subprocess.run([sys.executable, "-m", "edgert", "warm", str(ert_path), "--threads", "1"],
                          capture_output=True, text=True, env=dict(os.environ, EDGERT_CACHE_DIR=str(cache)), check=True)
    warm_s = time.perf_counter() - t0
    aot = [edgert_start(ert_path, shape, cache, aot=True) for _ in range(repeats)]
    return {"reference": reference, "cold_ms": cold["start_ms"], "jit_ms": _median(jit), "warm_cmd_s": warm_s,
            "warm_output": warm.stdout.strip().splitlines()[-1], "aot_ms": _median(aot),
            "aot_load_ms": _median(aot, "load_ms"), "aot_first_run_ms": _median(aot, "first_run_ms"),
            "aot_numba_loaded": any(r["numba_loaded"] for r in aot), "aot_compiled": aot[0]["compiled"],
            "ref_ms": _median(ref_runs), "rss_aot": _median(aot, "peak_rss_mib"),
            "rss_jit": _median(jit, "peak_rss_mib"), "rss_ref": _median(ref_runs, "peak_rss_mib"),
            "litert_ms": litert_ms}


def markdown(results, command, repeats) -> str:
    lines = [f"Command: `{command}`", "",
             (f"Machine: {os.cpu_count()} CPUs, {_cpu_name()}; date {time.strftime('%Y-%m-%d')}; medians of "
              f"{repeats} fresh processes, 1 thread"), "",
             ("| model | edgert cold start | warm, numba cache | `edgert warm` (once) | **warm, AOT library** "
              "(load + first run) | numba imported | reference start | **AOT / reference** | JIT / reference | "
              "peak RSS MiB: AOT / JIT / reference | LiteRT start (same weights) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['cold_ms'] / 1e3:.1f} s | {r['jit_ms']:.0f} ms | {r['warm_cmd_s']:.1f} s | "
            f"**{r['aot_ms']:.0f} ms** ({r['aot_load_ms']:.0f} + {r['aot_first_run_ms']:.0f}) | "
            f"{'yes' if r['aot_numba_loaded'] else 'no'} | {r['reference']} {r['ref_ms']:.0f} ms | "
            f"**{r['aot_ms'] / r['ref_ms']:.2f}x** | {r['jit_ms'] / r['ref_ms']:.2f}x | "
            f"{r['rss_aot']:.0f} / {r['rss_jit']:.0f} / {r['rss_ref']:.0f} | "
            + (f"{r['litert_ms']:.0f} ms |" if r["litert_ms"] else "(reference) |"))
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="mobilenet_v2,efficientnet_lite0,face_detection_short_range")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--work", default=None, help="Directory for converted models (kept between runs).")
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    # Python's bytecode cache as users have it: with PYTHONDONTWRITEBYTECODE set (as on the development
    # machine) every process recompiles edgert's ~50 modules from source (~80 ms), while the engines
    # installed from wheels come with their .pyc files. The cold run writes them.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    work = Path(args.work or tempfile.mkdtemp(prefix="edgert-bench-start-"))
    work.mkdir(parents=True, exist_ok=True)
    command = "python tools/bench_start.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {}
    for name in args.models.split(","):
        results[name] = r = measure(name, work, args.repeats)
        print(f"{name}: cold {r['cold_ms'] / 1e3:.1f} s, warm JIT {r['jit_ms']:.0f} ms, warm AOT {r['aot_ms']:.0f} ms "
              f"(numba {'loaded' if r['aot_numba_loaded'] else 'not loaded'}), {r['reference']} {r['ref_ms']:.0f} ms",
              flush=True)
    text = markdown(results, command, args.repeats)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
