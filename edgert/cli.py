"""The ``edgert`` command line: convert, run, inspect, bench, demo.

Every failure edgert anticipates is an ``EdgertError``: the CLI prints one line and exits with that
error's code (``--debug`` shows the traceback). Converters are imported only inside the commands
that need them, so the board-side install (numpy, numba, click) runs everything but ``convert``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import click
import numpy as np

from .errors import EdgertError, InputError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgertError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"edgert: {exc.kind}: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where compiled kernels live: numba's cache and the AOT library (default "
                   "$EDGERT_CACHE_DIR or ~/.cache/edgert). Entries are keyed by CPU model and features, so "
                   "one directory (e.g. on shared storage) serves several boards.")
@click.version_option(package_name="edgert")
@click.pass_context
def main(ctx, debug, cache_dir):
    """edgert: run sparse, memory-frugal models on edge boards."""
    ctx.ensure_object(dict)["debug"] = debug
    if cache_dir:  # before any kernel module is imported (they are imported by the commands)
        os.environ["EDGERT_CACHE_DIR"] = str(Path(cache_dir).resolve())


def parse_dims(text: str):
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise InputError(f"bad dims {text!r}; write them like 1x3x224x224")
    return dims


def parse_assignments(values, what):
    out = {}
    for item in values:
        name, sep, rest = item.partition("=")
        if not sep or not name or not rest:
            raise InputError(f"bad {what} {item!r}; write NAME=VALUE")
        out[name] = rest
    return out


@main.command()
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(dir_okay=False), help="The .ert file to write.")
@click.option("--input-shape", multiple=True, metavar="NAME=DIMS", help="Fix an input's shape, e.g. input=1x3x224x224.")
@click.option("--fp16", is_flag=True, help="Store float weights in half precision (computed in fp32).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--sparse-threshold", type=float, default=None, metavar="FRACTION",
              help="Store 1x1 conv/FC weights sparse from this fraction of zeros (default 0.5; above 1: never).")
def convert(src, dst, input_shape, fp16, quiet, sparse_threshold):
    """Convert an ONNX or TFLite model to an .ert file."""
    try:
        from converters.convert import convert as run_convert
    except ImportError as exc:
        raise InputError(f"the converters are not installed ({exc.name})",
                         hint="pip install 'edgert[convert]' on the host; boards only need the .ert file") from None
    shapes = {k: parse_dims(v) for k, v in parse_assignments(input_shape, "--input-shape").items()}
    t0 = time.perf_counter()
    with _Progress(enabled=not quiet) as progress:
        report = run_convert(src, dst, input_shapes=shapes, fp16=fp16, progress=progress,
                             sparse_threshold=sparse_threshold)
    click.echo(f"wrote {dst}: {report.summary()} in {time.perf_counter() - t0:.2f} s")


class _Progress:
    """A progress bar on stderr, driven by (stage, done, total) callbacks."""

    def __init__(self, enabled=True):
        self.enabled = enabled and sys.stderr.isatty()
        self.stage = None
        self.bar = None

    def __call__(self, stage, done, total):
        if not self.enabled:
            return
        if stage != self.stage:
            self._close()
            self.stage = stage
            self.bar = click.progressbar(length=max(total, 1), label=f"{stage:<12}", file=sys.stderr)
            self.bar.__enter__()
            self.done = 0
        self.bar.update(done - self.done)
        self.done = done

    def _close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._close()


def _load(model, threads, board, memory_budget=None, input_shapes=None):
    from .runtime.session import load
    return load(model, threads=threads, board=board, memory_budget=memory_budget, input_shapes=input_shapes)


def _sparse_option(f):
    """--sparse auto|on|off: how SparseConv1x1 layers run (the cost model's choice, or forced)."""
    def remember(ctx, param, value):
        if value is not None:
            os.environ["EDGERT_SPARSE"] = value  # read by the op's prepare (edgert/ops/sparse.py)
        return value
    return click.option("--sparse", type=click.Choice(["auto", "on", "off"]), default=None, expose_value=False,
                        callback=remember, help="Sparse 1x1/FC layers: cost model (auto), CSR kernel (on) or "
                                                "dense GEMM (off). Default: auto or $EDGERT_SPARSE.")(f)


def _layout_option(f):
    """--layout auto|blocked|nchw: where tensors are kept channel-blocked (edgert/runtime/layout.py)."""
    def remember(ctx, param, value):
        if value is not None:
            os.environ["EDGERT_LAYOUT"] = value  # read by prepare (edgert/runtime/prepare.py)
        return value
    return click.option("--layout", type=click.Choice(["auto", "blocked", "nchw"]), default=None, expose_value=False,
                        callback=remember, help="Tensor layout: channel-blocked regions where a chain of convs "
                                                "can use them (auto), every node that can (blocked), or NCHW "
                                                "only (nchw). Default: auto or $EDGERT_LAYOUT.")(f)


def _budget_option(f):
    return click.option("--memory-budget", default=None, metavar="SIZE",
                        help='Memory the model may use, e.g. 600MiB (overrides the board profile).')(f)


def _read_inputs(sess, inputs, seed):
    given = parse_assignments(inputs, "--input")
    feeds = {}
    for spec in sess.inputs:
        if spec.name in given:
            path = Path(given.pop(spec.name))
            try:
                feeds[spec.name] = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot read input '{spec.name}' from {path}: {exc}") from None
        else:
            rng = np.random.default_rng(seed)
            feeds[spec.name] = rng.random(spec.shape, dtype=np.float64).astype(spec.dtype) \
                if spec.dtype.kind == "f" else np.zeros(spec.shape, spec.dtype)
    if given:
        raise InputError(f"the model has no input(s) {sorted(given)}; inputs: {[s.name for s in sess.inputs]}")
    return feeds


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--input", "inputs", multiple=True, metavar="NAME=FILE.npy",
              help="An input array (.npy). Inputs not given are filled with seeded uniform noise.")
@click.option("--output", "output", type=click.Path(dir_okay=False), help="Write all outputs to this .npz file.")
@click.option("--threads", type=int, default=None, help="Kernel threads (default: all CPUs).")
@click.option("--board", default=None, help="Board profile id (see `edgert boards`).")
@click.option("--seed", default=0, show_default=True, help="Seed for generated inputs.")
@click.option("--codebook", "codebook", multiple=True, metavar="LAYER:ACTION",
              help="Intervene on a codebook layer: LAYER:force=12,40, LAYER:block=0, LAYER:disable=7, "
                   "LAYER:group=1, LAYER:positions=0,3, LAYER:keep-k=no, LAYER:bypass (repeatable).")
@click.option("--emit-codes", is_flag=True,
              help="Print the codes each codebook/key-value layer chose (saved as codes/LAYER in --output).")
@click.option("--tile", default=None, metavar="auto|DxHxW",
              help="Run over sliding windows of this size (auto: the largest that fits the memory budget). "
                   "Without it, windows are used when the whole-volume plan does not fit the budget.")
@click.option("--overlap", default=0.25, show_default=True, help="Tiled runs: fraction of a window shared by neighbours.")
@click.option("--blend", type=click.Choice(["gaussian", "constant"]), default="gaussian", show_default=True,
              help="Tiled runs: how overlapping windows are weighted (as MONAI's sliding_window_inference).")
@click.option("--exact", is_flag=True, help="Tiled runs: windows overlap by the receptive field and each voxel comes "
                                            "from one window, so the result equals the whole-volume run.")
@_sparse_option
@_layout_option
@_budget_option
def run(model, inputs, output, threads, board, seed, codebook, emit_codes, memory_budget, tile, overlap, blend, exact):
    """Run a model once and print (or save) its outputs."""
    from .cli_codebook import apply_codebook_options, describe_codes
    from .cli_tiling import check_options, decide, run_tiled
    check_options(tile, overlap, codebook, emit_codes)
    route = decide(model, inputs, threads, board, memory_budget, tile, exact)
    if route and route[0] == "tile":
        check_options("auto", overlap, codebook, emit_codes)
        return run_tiled(model, route[1], output, threads, board, memory_budget, tile, overlap, blend, exact, route[2])
    sess = _load(model, threads, board, memory_budget, input_shapes=route[1] if route else None)
    for line in apply_codebook_options(sess, codebook):
        click.echo(line)
    feeds = _read_inputs(sess, inputs, seed)
    t0 = time.perf_counter()
    outs = sess.run(feeds)
    ms = (time.perf_counter() - t0) * 1e3
    codes = sess.codes() if emit_codes else {}
    if emit_codes and not codes:
        raise InputError("--emit-codes: the model has no codebook or key-value layer", file=model)
    for name, value in outs.items():
        click.echo(f"{name}: shape {list(value.shape)} {value.dtype}  min {value.min():.6g}  max {value.max():.6g}"
                   f"  mean {value.mean():.6g}" if value.size else f"{name}: empty {list(value.shape)}")
    click.echo(f"first run: {ms:.2f} ms (includes kernel compilation on a cold cache)")
    for line in describe_codes(codes):
        click.echo(line)
    if output:
        from .fileio import atomic_write
        with atomic_write(output) as fh:
            np.savez(fh, **outs, **{f"codes/{name}": ids for name, ids in codes.items()})
        click.echo(f"wrote {output}")


def _fmt_bytes(n):
    from .boards import format_bytes
    return format_bytes(int(n))


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--threads", type=int, default=None)
@click.option("--board", default=None, help="Board profile id: show the fit against its memory budget.")
@_sparse_option
@_layout_option
@_budget_option
def inspect(model, as_json, threads, board, memory_budget):
    """Show what the runtime decided: ops, kernels and why, weights, memory plan."""
    info = _load(model, threads, board, memory_budget).describe()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"model {info['file']}  ({info['threads']} threads)")
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            click.echo(f"  {kind[:-1]:<6} {t['name']}  {t['shape']}  {t['dtype']}")
    click.echo(f"\n{'node':<40} {'op':<18} {'output':<20} {'layout':<8} {'kernel':<26} why")
    for n in info["nodes"]:
        in_place = f"; in place: saves {_fmt_bytes(n['in_place_bytes'])}" if n.get("in_place_bytes") else ""
        click.echo(f"{n['name'][:40]:<40} {n['op']:<18} {'x'.join(map(str, n['shape'])):<20} {n['layout']:<8} "
                   f"{n['kernel']:<26} {n['reason']}{in_place}")
    mem, lay = info["memory"], info["layout"]
    if lay["blocked_nodes"]:
        click.echo(f"\nlayout ({lay['mode']}): {lay['blocked_nodes']} nodes on channel-blocked tensors "
                   f"({lay['block']} channels per vector), {lay['reorders']} reorder{'s' if lay['reorders'] != 1 else ''}"
                   " to or from NCHW"
                   + (f"; {lay['fused_prelu']} PRelu folded into the conv before it" if lay["fused_prelu"] else ""))
    else:
        click.echo(f"\nlayout ({lay['mode']}): NCHW throughout")
    click.echo(f"ops: {len(info['nodes'])}   weights: {_fmt_bytes(info['weight_bytes'])} (memory-mapped)"
               f"   packed weights: {_fmt_bytes(info['packed_bytes'])}")
    click.echo(f"arena: {_fmt_bytes(mem['arena_bytes'])}   lower bound: {_fmt_bytes(mem['lower_bound_bytes'])}"
               f"   ratio {mem['ratio']:.3f} ({mem['strategy']}, {mem['buffers']} buffers)")
    if "gap_arena_bytes" in mem:
        gap = (f"not reused by a band-written output for {mem['reuse_gap']} steps" if mem["reuse_gap"] else
               "reused at once: the memory budget has no room for the reuse gap")
        click.echo(f"threads: a buffer every worker reads is {gap} (arena {_fmt_bytes(mem['plain_arena_bytes'])}"
                   f" without the gap, {_fmt_bytes(mem['gap_arena_bytes'])} with)")
    saved = sum(n.get("in_place_bytes", 0) for n in info["nodes"])
    if saved:
        click.echo(f"in place: {sum(1 for n in info['nodes'] if n.get('in_place_bytes'))} nodes write over their "
                   f"input, {_fmt_bytes(saved)} of outputs never allocated")
    for name, r in ((info.get("metadata") or {}).get("memory_reducers") or {}).items():
        if r.get("saved_bytes") is not None:
            click.echo(f"reducer {name}: {r.get('blocks', 0)} blocks, arena {_fmt_bytes(r['arena_bytes_without'])} -> "
                       f"{_fmt_bytes(r['arena_bytes_with'])} at conversion (saves {_fmt_bytes(r['saved_bytes'])})")
    fit = info["budget"]
    if fit["budget_bytes"] is not None:
        click.echo(f"budget{' (' + info['board'] + ')' if info['board'] else ''}: needs {_fmt_bytes(fit['need_bytes'])}"
                   f" of {_fmt_bytes(fit['budget_bytes'])}: fits")
    if info.get("blas"):
        click.echo(f"threads: {info['blas']}")
    c = info["compiled"]
    click.echo(f"kernels: {c['aot']} steps ahead-of-time compiled, {c['jit']} numba JIT, {c['python']} numpy"
               + ("" if c["jit"] or not c["aot"] else " (numba not needed)")
               + ("; `edgert warm MODEL` builds the AOT library" if c["jit"] and not c["aot"] else ""))


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--threads", type=int, default=None)
@click.option("--board", default=None)
@click.option("--runs", default=50, show_default=True, help="Timed runs (at least).")
@click.option("--warmup", default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--profile", "profile", is_flag=True, help="Time every node: slowest nodes, time per op, overhead.")
@click.option("--trace", default=None, type=click.Path(dir_okay=False),
              help="With --profile: write a Chrome/Perfetto trace (JSON) of one run.")
@click.option("--top", default=15, show_default=True, help="With --profile: how many slowest nodes to list.")
@_sparse_option
@_layout_option
@_budget_option
def bench(model, threads, board, runs, warmup, as_json, profile, trace, top, memory_budget):
    """Time a model: load, first run, then median/p90 latency and peak RSS (--profile: per node)."""
    if profile or trace:
        return _bench_profile(model, threads, board, runs, warmup, as_json, trace, top, memory_budget)
    from .runtime.bench import bench_model
    result = bench_model(model, threads=threads, board=board, runs=runs, warmup=warmup, memory_budget=memory_budget)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['model']}  threads {result['threads']}")
    c = result["compiled"]
    click.echo(f"load+prepare {result['load_ms']:.1f} ms   first run {result['first_run_ms']:.1f} ms   "
               f"(steps: {c['aot']} AOT, {c['jit']} JIT, {c['python']} numpy)")
    click.echo(f"latency median {result['median_ms']:.3f} ms   p90 {result['p90_ms']:.3f} ms   min {result['min_ms']:.3f} ms"
               f"   ({result['runs']} runs)")
    click.echo(f"peak RSS {result['peak_rss_mib']:.1f} MiB   arena {_fmt_bytes(result['arena_bytes'])}")


def _bench_profile(model, threads, board, runs, warmup, as_json, trace, top, memory_budget):
    from .runtime.profile import by_op, chrome_trace, profile_session
    sess = _load(model, threads, board, memory_budget)
    prof = profile_session(sess, runs=min(runs, 200), warmup=warmup)
    if trace:
        chrome_trace(prof, trace)
    if as_json:
        click.echo(json.dumps(prof, indent=2))
        return
    click.echo(f"{model}  threads {prof['threads']}  {prof['runs']} profiled runs")
    click.echo(f"whole run median {prof['whole_run_median_ms']:.3f} ms = kernels {prof['sum_of_node_medians_ms']:.3f} ms"
               f" + executor overhead {prof['overhead_ms']:.3f} ms")
    click.echo(f"\n{'op':<18} {'kernel':<28} {'nodes':>5} {'ms':>9} {'share':>6}")
    total = max(prof["sum_of_node_medians_ms"], 1e-9)
    for op, kernel, count, ms in by_op(prof):
        click.echo(f"{op:<18} {kernel:<28} {count:>5} {ms:>9.3f} {100 * ms / total:>5.1f}%")
    click.echo(f"\nslowest {top} nodes")
    click.echo(f"{'node':<36} {'op':<16} {'kernel':<28} {'output':<18} {'ms':>8} {'GFLOP/s':>8}")
    for n in sorted(prof["nodes"], key=lambda n: -n["median_ms"])[:top]:
        gf = f"{n['gflops']:.1f}" if n["gflops"] else "-"
        click.echo(f"{n['name'][:36]:<36} {n['op']:<16} {n['kernel']:<28} {'x'.join(map(str, n['shape'])):<18} "
                   f"{n['median_ms']:>8.3f} {gf:>8}")
    if trace:
        click.echo(f"\nwrote {trace} (open in chrome://tracing or ui.perfetto.dev)")


@main.command()
@click.argument("src", type=click.Path(dir_okay=False, exists=True))
@click.option("-o", "--output", "dst", required=True, type=click.Path(dir_okay=False),
              help="The pruned model (same format as SRC: .onnx or .ert).")
@click.option("--sparsity", type=float, required=True, help="Fraction of each 1x1/FC layer's weights to zero.")
@click.option("--block", default=None, metavar="ROWSxCOLS", help="Prune blocks of output x input channels, e.g. 4x1.")
def prune(src, dst, sparsity, block):
    """Magnitude-prune 1x1 convolution and fully connected weights (accuracy needs fine-tuning)."""
    try:
        from converters.prune import WARNING, prune_file
    except ImportError as exc:
        raise InputError(f"the converters are not installed ({exc.name})",
                         hint="pip install 'edgert[convert]' on the host") from None
    report = prune_file(src, dst, sparsity, block)
    click.echo(f"wrote {dst}: {report.summary()}")
    click.echo(f"warning: {WARNING}", err=True)


@main.command()
@click.option("--detect", is_flag=True, help="Identify this machine's board from /proc.")
@click.option("--json", "as_json", is_flag=True)
def boards(detect, as_json):
    """List board profiles, or detect the board this runs on."""
    from . import boards as B
    if detect:
        profile, found = B.detect()
        info = {"profile": profile.id if profile else None, "model": found.model, "cpu_parts": list(found.cpu_parts),
                "machine": found.machine, "kernel_machine": found.kernel_machine,
                "userland_bits": found.userland_bits, "matched_by": found.matched_by,
                "numba_supported": found.numba_supported, "warnings": list(found.warnings)}
        if as_json:
            click.echo(json.dumps(info, indent=2))
            return
        click.echo(f"board: {info['profile'] or 'unknown'} (matched by {found.matched_by}); model {found.model!r};"
                   f" {found.kernel_machine} kernel, {found.userland_bits}-bit userland")
        for warning in found.warnings:
            click.echo(f"warning: {warning}")
        return
    profiles = [B.load_profile(i) for i in B.list_profiles()]
    if as_json:
        click.echo(json.dumps([{"id": p.id, "name": p.name, "threads": p.runtime.default_threads,
                                "budget_bytes": p.memory.budget_bytes} for p in profiles], indent=2))
        return
    click.echo(f"{'id':<18} {'threads':>7} {'budget':>10}  name")
    for p in profiles:
        click.echo(f"{p.id:<18} {p.runtime.default_threads:>7} {_fmt_bytes(p.memory.budget_bytes):>10}  {p.name}")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--board", default=None)
@click.option("--threads", type=int, default=None)
@click.option("--aot/--no-aot", "build_aot", default=True, show_default=True,
              help="Also compile the model's serial kernels ahead of time into this host's library "
                   "(later starts then need no numba/LLVM; needs gcc and Python headers).")
@_layout_option
def warm(model, board, threads, build_aot):
    """Compile every kernel the model needs ahead of time, so later starts and first runs are fast.

    Fills numba's kernel cache (used by kernels that run on several threads) and, with --aot (the
    default), builds an extension module of the serial kernels for this CPU, checked against the JIT.
    """
    t0 = time.perf_counter()
    user_aot = os.environ.get("EDGERT_AOT")
    os.environ["EDGERT_AOT"] = "0"  # compile and check with the JIT; the library is only read afterwards
    sess = _load(model, threads, board)
    feeds = {s.name: np.random.default_rng(0).standard_normal(s.shape).astype(s.dtype) for s in sess.inputs}
    sess.run(feeds)
    from .kernels._jit import cache_dir
    click.echo(f"numba cache: {len(sess.steps)} steps compiled in {time.perf_counter() - t0:.2f} s ({cache_dir()})")
    if not build_aot:
        return
    import platform

    from . import aot, aot_build
    if sess.board is not None and sess.board.arch != platform.machine():
        click.echo(f"note: --board {sess.board.id} is {sess.board.arch}; kernels are compiled for this machine "
                   f"({platform.machine()}). Run edgert warm on the board itself for its cache and library.")
    serial = sess if sess.threads == 1 else _load(model, 1, board)
    entries, skipped = aot_build.session_entries(sess)
    if serial is not sess:
        entries += aot_build.session_entries(serial)[0]
    if skipped:
        kinds = sorted({name.split(":")[1] for name, _ in skipped})
        click.echo(f"not ahead of time: {len(skipped)} step(s) of parallel kernels at {sess.threads} threads "
                   f"({', '.join(kinds)}); they load from numba's cache")
    try:
        report = aot_build.build(entries, progress=_progress_printer("AOT compile"))
    except aot_build.AOTUnavailable as exc:
        click.echo(f"AOT library not built: {exc}; numba's cache is warm")
        return
    expected = serial.run(feeds)
    if user_aot is None:
        del os.environ["EDGERT_AOT"]
    else:
        os.environ["EDGERT_AOT"] = user_aot
    aot.forget()
    check = _load(model, 1, board)
    got = check.run(feeds)
    worst = max(float(np.max(np.abs(got[k].astype(np.float64) - expected[k])) / (np.max(np.abs(expected[k])) or 1.0))
                for k in expected)
    counts = check.describe()["compiled"]
    what = "built" if report["built"] else "already had"
    click.echo(f"AOT library {what} {report['entries']} kernel signature(s) ({report['new']} new, "
               f"{report['seconds']:.1f} s): {report['dir']}")
    click.echo(f"1-thread session: {counts['aot']} AOT / {counts['jit']} JIT / {counts['python']} numpy steps; "
               f"outputs vs the JIT: max relative difference {worst:.1e}")
    if worst > 1e-5:
        raise click.ClickException(f"the AOT kernels differ from the JIT by {worst:.1e}: remove {report['dir']} "
                                   "and report a bug")


def _progress_printer(label):
    def show(i, n, what):
        click.echo(f"\r{label}: {i + 1}/{n} {what.split(':')[-1]:<40}", nl=False, err=True)
        if i + 1 == n:
            click.echo("", err=True)
    return show


@main.command("kv-update")
@click.argument("model", type=click.Path(dir_okay=False, exists=True))
@click.option("--layer", required=True, help="KeyValueLookup node name, or its index among the model's KV layers.")
@click.option("--from", "updates", required=True, type=click.Path(dir_okay=False, exists=True),
              help="An .npz with 'indices' ([n] flat head*M+key, or [n, 2] (head, key)) and 'values' [n, dv].")
@click.option("-o", "--output", "dst", default=None, type=click.Path(dir_okay=False),
              help="Write the updated model here instead of replacing MODEL (always atomic).")
def kv_update(model, layer, updates, dst):
    """Replace value rows of a key-value bottleneck layer, atomically (old or new model, never a mix)."""
    from .cli_codebook import read_kv_updates
    from .kv_update import update_values
    indices, values = read_kv_updates(updates)
    layer = int(layer) if layer.lstrip("-").isdigit() else layer
    target = update_values(model, layer, (indices, values), out=dst)
    click.echo(f"updated {len(values)} value row(s) of layer {layer} in {target}")


@main.command()
@click.option("--out-dir", default="edgert-demo", show_default=True, type=click.Path(file_okay=False),
              help="Where the demo writes its ONNX and .ert files.")
@click.option("--threads", type=int, default=None)
def demo(out_dir, threads):
    """Build a small built-in convnet, convert it, run it, and check it against onnxruntime if present."""
    from .demo import run_demo
    run_demo(Path(out_dir), threads=threads, echo=click.echo)


if __name__ == "__main__":
    main()
