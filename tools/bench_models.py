"""Benchmark edgert against onnxruntime on whole models, side by side in one run, as ratios.

    python tools/bench_models.py                      # all default models, 1 and 2 threads
    python tools/bench_models.py --models mobilenet_v2 --threads 1 --json out.json
    python tools/bench_models.py --markdown BENCHMARKS-foundation.md
    python tools/bench_models.py --models mobilenet_v2,/tmp/mnv2_p90.onnx --threads 1 --no-start

For each model and thread count, edgert and onnxruntime run in the same process, interleaved in
rounds, so machine noise hits both; we report medians and the ratio edgert/ORT (< 1 is faster).
Cold start (empty Numba cache) and warm start (cached kernels: load + first run) are measured in
fresh subprocesses, as is each engine's peak RSS. "foreign" is the CPU time other processes used
during the timed window, in cores: numbers taken with more than ~0.3 foreign cores are noisy.

LiteRT (``ai_edge_litert``, XNNPACK delegate as users get it) runs the very same weights from a
.tflite written by ``converters.tflite_export`` (tools/export_tflite.py), interleaved in the same
rounds, for every model the exporter can express (``--no-litert`` to leave it out).
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

MODELS = {
    # name: (source, input shape)
    "mobilenet_v2": ("zoo:mobilenet_v2", (1, 3, 224, 224)),
    "efficientnet_lite0": ("zoo:efficientnet_lite0", (1, 3, 224, 224)),
    "ppocr_cls": ("rapidocr:ch_ppocr_mobile_v2.0_cls_infer", (1, 3, 48, 192)),
    "ppocr_det_320": ("rapidocr:ch_PP-OCRv4_det_infer", (1, 3, 320, 320)),
    "ppocr_det_640": ("rapidocr:ch_PP-OCRv4_det_infer", (1, 3, 640, 640)),
}


def model_files(name, work: Path):
    """(onnx path, ert path, input shape) for a benchmark model (a name in MODELS, or the path of an
    .onnx file with a static input shape, e.g. a pruned variant); converts once into ``work``."""
    if name not in MODELS and name.endswith(".onnx"):
        onnx_path = Path(name)
        shape = _onnx_input_shape(onnx_path)
        ert_path = work / f"{onnx_path.stem}.ert"
        if not ert_path.exists():
            from converters.convert import convert
            convert(onnx_path, ert_path)
        return onnx_path, ert_path, shape
    source, shape = MODELS[name]
    kind, _, ident = source.partition(":")
    onnx_path = work / f"{name}.onnx"
    if kind == "zoo":
        if not onnx_path.exists():
            import onnx
            from converters.zoo import MODELS as ZOO
            onnx.save(ZOO[ident](), onnx_path)
    else:
        from converters.zoo.fetch import fetch_rapidocr
        onnx_path = fetch_rapidocr()[ident]
    ert_path = work / f"{name}.ert"
    if not ert_path.exists():
        from converters.convert import convert
        inp = _onnx_input_name(onnx_path)
        convert(onnx_path, ert_path, input_shapes={inp: shape})
    return onnx_path, ert_path, shape


def tflite_file(name, onnx_path, work: Path, shape):
    """The model exported to .tflite (NHWC input) for LiteRT, or None (with the reason printed) when
    the exporter cannot express it."""
    from converters.tflite_export import export_tflite
    from edgert.errors import EdgertError
    path = work / f"{Path(name).stem}.tflite"
    if not path.exists():
        try:
            export_tflite(onnx_path, path, input_shapes={_onnx_input_name(onnx_path): shape})
        except EdgertError as exc:
            print(f"   no LiteRT column for {name}: {exc}", flush=True)
            return None
    return path


def _litert_runner(tflite_path, x_nchw, threads):
    """A callable running the exported model once on ``x_nchw`` (fed as NHWC); returns output 0."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(tflite_path), num_threads=threads)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    x = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)) if x_nchw.ndim == 4 else x_nchw

    def run():
        interp.set_tensor(inp, x)
        interp.invoke()
        return interp.get_tensor(out)

    return run


def _onnx_input_shape(path):
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    vi = next(i for i in m.graph.input if i.name not in inits)
    return tuple(int(d.dim_value) for d in vi.type.tensor_type.shape.dim)


def _onnx_input_name(path):
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in inits][0]


class Foreign:
    """CPU time used by other processes during a window, in cores (from /proc/stat minus our rusage)."""

    def __enter__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), _busy_seconds(), _own_seconds()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        self.cores = max(0.0, ((_busy_seconds() - self.busy0) - (_own_seconds() - self.own0)) / wall) if wall else 0.0


def _busy_seconds():
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def steady_state(onnx_path, ert_path, shape, threads, rounds=3, runs=20, min_seconds=0.5, tflite_path=None):
    import onnxruntime as ort
    import edgert
    from edgert.runtime.bench import time_calls
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    sess = edgert.load(ert_path, threads=threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    osess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    feeds_e = {sess.inputs[0].name: x}
    feeds_o = {osess.get_inputs()[0].name: x}
    ours = sess.run(feeds_e)[sess.outputs[0].name]
    theirs = osess.run(None, feeds_o)[0]
    err = float(np.max(np.abs(ours - theirs)) / max(1e-12, float(np.max(np.abs(theirs)))))
    litert = _litert_runner(tflite_path, x, threads) if tflite_path else None
    e_times, o_times, l_times = [], [], []
    with Foreign() as foreign:
        for _ in range(rounds):
            e_times.append(time_calls(lambda: sess.run(feeds_e), runs=runs, warmup=3, min_seconds=min_seconds))
            o_times.append(time_calls(lambda: osess.run(None, feeds_o), runs=runs, warmup=3, min_seconds=min_seconds))
            if litert:
                l_times.append(time_calls(litert, runs=runs, warmup=3, min_seconds=min_seconds))
    e, o = np.concatenate(e_times), np.concatenate(o_times)
    mem = sess.describe()["memory"]
    result = {"threads": threads, "edgert_ms": float(np.median(e)), "edgert_p90_ms": float(np.percentile(e, 90)),
              "ort_ms": float(np.median(o)), "ort_p90_ms": float(np.percentile(o, 90)),
              "ratio": float(np.median(e) / np.median(o)), "rel_err": err, "foreign_cores": round(foreign.cores, 3),
              "arena_bytes": mem["arena_bytes"], "lower_bound_bytes": mem["lower_bound_bytes"]}
    if litert:
        lt = np.concatenate(l_times)
        out = litert()
        result.update({"litert_ms": float(np.median(lt)), "litert_p90_ms": float(np.percentile(lt, 90)),
                       "ratio_litert": float(np.median(e) / np.median(lt)),
                       "litert_rel_err": float(np.max(np.abs(out.reshape(theirs.shape) - theirs))
                                               / max(1e-12, float(np.max(np.abs(theirs)))))})
    return result


_START_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
engine, path, shape, threads = sys.argv[1], sys.argv[2], tuple(map(int, sys.argv[3].split('x'))), int(sys.argv[4])
x = np.random.default_rng(0).random(shape).astype(np.float32)
t1 = time.perf_counter()
if engine == 'edgert':
    import edgert
    s = edgert.load(path, threads=threads)
    t2 = time.perf_counter()
    s.run({s.inputs[0].name: x})
else:
    import onnxruntime as ort
    o = ort.SessionOptions(); o.intra_op_num_threads = threads; o.inter_op_num_threads = 1
    s = ort.InferenceSession(path, o, providers=['CPUExecutionProvider'])
    t2 = time.perf_counter()
    s.run(None, {s.get_inputs()[0].name: x})
t3 = time.perf_counter()
# VmHWM, not ru_maxrss: the latter survives exec and would report the parent's peak.
hwm = [int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]
print(json.dumps({'import_ms': (t1 - t0) * 1e3, 'load_ms': (t2 - t1) * 1e3, 'first_run_ms': (t3 - t2) * 1e3,
                  'start_ms': (t3 - t1) * 1e3, 'peak_rss_mib': hwm}))
"""


def start_times(engine, path, shape, threads, cache_dir=None):
    env = dict(os.environ)
    if cache_dir is not None:
        env["EDGERT_CACHE_DIR"] = str(cache_dir)
    out = subprocess.run([sys.executable, "-c", _START_PROBE, engine, str(path), "x".join(map(str, shape)),
                          str(threads)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(results, command) -> str:
    litert = any("litert_ms" in s for r in results.values() for s in r["steady"])
    lines = [f"Command: `{command}`", "",
             f"Machine: {os.cpu_count()} CPUs, {_cpu_name()}; date {time.strftime('%Y-%m-%d')}", "",
             "| model | threads | edgert median ms (p90) | onnxruntime median ms (p90) | edgert / ORT | rel. error | "
             + ("LiteRT median ms (p90) | edgert / LiteRT | LiteRT rel. error | " if litert else "") + "foreign cores |",
             "|---|---|---|---|---|---|---|" + ("---|---|---|" if litert else "")]
    for name, r in results.items():
        for s in r["steady"]:
            lite = ""
            if litert:
                lite = (f"{s['litert_ms']:.3f} ({s['litert_p90_ms']:.3f}) | **{s['ratio_litert']:.2f}x** | "
                        f"{s['litert_rel_err']:.1e} | " if "litert_ms" in s else "– | – | – | ")
            lines.append(f"| {name} | {s['threads']} | {s['edgert_ms']:.3f} ({s['edgert_p90_ms']:.3f}) | "
                         f"{s['ort_ms']:.3f} ({s['ort_p90_ms']:.3f}) | **{s['ratio']:.2f}x** | {s['rel_err']:.1e} | "
                         f"{lite}{s['foreign_cores']} |")
    if not all("cold" in r for r in results.values()):
        return "\n".join(lines) + "\n"
    lines += ["", "Start-up, fresh process, 1 thread (cold = empty Numba cache; warm = cached kernels). "
              "start = import of the engine + load + first run (numpy's import excluded).", "",
              "| model | edgert cold start ms | edgert warm start ms (load + first run) | ORT start ms (session + first run) | warm / ORT | edgert peak RSS MiB | ORT peak RSS MiB | arena KiB | lower bound KiB | arena / bound |"
              + (" LiteRT start ms (load + first run) | warm / LiteRT | LiteRT peak RSS MiB |" if litert else ""),
              "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if litert else "")]
    for name, r in results.items():
        c, w, o = r["cold"], r["warm"], r["ort_start"]
        s = r["steady"][0]
        lite = ""
        if litert:
            t = r.get("litert_start")
            lite = (f" {t['start_ms']:.0f} ({t['load_ms']:.0f} + {t['first_run_ms']:.0f}) | "
                    f"{w['start_ms'] / t['start_ms']:.2f}x | {t['peak_rss_mib']:.0f} |" if t else " – | – | – |")
        lines.append(f"| {name} | {c['start_ms']:.0f} | {w['start_ms']:.0f} ({w['load_ms']:.0f} + {w['first_run_ms']:.0f}) | "
                     f"{o['start_ms']:.0f} ({o['load_ms']:.0f} + {o['first_run_ms']:.0f}) | {w['start_ms'] / o['start_ms']:.2f}x | "
                     f"{w['peak_rss_mib']:.0f} | {o['peak_rss_mib']:.0f} | {s['arena_bytes'] / 1024:.0f} | "
                     f"{s['lower_bound_bytes'] / 1024:.0f} | {s['arena_bytes'] / max(1, s['lower_bound_bytes']):.3f} |"
                     + lite)
    return "\n".join(lines) + "\n"


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def report(results, text, args) -> None:
    """Print the tables and write them (and the raw results) where --markdown / --json say."""
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default=None, help="Directory for converted models (default: a temp dir).")
    ap.add_argument("--no-start", action="store_true", help="Skip the cold/warm start-up probes.")
    ap.add_argument("--no-litert", action="store_true", help="Leave out LiteRT on the exported .tflite files.")
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None, help="Write the tables to this file.")
    args = ap.parse_args(argv)
    command = "python tools/bench_models.py " + " ".join(argv if argv is not None else sys.argv[1:])
    work = Path(args.work or tempfile.mkdtemp(prefix="edgert-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.models.split(","):
        onnx_path, ert_path, shape = model_files(name, work)
        print(f"== {name} {shape}", flush=True)
        tflite_path = None if args.no_litert else tflite_file(name, onnx_path, work, shape)
        r = {}
        if not args.no_start:
            cold_cache = Path(tempfile.mkdtemp(prefix="edgert-cold-"))
            r["cold"] = start_times("edgert", ert_path, shape, 1, cache_dir=cold_cache)
            r["warm"] = start_times("edgert", ert_path, shape, 1, cache_dir=cold_cache)
            r["ort_start"] = start_times("ort", onnx_path, shape, 1)
            if tflite_path:
                from tools.bench_tflite import litert_start
                nhwc = (shape[0], *shape[2:], shape[1]) if len(shape) == 4 else shape
                r["litert_start"] = litert_start(tflite_path, nhwc, 1)
        r["steady"] = [steady_state(onnx_path, ert_path, shape, int(t), rounds=args.rounds, tflite_path=tflite_path)
                       for t in args.threads.split(",")]
        for s in r["steady"]:
            lite = (f"  litert {s['litert_ms']:.3f} ms  ratio {s['ratio_litert']:.2f}  err {s['litert_rel_err']:.1e}"
                    if "litert_ms" in s else "")
            print(f"   {s['threads']}t edgert {s['edgert_ms']:.3f} ms  ort {s['ort_ms']:.3f} ms  "
                  f"ratio {s['ratio']:.2f}  err {s['rel_err']:.1e}{lite}  foreign {s['foreign_cores']}", flush=True)
        if args.no_start:
            results[name] = r
            continue
        print(f"   cold {r['cold']['start_ms']:.0f} ms  warm {r['warm']['start_ms']:.0f} ms  "
              f"ort {r['ort_start']['start_ms']:.0f} ms", flush=True)
        results[name] = r
    report(results, markdown(results, command), args)


if __name__ == "__main__":
    main()
