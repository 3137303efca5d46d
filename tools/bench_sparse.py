"""Sparse inference benchmark: pruned MobileNetV2 (and EfficientNet-Lite0) in edgert vs onnxruntime and
LiteRT running the same weights dense, and the two real sparse MediaPipe models vs LiteRT.

    python tools/bench_sparse.py --threads 1              # prints the tables
    python tools/bench_sparse.py --threads 1,2 --markdown BENCHMARKS.md   # replaces its own section

Models are pruned with ``edgert prune`` semantics (per-layer magnitude pruning of 1x1/FC weights, no
fine-tuning: accuracy is not the point here) at 0/70/80/90/95%, converted once (the sparsify pass
stores the pruned layers as CSR), then run with ``tools/bench_models.steady_state``: edgert (cost
model on, the default), onnxruntime on the pruned ONNX (dense kernels; zeros are just numbers to it),
LiteRT on the same weights exported by ``tools/export_tflite.py``, all interleaved in rounds so that
machine noise hits every engine. "edgert dense" is edgert with ``--sparse off`` on the same file,
timed in the same rounds, to show what the sparse path itself buys.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPARSITIES = (0.0, 0.7, 0.8, 0.9, 0.95)
REAL = ("face_detection_full_range_sparse", "pose_detection")
BEGIN, END = "<!-- bench_sparse:begin -->", "<!-- bench_sparse:end -->"


def pruned_models(model: str, work: Path, sparsities) -> list:
    """[(label, onnx path)]: the zoo model pruned to each sparsity (0 = as built)."""
    import onnx

    from converters.prune import prune_onnx_model
    from converters.zoo import MODELS as ZOO
    out = []
    for s in sparsities:
        path = work / f"{model}_p{round(s * 100):02d}.onnx"
        if not path.exists():
            m = ZOO[model]()
            if s:
                prune_onnx_model(m, s)
            onnx.save(m, path)
        out.append((f"{model} {s:.0%}", path))
    return out


def edgert_dense_ms(ert_path, shape, threads, runs=20, rounds=3) -> float:
    import edgert
    from edgert.runtime.bench import time_calls
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    sess = edgert.load(ert_path, threads=threads, options={"sparse": "never"})
    feeds = {sess.inputs[0].name: x}
    times = [time_calls(lambda: sess.run(feeds), runs=runs, warmup=3, min_seconds=0.5) for _ in range(rounds)]
    return float(np.median(np.concatenate(times)))


def sparse_layers(ert_path, threads) -> str:
    import edgert
    nodes = [n for n in edgert.load(ert_path, threads=threads).describe()["nodes"] if n["op"] == "SparseConv1x1"]
    return f"{sum(n['kernel'].startswith('f32_spmm') for n in nodes)}/{len(nodes)}"


def markdown(zoo_rows, real_rows, command) -> str:
    from tools.bench_models import _cpu_name
    lines = [BEGIN, "## Sparse inference (pruned 1x1/FC weights)", "",
             f"Command: `{command}`", "",
             f"Machine: {_cpu_name()}; date {time.strftime('%Y-%m-%d')}. Weights pruned per layer by magnitude "
             "without fine-tuning (speed only). onnxruntime and LiteRT run the same pruned weights dense. "
             "sparse layers = SparseConv1x1 nodes the cost model ran on the CSR kernel / all of them. "
             "edgert dense = the same .ert with `--sparse off`. foreign cores = CPU time other processes used while "
             "timing, in cores: above ~0.3 the absolute times are noisy (the ratios less so: engines are "
             "interleaved).", "",
             "| model | threads | file MB | sparse layers | edgert ms | edgert dense ms | ORT ms | edgert / ORT "
             "| LiteRT ms | edgert / LiteRT | rel. error vs ORT | foreign cores |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in zoo_rows:
        lite = (f"{r['litert_ms']:.2f} | **{r['ratio_litert']:.2f}x**" if "litert_ms" in r else "– | –")
        lines.append(f"| {r['label']} | {r['threads']} | {r['file_mb']:.2f} | {r['sparse_layers']} | "
                     f"{r['edgert_ms']:.2f} | {r['edgert_dense_ms']:.2f} | {r['ort_ms']:.2f} | **{r['ratio']:.2f}x** | "
                     f"{lite} | {r['rel_err']:.1e} | {r['foreign_cores']} |")
    if real_rows:
        lines += ["", "Real sparse TFLite models (70-75% zeros, DENSIFY in the file) vs LiteRT (XNNPACK):", "",
                  "| model | threads | sparse layers | edgert ms | edgert dense ms | LiteRT ms | edgert / LiteRT | "
                  "rel. error | foreign cores |", "|---|---|---|---|---|---|---|---|---|"]
        for r in real_rows:
            lines.append(f"| {r['label']} | {r['threads']} | {r['sparse_layers']} | {r['edgert_ms']:.3f} | "
                         f"{r['edgert_dense_ms']:.3f} | {r['litert_ms']:.3f} | **{r['ratio']:.2f}x** | "
                         f"{r['rel_err']:.1e} | {r['foreign_cores']} |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace this script's section of BENCHMARKS.md (or append it), atomically."""
    from edgert.fileio import atomic_write
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n?", re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    with atomic_write(path, "w") as fh:
        fh.write(new)


def main(argv=None) -> int:
    from tools import bench_models as BM
    from tools import bench_tflite as BT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1")
    ap.add_argument("--models", default="mobilenet_v2", help="zoo models to prune (e.g. mobilenet_v2,efficientnet_lite0)")
    ap.add_argument("--sparsities", default=",".join(str(s) for s in SPARSITIES))
    ap.add_argument("--real", default=",".join(REAL), help="MediaPipe models to run vs LiteRT ('' for none)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-litert", action="store_true")
    ap.add_argument("--work", default=None)
    ap.add_argument("--markdown", default=None, help="Write (replace) the section in this file, e.g. BENCHMARKS.md")
    args = ap.parse_args(argv)
    command = "python tools/bench_sparse.py " + " ".join(argv if argv is not None else sys.argv[1:])
    work = Path(args.work or tempfile.mkdtemp(prefix="edgert-sparse-"))
    work.mkdir(parents=True, exist_ok=True)
    threads = [int(t) for t in args.threads.split(",")]
    zoo_rows, real_rows = [], []
    for model in [m for m in args.models.split(",") if m]:
        for label, onnx_path in pruned_models(model, work, [float(s) for s in args.sparsities.split(",")]):
            onnx_path, ert_path, shape = BM.model_files(str(onnx_path), work)
            tflite_path = None if args.no_litert else BM.tflite_file(onnx_path.name, onnx_path, work, shape)
            for t in threads:
                r = BM.steady_state(onnx_path, ert_path, shape, t, rounds=args.rounds, tflite_path=tflite_path)
                r.update(label=label, file_mb=ert_path.stat().st_size / 1e6, sparse_layers=sparse_layers(ert_path, t),
                         edgert_dense_ms=edgert_dense_ms(ert_path, shape, t, rounds=args.rounds))
                zoo_rows.append(r)
                print(f"{label:<24} {t}t edgert {r['edgert_ms']:.2f} ms (dense {r['edgert_dense_ms']:.2f})  "
                      f"ort {r['ort_ms']:.2f} ms  ratio {r['ratio']:.2f}"
                      + (f"  litert {r['litert_ms']:.2f} ms ratio {r['ratio_litert']:.2f}" if "litert_ms" in r else "")
                      + f"  layers {r['sparse_layers']}  foreign {r['foreign_cores']}", flush=True)
    for name in [m for m in args.real.split(",") if m]:
        tflite_path, ert_path, shape = BT.model_files(name, work)
        for t in threads:
            r = BT.steady_state(tflite_path, ert_path, shape, t, rounds=args.rounds)
            r.update(label=name, sparse_layers=sparse_layers(ert_path, t),
                     edgert_dense_ms=edgert_dense_ms(ert_path, shape, t, rounds=args.rounds))
            real_rows.append(r)
            print(f"{name:<34} {t}t edgert {r['edgert_ms']:.3f} ms (dense {r['edgert_dense_ms']:.3f})  "
                  f"litert {r['litert_ms']:.3f} ms  ratio {r['ratio']:.2f}  layers {r['sparse_layers']}  "
                  f"foreign {r['foreign_cores']}", flush=True)
    text = markdown(zoo_rows, real_rows, command)
    print(text)
    if args.markdown:
        write_section(Path(args.markdown), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
