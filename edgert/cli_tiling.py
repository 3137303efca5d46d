"""``edgert run`` on volumes: decide between a whole-volume run and a tiled one, and run the tiled one.

A tiled run is chosen when ``--tile``/``--exact`` ask for it, or when the model's one input is given
as a file and the whole-volume plan (model arena, weights, input and output) does not fit the memory
budget (``--memory-budget`` or the board profile's) or the model cannot take the whole volume.
"""

from __future__ import annotations

import sys
import time

import click

from .errors import InputError


def decide(model, inputs, threads, board, memory_budget, tile, exact):
    """None for a plain run at the model's shape, ("reshape", shapes) for a plain run at the input
    file's shape, or ("tile", volume path, reason) for a tiled run."""
    from .cli import parse_assignments
    from .ir.format import read_ert
    from .runtime.resources import resolve_resources
    from .runtime.tiling import MappedNpy, whole_volume_fits
    given = parse_assignments(inputs, "--input")
    asked = tile is not None or exact
    if not given and not asked:
        return None
    graph = read_ert(model, verify=False)  # the run's own load verifies the weights
    if len(graph.inputs) != 1 or graph.inputs[0] not in given:
        if asked:
            raise InputError("tiling needs a model with one input, given as --input NAME=volume.npy", file=model)
        return None
    name = graph.inputs[0]
    try:
        reader = MappedNpy(given[name])
    except InputError:
        if asked:
            raise
        return None  # the plain run reports the unreadable input in its own words
    shape = reader.shape
    reader.close()
    if asked:
        return ("tile", given[name], "asked for by --tile/--exact")
    resources = resolve_resources(board, threads, memory_budget)
    same = tuple(shape) == tuple(graph.tensors[name].shape)
    if same and resources.budget_bytes is None:
        return None
    fits, reason = whole_volume_fits(graph, name, shape, resources.budget_bytes, resources.threads, file=model)
    if fits:
        return None if same else ("reshape", {name: tuple(shape)})
    return ("tile", given[name], reason)


def run_tiled(model, volume, output, threads, board, memory_budget, tile, overlap, blend, exact, reason):
    from .runtime.tiling import tiled_run
    state = {}

    def on_plan(plan):
        click.echo(f"tiling ({reason}): {plan.describe()}")
        state["bar"] = click.progressbar(length=len(plan.starts), label="windows", file=sys.stderr)
        state["bar"].__enter__()
        state["done"] = 0

    def progress(done, total):
        bar = state.get("bar")
        if bar is not None:
            bar.length = total
            bar.update(done - state["done"])
            state["done"] = done

    t0 = time.perf_counter()
    try:
        plan, outs = tiled_run(model, volume, output, tile=tile, overlap=overlap, blend=blend, exact=exact,
                               threads=threads, board=board, memory_budget=memory_budget, progress=progress,
                               on_plan=on_plan)
    finally:
        if state.get("bar") is not None:
            state["bar"].__exit__(None, None, None)
    seconds = time.perf_counter() - t0
    if outs is not None:
        for name, value in outs.items():
            click.echo(f"{name}: shape {list(value.shape)} {value.dtype}  min {value.min():.6g}  max {value.max():.6g}"
                       f"  mean {value.mean():.6g}")
    click.echo(f"tiled run: {len(plan.starts)} windows in {seconds:.2f} s (kernel compilation included if the cache was cold)")
    if output:
        click.echo(f"wrote {output}")


def check_options(tile, overlap, codebook, emit_codes):
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"--overlap must be in [0, 1), got {overlap}")
    if tile is not None and (codebook or emit_codes):
        raise InputError("--codebook/--emit-codes cannot be combined with a tiled run")

