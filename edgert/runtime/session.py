"""``Session``: a prepared model bound to one arena. ``run`` copies inputs in, calls kernels, copies outputs out.

After construction nothing is allocated per run except the returned output copies: each step is a
kernel function and a pre-bound argument tuple of arena views and packed weights.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import aot
from ..dtypes import DTYPES
from ..errors import InputError
from ..ir.format import read_ert
from ..ir.graph import Graph
from ..kernels import _jit
from ..ops.registry import Sequence
from .planner import ALIGN

# Numba's 'workqueue' threading layer aborts if two threads launch parallel kernels at once; without
# a thread-safe layer every session's run takes this lock (runs of one session always serialise).
_PROCESS_LOCK = threading.Lock()
from .blas import blas_guard
from .prepare import prepare_graph, summarize
from .resources import check_budget, resolve_resources


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as users see it (like onnxruntime's NodeArg)."""

    name: str
    shape: tuple
    dtype: np.dtype


class Session:
    """A loaded, prepared model. Create it with ``edgert.load``."""

    def __init__(self, graph: Graph, path=None, threads=None, board=None, options=None, memory_budget=None):
        self.path = Path(path) if path else None
        self.graph = graph
        self.resources = resolve_resources(board, threads, memory_budget)
        self.board = self.resources.board
        self.threads = self.resources.threads
        self.options = dict(options or {})
        if self.board is not None:  # cost models (sparse vs dense) read the board's measured throughputs
            self.options.setdefault("board", self.board)
        t0 = time.perf_counter()
        self.nodes, self.plan, self._groups = prepare_graph(graph, threads=self.threads, file=self.path,
                                                            options=self.options,
                                                            memory_budget=self.resources.budget_bytes)
        self.budget = check_budget(self.resources, self.plan.arena_bytes,
                                   sum(p.prepared.persistent_bytes for p in self.nodes if p.prepared),
                                   sum(v.nbytes for v in graph.consts.values()), file=self.path)
        self._arena = np.zeros(self.plan.arena_bytes + ALIGN, dtype=np.uint8)
        self._base = (-self._arena.ctypes.data) % ALIGN
        self._views = {}
        self.steps, self.compiled = _resolve(self._bind())
        self._blas_limit, self.blas_note = blas_guard(
            [p.prepared.kernel for p in self.nodes if p.prepared is not None], self.threads)
        self.prepare_seconds = time.perf_counter() - t0
        self._lock = threading.Lock() if _jit.CONCURRENT_LAUNCH_SAFE else _PROCESS_LOCK
        self.inputs = [TensorSpec(n, tuple(graph.tensors[n].shape), DTYPES[graph.tensors[n].dtype].newbyteorder("="))
                       for n in graph.inputs]
        self.outputs = [TensorSpec(n, tuple(graph.tensors[n].shape), DTYPES[graph.tensors[n].dtype].newbyteorder("="))
                        for n in graph.outputs]

    # --- binding ---------------------------------------------------------------------------------
    def view(self, name: str) -> np.ndarray:
        """The arena view (or constant) that holds tensor ``name``."""
        if name in self._views:
            return self._views[name]
        if name in self.graph.consts:
            return self.graph.const_value(name)
        info = self.plan.layout.tensors[name]  # blocked tensors: their 5-D physical shape
        offset = self._base + self.plan.offset_of(self._groups.find(name))
        dtype = DTYPES[info.dtype].newbyteorder("=")
        view = self._arena[offset:offset + info.nbytes].view(dtype).reshape(info.shape)
        self._views[name] = view
        return view

    def tensor_info(self, name: str):
        """The logical (NCHW) TensorInfo of any tensor the session computes, reorder copies included."""
        return self.plan.layout.logical[name]

    def _scratch(self, pnode, k):
        shape, dtype = pnode.prepared.scratch[k]
        offset = self._base + self.plan.offset_of(f"{pnode.node.name}#scratch{k}")
        dt = DTYPES[dtype].newbyteorder("=")
        nbytes = int(np.prod(shape)) * dt.itemsize
        return self._arena[offset:offset + nbytes].view(dt).reshape(shape)

    def _bind(self):
        """[(kernel, argument tuple)] per prepared node, in execution order (kernels as prepare chose them)."""
        steps = []
        for pnode in self.nodes:
            if pnode.prepared is None:
                continue
            ins = [self.view(n) if n else None for n in pnode.node.inputs]
            outs = [self.view(n) for n in pnode.node.outputs]
            scratch = [self._scratch(pnode, k) for k in range(len(pnode.prepared.scratch))]
            steps.append((pnode.prepared.fn, pnode.prepared.bind(ins, outs, scratch)))
        return steps

    def kernel_calls(self):
        """[(kernel, argument tuple)] as prepare chose them, before AOT/JIT resolution (for ``edgert warm``)."""
        return self._bind()

    # --- running ---------------------------------------------------------------------------------
    def _feed(self, feeds) -> None:
        if not isinstance(feeds, dict):
            raise InputError("inputs must be a dict of {name: array}", file=self.path)
        expected = {s.name: s for s in self.inputs}
        unknown = sorted(set(feeds) - set(expected))
        missing = sorted(set(expected) - set(feeds))
        if unknown or missing:
            raise InputError(
                (f"unknown input(s) {unknown}; " if unknown else "") + (f"missing input(s) {missing}; " if missing else "")
                + "the model takes " + ", ".join(f"{s.name} {list(s.shape)} {s.dtype}" for s in self.inputs),
                file=self.path)
        for name, value in feeds.items():
            spec = expected[name]
            array = np.asarray(value)
            if array.dtype != spec.dtype:
                raise InputError(f"input '{name}' has dtype {array.dtype}, the model takes {spec.dtype}",
                                 file=self.path, hint=f"cast it with .astype(np.{spec.dtype.name})")
            if tuple(array.shape) != spec.shape:
                raise InputError(f"input '{name}' has shape {list(array.shape)}, the model takes {list(spec.shape)}",
                                 file=self.path, hint="reconvert with --input-shape to change the input size")
            np.copyto(self.view(name), array)

    def run(self, feeds: dict, output_names=None, copy: bool = True) -> dict:
        """Run the model. Returns {output name: array}; the arrays are copies the caller owns, or with
        ``copy=False`` views of the arena, valid (and writable) only until the next run."""
        names = list(output_names) if output_names else [s.name for s in self.outputs]
        bad = [n for n in names if n not in self.graph.tensors]
        if bad:
            raise InputError(f"unknown output name(s) {bad}", file=self.path)
        with self._lock, self._blas_limit():
            self._set_threads()
            self._feed(feeds)
            for fn, args in self.steps:
                fn(*args)
            return {n: np.array(self.view(n), copy=True) if copy else self.view(n) for n in names}

    # --- codebook interventions (see edgert.interventions) ---------------------------------------
    def set_codebook_intervention(self, layer, **kwargs) -> None:
        """Force, block or disable codes of a codebook layer for the following runs."""
        from ..interventions import set_codebook_intervention
        set_codebook_intervention(self, layer, **kwargs)

    def clear_interventions(self, layer=None) -> None:
        from ..interventions import clear_interventions
        clear_interventions(self, layer)

    def codes(self, layer=None):
        """Code ids that fired in the last run, per codebook/key-value layer."""
        from ..interventions import codes
        return codes(self, layer)

    def _set_threads(self) -> None:
        if not _jit.jit_enabled():  # only AOT-compiled and numpy code has run: numba is not even loaded
            return
        import numba
        if numba.get_num_threads() != min(self.threads, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))

    # --- what the runtime decided ----------------------------------------------------------------
    def describe(self) -> dict:
        nodes = []
        compiled = iter(self.compiled)
        for p in self.nodes:
            info = {"name": p.node.name, "op": p.node.op,
                    "inputs": list(p.node.inputs), "outputs": list(p.node.outputs),
                    "shape": list(self.tensor_info(p.node.outputs[0]).shape),
                    "layout": "blocked" if p.node.outputs[0] in self.plan.layout.blocked else "nchw",
                    "weight_bytes": int(sum(self.graph.consts[n].nbytes for n in p.node.inputs
                                            if n and n in self.graph.consts))}
            if p.prepared is None:
                info.update(kernel="view", reason="output reuses the input's bytes (no copy)")
            else:
                why_plain = self.plan.layout.why_plain.get(p.node.name)
                info.update(kernel=p.prepared.kernel, reason=p.prepared.reason + (f"; NCHW: {why_plain}" if why_plain else ""),
                            packed_bytes=p.prepared.persistent_bytes, compiled=next(compiled))
                k = p.opdef.inplace
                if (k is not None and len(p.node.inputs) > k and p.node.inputs[k]
                        and p.node.inputs[k] not in self.graph.consts
                        and self._groups.find(p.node.inputs[k]) == self._groups.find(p.node.outputs[0])):
                    # The planner put the output over the input: one buffer of this size never allocated.
                    info["in_place_bytes"] = int(self.plan.layout.tensors[p.node.outputs[0]].nbytes)
            nodes.append(info)
        weights = sum(v.nbytes for v in self.graph.consts.values())
        return {
            "file": str(self.path) if self.path else None,
            "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": str(s.dtype)} for s in self.inputs],
            "outputs": [{"name": s.name, "shape": list(s.shape), "dtype": str(s.dtype)} for s in self.outputs],
            "threads": self.threads,
            "board": self.board.id if self.board is not None else None,
            "pinned_cpus": list(self.resources.pinned_cpus),
            "budget": self.budget,
            "nodes": nodes,
            "weight_bytes": int(weights),
            "packed_bytes": int(sum(p.prepared.persistent_bytes for p in self.nodes if p.prepared)),
            "memory": summarize(self.plan),
            "layout": self.layout_summary(),
            "blas": self.blas_note,
            "compiled": {how: self.compiled.count(how) for how in ("aot", "jit", "python")},
            "metadata": self.graph.metadata,
        }


    def layout_summary(self) -> dict:
        """How many nodes run channel-blocked, with how many reorders, and how many PRelu nodes the
        planner folded into the conv before them (runtime/layout.py)."""
        from .prepare import layout_mode
        layout = self.plan.layout
        return {"mode": layout_mode(self.options), "block": layout.block, "blocked_nodes": len(layout.kinds),
                "reorders": layout.reorders, "fused_prelu": layout.fused}


def _resolve(calls):
    """Pick what each step calls: the ahead-of-time compiled kernel for exactly these argument types
    when the host's AOT library has it (no numba needed), else the numba dispatcher (the JIT is
    enabled then), or a plain Python/numpy function as is. Returns (steps, how per step)."""
    steps, how = [], []
    for fn, args in calls:
        fn, mode = _resolve_call(fn, args)
        steps.append((fn, args))
        how.append(mode)
    return steps, how


def _resolve_call(fn, args):
    if isinstance(fn, Sequence):  # each call resolved on its own; the step is JIT if any part is
        parts = [_resolve_call(f, a) for f, a in zip(fn.calls, args)]
        modes = {mode for _, mode in parts}
        return Sequence(*(f for f, _ in parts)), "jit" if "jit" in modes else "aot" if "aot" in modes else "python"
    compiled = aot.lookup(fn, args)
    if compiled is not None:
        return compiled, "aot"
    if aot.kernel_name(fn) is not None:
        return (fn.dispatcher() if isinstance(fn, _jit.LazyKernel) else fn), "jit"
    return fn, "python"


def load(path, board=None, threads=None, verify: bool = True, options=None, memory_budget=None,
         input_shapes=None) -> Session:
    """Load an .ert model and prepare it for running (the ONNX Runtime ``InferenceSession`` of edgert).

    Parameters
    ----------
    path : str or Path
        The .ert file, from ``edgert convert``.
    board : str, optional
        A board profile id (see ``edgert boards``), a profile path, or "auto" to detect this board;
        sets threads, core pinning and the memory budget.
    threads : int, optional
        Kernel threads; overrides the board profile. Default: all CPUs this process may use.
    verify : bool
        Check every weight blob's checksum while loading.
    memory_budget : int or str, optional
        Bytes (or "1GiB") the model may use; overrides the board profile. Over budget is a BudgetError.
    input_shapes : dict, optional
        {input name: shape}: prepare a fully convolutional model at other input sizes than it was
        converted with (e.g. one sliding window). A node that cannot take them raises a ShapeError.
    """
    graph = read_ert(path, verify=verify)
    if input_shapes:
        from .prepare import with_input_shapes
        graph = with_input_shapes(graph, input_shapes, file=path)
    return Session(graph, path=path, threads=threads, board=board, options=options, memory_budget=memory_budget)
