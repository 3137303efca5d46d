"""Calibrate the dense/sparse cost model of SparseConv1x1 (edgert/ops/sparse.py) on this machine.

    python tools/calibrate_sparse.py                 # 1 thread, prints the fit and a table
    python tools/calibrate_sparse.py --json out.json

Times the layer both ways (CSR kernel forced, densified GEMM forced) on the 1x1 shapes of
MobileNetV2 and the MediaPipe detectors at 70/80/90/95% random sparsity, then fits

    dense  = DENSE_MAC_NS * M*K*P + DENSE_OUT_NS * M*P
    sparse = SPARSE_MAC_NS * nnz*P + SPARSE_NZ_NS * nnz * (partial tile) + SPARSE_ROW_NS * M * tiles

by least squares (non-negative), and reports how often the fitted model picks the faster kernel.
Run it on a quiet machine; paste the constants into edgert/ops/sparse.py or a board profile.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (M = Cout, K = Cin, H, W): MobileNetV2 224 (XNNPACK's bench/models/mobilenet_v2_spmm.txt shapes)
# and the 1x1 layers of face_detection_full_range_sparse / pose_detection.
SHAPES = [(16, 32, 112, 112), (96, 16, 112, 112), (24, 96, 56, 56), (144, 24, 56, 56), (24, 144, 56, 56),
          (32, 144, 28, 28), (192, 32, 28, 28), (32, 192, 28, 28), (64, 192, 14, 14), (384, 64, 14, 14),
          (64, 384, 14, 14), (96, 384, 14, 14), (576, 96, 14, 14), (96, 576, 14, 14), (160, 576, 7, 7),
          (960, 160, 7, 7), (160, 960, 7, 7), (320, 960, 7, 7), (1280, 320, 7, 7),
          (8, 32, 96, 96), (48, 24, 48, 48), (24, 48, 48, 48), (96, 48, 24, 24), (48, 96, 24, 24),
          (1000, 1280, 1, 1)]
SPARSITIES = (0.7, 0.8, 0.9, 0.95)


def time_layer(m, k, h, w, sparsity, mode, runs, rng):
    from converters.builder import GraphBuilder
    from edgert.ops.sparse import to_csr
    from edgert.runtime.bench import time_calls
    from edgert.runtime.session import Session
    wt = rng.standard_normal((m, k)).astype(np.float32)
    wt[rng.random((m, k)) < sparsity] = 0
    values, cols, rowptr = to_csr(wt)
    b = GraphBuilder()
    shape = (1, k, h, w) if h * w > 1 else (1, k)
    ins = [b.add_input("x", shape), b.add_const("v", values), b.add_const("c", cols), b.add_const("r", rowptr),
           b.add_const("b", rng.standard_normal(m).astype(np.float32))]
    b.add_node("SparseConv1x1", ins, ["y"], {"activation": "clip", "act_a": 0.0, "act_b": 6.0}, name="layer")
    b.add_output("y")
    sess = Session(b.finish(), threads=1, options={"sparse": mode})
    feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
    t = time_calls(lambda: sess.run(feeds), runs=runs, warmup=3, min_seconds=0.05)
    return float(np.median(t)) * 1e3, int(np.count_nonzero(wt))  # us


def main(argv=None) -> int:
    from edgert.kernels.spmm import TILE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for (m, k, h, w) in SHAPES:
        P = h * w
        t_dense, _ = time_layer(m, k, h, w, 0.9, "never", args.runs, rng)  # dense time ignores the zeros
        for s in SPARSITIES:
            t_sparse, nnz = time_layer(m, k, h, w, s, "always", args.runs, rng)
            rows.append(dict(m=m, k=k, p=P, sparsity=s, nnz=nnz, dense_us=t_dense, sparse_us=t_sparse))
            print(f"{m:5d} {k:5d} {P:6d}  {s:.2f}  dense {t_dense:8.1f} us  sparse {t_sparse:8.1f} us  "
                  f"{t_dense / t_sparse:5.2f}x", flush=True)
    from scipy.optimize import nnls
    dense_rows = {(r["m"], r["k"], r["p"]): r["dense_us"] for r in rows}
    A = np.array([[m * k * p, m * p] for (m, k, p) in dense_rows])
    y = np.array(list(dense_rows.values()))
    wts = 1.0 / y  # relative error matters, not microseconds
    dense_coef, _ = nnls(A * wts[:, None], y * wts)
    A = np.array([[r["nnz"] * r["p"], r["nnz"] * (r["p"] % TILE != 0), r["m"] * -(-r["p"] // TILE)] for r in rows])
    y = np.array([r["sparse_us"] for r in rows])
    wts = 1.0 / y
    sparse_coef, _ = nnls(A * wts[:, None], y * wts)
    fit = {"DENSE_GFLOPS": 2e-3 / dense_coef[0] if dense_coef[0] else None, "DENSE_OUT_NS": dense_coef[1] * 1e3,
           "SPARSE_GFLOPS": 2e-3 / sparse_coef[0] if sparse_coef[0] else None,
           "SPARSE_NZ_NS": sparse_coef[1] * 1e3, "SPARSE_ROW_NS": sparse_coef[2] * 1e3}
    right = 0
    for r in rows:
        d = dense_coef[0] * r["m"] * r["k"] * r["p"] + dense_coef[1] * r["m"] * r["p"]
        sp = (sparse_coef[0] * r["nnz"] * r["p"] + sparse_coef[1] * r["nnz"] * (r["p"] % TILE != 0)
              + sparse_coef[2] * r["m"] * -(-r["p"] // TILE))
        right += (sp < d) == (r["sparse_us"] < r["dense_us"])
    print("\nfit (1 thread):", ", ".join(f"{k} = {v:.3g}" for k, v in fit.items()))
    print(f"the fitted model picks the faster kernel for {right} of {len(rows)} (shape, sparsity) cases")
    if args.json:
        args.json.write_text(json.dumps({"fit": fit, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
