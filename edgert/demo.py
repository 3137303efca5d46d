"""``edgert demo``: the whole pipeline on a built-in model, with no user files.

Builds a small seeded convnet as ONNX (host side), converts it to .ert, runs it with the Numba
kernels, and, when onnxruntime is installed, checks the answer against it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .errors import InputError


def run_demo(out_dir: Path, threads=None, echo=print) -> dict:
    try:
        import onnx
        from converters.convert import convert
        from converters.zoo import MODELS
    except ImportError as exc:
        raise InputError(f"the demo builds its model with the host-side converters ({exc.name} is missing)",
                         hint="pip install 'edgert[convert]'") from None
    from .runtime.bench import time_calls
    from .runtime.session import load

    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path, ert_path = out_dir / "tiny_convnet.onnx", out_dir / "tiny_convnet.ert"
    echo(f"[1/4] building the built-in model (tiny_convnet, seeded weights) -> {onnx_path}")
    onnx.save(MODELS["tiny_convnet"](), onnx_path)
    echo(f"[2/4] converting to edgert IR -> {ert_path}")
    report = convert(onnx_path, ert_path)
    echo(f"      {report.summary()}")
    echo("[3/4] loading and running (the first run compiles kernels unless they are cached)")
    t0 = time.perf_counter()
    sess = load(ert_path, threads=threads)
    load_ms = (time.perf_counter() - t0) * 1e3
    x = np.random.default_rng(0).random(sess.inputs[0].shape).astype(np.float32)
    feeds = {sess.inputs[0].name: x}
    t0 = time.perf_counter()
    out = sess.run(feeds)
    first_ms = (time.perf_counter() - t0) * 1e3
    times = time_calls(lambda: sess.run(feeds), runs=30, warmup=3, min_seconds=0.3)
    name = sess.outputs[0].name
    probs = out[name].reshape(-1)
    top = np.argsort(-probs)[:3]
    echo(f"      output '{name}' {list(out[name].shape)}: top classes "
         + ", ".join(f"{int(k)} ({probs[k]:.3f})" for k in top))
    mem = sess.describe()["memory"]
    echo(f"      load {load_ms:.0f} ms, first run {first_ms:.0f} ms, steady median {np.median(times):.3f} ms"
         f" ({sess.threads} threads); arena {mem['arena_bytes'] / 1024:.0f} KiB vs lower bound "
         f"{mem['lower_bound_bytes'] / 1024:.0f} KiB")
    result = {"output": out[name], "median_ms": float(np.median(times))}
    try:
        import onnxruntime as ort
    except ImportError:
        echo("[4/4] onnxruntime is not installed: skipping the cross-check")
        return result
    ref = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    err = float(np.max(np.abs(ref - out[name])) / max(1e-12, float(np.max(np.abs(ref)))))
    result["rel_err"] = err
    status = "OK" if err <= 1e-4 else "MISMATCH"
    echo(f"[4/4] onnxruntime cross-check: max abs diff / max |output| = {err:.2e}  {status}")
    if err > 1e-4:
        raise InputError(f"demo output differs from onnxruntime (relative error {err:.2e})")
    if sess.describe()["compiled"]["aot"] == 0:
        echo(f"      next: `edgert warm {ert_path}` compiles its kernels ahead of time; later processes then "
             "start without numba (~0.1 s instead of ~0.7 s)")
    return result
