"""Tiled (sliding-window) inference: run a fully convolutional model on a volume too big for one pass.

The windows, their blending weights and the final division follow MONAI's
``sliding_window_inference`` (``monai/inferers/utils.py``, ``monai/data/utils.py``):

* a volume smaller than the window on some axis is zero-padded there, ``diff // 2`` before;
* per axis the scan interval is ``int(roi * (1 - overlap))`` (at least 1), or ``roi`` when the
  window spans the (padded) axis; window starts are multiples of it, the last one moved back so the
  window ends flush with the volume; windows are the Cartesian product, first axis outermost;
* every window's output is multiplied by an importance map (all ones, or a product of 1-D
  Gaussians with sigma = 0.125 * roi, clamped below at max(its minimum, 1e-3)) and summed into
  the output, the map itself into a weight sum; the result is output / weight sum, then cropped.

What is ours is the memory discipline. The input is read window by window from a memory-mapped
``.npy`` whose pages are handed back to the kernel after each window; outputs and weight sums live in
a ring of ``roi[0]`` rows along the first spatial axis (windows are visited with that axis
outermost, so rows before the next window row are final); final rows are divided and written to the
output file at once, which is renamed into place only when complete. Peak memory is the model's
arena for one window plus the rings, never the whole volume.

``exact=True`` gives the whole-volume result instead: windows overlap by the network's receptive
field (a conservative bound read from the graph) and each voxel is taken from the one window whose
core holds it, with window starts on the network's stride grid.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import BudgetError, EdgertError, InputError, ShapeError

BLEND_MODES = ("gaussian", "constant")
SIGMA_SCALE = 0.125
DEFAULT_OVERLAP = 0.25
# Ops whose output voxel depends only on the same voxel of their inputs (channel-axis ops included
# when their axis is the channel axis). Exact mode refuses any op it cannot bound: its halo would be
# a guess.
POINTWISE_OPS = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu",
                 "PRelu", "HardSwish", "HardSigmoid", "Identity", "CouplingAdd", "SparseConv1x1"}
CHANNEL_AXIS_OPS = {"Concat", "Split", "Softmax"}


# ------------------------------------------------------------------------------ the window scan

def scan_interval(image, roi, overlap) -> tuple:
    """Per-axis step between window starts (MONAI's ``_get_scan_interval``)."""
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"overlap must be in [0, 1), got {overlap}")
    return tuple(r if r == n else max(int(r * (1 - overlap)), 1) for n, r in zip(image, roi))


def axis_starts(n: int, roi: int, interval: int) -> list:
    """Window starts along one axis of length ``n`` (>= roi): multiples of ``interval`` until a
    window reaches the end; that last one is moved back to end exactly at ``n``."""
    starts = []
    for k in range(max(math.ceil(n / interval), 1)):
        starts.append(min(k * interval, n - roi))
        if k * interval + roi >= n:
            break
    return starts


def window_starts(image, roi, overlap) -> list:
    """All window start tuples over the (padded) ``image``, first axis outermost."""
    per_axis = [axis_starts(n, r, i) for n, r, i in zip(image, roi, scan_interval(image, roi, overlap))]
    grids = np.meshgrid(*[np.array(s) for s in per_axis], indexing="ij")
    return [tuple(int(v) for v in row) for row in np.stack([g.ravel() for g in grids], axis=1)]


def importance_map(roi, mode: str = "gaussian", sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """The per-window blending weights (float32), as MONAI's ``compute_importance_map``."""
    if mode == "constant":
        weights = np.ones(roi, np.float32)
    elif mode == "gaussian":
        weights = np.ones((), np.float32)
        for n in roi:
            x = np.arange(-(n - 1) / 2.0, (n - 1) / 2.0 + 1, dtype=np.float32)
            g = np.exp(x ** 2 / np.float32(-2 * (n * sigma_scale) ** 2)).astype(np.float32)
            weights = weights[..., None] * g
    else:
        raise InputError(f"unknown blend mode {mode!r}; use one of {', '.join(BLEND_MODES)}")
    # Far corners of a 3-D Gaussian underflow to ~1e-11; the floor keeps the weight sum invertible.
    return np.maximum(weights, max(float(weights.min()), 1e-3)).astype(np.float32)


def padding(volume, roi) -> list:
    """(before, after) zero padding per axis for a volume smaller than the window."""
    return [((r - n) // 2, r - n - (r - n) // 2) if r > n else (0, 0) for n, r in zip(volume, roi)]


def parse_tile(text, rank: int):
    """``--tile``: "auto", one size for every axis ("96"), or one per axis ("96x96x64")."""
    if text is None or str(text).strip().lower() == "auto":
        return "auto"
    parts = str(text).lower().split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) == 1:
        dims = dims * rank
    if len(dims) != rank or any(d <= 0 for d in dims):
        raise InputError(f"bad --tile {text!r}: the model has {rank} spatial axes",
                         hint=f"write auto, one size (96) or {rank} sizes like {'x'.join(['96'] * rank)}")
    return dims


# ---------------------------------------------------------------------- what the graph tells us

def _conv_like(op: str) -> bool:
    return op.startswith("Conv") and "Transpose" not in op


def _one_sided(k, d, pads, axis, rank):
    """How far one output voxel reaches on either side of its own position (o * stride): taps run
    from -pad_begin to (k-1)*d - pad_begin; without pads, the whole span."""
    span = (k - 1) * d
    if not pads or len(pads) != 2 * rank:
        return span
    begin, end = pads[axis], pads[rank + axis]
    return max(begin, span - begin, end, span - end)


def _spatial(values, rank, default=1):
    values = list(values or [])
    return list(values[-rank:]) if len(values) >= rank else [default] * rank


def network_geometry(graph, input_name: str, rank: int, why: list | None = None):
    """(stride, halo) per spatial axis, read from the graph.

    stride: the product of the strides of strided convs/pools on the way from the input, i.e. what
    window sizes must be multiples of. halo: a conservative bound, in input voxels, on how far an
    output voxel's value reaches into the input on either side (used by exact mode). Ops that mix all
    positions (global pools, reductions, normalisation over the volume) or that the bound does not
    know make the halo infinite; their names are appended to ``why``.
    """
    factor = {input_name: [Fraction(1)] * rank}
    reach = {input_name: [Fraction(0)] * rank}
    stride = [1] * rank
    why = why if why is not None else []
    for node in graph.nodes:
        ins = [n for n in node.inputs if n and n in factor]
        if not ins:
            continue
        f = [max(factor[n][a] for n in ins) for a in range(rank)]
        r = [max(reach[n][a] for n in ins) for a in range(rank)]
        attrs, op = node.attrs, node.op
        kernel = None
        if len(node.inputs) > 1 and node.inputs[1] in graph.consts and graph.tensors[node.inputs[1]].shape:
            wshape = graph.tensors[node.inputs[1]].shape
            kernel = list(wshape[2:]) if len(wshape) == rank + 2 else None
        for key in ("kernel_shape", "kernel"):
            if key in attrs:
                kernel = _spatial(attrs[key], rank)
        if op in POINTWISE_OPS or (op in CHANNEL_AXIS_OPS and attrs.get("axis", 1) in (1, -rank - 1)):
            pass
        elif op == "MBConv3DCouple" and not attrs.get("norm_groups"):  # expand, depthwise, project
            k = list(graph.tensors[node.inputs[5]].shape[2:])
            r = [r[a] + (k[a] - 1) * f[a] for a in range(rank)]
        elif "Transpose" in op and op.startswith("Conv"):
            s = _spatial(attrs.get("strides"), rank)
            k = kernel or [1] * rank
            r = [r[a] + (k[a] - 1) * f[a] for a in range(rank)]
            f = [f[a] / s[a] for a in range(rank)]
        elif op.startswith("Resize"):
            scales = _spatial(attrs.get("scales"), rank, default=None)
            r = [r[a] + f[a] for a in range(rank)]
            if all(scales):
                f = [f[a] / Fraction(scales[a]).limit_denominator(64) for a in range(rank)]
        elif _conv_like(op) or kernel is not None and ("kernel" in attrs or "kernel_shape" in attrs):
            s = _spatial(attrs.get("strides"), rank)
            d = _spatial(attrs.get("dilations"), rank)
            k = kernel or [1] * rank
            r = [r[a] + _one_sided(k[a], d[a], attrs.get("pads"), a, rank) * f[a] for a in range(rank)]
            f = [f[a] * s[a] for a in range(rank)]
        else:  # mixes all positions (normalisation, global pool, reduction) or unknown here
            r = [math.inf] * rank
            why.append(f"{node.name} ({op})")
        for a in range(rank):
            if f[a].denominator == 1:
                stride[a] = math.lcm(stride[a], int(f[a]))
        for out in node.outputs:
            factor[out], reach[out] = f, r
    halo = [max((reach[o][a] for o in graph.outputs if o in reach), default=0) for a in range(rank)]
    return tuple(stride), tuple(math.inf if h == math.inf else math.ceil(h) for h in halo)


# ----------------------------------------------------------------------------------- the files

class MappedNpy:
    """A read-only memory map of an ``.npy`` whose touched pages can be given back (``release``)."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                reader = {(1, 0): np.lib.format.read_array_header_1_0,
                          (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if reader is None:
                    raise ValueError(f"unsupported .npy version {version}")
                shape, fortran, dtype = reader(fh)
                offset = fh.tell()
                size = os.fstat(fh.fileno()).st_size
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {self.path} as .npy: {exc}") from None
        if fortran or dtype.hasobject:
            raise InputError(f"{self.path}: expected a C-ordered numeric array",
                             hint="save it with np.save(np.ascontiguousarray(x))")
        need = offset + int(np.prod(shape)) * dtype.itemsize
        if self._map is None or len(self._map) < need:
            raise InputError(f"{self.path}: truncated .npy (needs {need} bytes)")
        self.array = np.ndarray(shape, dtype, buffer=self._map, offset=offset)
        self.shape, self.dtype = tuple(shape), dtype

    def release(self):
        """Drop the pages read so far from this process (they stay in the page cache)."""
        with contextlib.suppress(AttributeError, OSError, ValueError):
            self._map.madvise(mmap.MADV_DONTNEED)

    def close(self):
        self.array = None
        with contextlib.suppress(BufferError):
            self._map.close()


class NpyWriter:
    """Writes an ``.npy`` slab by slab at computed offsets into an open (temporary) file."""

    def __init__(self, fh, shape, dtype=np.float32):
        self.fh, self.shape, self.dtype = fh, tuple(shape), np.dtype(dtype)
        np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                  "fortran_order": False, "shape": self.shape})
        self.offset = fh.tell()
        fh.truncate(self.offset + int(np.prod(self.shape)) * self.dtype.itemsize)

    def write_rows(self, n: int, start: int, slab: np.ndarray):
        """``slab`` is [C, rows, *rest] for batch item ``n``, first spatial rows from ``start``."""
        C, D, rest = self.shape[1], self.shape[2], self.shape[3:]
        row = int(np.prod(rest)) * self.dtype.itemsize
        for c in range(C):
            self.fh.seek(self.offset + ((n * C + c) * D + start) * row)
            self.fh.write(memoryview(np.ascontiguousarray(slab[c], dtype=self.dtype)).cast("B"))


class ArrayWriter:
    """The in-memory counterpart of ``NpyWriter`` (Python API without an output file)."""

    def __init__(self, shape, dtype=np.float32):
        self.array = np.zeros(shape, dtype)

    def write_rows(self, n, start, slab):
        self.array[n, :, start:start + slab.shape[1]] = slab


# ------------------------------------------------------------------------------------- planning

@dataclass
class TilePlan:
    """Everything decided before the first window runs."""

    volume: tuple  # spatial shape of the input
    roi: tuple  # window spatial shape
    overlap: float
    blend: str  # gaussian | constant | exact
    stride: tuple
    halo: tuple
    pad: list  # (before, after) per axis
    starts: list  # window starts in padded coordinates, first axis outermost
    cores: list = field(default_factory=list)  # exact mode: per window, per axis (lo, hi) in window coords
    need_bytes: int = 0
    arena_bytes: int = 0
    budget_bytes: int | None = None

    @property
    def padded(self):
        return tuple(n + b + a for n, (b, a) in zip(self.volume, self.pad))

    def describe(self) -> str:
        from ..boards import format_bytes
        text = (f"{len(self.starts)} windows of {'x'.join(map(str, self.roi))}"
                f" ({self.blend}" + (f", overlap {self.overlap}" if self.blend != "exact" else
                                     f", halo {'x'.join(map(str, self.halo))}") + ")")
        if self.need_bytes:
            text += f", planned peak {format_bytes(self.need_bytes)}"
            if self.budget_bytes:
                text += f" of {format_bytes(self.budget_bytes)}"
        return text


def exact_windows(volume, roi, stride, halo):
    """Windows whose cores tile the volume, each core at least ``halo`` away from any window edge
    that is not a volume edge, every start on the stride grid. Returns (starts, cores)."""
    per_axis = []
    for n, r, s, h in zip(volume, roi, stride, halo):
        if r >= n:
            per_axis.append([(0, (0, n))])
            continue
        h = -(-h // s) * s
        core = r - 2 * h
        if core < s:
            raise InputError(f"exact mode: a {r}-voxel window leaves no core after a {h}-voxel halo on each side",
                             hint=f"use windows of at least {2 * h + s} voxels, or drop --exact")
        core = core // s * s
        axis = []
        for c in range(0, n, core):
            start = min(max(c - h, 0), n - r)
            axis.append((start, (c - start, min(c + core, n) - start)))
        per_axis.append(axis)
    starts, cores = [], []
    for combo in np.ndindex(*[len(a) for a in per_axis]):
        picks = [per_axis[a][i] for a, i in enumerate(combo)]
        starts.append(tuple(p[0] for p in picks))
        cores.append(tuple(p[1] for p in picks))
    return starts, cores


def io_bytes(roi, channels_in: int, channels_out: list, padded, itemsize: int = 4) -> int:
    """Memory besides the model's arena (which holds the input window and the outputs): the rings of
    output and weight sums, the weight map, the mapped input pages of one channel of one window
    (whole rows of the last axis), and one row of temporaries."""
    window = int(np.prod(roi))
    ring = roi[0] * int(np.prod(padded[1:]))
    mapped = int(np.prod(roi[:-1])) * padded[-1]
    row = int(np.prod(padded[1:]))
    return itemsize * (ring * (sum(channels_out) + 1) + window + mapped + row * sum(channels_out))


def process_rss() -> int:
    """This process's resident memory now (Linux), 0 where unknown."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _validate_volume(graph, name, shape, path):
    declared = graph.tensors[name].shape
    if len(shape) != len(declared) or len(shape) < 3:
        raise InputError(f"input '{name}' is {list(shape)}; the model takes rank {len(declared)} "
                         f"[N, C, spatial...] like {list(declared)}", file=path)
    if shape[1] != declared[1]:
        raise InputError(f"input '{name}' has {shape[1]} channels, the model takes {declared[1]}", file=path)


def plan_tiles(graph, input_name, volume, tile="auto", overlap=DEFAULT_OVERLAP, blend="gaussian", exact=False,
               budget_bytes=None, threads=1, file=None, baseline_bytes=None):
    """Choose the window (``tile`` "auto": the largest on the stride grid whose planned peak fits
    ``budget_bytes``) and list the windows. Returns a TilePlan.

    The planned peak is ``baseline_bytes`` (default: this process's resident memory now) + the
    window's arena + packed and mapped weights + the I/O buffers and output rings (``io_bytes``)."""
    from .prepare import prepare_graph, with_input_shapes
    rank = len(volume)
    if blend not in BLEND_MODES:
        raise InputError(f"unknown blend mode {blend!r}; use one of {', '.join(BLEND_MODES)}")
    scan_interval(volume, volume, overlap)  # validates overlap
    why = []
    stride, halo = network_geometry(graph, input_name, rank, why)
    if exact and any(h == math.inf for h in halo):
        raise InputError(f"exact mode needs a network whose outputs depend on a bounded neighbourhood; "
                         f"{why[0]} {'and ' + str(len(why) - 1) + ' more ' if len(why) > 1 else ''}"
                         "mixes all positions or is not bounded here", file=file,
                         hint="use the blended modes (--blend gaussian|constant)")
    C = graph.tensors[input_name].shape[1]
    weights = sum(v.nbytes for v in graph.consts.values())
    baseline = process_rss() if baseline_bytes is None else baseline_bytes

    def cost(roi):
        g = with_input_shapes(graph, {input_name: (1, C, *roi)}, file=file)
        outs = [g.tensors[o].shape for o in g.outputs]
        for o, shape in zip(g.outputs, outs):
            if tuple(shape[2:]) != tuple(roi) or shape[0] != 1:
                raise ShapeError(f"output '{o}' is {list(shape)} for a {'x'.join(map(str, roi))} window; tiling "
                                 f"needs outputs of the window's spatial size (a segmentation network)", file=file)
        nodes, plan, _ = prepare_graph(g, threads=threads, file=file)
        packed = sum(p.prepared.persistent_bytes for p in nodes if p.prepared)
        padded = tuple(max(n, r) for n, r in zip(volume, roi))
        need = baseline + plan.arena_bytes + packed + weights + io_bytes(roi, C, [s[1] for s in outs], padded)
        return need, plan.arena_bytes

    def fitted(k):  # a cube of k strides per axis, cut down to the volume rounded up to the stride grid
        return tuple(min(k * s, -(-n // s) * s) for n, s in zip(volume, stride))

    if exact and any(n % s for n, s in zip(volume, stride)):
        raise InputError(f"exact mode needs the volume {'x'.join(map(str, volume))} on the network's stride "
                         f"grid {'x'.join(map(str, stride))} (as the whole-volume run does)", file=file)
    if tile == "auto":
        k_max = max(-(-n // s) for n, s in zip(volume, stride))
        lo, hi, best = 1, k_max, None
        while lo <= hi:  # the need grows with the window: binary search the largest that fits
            mid = (lo + hi) // 2
            need, arena = cost(fitted(mid))
            if budget_bytes is None or need <= budget_bytes:
                best, lo = (fitted(mid), need, arena), mid + 1
            else:
                hi = mid - 1
        if best is None:
            from ..boards import format_bytes
            need, _ = cost(fitted(1))
            raise BudgetError(f"even the smallest window ({'x'.join(map(str, fitted(1)))}) needs "
                              f"{format_bytes(need)}, over the budget of {format_bytes(budget_bytes)}", file=file,
                              hint="raise --memory-budget or convert the model with --fp16")
        roi, need, arena = best
    else:
        roi = tuple(tile)
        bad = [a for a, (r, s) in enumerate(zip(roi, stride)) if r % s]
        if bad:
            raise InputError(f"window {'x'.join(map(str, roi))} is not a multiple of the network's stride "
                             f"{'x'.join(map(str, stride))} (from its strided convs and pools)", file=file,
                             hint="pick sizes divisible by the stride, or --tile auto")
        grid = tuple(-(-n // s) * s for n, s in zip(volume, stride))
        over = [a for a, (r, g) in enumerate(zip(roi, grid)) if r > g]
        if over:  # only padding would fill the rest: computing zeros, never a better result
            raise InputError(f"window {'x'.join(map(str, roi))} is larger than the volume "
                             f"{'x'.join(map(str, volume))} on axis {over[0]} (whose size on the stride grid is "
                             f"{grid[over[0]]})", file=file,
                             hint=f"use a window of at most {'x'.join(map(str, grid))}, or --tile auto")
        if exact:  # a window longer than the volume would pad it, and padding changes the result
            roi = tuple(min(r, n) for r, n in zip(roi, volume))
        need, arena = cost(roi)
        if budget_bytes is not None and need > budget_bytes:
            from ..boards import format_bytes
            raise BudgetError(f"a {'x'.join(map(str, roi))} window needs {format_bytes(need)}, over the budget "
                              f"of {format_bytes(budget_bytes)}", file=file, hint="use a smaller --tile or auto")
    if exact:
        starts, cores = exact_windows(volume, roi, stride, halo)
        return TilePlan(tuple(volume), roi, 0.0, "exact", stride, halo, [(0, 0)] * rank, starts, cores,
                        need, arena, budget_bytes)
    pad = padding(volume, roi)
    padded = tuple(n + b + a for n, (b, a) in zip(volume, pad))
    return TilePlan(tuple(volume), roi, overlap, blend, stride, halo, pad, window_starts(padded, roi, overlap),
                    [], need, arena, budget_bytes)


# ------------------------------------------------------------------------------------- running

def _core_weight(cores, roi):
    weights = np.ones((), np.float32)
    for (lo, hi), n in zip(cores, roi):
        axis = np.zeros(n, np.float32)
        axis[lo:hi] = 1
        weights = weights[..., None] * axis
    return weights


class _Rings:
    """Weighted output sums and weight sums for ``roi[0]`` rows along the first spatial axis.

    Everything is done in place (multiply, add, divide, shift row by row), so no window- or
    ring-sized temporary is ever allocated.
    """

    def __init__(self, channels, roi, padded):
        rest = tuple(padded[1:])
        self.rows = roi[0]
        self.acc = [np.zeros((c, roi[0], *rest), np.float32) for c in channels]
        self.wsum = np.zeros((roi[0], *rest), np.float32)
        self.base = 0

    def _where(self, start, shape):
        return (slice(start[0] - self.base, start[0] - self.base + shape[0]),) + tuple(
            slice(s, s + n) for s, n in zip(start[1:], shape[1:]))

    def add(self, k, start, weighted):
        self.acc[k][(slice(None),) + self._where(start, weighted.shape[1:])] += weighted

    def add_weight(self, start, weight):
        self.wsum[self._where(start, weight.shape)] += weight

    def divide(self, rows):
        """The first ``rows`` rows of every output, divided by their weight sums (in place)."""
        for acc in self.acc:
            acc[:, :rows] /= self.wsum[:rows]
        return [acc[:, :rows] for acc in self.acc]

    def shift(self, rows):
        """Move the ring forward by ``rows`` rows (after they were written)."""
        keep = self.rows - rows
        for i in range(keep):  # row by row: no ring-sized temporary for the overlapping move
            for acc in self.acc:
                acc[:, i] = acc[:, i + rows]
            self.wsum[i] = self.wsum[i + rows]
        for acc in self.acc:
            acc[:, keep:] = 0
        self.wsum[keep:] = 0
        self.base += rows


def run_windows(session, plan: TilePlan, reader, writers, progress=None, batch=None):
    """Run ``session`` (prepared at the window shape) over every window of ``plan``; stream the
    finished rows of every output to ``writers`` (one per model output)."""
    name = session.inputs[0].name
    src = reader.array
    N = src.shape[0]
    roi, pad, padded, volume = plan.roi, plan.pad, plan.padded, plan.volume
    channels = [s.shape[1] for s in session.outputs]
    weight = importance_map(roi, plan.blend) if plan.blend != "exact" else None
    window = session.view(name)  # windows are read straight into the arena's input buffer
    total, done = len(plan.starts) * N, 0
    for n in range(N) if batch is None else [batch]:
        rings = _Rings(channels, roi, padded)
        for w, start in enumerate(plan.starts):
            if start[0] > rings.base:
                _flush(rings, start[0] - rings.base, pad, volume, writers, n)
            _read_window(reader, n, start, roi, pad, volume, window)
            outs = session.run({name: window}, copy=False)
            wt = weight if weight is not None else _core_weight(plan.cores[w], roi)
            rings.add_weight(start, wt)
            for k, o in enumerate(session.outputs):
                y = outs[o.name][0]
                y = y if y.flags.writeable else y.copy()
                np.multiply(y, wt, out=y)
                rings.add(k, start, y)
            done += 1
            if progress:
                progress(done, total)
        _flush(rings, padded[0] - rings.base, pad, volume, writers, n)


def _read_window(reader, n, start, roi, pad, volume, window):
    """Copy one window (padded coordinates) from the mapped input, one channel at a time, giving
    the mapped pages back after each; outside the volume is zero."""
    dst, srcs, partial = [], [], False
    for s, r, (b, _), v in zip(start, roi, pad, volume):
        lo, hi = max(s - b, 0), min(s - b + r, v)
        dst.append(slice(lo - (s - b), hi - (s - b)))
        srcs.append(slice(lo, hi))
        partial |= hi - lo != r
    if partial:
        window.fill(0)
    for c in range(window.shape[1]):
        np.copyto(window[(0, c, *dst)], reader.array[(n, c, *srcs)], casting="unsafe")
        reader.release()


def _flush(rings, rows, pad, volume, writers, n):
    base = rings.base
    done = rings.divide(rows)
    lo = max(base - pad[0][0], 0)
    hi = min(base + rows - pad[0][0], volume[0])
    if hi > lo:
        crop = (slice(None), slice(lo - (base - pad[0][0]), hi - (base - pad[0][0]))) + tuple(
            slice(b, b + v) for (b, _), v in zip(pad[1:], volume[1:]))
        for writer, slab in zip(writers, done):
            writer.write_rows(n, lo, slab[crop])
    rings.shift(rows)


# ------------------------------------------------------------------------------------- the API

def tiled_run(model, volume, output=None, tile="auto", overlap=DEFAULT_OVERLAP, blend="gaussian", exact=False,
              threads=None, board=None, memory_budget=None, progress=None, on_plan=None):
    """Run ``model`` (an .ert path or a Graph) over ``volume`` (an .npy path or an array) in windows.

    ``output``: an .npy path (one model output) or .npz path (written atomically, never partial), or
    None to return {output name: array}. Returns (plan, outputs or None).
    """
    from ..ir.format import read_ert
    from ..ir.graph import Graph
    from .prepare import with_input_shapes
    from .resources import resolve_resources
    from .session import Session
    path = None if isinstance(model, Graph) else Path(model)
    graph = model if isinstance(model, Graph) else read_ert(path)
    if len(graph.inputs) != 1:
        raise InputError(f"tiling needs a model with one input; this one has {list(graph.inputs)}", file=path)
    name = graph.inputs[0]
    reader = MappedNpy(volume) if not isinstance(volume, np.ndarray) else _ArrayReader(volume)
    try:
        _validate_volume(graph, name, reader.shape, path)
        resources = resolve_resources(board, threads, memory_budget)
        spatial = tuple(reader.shape[2:])
        tile = parse_tile(tile, len(spatial)) if isinstance(tile, (str, type(None))) else tuple(tile)
        if resources.budget_bytes is not None:
            _load_kernels(graph, name, reader.shape[1], spatial, resources.threads, path)
        plan = plan_tiles(graph, name, spatial, tile, overlap, blend, exact, resources.budget_bytes,
                          resources.threads, file=path)
        if on_plan:
            on_plan(plan)
        window_graph = with_input_shapes(graph, {name: (1, reader.shape[1], *plan.roi)}, file=path)
        session = Session(window_graph, path=path, threads=resources.threads, board=resources.board,
                          memory_budget=resources.budget_bytes)
        shapes = [(reader.shape[0], s.shape[1], *spatial) for s in session.outputs]
        names = [s.name for s in session.outputs]
        if output is None:
            writers = [ArrayWriter(s) for s in shapes]
            run_windows(session, plan, reader, writers, progress)
            return plan, {n: w.array for n, w in zip(names, writers)}
        _write_outputs(Path(output), names, shapes, lambda ws: run_windows(session, plan, reader, ws, progress))
        return plan, None
    finally:
        reader.close()


def _load_kernels(graph, name, channels, volume, threads, path):
    """Run the model once on a small zero window, so the compiled kernels are loaded (~75 MiB for a
    3-D U-Net's) before the planner measures what the process already holds."""
    from .prepare import with_input_shapes
    from .session import Session
    stride, _ = network_geometry(graph, name, len(volume))
    roi = tuple(min(4 * s, -(-n // s) * s) for s, n in zip(stride, volume))
    with contextlib.suppress(EdgertError):
        sess = Session(with_input_shapes(graph, {name: (1, channels, *roi)}, file=path), threads=threads)
        sess.run({name: np.zeros((1, channels, *roi), sess.inputs[0].dtype)}, copy=False)


class _ArrayReader:
    def __init__(self, array):
        self.array, self.shape = array, array.shape

    def release(self):
        pass

    def close(self):
        pass


def _write_outputs(output: Path, names, shapes, fill):
    """Stream into an .npy, or into temporary .npy files zipped into an .npz; rename when complete."""
    from ..fileio import atomic_write
    suffix = output.suffix.lower()
    if suffix == ".npy":
        if len(names) != 1:
            raise InputError(f"the model has {len(names)} outputs {names}; write them to an .npz", file=output)
        with atomic_write(output) as fh:
            fill([NpyWriter(fh, shapes[0])])
        return
    if suffix != ".npz":
        raise InputError(f"output {output} must end in .npy or .npz")
    import tempfile
    import zipfile
    with contextlib.ExitStack() as stack:
        files = []
        for _ in names:
            tmp = stack.enter_context(tempfile.TemporaryFile(dir=output.parent or Path(".")))
            files.append(tmp)
        fill([NpyWriter(fh, shape) for fh, shape in zip(files, shapes)])
        with atomic_write(output) as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
            for n, fh in zip(names, files):
                fh.seek(0)
                with zf.open(f"{n}.npy", "w", force_zip64=True) as member:
                    while chunk := fh.read(16 << 20):
                        member.write(chunk)


def whole_volume_fits(graph, name, shape, budget_bytes, threads=1, file=None):
    """(fits, reason): whether an untiled run at ``shape`` plans within ``budget_bytes``, counting
    what the process holds already, the model's arena and weights, the input and the outputs."""
    from ..boards import format_bytes
    from .prepare import prepare_graph, with_input_shapes
    try:
        g = with_input_shapes(graph, {name: tuple(shape)}, file=file)
        nodes, plan, _ = prepare_graph(g, threads=threads, file=file)
    except EdgertError as exc:
        return False, f"the model does not take the whole volume ({exc.message})"
    need = (process_rss() + plan.arena_bytes + sum(p.prepared.persistent_bytes for p in nodes if p.prepared)
            + sum(v.nbytes for v in graph.consts.values())
            + sum(g.tensors[n].nbytes for n in list(g.inputs) + list(g.outputs)))
    if budget_bytes is not None and need > budget_bytes:
        return False, f"the whole-volume plan needs {format_bytes(need)}, over the budget of {format_bytes(budget_bytes)}"
    return True, f"the whole-volume plan needs {format_bytes(need)}"
