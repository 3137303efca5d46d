"""Prepare: validate every node, infer shapes, choose kernels, and plan memory, once, before any run."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import GraphError, ShapeError
from ..ir.graph import Graph, TensorInfo
from ..ops import get_op
from ..ops.registry import PrepareContext, Prepared
from .layout import DEFAULT_MODE, plan_layout
from .planner import REUSE_GAP, Buffer, MemoryPlan, plan_memory


@dataclass
class PreparedNode:
    node: object
    opdef: object
    attrs: dict
    prepared: Prepared | None  # None for pure views (the output reuses the input's bytes)


def infer_graph(graph: Graph, file=None, check_declared: bool = True):
    """Run every op's validation and shape inference; returns [(node, opdef, attrs, in_infos)].

    With ``check_declared`` the inferred types must equal those stored in the graph (a loaded file);
    without it the graph's tensor table is filled in (a converter building a graph).
    """
    ctx = PrepareContext(graph, file=file)
    out = []
    for node in graph.nodes:
        opdef = get_op(node.op)
        if opdef is None:
            raise GraphError(f"op '{node.op}' is not supported by this edgert version", file=file,
                             node=node.name, op=node.op, hint="upgrade edgert or reconvert the model")
        opdef.check_arity(node, file=file)
        attrs = opdef.resolve_attrs(node, file=file)
        ins = [graph.tensors[n] if n else None for n in node.inputs]
        try:
            results = opdef.infer(node, attrs, ins, ctx)
        except ShapeError as exc:
            exc.file = exc.file or (str(file) if file else None)
            raise
        except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, OverflowError) as exc:
            raise ShapeError(f"invalid attributes or input shapes ({type(exc).__name__}: {exc})",
                             file=file, node=node.name, op=node.op) from None
        if len(results) != len(node.outputs):
            raise ShapeError(f"inference gave {len(results)} outputs for {len(node.outputs)} names",
                             file=file, node=node.name, op=node.op)
        for name, (shape, dtype) in zip(node.outputs, results):
            shape = tuple(int(d) for d in shape)
            declared = graph.tensors.get(name)
            if check_declared:
                if declared is None or tuple(declared.shape) != shape or declared.dtype != dtype:
                    got = f"{list(declared.shape)} {declared.dtype}" if declared else "nothing"
                    raise ShapeError(f"output '{name}' is declared as {got} but the op computes {list(shape)} {dtype}",
                                     file=file, node=node.name, op=node.op)
            else:
                graph.tensors[name] = TensorInfo(name, shape, dtype)
        out.append((node, opdef, attrs, ins))
    return out


class _Groups:
    """Union-find over tensor names: tensors in one group share one buffer."""

    def __init__(self):
        self.parent = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, keep, other):
        self.parent[self.find(other)] = self.find(keep)


def layout_mode(options) -> str:
    """The layout option: ``options["layout"]``, else $EDGERT_LAYOUT, else the default."""
    return (options or {}).get("layout") or os.environ.get("EDGERT_LAYOUT") or DEFAULT_MODE


def prepare_graph(graph: Graph, threads: int = 1, file=None, options=None, memory_budget=None):
    """Infer, choose the layout, prepare every node, and plan memory. Returns (prepared nodes, plan,
    tensor->buffer map); ``plan.layout`` holds the layout decisions and every buffer's physical
    TensorInfo (``plan.layout.tensors``; blocked tensors are 5-D, see runtime/layout.py).
    ``memory_budget`` (bytes) bounds what the planner may spend on the threads' reuse gap."""
    from ..kernels.simd import VW
    inferred = infer_graph(graph, file=file)
    layout = plan_layout(graph, inferred, layout_mode(options), VW, file=file)
    steps, tensors = layout.steps, layout.tensors
    ctx = PrepareContext(graph, threads=threads, file=file, options=options, blocked=layout.blocked)
    groups = _Groups()
    n_steps = len(steps)
    last_use = {}
    for step, (node, *_rest) in enumerate(steps):
        for name in node.inputs:
            if name and name not in graph.consts:
                last_use[name] = step
    for name in graph.outputs:
        last_use[name] = n_steps
    prepared_nodes = []
    scratch_buffers = []
    for step, (node, opdef, attrs, ins) in enumerate(steps):
        outs = [layout.logical[n] for n in node.outputs]
        src = node.inputs[opdef.view_of] if opdef.view_of is not None else None
        if src and src not in graph.consts and tensors[src].nbytes == tensors[node.outputs[0]].nbytes:
            groups.union(src, node.outputs[0])
            prepared_nodes.append(PreparedNode(node, opdef, attrs, None))
            continue
        try:
            prepared = opdef.prepare(node, attrs, ins, outs, ctx)
        except ShapeError as exc:
            exc.file = exc.file or (str(file) if file else None)
            raise
        prepared_nodes.append(PreparedNode(node, opdef, attrs, prepared))
        for k, (shape, dtype) in enumerate(prepared.scratch):
            info = TensorInfo(f"{node.name}#scratch{k}", tuple(shape), dtype)
            scratch_buffers.append(Buffer(info.name, info.nbytes, step, step))
        if opdef.inplace is not None and len(node.inputs) > opdef.inplace:
            src = node.inputs[opdef.inplace]
            if (src and src not in graph.consts and tensors[src].nbytes == tensors[node.outputs[0]].nbytes
                    and tensors[src].dtype == outs[0].dtype
                    and _group_last_use(groups, src, last_use) == step):
                groups.union(src, node.outputs[0])
    buffers = _tensor_buffers(graph, tensors, groups, steps, n_steps) + scratch_buffers
    _mark_sharing(buffers, prepared_nodes, groups, graph)
    limit = None
    if memory_budget is not None:
        limit = memory_budget - sum(v.nbytes for v in graph.consts.values()) - sum(
            p.prepared.persistent_bytes for p in prepared_nodes if p.prepared)
    plan = plan_memory(buffers, REUSE_GAP if threads > 1 else 0, limit)
    plan.layout = layout
    return prepared_nodes, plan, groups


def _mark_sharing(buffers, prepared_nodes, groups, graph):
    """Flag the buffers the planner's reuse gap is about (planner.REUSE_GAP): read by every worker,
    or written in bands by a kernel with little arithmetic per byte."""
    index = {b.name: b for b in buffers}
    for pn in prepared_nodes:
        p = pn.prepared
        if p is None:
            continue
        if p.shares_input and pn.node.inputs and pn.node.inputs[0] not in graph.consts:
            index[groups.find(pn.node.inputs[0])].shared_read = True
        if p.writes_bands:
            index[groups.find(pn.node.outputs[0])].band_write = True


def _group_last_use(groups, name, last_use):
    root = groups.find(name)
    return max(step for member, step in last_use.items() if groups.find(member) == root)


def _tensor_buffers(graph, tensors, groups, steps, n_steps):
    spans = {}
    def touch(name, step):
        root = groups.find(name)
        size = tensors[name].nbytes
        lo, hi, sz = spans.get(root, (step, step, 0))
        spans[root] = (min(lo, step), max(hi, step), max(sz, size))
    for name in graph.inputs:
        touch(name, 0)
    for step, (node, *_rest) in enumerate(steps):
        for name in node.inputs:
            if name and name not in graph.consts:
                touch(name, step)
        for name in node.outputs:
            touch(name, step)
    for name in graph.outputs:
        if name not in graph.consts:
            touch(name, n_steps)
    return [Buffer(root, size, lo, hi) for root, (lo, hi, size) in spans.items()]


def summarize(plan: MemoryPlan) -> dict:
    return {"arena_bytes": plan.arena_bytes, "lower_bound_bytes": plan.lower_bound,
            "ratio": round(plan.arena_bytes / plan.lower_bound, 4) if plan.lower_bound else 1.0,
            "strategy": plan.strategy, "buffers": len(plan.buffers), **plan.notes}


def with_input_shapes(graph: Graph, input_shapes: dict, file=None) -> Graph:
    """A copy of ``graph`` whose inputs take ``input_shapes`` and whose other tensors are re-inferred.

    For fully convolutional models (segmentation networks run window by window): the nodes and the
    constants are shared with ``graph``, only the tensor table is new. A node that cannot take the
    new shape (a Reshape with a baked shape, a Resize with baked output sizes, a Gemm head) raises
    a ShapeError naming it.
    """
    from dataclasses import replace
    unknown = sorted(set(input_shapes) - set(graph.inputs))
    if unknown:
        raise GraphError(f"no graph input(s) {unknown} to reshape; inputs: {list(graph.inputs)}", file=file)
    tensors = {n: graph.tensors[n] for n in list(graph.inputs) + list(graph.consts)}
    for name, shape in input_shapes.items():
        old = graph.tensors[name]
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(old.shape) or any(d <= 0 for d in shape):
            raise ShapeError(f"input '{name}' is {list(old.shape)}; cannot set it to {list(shape)} "
                             "(same rank, positive dims)", file=file)
        tensors[name] = TensorInfo(name, shape, old.dtype)
    new = replace(graph, tensors=tensors)
    try:
        infer_graph(new, file=file, check_declared=False)
    except ShapeError as exc:
        exc.message = f"at input shape(s) {_shapes_text(input_shapes)}: {exc.message}"
        exc.args = (exc.message,)
        raise
    for name in graph.outputs:
        if name not in new.tensors:
            raise GraphError(f"graph output '{name}' is never produced", file=file)
    return new


def _shapes_text(shapes: dict) -> str:
    return ", ".join(f"{n}={'x'.join(map(str, s))}" for n, s in shapes.items())
