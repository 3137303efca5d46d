"""Time edgert's convolution kernels on MobileNetV2 / EfficientNet-Lite0 shapes, next to onnxruntime.

    python tools/bench_kernels.py                    # all cases, 1 and 2 threads, markdown table
    python tools/bench_kernels.py --threads 1 --cases dw3x3_s1,pw_96_576 --json out.json

Each case is a one-node Conv (with bias, no activation) built twice: as an edgert graph (weights
constant, input a graph input) and as an ONNX model run by onnxruntime (CPUExecutionProvider,
default graph optimisation, ``intra_op_num_threads`` = threads). edgert's time is the kernel call
alone (the session's prepared step: no input/output copies); onnxruntime's is ``run()`` with a
numpy input (its call overhead, ~4 us, is included). Both are timed in the same process,
alternating in rounds so machine noise hits both: warm-up, then the median of at least --runs calls.

GFLOP/s = 2 * MACs / median time; "% peak" is against --peak GFLOP/s per thread (default 260, an
AVX-512 core's FP32 FMA peak measured in /work/shared/notes/baselines.md section 4; measure your
own machine's peak with --measure-peak). "foreign" is CPU time other processes used meanwhile,
in cores: rows with more than ~0.3 are noisy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.bench_models import Foreign  # after the sys.path insert

# name: (what, C, M, H, kernel, stride, pad, group)
CASES = {
    "pw_96_576": ("1x1 96->576 @28x28", 96, 576, 28, 1, 1, 0, 1),
    "pw_32_192": ("1x1 32->192 @56x56", 32, 192, 56, 1, 1, 0, 1),
    "pw_320_1280": ("1x1 320->1280 @7x7", 320, 1280, 7, 1, 1, 0, 1),
    "dw3x3_s1": ("dw 3x3 s1 C=144 @56x56", 144, 144, 56, 3, 1, 1, 144),
    "dw3x3_s2": ("dw 3x3 s2 C=96 @112x112", 96, 96, 112, 3, 2, 1, 96),
    "dw5x5_s1": ("dw 5x5 s1 C=240 @28x28", 240, 240, 28, 5, 1, 2, 240),
    "stem": ("stem 3x3 s2 3->32 @224x224", 3, 32, 224, 3, 2, 1, 1),
    "pw_16_96": ("1x1 16->96 @112x112", 16, 96, 112, 1, 1, 0, 1),
    "pw_96_24": ("1x1 96->24 @56x56", 96, 24, 56, 1, 1, 0, 1),
    "pw_960_160": ("1x1 960->160 @7x7", 960, 160, 7, 1, 1, 0, 1),
    "pw_576_96": ("1x1 576->96 @14x14", 576, 96, 14, 1, 1, 0, 1),
    "pw_256_256_6": ("1x1 256->256 @6x6", 256, 256, 6, 1, 1, 0, 1),
    "dw3x3_s2_14": ("dw 3x3 s2 C=576 @14x14", 576, 576, 14, 3, 2, 1, 576),
    "dw3x3_s1_7": ("dw 3x3 s1 C=960 @7x7", 960, 960, 7, 3, 1, 1, 960),
    "dw5x5_s1_7": ("dw 5x5 s1 C=1152 @7x7", 1152, 1152, 7, 5, 1, 2, 1152),
    "dw3x3_s1_12": ("dw 3x3 s1 C=256 @12x12", 256, 256, 12, 3, 1, 1, 256),
}


def case_arrays(C, M, H, k, group, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, C, H, H)).astype(np.float32)
    w = (rng.standard_normal((M, C // group, k, k)) / np.sqrt(C // group * k * k)).astype(np.float32)
    b = rng.standard_normal(M).astype(np.float32)
    return x, w, b


def edgert_step(x, w, b, k, s, p, group, threads):
    """(kernel name, reason, callable running the prepared kernel once, session) for one Conv node."""
    from converters.builder import GraphBuilder
    from edgert.runtime.session import Session
    gb = GraphBuilder()
    gb.add_input("x", x.shape)
    gb.add_const("w", w)
    gb.add_const("b", b)
    gb.add_node("Conv", ["x", "w", "b"], ["y"], {"strides": [s, s], "pads": [p] * 4, "group": group}, name="conv")
    gb.add_output("y")
    sess = Session(gb.finish(), threads=threads)
    np.copyto(sess.view("x"), x)
    sess._set_threads()
    fn, args = sess.steps[0]
    node = sess.describe()["nodes"][0]
    return node["kernel"], node["reason"], (lambda: fn(*args)), sess


def ort_session(x, w, b, k, s, p, group, threads):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4,
                            group=group)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"x": x})


def _times(fn, runs, min_seconds):
    out = []
    start = time.perf_counter()
    while len(out) < runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_case(name, threads, runs=20, rounds=5, min_seconds=0.1, peak=260.0):
    what, C, M, H, k, s, p, group = CASES[name]
    x, w, b = case_arrays(C, M, H, k, group)
    kernel, reason, ours, sess = edgert_step(x, w, b, k, s, p, group, threads)
    theirs = ort_session(x, w, b, k, s, p, group, threads)
    ours()
    got = sess.view("y")
    want = theirs()[0]
    err = float(np.max(np.abs(got - want)) / max(1e-12, float(np.max(np.abs(want)))))
    for _ in range(5):
        ours()
        theirs()
    e, o = [], []
    with Foreign() as foreign:
        for _ in range(rounds):
            sess._set_threads()
            e += _times(ours, runs, min_seconds)
            o += _times(theirs, runs, min_seconds)
    OH = (H + 2 * p - k) // s + 1
    flop = 2.0 * M * (C // group) * k * k * OH * OH
    e_med, o_med = float(np.median(e)), float(np.median(o))
    return {"case": name, "what": what, "threads": threads, "kernel": kernel, "reason": reason,
            "edgert_ms": e_med * 1e3, "ort_ms": o_med * 1e3, "edgert_gflops": flop / e_med / 1e9,
            "ort_gflops": flop / o_med / 1e9, "edgert_pct_peak": 100 * flop / e_med / 1e9 / (peak * threads),
            "ort_pct_peak": 100 * flop / o_med / 1e9 / (peak * threads), "ratio": e_med / o_med,
            "rel_err": err, "foreign_cores": round(foreign.cores, 2), "samples": len(e)}


def measure_peak() -> float:
    """FP32 FMA peak of one core with numba's vector FMAs (12 independent accumulators)."""
    from numba import njit

    from edgert.kernels.simd import VW, vbroadcast_at, vfma, vstore

    @njit
    def chains(n, ab, out):
        a, b = vbroadcast_at(ab, 0), vbroadcast_at(ab, 1)  # runtime values: nothing to constant-fold
        c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = c8 = c9 = c10 = c11 = vbroadcast_at(ab, 2)
        for _ in range(n):
            c0, c1, c2, c3 = vfma(c0, a, b), vfma(c1, a, b), vfma(c2, a, b), vfma(c3, a, b)
            c4, c5, c6, c7 = vfma(c4, a, b), vfma(c5, a, b), vfma(c6, a, b), vfma(c7, a, b)
            c8, c9, c10, c11 = vfma(c8, a, b), vfma(c9, a, b), vfma(c10, a, b), vfma(c11, a, b)
        for i, c in enumerate((c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11)):
            vstore(out, i * VW, c)

    ab, out = np.array([0.999, 0.001, 0.5], np.float32), np.zeros(12 * VW, np.float32)
    chains(10, ab, out)
    best = 0.0
    for _ in range(5):
        n = 5_000_000
        t0 = time.perf_counter()
        chains(n, ab, out)
        best = max(best, 12 * VW * 2 * n / (time.perf_counter() - t0) / 1e9)
    return best


def markdown(results, peak) -> str:
    lines = [("| case | threads | edgert kernel | edgert ms | edgert GFLOP/s (% peak) | ORT ms | ORT GFLOP/s (% peak) "
              "| edgert / ORT | rel. err | foreign |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['what']} | {r['threads']} | {r['kernel']} | {r['edgert_ms']:.3f} | "
                     f"{r['edgert_gflops']:.1f} ({r['edgert_pct_peak']:.0f}%) | {r['ort_ms']:.3f} | "
                     f"{r['ort_gflops']:.1f} ({r['ort_pct_peak']:.0f}%) | {r['ratio']:.2f} | {r['rel_err']:.1e} | "
                     f"{r['foreign_cores']} |")
    lines.append(f"\n% peak: against {peak:g} GFLOP/s per thread. edgert = kernel call only; ORT = run() incl. "
                 "~4 us call overhead. edgert / ORT < 1 means edgert is faster.")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma list from {', '.join(CASES)}")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--runs", type=int, default=20, help="timed calls per round (at least)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating edgert/ORT rounds")
    ap.add_argument("--peak", type=float, default=260.0, help="per-thread peak GFLOP/s for the %% column")
    ap.add_argument("--measure-peak", action="store_true", help="measure this core's FMA peak and use it")
    ap.add_argument("--json", help="also write the results as JSON here")
    args = ap.parse_args(argv)
    peak = measure_peak() if args.measure_peak else args.peak
    if args.measure_peak:
        print(f"measured FMA peak: {peak:.1f} GFLOP/s per core", flush=True)
    results = []
    for threads in [int(t) for t in args.threads.split(",")]:
        for name in args.cases.split(","):
            r = bench_case(name, threads, runs=args.runs, rounds=args.rounds, peak=peak)
            print(f"{r['what']:30s} {threads}t {r['kernel']:22s} {r['edgert_ms']:8.3f} ms {r['edgert_gflops']:6.1f} "
                  f"GFLOP/s | ORT {r['ort_ms']:8.3f} ms {r['ort_gflops']:6.1f} | ratio {r['ratio']:.2f} "
                  f"| foreign {r['foreign_cores']}", file=sys.stderr, flush=True)
            results.append(r)
    print(markdown(results, peak))
    if args.json:
        Path(args.json).write_text(json.dumps({"peak_gflops": peak, "results": results}, indent=1))


if __name__ == "__main__":
    main()
