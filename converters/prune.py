"""Magnitude pruning of 1x1 convolution and fully connected weights (``edgert prune``).

Per layer, the smallest-magnitude weights (or bm x bk blocks, ranked by their mean |w|) are set to
zero until ``sparsity`` of the layer's weights are zero. Only 1x1 convolutions (group 1) and fully
connected / MatMul-by-constant weights are pruned: those are the layers edgert runs sparse; the
stem, the depthwise convolutions and everything else keep their weights.

Pruning without fine-tuning costs accuracy (MobileNetV2 at 90% is no longer a useful classifier):
this tool exists to make models of a given sparsity for benchmarks, and as the last step after a
training-time pruning schedule. ONNX in gives ONNX out (the same graph, zeros in the initializers);
.ert in gives .ert out (pruned, then stored sparse by the ``sparsify`` pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgert.errors import ConversionError, InputError
from edgert.fileio import atomic_write

WARNING = ("pruning without fine-tuning lowers accuracy: fine-tune the pruned model (keeping the zeros) "
           "before using its outputs")


@dataclass
class PruneReport:
    layers: list = field(default_factory=list)  # [(tensor name, shape, sparsity before, after)]
    bytes_in: int = 0
    bytes_out: int = 0

    def summary(self) -> str:
        if not self.layers:
            return "no 1x1 convolution or fully connected weights found"
        total = sum(int(np.prod(s)) for _, s, _, _ in self.layers)
        zeros = sum(int(np.prod(s)) * after for _, s, _, after in self.layers)
        return (f"pruned {len(self.layers)} layers, {zeros / total:.1%} of their {total} weights are zero; "
                f"file {self.bytes_in / 1e6:.2f} MB -> {self.bytes_out / 1e6:.2f} MB")


def parse_block(text) -> tuple:
    if text is None:
        return (1, 1)
    if isinstance(text, (tuple, list)):
        return tuple(int(v) for v in text)
    try:
        bm, bk = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise InputError(f"bad block {text!r}", hint="write it as ROWSxCOLS, e.g. 1x4 or 4x1") from None
    if bm < 1 or bk < 1:
        raise InputError(f"bad block {text!r}: both sizes must be positive")
    return bm, bk


def prune_matrix(w: np.ndarray, sparsity: float, block=(1, 1)) -> np.ndarray:
    """W [M, K] with the smallest |w| (or bm x bk blocks by mean |w|) zeroed: ``round(sparsity * n)``
    of them. Blocks are used only where they divide W; otherwise single weights."""
    bm, bk = block
    M, K = w.shape
    if M % bm or K % bk:
        bm, bk = 1, 1
    score = np.abs(w.astype(np.float64)).reshape(M // bm, bm, K // bk, bk).mean(axis=(1, 3))
    n_drop = round(sparsity * score.size)
    keep = np.ones(score.size, bool)
    if n_drop:
        keep[np.argsort(score, axis=None, kind="stable")[:n_drop]] = False
    mask = np.kron(keep.reshape(score.shape), np.ones((bm, bk), bool))
    return np.where(mask, w, 0).astype(w.dtype)


def _check(sparsity):
    if not 0.0 <= sparsity < 1.0:
        raise InputError(f"sparsity must be in [0, 1), got {sparsity}")


def prune_onnx_model(model, sparsity: float, block=(1, 1), report: PruneReport | None = None):
    """Prune ``model`` (an onnx.ModelProto) in place; returns the report."""
    from onnx import numpy_helper
    _check(sparsity)
    report = report or PruneReport()
    inits = {t.name: t for t in model.graph.initializer}
    targets = {}  # initializer name -> how to view it as [M, K]
    for node in model.graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in inits:
            dims = list(inits[node.input[1]].dims)
            group = attrs["group"].i if "group" in attrs else 1
            if len(dims) == 4 and dims[2:] == [1, 1] and group == 1:
                targets[node.input[1]] = "conv"
        elif node.op_type == "Gemm" and len(node.input) > 1 and node.input[1] in inits:
            trans_b = attrs["transB"].i if "transB" in attrs else 0
            targets[node.input[1]] = "gemm_t" if trans_b else "kn"
        elif node.op_type == "MatMul" and node.input[1] in inits and len(inits[node.input[1]].dims) == 2:
            targets[node.input[1]] = "kn"
    for name, kind in targets.items():
        t = inits[name]
        w = numpy_helper.to_array(t)
        if not np.issubdtype(w.dtype, np.floating):
            continue
        mat = w.reshape(w.shape[0], -1) if kind in ("conv", "gemm_t") else w.T  # rows = output channels
        before = 1.0 - np.count_nonzero(mat) / mat.size
        pruned = prune_matrix(mat, sparsity, block)
        new = pruned.reshape(w.shape) if kind in ("conv", "gemm_t") else pruned.T
        t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(new, w.dtype), name))
        report.layers.append((name, tuple(mat.shape), before, 1.0 - np.count_nonzero(pruned) / pruned.size))
    return report


def prune_graph(graph, sparsity: float, block=(1, 1), report: PruneReport | None = None):
    """Prune an edgert IR graph in place (Conv 1x1, FullyConnected, SparseConv1x1 weights)."""
    from edgert.ops import get_op
    from edgert.ops.sparse import densify, to_csr
    _check(sparsity)
    report = report or PruneReport()
    for node in graph.nodes:
        if node.op in ("Conv", "FullyConnected"):
            name = node.inputs[1]
            if name not in graph.consts:
                continue
            stored = graph.consts[name]
            if node.op == "Conv" and (stored.ndim != 4 or stored.shape[2:] != (1, 1) or
                                      node.attrs.get("group", 1) != 1):
                continue
            mat = np.asarray(stored, np.float32).reshape(stored.shape[0], -1)
            pruned = prune_matrix(mat, sparsity, block)
            graph.consts[name] = pruned.reshape(stored.shape).astype(stored.dtype)
        elif node.op == "SparseConv1x1":
            attrs = get_op(node.op).resolve_attrs(node)
            old_block = tuple(attrs["block"])
            v, c, r = (graph.consts[n] for n in node.inputs[1:4])
            M, K = (len(r) - 1) * old_block[0], graph.tensors[node.inputs[0]].shape[1]
            mat = densify(np.asarray(v, np.float32), c, r, M, K, old_block)
            pruned = prune_matrix(mat, sparsity, block)
            nb = block if M % block[0] == 0 and K % block[1] == 0 else (1, 1)
            values, cols, rowptr = to_csr(pruned, nb)
            from edgert.ir.graph import TensorInfo
            for n, arr, logical in zip(node.inputs[1:4], (values.astype(v.dtype), cols, rowptr),
                                       ("f32", "u16" if cols.dtype == np.uint16 else "i32", "i32")):
                graph.consts[n] = arr
                graph.tensors[n] = TensorInfo(n, tuple(arr.shape), logical)
            node.attrs["block"] = list(nb)
        else:
            continue
        report.layers.append((node.name, tuple(mat.shape), 1.0 - np.count_nonzero(mat) / mat.size,
                              1.0 - np.count_nonzero(pruned) / pruned.size))
    return report


def prune_file(src, dst, sparsity: float, block=None) -> PruneReport:
    """Prune ``src`` (.onnx or .ert) into ``dst`` (same format), written atomically."""
    block = parse_block(block)
    src, dst = Path(src), Path(dst)
    report = PruneReport()
    try:
        report.bytes_in = src.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}", file=str(src)) from None
    if src.suffix.lower() == ".ert":
        from edgert.ir.format import read_ert, write_ert
        from edgert.runtime.prepare import infer_graph

        from .passes import eliminate_dead, sparsify
        graph = read_ert(src)
        graph.consts = {k: np.array(v) for k, v in graph.consts.items()}  # mapped read-only: own copies
        prune_graph(graph, sparsity, block, report)
        sparsify(graph)
        eliminate_dead(graph)
        infer_graph(graph, file=str(src), check_declared=True)
        write_ert(graph, dst)
    elif src.suffix.lower() == ".onnx":
        from .onnx import load_onnx
        model = load_onnx(src)
        prune_onnx_model(model, sparsity, block, report)
        with atomic_write(dst) as fh:
            fh.write(model.SerializeToString())
    else:
        raise ConversionError("prune takes an .onnx or .ert file", file=str(src))
    report.bytes_out = dst.stat().st_size
    return report
