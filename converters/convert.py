"""The conversion entry point the CLI calls: a source model in, an .ert file out, and a report.

``convert`` picks the frontend from the file (``.onnx`` or ``.tflite``), lets it build the IR graph, runs the shared graph passes, and writes the file atomically (a failed
conversion never leaves a partial file).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import edgert
from edgert.errors import ConversionError
from edgert.ir.format import write_ert

from .passes import PASSES, run_passes, sparsify
from .passes.sparsify import sparsify_at


@dataclass
class ConversionReport:
    source: str
    source_format: str
    source_nodes: int
    nodes: int
    ops: dict  # IR op -> count
    inputs: list  # [(name, shape, dtype)]
    outputs: list
    weight_bytes: int
    fp16: bool
    passes: dict = field(default_factory=dict)  # pass name -> rewrites
    warnings: list = field(default_factory=list)
    destination: str | None = None
    file_bytes: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        top = ", ".join(f"{op} {n}" for op, n in Counter(self.ops).most_common(4))
        text = (f"{self.source_nodes} {self.source_format} nodes -> {self.nodes} edgert nodes ({top}); "
                f"weights {self.weight_bytes / 1e6:.2f} MB{' fp16' if self.fp16 else ''}")
        if self.file_bytes:
            text += f", file {self.file_bytes / 1e6:.2f} MB"
        if self.warnings:
            text += f"; {len(self.warnings)} warning(s)"
        return text


def source_format(src) -> str:
    """'onnx' or 'tflite', from the suffix or (failing that) the file's first bytes."""
    path = Path(src)
    suffix = path.suffix.lower()
    if suffix in (".onnx", ".tflite"):
        return suffix[1:]
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ConversionError(f"cannot read the file: {exc.strerror or exc}", file=src) from None
    return "tflite" if head[4:8] == b"TFL3" else "onnx"


def convert_graph(src, input_shapes=None, fp16=False, progress=None, sparse_threshold=None):
    """Build and optimise the IR graph of ``src`` (a path, or an onnx.ModelProto). Returns (graph, report)."""
    t0 = time.perf_counter()
    if hasattr(src, "graph") and hasattr(src, "opset_import"):
        from .onnx import check_model, onnx_to_graph
        check_model(src)
        fmt, name = "onnx", None
        graph, info = onnx_to_graph(src, input_shapes, fp16, progress)
    else:
        fmt, name = source_format(src), str(src)
        if fmt == "tflite":
            graph = _tflite_graph(src, input_shapes, fp16, progress)
            info = {"source_nodes": len(graph.nodes)}
            return _finish(graph, info, fmt, name, fp16, progress, t0, sparse_threshold)
        from .onnx import load_onnx, onnx_to_graph
        if progress:
            progress("load", 0, 1)
        model = load_onnx(src)
        if progress:
            progress("load", 1, 1)
        graph, info = onnx_to_graph(model, input_shapes, fp16, progress, file=src)
    return _finish(graph, info, fmt, name, fp16, progress, t0, sparse_threshold)


def _tflite_graph(src, input_shapes, fp16, progress):
    try:
        from .tflite_entry import convert_tflite
    except ImportError:
        raise ConversionError("TFLite conversion is not available in this edgert version yet", file=src,
                              hint="convert the model to ONNX first, or update edgert") from None
    return convert_tflite(src, input_shapes=input_shapes, fp16=fp16, progress=progress)


def _finish(graph, info, fmt, name, fp16, progress, t0, sparse_threshold=None):
    """Shared tail of every frontend: graph passes and the report."""
    passes = PASSES if sparse_threshold is None else tuple(
        sparsify_at(sparse_threshold) if p is sparsify else p for p in PASSES)
    counts = run_passes(graph, progress, file=name, passes=passes)
    report = ConversionReport(
        source=name or graph.metadata.get("source", "model"), source_format=fmt, source_nodes=info["source_nodes"],
        nodes=len(graph.nodes), ops=dict(Counter(n.op for n in graph.nodes)),
        inputs=[(n, tuple(graph.tensors[n].shape), graph.tensors[n].dtype) for n in graph.inputs],
        outputs=[(n, tuple(graph.tensors[n].shape), graph.tensors[n].dtype) for n in graph.outputs],
        weight_bytes=int(sum(v.nbytes for v in graph.consts.values())), fp16=bool(fp16), passes=counts,
        warnings=list(info.get("warnings", [])))
    report.seconds = time.perf_counter() - t0
    return graph, report


def convert(src, dst, input_shapes=None, fp16=False, progress=None, sparse_threshold=None) -> ConversionReport:
    """Convert ``src`` (.onnx) to the .ert file ``dst``.

    Parameters
    ----------
    input_shapes : dict, optional
        {input name: shape tuple} fixing dynamic input dims (``--input-shape``).
    fp16 : bool
        Store float weights in half precision (computation stays f32).
    progress : callable, optional
        ``progress(stage, done, total)``, called per node and per pass.
    sparse_threshold : float, optional
        Fraction of zero weights from which a 1x1 conv / FC layer is stored sparse (default 0.5;
        above 1: never). Which kernel runs is still the board's cost model's choice.
    """
    t0 = time.perf_counter()
    graph, report = convert_graph(src, input_shapes, fp16, progress, sparse_threshold)
    if progress:
        progress("write", 0, 1)
    try:
        report.file_bytes = write_ert(graph, dst, producer=f"edgert {edgert.__version__}")
    except OSError as exc:
        raise ConversionError(f"cannot write the output file: {exc.strerror or exc}", file=dst) from None
    if progress:
        progress("write", 1, 1)
    report.destination = str(dst)
    report.seconds = time.perf_counter() - t0
    return report
