"""Micro-benchmark of the channel-blocked (NCHWc) kernels on MobileNetV2's shapes, 1 thread.

For each shape: the blocked kernel (edgert/kernels/blocked.py), the NCHW kernel edgert's Conv op
picks today for the same node (a one-node session; its prepared kernel call timed directly) and
onnxruntime on a one-Conv model (its own per-node kernel time from its profiler, so the reorders it
inserts around a lone NCHWc conv are not counted). Engines are interleaved round by round and each
reports the median of all its calls; GFLOP/s = 2 * multiply-adds / median.

    python tools/bench_blocked.py [--only 1x1,dw,stem,reorder] [--rounds 15] [--no-ort] [--ms 15]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from edgert.kernels import blocked as B
from edgert.kernels.act import CODES

VW = B.VW
# (input channels, output channels, plane side) of MobileNetV2's 1x1 convolutions.
POINTWISE = [(32, 16, 112), (16, 96, 112), (96, 24, 56), (24, 144, 56), (144, 24, 56), (144, 32, 28),
             (32, 192, 28), (192, 64, 14), (64, 384, 14), (384, 96, 14), (96, 576, 14), (576, 96, 14),
             (576, 160, 7), (160, 960, 7), (960, 160, 7), (960, 320, 7), (320, 1280, 7)]
# (channels, input plane side, stride) of its 3x3 pad-1 depthwise convolutions.
DEPTHWISE = [(32, 112, 1), (96, 112, 2), (144, 56, 1), (144, 56, 2), (192, 28, 1), (192, 28, 2), (384, 14, 1),
             (576, 14, 1), (576, 14, 2), (960, 7, 1)]
STEM = (3, 32, 224, 3, 2, 1)  # C, M, side, kernel, stride, pad


def clip_args():
    return CODES["clip"], 0.0, 6.0


def nchw_call(x, w, b, attrs):
    """(kernel name, zero-argument callable) of edgert's current Conv kernel for this node."""
    from edgert.runtime.session import Session
    from tests.helpers import single_op_graph
    graph = single_op_graph("Conv", [("x", x), ("w", w), ("b", b)], attrs, consts={"w", "b"})
    sess = Session(graph, threads=1)
    sess.run({"x": x})
    fn, args = sess.steps[0]
    return sess.describe()["nodes"][0]["kernel"], (lambda: fn(*args)), sess


class OrtConv:
    """One Conv in onnxruntime (1 thread, default optimisations: NCHWc on x86), timed by its profiler."""

    def __init__(self, x, w, b, attrs):
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
        kw = {"strides": attrs["strides"], "pads": attrs["pads"], "group": attrs.get("group", 1)}
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", **kw)]
        out = "c"
        if attrs.get("activation") == "clip":
            nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="clip"))
            out = "y"
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
                 numpy_helper.from_array(np.float32(attrs.get("act_a", 0.0)), "lo"),
                 numpy_helper.from_array(np.float32(attrs.get("act_b", 6.0)), "hi")]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                                  [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.enable_profiling = True
        self.dir = tempfile.mkdtemp(prefix="bench_blocked_ort_")
        so.profile_file_prefix = os.path.join(self.dir, "p")
        self.sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        self.feeds = {"x": x}
        self.calls = 0

    def __call__(self):
        self.sess.run(None, self.feeds)
        self.calls += 1

    def conv_times(self) -> list:
        """Kernel time (s) of the Conv node (its fused activation included) in every call."""
        path = self.sess.end_profiling()
        with open(path) as f:
            events = json.load(f)
        times = [e["dur"] * 1e-6 for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
                 and "Conv" in e.get("args", {}).get("op_name", "")]
        shutil.rmtree(self.dir, ignore_errors=True)  # the profile is read; leave nothing in /tmp
        return times[len(times) - self.calls:] if len(times) >= self.calls else times


def measure(engines: dict, rounds: int, ms: float) -> dict:
    """Median seconds per call of each engine, interleaved: every round runs each engine for ~ms."""
    for fn in engines.values():  # warm up (and calibrate)
        fn()
    reps = {}
    for name, fn in engines.items():
        t0 = time.perf_counter()
        fn()
        fn()
        one = (time.perf_counter() - t0) / 2
        reps[name] = max(3, min(2000, int(ms * 1e-3 / max(one, 1e-7))))
    samples = {name: [] for name in engines}
    for _ in range(rounds):
        for name, fn in engines.items():
            for _ in range(reps[name]):
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
    out = {}
    for name, fn in engines.items():
        if isinstance(fn, OrtConv):
            t = fn.conv_times()
            out[name] = float(np.median(t[-len(samples[name]):])) if t else float("nan")
        else:
            out[name] = float(np.median(samples[name]))
    return out


def peak_gflops() -> float:
    """One core's vector FMA peak, from a loop of independent FMAs in registers."""
    import numba

    from edgert.kernels.simd import vadd, vbroadcast, vfma, vstore

    @numba.njit(fastmath=True)
    def fmas(n, out, init):
        a0, a1, a2, a3 = vbroadcast(init[0]), vbroadcast(init[1]), vbroadcast(init[2]), vbroadcast(init[3])
        a4, a5, a6, a7 = vbroadcast(init[4]), vbroadcast(init[5]), vbroadcast(init[6]), vbroadcast(init[7])
        a8, a9, a10, a11 = vbroadcast(init[8]), vbroadcast(init[9]), vbroadcast(init[10]), vbroadcast(init[11])
        m = vbroadcast(init[12])
        c = vbroadcast(init[13])
        for _ in range(n):
            a0 = vfma(a0, m, c)
            a1 = vfma(a1, m, c)
            a2 = vfma(a2, m, c)
            a3 = vfma(a3, m, c)
            a4 = vfma(a4, m, c)
            a5 = vfma(a5, m, c)
            a6 = vfma(a6, m, c)
            a7 = vfma(a7, m, c)
            a8 = vfma(a8, m, c)
            a9 = vfma(a9, m, c)
            a10 = vfma(a10, m, c)
            a11 = vfma(a11, m, c)
        vstore(out, 0, vadd(vadd(vadd(a0, a1), vadd(a2, a3)), vadd(vadd(a4, a5), vadd(a6, a7))))
        vstore(out, VW, vadd(vadd(a8, a9), vadd(a10, a11)))

    out = np.zeros(2 * VW, np.float32)
    init = np.arange(14, dtype=np.float32) * 0.01
    init[12] = 0.999
    n = 2_000_000
    fmas(10, out, init)
    best = min(_timed(lambda: fmas(n, out, init)) for _ in range(7))
    return 12 * n * 2 * VW / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def row(label, flops, times, ref=None):
    cells = []
    for name in ("blocked", "nchw", "ort"):
        t = times.get(name)
        cells.append("        -          " if t is None or math.isnan(t) else f"{t * 1e3:8.3f} ms {flops / t / 1e9:6.1f}")
    ratio = ""
    if times.get("nchw"):
        ratio += f"  nchw/blk {times['nchw'] / times['blocked']:4.2f}"
    if times.get("ort") and not math.isnan(times["ort"]):
        ratio += f"  ort/blk {times['ort'] / times['blocked']:4.2f}"
    pk = f" {100 * flops / times['blocked'] / 1e9 / ref:4.0f}%" if ref else ""
    print(f"{label:34s} " + " | ".join(cells) + pk + ratio, flush=True)


def bench_pointwise(args, rng, peak):
    for K, M, S in POINTWISE:
        P = S * S
        x = rng.standard_normal((1, K, S, S)).astype(np.float32)
        w = rng.standard_normal((M, K, 1, 1)).astype(np.float32) * 0.1
        b = rng.standard_normal(M).astype(np.float32)
        attrs = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1, "activation": "clip",
                 "act_a": 0.0, "act_b": 6.0}
        xb, wp, bp = B.to_blocked_np(x), B.pack_conv1x1(w[:, :, 0, 0]), B.pad_bias(b, M)
        out = np.empty(B.blocked_floats(1, M, S, S), np.float32)
        g = B.conv1x1_geometry(1, K, M, P)  # with the real K: pad input lanes skipped
        dummy = np.zeros(1, np.float32)
        engines = {"blocked": functools.partial(B.f32_blocked_conv1x1, xb, wp, bp, dummy, out, g, *clip_args())}
        name, fn, _keep = nchw_call(x, w, b, attrs)
        engines["nchw"] = fn
        if not args.no_ort:
            engines["ort"] = OrtConv(x, w, b, attrs)
        times = measure(engines, args.rounds, args.ms)
        row(f"1x1 {K:4d}->{M:4d} @{S}x{S} [{name}]", 2.0 * K * M * P, times, peak)


def bench_depthwise(args, rng, peak):
    for C, S, s in DEPTHWISE:
        x = rng.standard_normal((1, C, S, S)).astype(np.float32)
        w = rng.standard_normal((C, 1, 3, 3)).astype(np.float32)
        b = rng.standard_normal(C).astype(np.float32)
        attrs = {"strides": [s, s], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": C, "activation": "clip",
                 "act_a": 0.0, "act_b": 6.0}
        OH = (S + 2 - 3) // s + 1
        xb, wp, bp = B.to_blocked_np(x), B.pack_dwconv(w, C), B.pad_bias(b, C)
        out = np.empty(B.blocked_floats(1, C, OH, OH), np.float32)
        g = B.dwconv_geometry(1, C, S, S, OH, OH, 3, 3, s, s, 1, 1)
        engines = {"blocked": functools.partial(B.f32_blocked_dwconv, xb, wp, bp, out, g, *clip_args())}
        name, fn, _keep = nchw_call(x, w, b, attrs)
        engines["nchw"] = fn
        if not args.no_ort:
            engines["ort"] = OrtConv(x, w, b, attrs)
        times = measure(engines, args.rounds, args.ms)
        row(f"dw3x3 {C:4d} @{S}x{S} s{s} [{name}]", 2.0 * C * OH * OH * 9, times, peak)


def bench_stem(args, rng, peak):
    C, M, S, k, s, pad = STEM
    x = rng.standard_normal((1, C, S, S)).astype(np.float32)
    w = rng.standard_normal((M, C, k, k)).astype(np.float32)
    b = rng.standard_normal(M).astype(np.float32)
    attrs = {"strides": [s, s], "pads": [pad] * 4, "dilations": [1, 1], "group": 1, "activation": "clip",
             "act_a": 0.0, "act_b": 6.0}
    OH = (S + 2 * pad - k) // s + 1
    wp, bp = B.pack_conv(w, False), B.pad_bias(b, M)
    xf = x.reshape(-1)
    out = np.empty(B.blocked_floats(1, M, OH, OH), np.float32)
    g = B.conv_geometry(1, C, M, S, S, OH, OH, k, k, s, s, pad, pad)
    engines = {"blocked": lambda: B.f32_blocked_conv(xf, wp, bp, out, g, *clip_args())}
    name, fn, _keep = nchw_call(x, w, b, attrs)
    engines["nchw"] = fn
    if not args.no_ort:
        engines["ort"] = OrtConv(x, w, b, attrs)
    times = measure(engines, args.rounds, args.ms)
    row(f"stem {C}->{M} {k}x{k} s{s} @{S} [{name}]", 2.0 * M * OH * OH * C * k * k, times, peak)


def bench_reorder(args, rng):
    N, C, S = 1, 32, 112
    x = rng.standard_normal((N, C, S, S)).astype(np.float32).reshape(-1)
    blk = np.empty(B.blocked_floats(N, C, S, S), np.float32)
    back = np.empty(x.size, np.float32)
    g = np.array([N, C, S * S], np.int64)
    times = measure({"to": lambda: B.f32_to_blocked(x, blk, g), "from": lambda: B.f32_from_blocked(blk, back, g),
                     "numpy to": lambda: B.to_blocked_np(x.reshape(N, C, S, S))}, args.rounds, args.ms)
    for name, t in times.items():
        print(f"reorder {name:9s} {C}x{S}x{S}: {t * 1e3:7.3f} ms  {2 * x.nbytes / t / 1e9:5.1f} GB/s (read + write)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="1x1,dw,stem,reorder")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--ms", type=float, default=15.0, help="time per engine per round")
    ap.add_argument("--no-ort", action="store_true")
    args = ap.parse_args()
    import numba
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    parts = set(args.only.split(","))
    peak = peak_gflops()
    print(f"VW = {VW}; one core's FMA peak {peak:.1f} GFLOP/s; columns: median time, GFLOP/s "
          f"(blocked | edgert NCHW today | onnxruntime), blocked as % of peak")
    if "1x1" in parts:
        bench_pointwise(args, rng, peak)
    if "dw" in parts:
        bench_depthwise(args, rng, peak)
    if "stem" in parts:
        bench_stem(args, rng, peak)
    if "reorder" in parts:
        bench_reorder(args, rng)


if __name__ == "__main__":
    main()
