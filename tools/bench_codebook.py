"""Benchmark the codebook kernels at the papers' sizes against numpy and onnxruntime, in one run.

* Codebook features: K = 10 000 codes of d = 1024, top-8, inner product after LayerNorm (the MLP
  site of Pythia-410m), f32 and fp16 codebooks, at 1 and 32 tokens.
* Discrete key-value bottleneck: C = 256 heads x 4096 keys, d_k = 14, d_v = 10, projection from
  D = 2048, voting decoder, at 1 and 8 samples.

Baselines: numpy (BLAS matmul + argpartition for the snap; batched matmul + argmin for the
lookup) and onnxruntime running the plain-op ONNX export (tools/build_codebook_models) of the
same layer. Engines run interleaved in rounds so machine noise hits all of them; medians in ms,
ratio = edgert / baseline (< 1: edgert faster).

    python tools/bench_codebook.py [--threads 1 2] [--rounds 15] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def numpy_snap(x, Cn, C, k, eps=1e-5):
    h = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    s = h @ Cn.T
    part = np.argpartition(-s, k, axis=-1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, -1), axis=-1, kind="stable")
    ids = np.take_along_axis(part, order, -1)
    return C[ids].mean(1), ids


def numpy_kv(z, Pt, Kt, knorm, V):
    C, dk, _ = Kt.shape
    q = (z @ Pt).reshape(len(z), C, dk).transpose(1, 0, 2)  # [C, B, dk]
    ids = (knorm[:, None, :] - 2 * np.matmul(q, Kt)).argmin(-1)  # [C, B]
    return V[np.arange(C)[:, None], ids].mean(0), ids


def snap_case(tokens, fp16):
    from onnx import TensorProto

    from converters.builder import GraphBuilder
    from tools.build_codebook_models import Writer, snap_plain
    rng = np.random.default_rng(0)
    K, d, k = 10_000, 1024, 8
    C = rng.standard_normal((1, K, d)).astype(np.float32)
    if fp16:
        C = C.astype(np.float16).astype(np.float32)
    x = rng.standard_normal((1, tokens, d)).astype(np.float32)
    b = GraphBuilder()
    b.add_input("x", x.shape)
    b.add_const("cb", C, dtype="f16" if fp16 else None)
    b.add_node("CodebookSnap", ["x", "cb"], ["y", "ids"], {"k": k})
    b.add_output("y")
    b.add_output("ids")
    w = Writer("snap")
    snap_plain(w, "x", C, np.ones((1, d), np.float32), np.zeros((1, d), np.float32), k, "inner_product", [1, tokens])
    w.nodes[-1].output[0] = "y"
    model = w.model([("x", list(x.shape))], [("y", TensorProto.FLOAT, list(x.shape)),
                                              ("codes", TensorProto.INT64, [1, tokens, 1, k])])
    Cn = (C[0] / np.linalg.norm(C[0], axis=-1, keepdims=True)).astype(np.float32)
    feeds = {"x": x}
    return {"name": f"snap K=10k d=1024 k=8 {'fp16' if fp16 else 'f32'}, {tokens} token(s)", "graph": b.finish(),
            "onnx": model.SerializeToString(), "feeds": feeds, "numpy": lambda: numpy_snap(x[0], Cn, C[0], k),
            "check": "ids"}


def kv_case(batch):
    from onnx import TensorProto

    from converters.builder import GraphBuilder
    from tools.build_codebook_models import Writer, kv_plain
    rng = np.random.default_rng(1)
    C, M, dk, dv, D = 256, 4096, 14, 10, 2048
    P = rng.standard_normal((C, D, dk)).astype(np.float32)
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    K = rng.standard_normal((C, M, dk)).astype(np.float32)
    V = rng.standard_normal((C, M, dv)).astype(np.float32)
    z = rng.standard_normal((batch, D)).astype(np.float32)
    b = GraphBuilder()
    b.add_input("z", z.shape)
    for name, value in (("keys", K), ("values", V), ("proj", P)):
        b.add_const(name, value)
    b.add_node("KeyValueLookup", ["z", "keys", "values", "proj"], ["logits"], {"combine": "vote"})
    b.add_output("logits")
    w = Writer("kv")
    kv_plain(w, "z", P, K, V)
    w.nodes[-1].output[0] = "logits"
    model = w.model([("z", list(z.shape))], [("logits", TensorProto.FLOAT, [batch, dv])])
    Pt = np.ascontiguousarray(P.transpose(1, 0, 2).reshape(D, C * dk))
    Kt = np.ascontiguousarray(K.transpose(0, 2, 1))
    knorm = (K ** 2).sum(-1)
    return {"name": f"KV C=256 M=4096 dk=14 dv=10 D=2048, batch {batch}", "graph": b.finish(),
            "onnx": model.SerializeToString(), "feeds": {"z": z}, "numpy": lambda: numpy_kv(z, Pt, Kt, knorm, V),
            "check": "logits"}


def run_case(case, threads, rounds):
    import onnxruntime as ort
    from threadpoolctl import threadpool_limits

    from edgert.runtime.session import Session
    sess = Session(case["graph"], threads=threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    ort_sess = ort.InferenceSession(case["onnx"], opts, providers=["CPUExecutionProvider"])
    engines = {"edgert": lambda: sess.run(case["feeds"]), "numpy": case["numpy"],
               "onnxruntime": lambda: ort_sess.run(None, case["feeds"])}
    times = {name: [] for name in engines}
    with threadpool_limits(limits=threads, user_api="blas"):
        for fn in engines.values():
            fn()  # warm-up (JIT, allocator, page faults)
        for _ in range(rounds):
            for name, fn in engines.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    ours = sess.run(case["feeds"])
    theirs = dict(zip([o.name for o in ort_sess.get_outputs()], ort_sess.run(None, case["feeds"])))
    if case["check"] == "ids":
        agree = float(np.mean(ours["ids"].reshape(-1) == theirs["codes"].reshape(-1)))
    else:
        agree = float(np.max(np.abs(ours["logits"] - theirs["logits"])))
    kernel = sess.describe()["nodes"][0]["kernel"]
    return {name: float(np.median(t)) * 1e3 for name, t in times.items()}, kernel, agree


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = ap.parse_args(argv)
    import edgert.ops.codebook  # noqa: F401  (until edgert.ops imports it)

    cases = [snap_case(1, False), snap_case(32, False), snap_case(1, True), snap_case(32, True), kv_case(1), kv_case(8)]
    lines = ["| case | threads | edgert kernel | edgert ms | numpy ms | onnxruntime ms | vs numpy | vs ORT | agreement |",
             "|---|---|---|---|---|---|---|---|---|"]
    for case in cases:
        for threads in args.threads:
            ms, kernel, agree = run_case(case, threads, args.rounds)
            what = f"ids {agree:.1%}" if case["check"] == "ids" else f"max |d| {agree:.1e}"
            lines.append(f"| {case['name']} | {threads} | {kernel} | {ms['edgert']:.2f} | {ms['numpy']:.2f} | "
                         f"{ms['onnxruntime']:.2f} | {ms['edgert'] / ms['numpy']:.2f} | "
                         f"{ms['edgert'] / ms['onnxruntime']:.2f} | {what} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    print("\n" + text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
