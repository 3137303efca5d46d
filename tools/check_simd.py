"""Per kernel of a model: does its machine code use vector FMA instructions, and how close to peak does it run?

    python tools/check_simd.py model.ert [--threads 1] [--board rpi-4-4gb | --peak 260] [--markdown out.md]

For every kernel the model's session calls (with the exact argument types it calls it with) the
assembly numba generated for this CPU is scanned for fused multiply-adds:

* x86-64: ``vfmadd/vfmsub/vfnmadd...ps|pd`` (packed) on zmm (512-bit), ymm (256) or xmm (128)
  registers, versus the scalar ``...ss|sd`` forms;
* aarch64: ``fmla``/``fmls`` on ``v`` registers (NEON, ``.4s``/``.2d``/``.8h``), versus scalar
  ``fmadd``/``fmsub`` on ``s``/``d`` registers.

The per-node profiler (``edgert bench --profile``) gives each kernel's time and, for convolutions
and matrix products, its GFLOP/s; "% peak" divides by ``--peak`` per thread (default: the
``peak_gflops_per_core`` of ``--board``, or of the detected board profile). Kernels without
multiply-adds (pooling, elementwise) show no FMA and need none: their bound is memory bandwidth.
numba shows no assembly for cached code, so the kernels are compiled afresh (a cold start's time).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

os.environ["EDGERT_AOT"] = "0"  # numba dispatchers, whose assembly can be inspected
# numba cannot show the assembly of kernels loaded from its cache: compile into a fresh directory.
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgert-check-simd-")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_X86_PACKED = re.compile(r"^\s*vf(?:n?m)(?:add|sub)(?:sub|add)?\d{3}p[sd]\s+(.*)$", re.MULTILINE)
_X86_SCALAR = re.compile(r"^\s*vf(?:n?m)(?:add|sub)\d{3}s[sd]\s", re.MULTILINE)
_ARM_VECTOR = re.compile(r"^\s*fml[as]\s+v\d+\.(\d+[sdh])", re.MULTILINE)
_ARM_SCALAR = re.compile(r"^\s*f(?:n?m)(?:add|sub)\s+[sd]\d+", re.MULTILINE)
_WIDTH = {"zmm": 512, "ymm": 256, "xmm": 128}
_ARM_WIDTH = {"4s": 128, "2d": 128, "8h": 128, "2s": 64, "4h": 64}


def scan_fma(asm: str) -> dict:
    """Counts of vector and scalar FMA instructions in ``asm`` and the widest vector register used."""
    widths = []
    for operands in _X86_PACKED.findall(asm):
        regs = re.findall(r"%?([xyz]mm)\d+", operands)
        widths.append(max((_WIDTH[r] for r in regs), default=128))
    widths += [_ARM_WIDTH.get(arr, 128) for arr in _ARM_VECTOR.findall(asm)]
    scalar = len(_X86_SCALAR.findall(asm)) + len(_ARM_SCALAR.findall(asm))
    return {"vector_fma": len(widths), "scalar_fma": scalar, "widest_bits": max(widths, default=0)}


def default_peak(board) -> float:
    from edgert.boards import detect, load_profile
    profile = load_profile(board) if board else detect()[0]
    return float(profile.cpu.peak_gflops_per_core) if profile else 0.0


def check(model, threads=1, peak=None, board=None, runs=20) -> list[dict]:
    import edgert
    from edgert.aot_build import flat_calls
    from edgert.runtime.profile import profile_session
    sess = edgert.load(model, threads=threads, board=board)
    prof = profile_session(sess, runs=runs)
    peak = peak or default_peak(board)
    per_kernel = defaultdict(lambda: {"nodes": 0, "ms": 0.0, "flop_ms": 0.0, "gflop": 0.0, "sigs": set()})
    for row, (fn, args) in zip(prof["nodes"], sess.steps):
        k = per_kernel[row["kernel"]]
        k["nodes"] += 1
        k["ms"] += row["median_ms"]
        if row["gflops"]:
            k["gflop"] += row["gflops"] * row["median_ms"] * 1e-3
            k["flop_ms"] += row["median_ms"]
        for part, part_args in flat_calls([(fn, args)]):  # a Sequence step: each of its kernels
            if hasattr(part, "inspect_asm"):
                k["sigs"].add((part, tuple(part.typeof_pyval(a) for a in part_args)))
    rows = []
    for name, k in sorted(per_kernel.items(), key=lambda kv: -kv[1]["ms"]):
        fma = {"vector_fma": 0, "scalar_fma": 0, "widest_bits": 0}
        for fn, sig in k["sigs"]:
            found = scan_fma(fn.inspect_asm(sig))
            fma = {"vector_fma": fma["vector_fma"] + found["vector_fma"],
                   "scalar_fma": fma["scalar_fma"] + found["scalar_fma"],
                   "widest_bits": max(fma["widest_bits"], found["widest_bits"])}
        gflops = k["gflop"] / (k["flop_ms"] * 1e-3) if k["flop_ms"] else None
        rows.append({"kernel": name, "nodes": k["nodes"], "ms": k["ms"], "compiled": bool(k["sigs"]), **fma,
                     "gflops": gflops, "pct_peak": 100 * gflops / (peak * threads) if gflops and peak else None})
    return rows, peak, prof["whole_run_median_ms"]


def markdown(rows, model, threads, peak, whole_ms) -> str:
    lines = [f"`{Path(model).name}`, {threads} thread(s), whole run {whole_ms:.2f} ms, peak {peak:.0f} GFLOP/s per thread", "",
             "| kernel | nodes | ms | vector FMA instr. (widest) | scalar FMA instr. | GFLOP/s | % peak |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r["compiled"]:
            fma = "– (numpy)"
        else:
            # A multiply-add kernel without vector FMAs is a finding; a copy or a pool needs none.
            fma = (f"{r['vector_fma']} ({r['widest_bits']}-bit)" if r["vector_fma"]
                   else "**none**" if r["gflops"] else "none (no multiply-adds)")
        lines.append(f"| {r['kernel']} | {r['nodes']} | {r['ms']:.3f} | {fma} | {r['scalar_fma'] if r['compiled'] else '–'} | "
                     + (f"{r['gflops']:.1f} | {r['pct_peak']:.0f}% |" if r["gflops"] else "– | – |"))
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--board", default=None, help="Board profile for the peak (default: detected).")
    ap.add_argument("--peak", type=float, default=None, help="FP32 GFLOP/s per thread (overrides the profile).")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args(argv)
    rows, peak, whole_ms = check(args.model, args.threads, args.peak, args.board, args.runs)
    text = markdown(rows, args.model, args.threads, peak, whole_ms)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)


if __name__ == "__main__":
    main()
