"""1 vs 2 threads on an idle machine and while another process keeps one core busy, edgert next to
onnxruntime (ONNX zoo models) or LiteRT (MediaPipe models) in the same process.

    python tools/bench_load.py --models mobilenet_v2,palm_detection_full [--runs 40] [--markdown out.md]

A board that also runs a camera pipeline or a web server shares its cores: a 2-thread engine whose
parallel regions wait for a thread on the busy core can end up slower than with 1 thread. Per model
and phase (idle, then loaded: a busy loop pinned to the last CPU), each engine runs 1- and 2-thread
sessions interleaved, ``--runs`` timed calls each per round, 3 rounds; medians. The busy process
is started after the idle phase and killed after the loaded one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUSY = "import os, sys, time\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


def _engines(name, work):
    """{label: (make_session(threads) -> run callable)} for edgert and the model's reference engine."""
    import edgert
    from tools.bench_models import MODELS as ONNX_MODELS
    if name in ONNX_MODELS:
        from tools.bench_models import model_files
        onnx_path, ert_path, shape = model_files(name, work)
        import onnxruntime as ort

        def reference(threads):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            s = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
            feeds = {s.get_inputs()[0].name: x}
            return lambda: s.run(None, feeds)
        ref_name = "onnxruntime"
    else:
        from tools.bench_tflite import _litert, model_files
        tflite_path, ert_path, shape = model_files(name, work)

        def reference(threads):
            interp = _litert(tflite_path, threads)
            index = interp.get_input_details()[0]["index"]

            def run():
                interp.set_tensor(index, x)
                interp.invoke()
            return run
        ref_name = "LiteRT"
    x = np.random.default_rng(0).random(shape).astype(np.float32)

    def ours(threads):
        s = edgert.load(ert_path, threads=threads)
        feeds = {s.inputs[0].name: x}
        return lambda: s.run(feeds)
    return {"edgert": ours, ref_name: reference}


def _phase(runners, runs, rounds=3):
    times = {k: [] for k in runners}
    for fn in runners.values():
        for _ in range(3):
            fn()
    for _ in range(rounds):
        for key, fn in runners.items():
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
    return {k: float(np.median(v) * 1e3) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="mobilenet_v2,palm_detection_full")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--work", default=None, help="Directory for converted models (default: a temp dir).")
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs at least 2 CPUs")
    busy_cpu = max(os.sched_getaffinity(0))
    work = Path(args.work or tempfile.mkdtemp(prefix="edgert-bench-load-"))
    work.mkdir(parents=True, exist_ok=True)
    command = "python tools/bench_load.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"Command: `{command}`", "",
             f"Busy process: a Python busy loop pinned to CPU {busy_cpu}; medians of {3 * args.runs} calls per cell.", "",
             "| model | engine | idle 1t ms | idle 2t ms | idle 1t/2t | loaded 1t ms | loaded 2t ms | loaded 1t/2t |",
             "|---|---|---|---|---|---|---|---|"]
    for name in args.models.split(","):
        engines = _engines(name, work)
        runners = {(e, t): make(t) for e, make in engines.items() for t in (1, 2)}
        idle = _phase(runners, args.runs)
        busy = subprocess.Popen([sys.executable, "-c", BUSY, str(busy_cpu)])
        try:
            time.sleep(0.5)
            loaded = _phase(runners, args.runs)
        finally:
            busy.kill()
            busy.wait()
        for e in engines:
            i1, i2, l1, l2 = idle[(e, 1)], idle[(e, 2)], loaded[(e, 1)], loaded[(e, 2)]
            row = (f"| {name} | {e} | {i1:.2f} | {i2:.2f} | {i1 / i2:.2f}x | {l1:.2f} | {l2:.2f} | "
                   f"**{l1 / l2:.2f}x** |")
            lines.append(row)
            print(row, flush=True)
    text = "\n".join(lines) + "\n"
    if args.markdown:
        Path(args.markdown).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
