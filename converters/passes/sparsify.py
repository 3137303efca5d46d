"""Store mostly-zero 1x1 convolution and fully connected weights in CSR form (``SparseConv1x1``).

Sparsity is decided from the final weight values, whatever the source said: zeros in ONNX
initializers, TFLite sparse tensors (decoded exactly by the frontend), or a weight x mask product
(folded by ``fold_constants``). The pass runs after batchnorm folding and activation fusion, so the
zeros counted are those of the weights the layer will really use and the activation moves along.

A layer is rewritten when at least ``THRESHOLD`` of its weights are zero: that is a *storage*
decision (at 50% zeros CSR with u16 indices and f32 values is already no larger than dense). Whether
the CSR kernel or the dense GEMM runs is decided on the board by the op's cost model, which can
densify at prepare, so storing sparse never makes a layer slower.

The block shape (1x1, 1x4, 2x1, 4x1, ...) is the one giving the smallest file: weights pruned in
blocks (``edgert prune --block 4x1``) are stored as blocks, random sparsity as single weights.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.graph import TensorInfo
from edgert.ops.sparse import BLOCKS, to_csr

from .rewrite import absorb_add, computed_after, is_private, residual_add, uses

THRESHOLD = 0.5  # fraction of zero weights from which a layer is stored sparse


def _pointwise(node, graph) -> bool:
    a = node.attrs
    w = graph.tensors[node.inputs[1]]
    return (len(w.shape) == 4 and tuple(w.shape[2:]) == (1, 1) and a.get("group", 1) == 1
            and list(a.get("strides", [1, 1])) == [1, 1] and list(a.get("dilations", [1, 1])) == [1, 1]
            and not any(a.get("pads", [0, 0, 0, 0])) and len(graph.tensors[node.inputs[0]].shape) == 4)


def best_block(w: np.ndarray, value_bytes: int):
    """(block, (values, cols, rowptr)) storing W in the fewest bytes among the blocks that divide it."""
    M, K = w.shape
    best = None
    for bm, bk in BLOCKS:
        if M % bm or K % bk:
            continue
        arrays = to_csr(w, (bm, bk))
        size = len(arrays[0]) * value_bytes + arrays[1].nbytes + arrays[2].nbytes
        if best is None or size < best[0]:
            best = (size, (bm, bk), arrays)
    return best[1], best[2]


def _unique(graph, base):
    name, k = base, 1
    while name in graph.tensors:
        name, k = f"{base}_{k}", k + 1
    return name


def sparsify(graph, threshold: float | None = None) -> int:
    threshold = THRESHOLD if threshold is None else threshold
    rewritten = 0
    for node in graph.nodes:
        if node.op not in ("Conv", "FullyConnected") or not 2 <= len(node.inputs) <= 3:
            continue  # (a Conv with a fused residual R keeps its dense kernel)
        wname = node.inputs[1]
        if wname not in graph.consts or graph.tensors[wname].dtype != "f32":
            continue
        if node.op == "Conv" and not _pointwise(node, graph):
            continue
        if node.op == "FullyConnected" and len(graph.tensors[wname].shape) != 2:
            continue
        stored = graph.consts[wname]
        w = np.asarray(stored, np.float32)
        w = w.reshape(w.shape[0], -1)
        if w.size == 0 or 1.0 - np.count_nonzero(w) / w.size < threshold:
            continue
        fp16 = stored.dtype == np.float16
        block, (values, cols, rowptr) = best_block(w, 2 if fp16 else 4)
        names = []
        for suffix, value, logical in (("values", values.astype(np.float16) if fp16 else values, "f32"),
                                       ("cols", cols, "u16" if cols.dtype == np.uint16 else "i32"),
                                       ("rowptr", rowptr, "i32")):
            name = _unique(graph, f"{wname}.{suffix}")
            graph.consts[name] = value
            graph.tensors[name] = TensorInfo(name, tuple(value.shape), logical)
            names.append(name)
        bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        act = {k: node.attrs[k] for k in ("activation", "act_a", "act_b") if k in node.attrs}
        node.op = "SparseConv1x1"
        node.inputs = [node.inputs[0], *names] + ([bias] if bias else [])
        node.attrs = {"block": list(block), **act}
        rewritten += 1
    return rewritten


def sparsify_at(threshold: float):
    """The sparsify pass with another storage threshold (``edgert convert --sparse-threshold``)."""
    def sparsify(graph) -> int:  # same name: run_passes reports rewrites per pass name
        return globals()["sparsify"](graph, threshold)
    return sparsify


def fuse_residual(graph) -> int:
    """SparseConv1x1 (no activation yet) whose output only feeds a same-shape Add: the Add's other
    operand becomes the node's residual input and the Add's activation its own, so the residual is
    added while the output tile is still in registers (an inverted-residual block's projection, the
    MediaPipe detectors' 19-23 residual Adds) instead of in a separate pass over memory."""
    fused = 0
    use_count = uses(graph)
    for node in list(graph.nodes):
        if (node.op != "SparseConv1x1" or len(node.inputs) > 5
                or node.attrs.get("activation", "none") != "none" or not is_private(graph, node.outputs[0], use_count)):
            continue
        found = residual_add(graph, node)
        if found is None:
            continue
        add, other = found
        if computed_after(graph, other, node):
            continue  # computed after the conv: it cannot be the conv's input without reordering
        absorb_add(graph, node, add, 5, other)
        use_count = uses(graph)
        fused += 1
    return fused
